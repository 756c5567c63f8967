package workflows_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/activities/tekton"
	"github.com/kiln-build/kiln/test/kubestack"
	"github.com/kiln-build/kiln/test/s3test"
	"github.com/kiln-build/kiln/test/temporaltest"
	"github.com/kiln-build/kiln/worker"
	"github.com/kiln-build/kiln/workflows"
)

// TestNightlyKeepsFailWhenWorkerWaits runs a scheduled build on workers
// whose config says onFailure: wait, and fails its base phase: the build
// fails at once, as the schedule's onFailure (default fail) says, instead
// of waiting the resume window for an operator while the next nights are
// skipped.
func TestNightlyKeepsFailWhenWorkerWaits(t *testing.T) {
	for _, tc := range []struct {
		name      string
		onFailure string // the schedule entry's
		wait      bool
	}{
		{"default", "", false},
		{"fail", workflows.OnFailureFail, false},
		{"wait", workflows.OnFailureWait, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testPlan(2)
			p.OnFailure, p.ResumeWindow = workflows.OnFailureWait, 24*time.Hour
			rec := &recorder{outcome: func(q tekton.PipelineRunRequest) error {
				if q.Labels["kiln.dev/phase"] == "base" {
					return failed("Failed")
				}
				return nil
			}}
			env := newEnv(t, p, rec)
			env.RegisterWorkflow(workflows.Scheduled)
			start := env.Now()
			env.ExecuteWorkflow(workflows.Scheduled, workflows.ScheduledRequest{Template: request(flavours(2), "build"), OnFailure: tc.onFailure})
			err := env.GetWorkflowError()
			waited := env.Now().Sub(start)
			if err == nil {
				t.Fatal("the scheduled build succeeded; its base phase failed")
			}
			if !tc.wait {
				if waited >= time.Hour || strings.Contains(err.Error(), "aborted") {
					t.Errorf("the build waited %v for an operator and ended: %v; want it failed at once", waited, err)
				}
				if !strings.Contains(err.Error(), "base") {
					t.Errorf("error %v does not name the failed phase", err)
				}
				return
			}
			if waited < 24*time.Hour || !strings.Contains(err.Error(), "no decision within 24h") {
				t.Errorf("onFailure: wait in the schedule: waited %v, error %v; want the resume window used", waited, err)
			}
		})
	}
}

// nightlyWorker runs a real kiln worker (worker.Run, the local executor)
// on queue against c. Its image pipeline fails while marker exists; its
// workers' onFailure is wait, which scheduled builds must not follow. With
// s3 set, it has storage there.
func nightlyWorker(t *testing.T, c client.Client, queue, marker string, s3 *s3test.Server) {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"flavours.yaml": `targets:
  - name: kvm
    category: hypervisor
    flavors:
      - {features: [gardener, _prod], arch: amd64, build: true}
  - name: metal
    category: baremetal
    flavors:
      - {features: [gardener, _prod], arch: amd64, build: true}
`,
		"image.yaml": `apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: image}
spec:
  tasks:
  - name: build
    taskSpec:
      steps: [{name: build, image: x, script: "test ! -e ` + marker + `"}]
`,
		"kiln.yaml": `executor: local
local: {dir: runs, isolation: none, maxParallel: 2}
taskQueue: ` + queue + `
flavours: flavours.yaml
onFailure: wait
resumeWindow: 24h
phases:
  image: {pipelineFile: image.yaml, attempts: 1}
`,
	}
	if s3 != nil {
		files["kiln.yaml"] += `storage:
  endpoint: ` + s3.Endpoint + `
  pathStyle: true
  region: us-east-1
  stagingBucket: staging
  releaseBucket: releases
  archiveLogs: false
  credentials: {accessKeyIdEnv: KILN_TEST_S3_ACCESS, secretAccessKeyEnv: KILN_TEST_S3_SECRET}
`
		t.Setenv("KILN_TEST_S3_ACCESS", s3.Access)
		t.Setenv("KILN_TEST_S3_SECRET", s3.Secret)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := worker.LoadConfig(filepath.Join(dir, "kiln.yaml"), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started, done := make(chan struct{}), make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() { done <- worker.Run(ctx, cfg, c, nil, logger, func() { close(started) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("worker: %v", err)
	}
}

// fire runs one Scheduled run of the nightly template for commit on queue,
// as a schedule's fire would, and returns its result, its error and its
// memo.
func fire(t *testing.T, c client.Client, queue, commit string) (workflows.ScheduledResult, error, map[string]string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "scheduled/nightly-" + queue, TaskQueue: queue}, "Scheduled", workflows.ScheduledRequest{
		Template: workflows.BuildRequest{
			Repo: "https://github.com/gardenlinux/gardenlinux", Branch: "main", Commit: commit, Version: "1443.3", FlavourSet: "all",
		},
		OnlyIfChanged: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	var res workflows.ScheduledResult
	runErr := run.Get(ctx, &res)
	d, err := c.DescribeWorkflowExecution(ctx, run.GetID(), run.GetRunID())
	if err != nil {
		t.Fatal(err)
	}
	memo := map[string]string{}
	for k, p := range d.GetWorkflowExecutionInfo().GetMemo().GetFields() {
		var s string
		_ = converter.GetDefaultDataConverter().FromPayload(p, &s)
		memo[k] = s
	}
	return res, runErr, memo
}

// buildStatus is the status of the latest run of build/main/<commit>, "" if
// Temporal has none.
func buildStatus(t *testing.T, c client.Client, commit string) string {
	t.Helper()
	d, err := c.DescribeWorkflowExecution(context.Background(), "build/main/"+commit, "")
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return d.GetWorkflowExecutionInfo().GetStatus().String()
}

// TestNightlyRebuildsAFailedCommit fires an onlyIfChanged nightly at a
// commit whose build fails, then again: the commit is built again, and the
// reason says so; a third fire skips the succeeded build. With the build's
// history gone from Temporal (deleted, as retention deletes it), the
// release manifests in a real S3 server (versitygw) decide: every flavour
// has one, so the build is skipped; a commit with one flavour's manifest
// missing is built. Workers without storage say why they build. Real
// Temporal (dev server), real kiln workers with the local executor.
func TestNightlyRebuildsAFailedCommit(t *testing.T) {
	ctx := context.Background()
	srv, err := temporaltest.Start(ctx, t.TempDir())
	kubestack.SkipWithoutTools(t, err)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	s3srv, err := s3test.Start(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s3srv.Stop)
	for _, b := range []string{"staging", "releases"} {
		if _, err := s3srv.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatal(err)
		}
	}
	c := srv.Client()
	marker := filepath.Join(t.TempDir(), "broken")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	nightlyWorker(t, c, "plain", marker, nil)
	nightlyWorker(t, c, "stored", marker, s3srv)
	const commit = "75df9f401a842914563f312899ec3ce34b24515c"
	id := "build/main/" + commit

	// 1. The build fails, at once (the workers' onFailure: wait does not
	// apply), and the workers without storage say why they built.
	res, err, memo := fire(t, c, "plain", commit)
	if err == nil || res.Skipped || buildStatus(t, c, commit) != "Failed" {
		t.Fatalf("first fire: %+v, %v, build %s; want the build failed", res, err, buildStatus(t, c, commit))
	}
	if want := "built: no earlier build found; the workers have no storage to check manifests"; memo[workflows.MemoReason] != want {
		t.Errorf("first fire's reason %q, want %q", memo[workflows.MemoReason], want)
	}

	// 2. The commit has not moved, but its build failed: built again.
	if err := os.Remove(marker); err != nil {
		t.Fatal(err)
	}
	res, err, memo = fire(t, c, "plain", commit)
	if err != nil || res.Skipped || buildStatus(t, c, commit) != "Completed" {
		t.Fatalf("second fire: %+v, %v, build %s; want the failed commit built again", res, err, buildStatus(t, c, commit))
	}
	if r := memo[workflows.MemoReason]; !strings.HasPrefix(r, "rebuilt: "+id+" failed on ") || r != res.Reason {
		t.Errorf("second fire's reason %q (result %q), want rebuilt: %s failed on <date>", r, res.Reason, id)
	}

	// 3. It succeeded: skipped.
	res, err, memo = fire(t, c, "plain", commit)
	if err != nil || !res.Skipped || !strings.HasPrefix(memo[workflows.MemoSkipped], id+" succeeded on ") {
		t.Fatalf("third fire: %+v, %v, memo %v; want skipped, %s succeeded on <date>", res, err, memo, id)
	}

	// 4. The build's history is gone (as retention removes it). Its
	// flavours' release manifests are in S3, as Garden Linux's tooling
	// writes them: the manifests decide, and the build is skipped.
	if _, err := c.WorkflowService().DeleteWorkflowExecution(ctx, &workflowservice.DeleteWorkflowExecutionRequest{
		Namespace: "default", WorkflowExecution: &commonpb.WorkflowExecution{WorkflowId: id},
	}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return buildStatus(t, c, commit) == "", nil
	})
	if err != nil {
		t.Fatalf("the deleted build is still there: %v", err)
	}
	putManifest(t, s3srv, "kvm-gardener_prod-amd64", commit)
	putManifest(t, s3srv, "metal-gardener_prod-amd64", commit)
	res, err, memo = fire(t, c, "stored", commit)
	if err != nil || !res.Skipped || buildStatus(t, c, commit) != "" {
		t.Fatalf("fire after the history went: %+v, %v, build %q; want skipped from the manifests", res, err, buildStatus(t, c, commit))
	}
	if want := "every flavour of " + id + " has a release manifest (2 flavours; its run is gone from Temporal)"; memo[workflows.MemoSkipped] != want {
		t.Errorf("skip reason %q, want %q", memo[workflows.MemoSkipped], want)
	}

	// 5. A commit with one flavour's manifest: built (the build reuses the
	// manifest it has), and the reason names the flavour without one.
	const other = "0123abcd0123abcd0123abcd0123abcd0123abcd"
	putManifest(t, s3srv, "kvm-gardener_prod-amd64", other)
	res, _, memo = fire(t, c, "stored", other)
	if res.Skipped || buildStatus(t, c, other) == "" {
		t.Fatalf("fire at a commit missing a manifest: %+v, build %q; want it built", res, buildStatus(t, c, other))
	}
	if want := "built: no earlier build found, and 1 of 2 flavours have no release manifest (metal-gardener_prod-amd64)"; memo[workflows.MemoReason] != want {
		t.Errorf("reason %q, want %q", memo[workflows.MemoReason], want)
	}
}

// putManifest writes a flavour's release manifest at version 1443.3 and
// commit, in Garden Linux's format and place.
func putManifest(t *testing.T, srv *s3test.Server, flavourName, commit string) {
	t.Helper()
	arch := flavourName[strings.LastIndex(flavourName, "-")+1:]
	platform, _, _ := strings.Cut(flavourName, "-")
	key := storage.ManifestKey("", flavourName+"-1443.3-"+commit[:8])
	data, err := storage.EncodeManifest(storage.Manifest{
		Architecture: arch, Platform: platform, BuildCommittish: commit, Version: "1443.3", GardenLinuxEpoch: 1443,
		BuildTimestamp: "2026-11-01T02:13:13.957549", S3Bucket: "releases", S3Key: key,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Client().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("releases"), Key: &key, Body: bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
}

// TestNightlyDecidesFromTheEarlierBuild: every way a build can end but
// success is built again, naming how it ended and when; a succeeded or
// running one is skipped; when the earlier build's fate cannot be learnt,
// the build is started (the reuse policy still refuses a duplicate).
func TestNightlyDecidesFromTheEarlierBuild(t *testing.T) {
	closed := time.Date(2026, 11, 2, 2, 13, 0, 0, time.UTC)
	id := "build/main/0123abcd"
	for _, tc := range []struct {
		earlier workflows.EarlierBuild
		err     error
		skipped bool
		reason  string
	}{
		{workflows.EarlierBuild{Status: "Completed", Closed: closed}, nil, true, "skipped: " + id + " succeeded on 2026-11-02 02:13 UTC"},
		{workflows.EarlierBuild{Status: "Running"}, nil, true, "skipped: " + id + " is running"},
		{workflows.EarlierBuild{Status: "Failed", Closed: closed}, nil, false, "rebuilt: " + id + " failed on 2026-11-02 02:13 UTC"},
		{workflows.EarlierBuild{Status: "Canceled", Closed: closed}, nil, false, "rebuilt: " + id + " was cancelled on 2026-11-02 02:13 UTC"},
		{workflows.EarlierBuild{Status: "Terminated", Closed: closed}, nil, false, "rebuilt: " + id + " was terminated on 2026-11-02 02:13 UTC"},
		{workflows.EarlierBuild{Status: "TimedOut", Closed: closed}, nil, false, "rebuilt: " + id + " timed out on 2026-11-02 02:13 UTC"},
		{workflows.EarlierBuild{}, nil, false, "built: no earlier build found; the workers have no storage to check manifests"},
		{workflows.EarlierBuild{ManifestsChecked: true, Flavours: 2}, nil, true, "skipped: every flavour of " + id + " has a release manifest (2 flavours; its run is gone from Temporal)"},
		{workflows.EarlierBuild{ManifestsChecked: true, Flavours: 2, Missing: []string{"a", "b"}}, nil, false, "built: no earlier build or release manifest found"},
		{workflows.EarlierBuild{}, temporal.NewNonRetryableApplicationError("access denied", "AccessDenied", nil), false, "built: what became of an earlier " + id + " is unknown (access denied)"},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			env := newEnv(t, testPlan(1), &recorder{}, func(env *testsuite.TestWorkflowEnvironment) {
				env.RegisterActivityWithOptions(func(context.Context, workflows.EarlierBuildRequest) (workflows.EarlierBuild, error) {
					return tc.earlier, tc.err
				}, activity.RegisterOptions{Name: workflows.ActivityEarlierBuild})
			})
			env.RegisterWorkflow(workflows.Scheduled)
			started := false
			env.SetOnChildWorkflowStartedListener(func(*workflow.Info, workflow.Context, converter.EncodedValues) { started = true })
			env.ExecuteWorkflow(workflows.Scheduled, workflows.ScheduledRequest{Template: request(flavours(1), "build"), OnlyIfChanged: true})
			var res workflows.ScheduledResult
			if err := env.GetWorkflowResult(&res); err != nil {
				t.Fatal(err)
			}
			if res.Skipped != tc.skipped || res.Reason != tc.reason || started == tc.skipped {
				t.Errorf("result %+v, build started %v; want skipped %v, reason %q", res, started, tc.skipped, tc.reason)
			}
		})
	}
}
