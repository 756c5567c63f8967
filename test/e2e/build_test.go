//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"google.golang.org/protobuf/encoding/protojson"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kiln-build/kiln/activities/tekton"
	"github.com/kiln-build/kiln/test/kubestack"
	"github.com/kiln-build/kiln/workflows"
)

// stagedImage is what every flavour's image pipeline reports as its
// rootfs.raw (through kwok, which runs no steps), staged at
// stagedKey(flavour) by the tests that verify artifacts.
var stagedImage = bytes.Repeat([]byte("kiln e2e rootfs\n"), 4096)

func stagedKey(version, commit, flavour string) string {
	return "builds/" + version + "-" + commit + "/" + flavour + "/rootfs.raw"
}

// artifactsAnnotation makes kwok report the image pipeline's artifacts
// result: stagedImage at stagedKey.
func artifactsAnnotation() string {
	sum := sha256.Sum256(stagedImage)
	arts := fmt.Sprintf(`[{"name":"rootfs.raw","key":"%s","size":%d,"sha256":"%x"}]`,
		stagedKey("{{.Version}}", "{{.Commit}}", "{{.Flavour.Name}}"), len(stagedImage), sum)
	return kubestack.TerminationMessage(map[string]string{"artifacts": arts})
}

// buildConfig writes a worker config for namespace ns that runs the example
// pipelines of deploy/tekton on the flavour sets of deploy/flavours.yaml,
// with extra YAML (such as labels for the image phase) spliced into the
// image phase.
func buildConfig(t *testing.T, ns string, imageExtra string) string {
	return buildConfigWith(t, ns, imageExtra, "")
}

// buildConfigWith is buildConfig with its own publish phases and top-level
// YAML (storage, publishing): top starts inside phases, so it begins with
// the phases' publish entry, if any.
func buildConfigWith(t *testing.T, ns, imageExtra, top string) string {
	t.Helper()
	deploy, err := filepath.Abs("../../deploy")
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`namespace: %[1]s
flavours: %[2]s/flavours.yaml
parallelism: 4
heartbeatTimeout: 5s
phases:
  base:
    pipelineFile: %[2]s/tekton/base-image.yaml
    params: {repo: "{{.Repo}}", commit: "{{.Commit}}", version: "{{.Version}}"}
  packages:
    pipelineFile: %[2]s/tekton/packages.yaml
    params: {commit: "{{.Commit}}", version: "{{.Version}}"}
  image:
    pipelineFile: %[2]s/tekton/image.yaml
    params:
      flavour: "{{.Flavour.Name}}"
      platform: "{{.Flavour.Platform}}"
      arch: "{{.Flavour.Arch}}"
      commit: "{{.Commit}}"
      version: "{{.Version}}"
    workspaces:
    - name: work
      emptyDir: {}
    attempts: 2
    backoff: 1s
    annotations:
      kiln.test/termination-message: '%[4]s'
%[3]s
  test:
    pipelineFile: %[2]s/tekton/test.yaml
    params: {flavour: "{{.Flavour.Name}}"}
%[5]s`, ns, deploy, imageExtra, artifactsAnnotation(), top)
	if top == "" {
		cfg += fmt.Sprintf(`  publish:
    aws:
      pipelineFile: %[1]s/tekton/publish.yaml
      params: {platform: aws, version: "{{.Version}}"}
    gcp:
      pipelineFile: %[1]s/tekton/publish.yaml
      params: {platform: gcp, version: "{{.Version}}"}
publishing:
  s3Only: [ali, azure, kvm, metal, openstack, vmware]
`, deploy)
	}
	path := filepath.Join(t.TempDir(), "kiln.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// runWorker runs an in-process worker for the config until the test ends.
func runWorker(t *testing.T, path, queue string) {
	t.Helper()
	runWorkerOn(t, env.client, path, queue)
}

func startBuild(t *testing.T, queue string, in workflows.BuildRequest) client.WorkflowRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The one start policy (workflows/start.go), with a deadline for tests.
	opts := workflows.BuildStartOptions(in, queue)
	opts.WorkflowExecutionTimeout = 10 * time.Minute
	run, err := env.client.ExecuteWorkflow(ctx, opts, "Build", in)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

func gardenRequest(branch string, targets ...workflows.Target) workflows.BuildRequest {
	return workflows.BuildRequest{
		Repo: "https://github.com/gardenlinux/gardenlinux", Branch: branch, Commit: "b2279318", Version: "576.0",
		FlavourSet: "all", Targets: targets,
	}
}

// buildRuns lists the PipelineRuns of one build.
func buildRuns(t *testing.T, ns, buildID string) []pipelinev1.PipelineRun {
	t.Helper()
	l, err := env.stack.Tekton().TektonV1().PipelineRuns(ns).List(context.Background(), metav1.ListOptions{
		LabelSelector: "kiln.dev/build=" + strings.ReplaceAll(buildID, "/", "."),
	})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// waitImageRuns waits until n image PipelineRuns of the build have started.
func waitImageRuns(t *testing.T, ns, buildID string, n int) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		running := 0
		for _, pr := range buildRuns(t, ns, buildID) {
			if pr.Labels["kiln.dev/phase"] == workflows.PhaseImage && pr.Status.StartTime != nil {
				running++
			}
		}
		return running == n, nil
	})
	if err != nil {
		t.Fatalf("image runs did not start: %v", err)
	}
}

func getProgress(t *testing.T, run client.WorkflowRun) workflows.Progress {
	t.Helper()
	v, err := env.client.QueryWorkflow(context.Background(), run.GetID(), run.GetRunID(), workflows.QueryProgress)
	if err != nil {
		t.Fatal(err)
	}
	var p workflows.Progress
	if err := v.Get(&p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBuildElevenFlavours(t *testing.T) {
	s := newSuite(t)
	runWorker(t, buildConfig(t, s.ns, ""), s.queue)
	start := time.Now()
	run := startBuild(t, s.queue, gardenRequest(s.ns, "build", "manifest", "tests", "publish"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var res workflows.BuildResult
	if err := run.Get(ctx, &res); err != nil {
		t.Fatalf("build: %v\nprogress: %+v", err, getProgress(t, run))
	}
	t.Logf("11-flavour build on the real stack: %v", time.Since(start).Round(time.Millisecond))
	recordHistory(t, run.GetID(), run.GetRunID(), "build-v5.json")
	recordHistory(t, run.GetID()+"/flavour/aws-gardener_prod-amd64", "", "flavour-v5.json")
	p := res.Progress
	if p.State != workflows.StateSucceeded || len(p.Flavours) != 11 {
		t.Fatalf("progress: state %s, %d flavours", p.State, len(p.Flavours))
	}
	for _, f := range p.Flavours {
		if f.State != workflows.StateSucceeded || len(f.Phases) != 2 || f.Phases[1].State != workflows.StateSucceeded {
			t.Errorf("flavour %s: %+v", f.Name, f)
		}
	}
	names := map[string]bool{}
	for _, ph := range p.Phases {
		names[ph.Name+"="+ph.State] = true
	}
	for _, want := range []string{"base=Succeeded", "packages=Succeeded", "image=Succeeded", "publish=Succeeded", "publish/aws=Succeeded", "publish/gcp=Succeeded"} {
		if !names[want] {
			t.Errorf("phases %v lack %s", names, want)
		}
	}
	// base, packages, image and test for 11 flavours, publish for aws and
	// gcp: 26 PipelineRuns, every one reconciled by Tekton to success.
	runs := buildRuns(t, s.ns, run.GetID())
	if len(runs) != 26 {
		t.Errorf("%d pipelineruns, want 26", len(runs))
	}
	for _, pr := range runs {
		if !pr.IsSuccessful() {
			t.Errorf("%s not successful", pr.Name)
		}
	}
}

func TestBuildReportsTheFailedFlavour(t *testing.T) {
	s := newSuite(t)
	const bad = "gcp-gardener_prod-amd64"
	runWorker(t, buildConfig(t, s.ns, `    labels:
      kiln.test/outcome: '{{if eq .Flavour.Name "`+bad+`"}}fail{{else}}ok{{end}}'`), s.queue)
	run := startBuild(t, s.queue, gardenRequest(s.ns, "build", "manifest", "publish"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err := run.Get(ctx, nil)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != workflows.ErrTypeFlavoursFailed || !strings.Contains(appErr.Error(), bad) {
		t.Fatalf("build error = %v, want %s naming %s", err, workflows.ErrTypeFlavoursFailed, bad)
	}
	p := getProgress(t, run)
	for _, f := range p.Flavours {
		want := workflows.StateSucceeded
		if f.Name == bad {
			want = workflows.StateFailed
			// Two attempts, each a fresh PipelineRun that Tekton failed.
			if f.Phases[0].Attempt != 2 || !strings.Contains(f.Error, "Failed") {
				t.Errorf("%s: attempt %d, error %q", f.Name, f.Phases[0].Attempt, f.Error)
			}
		}
		if f.State != want {
			t.Errorf("flavour %s: %s, want %s", f.Name, f.State, want)
		}
	}
	for _, pr := range buildRuns(t, s.ns, run.GetID()) {
		if pr.Labels["kiln.dev/phase"] == workflows.PhasePublish {
			t.Errorf("published (%s) although a flavour failed", pr.Name)
		}
	}
}

func TestWorkerKilledMidBuild(t *testing.T) {
	s := newSuite(t)
	// Every image pod holds until released, so the kill lands while
	// PipelineRuns are running.
	cfgPath := buildConfig(t, s.ns, `    labels: {kiln.test/outcome: hold}`)
	startProcess := func() *exec.Cmd { return startKilnWorker(t, cfgPath, s.queue) }
	first := startProcess()
	run := startBuild(t, s.queue, gardenRequest(s.ns, "build"))

	// Wait until four image PipelineRuns (the parallelism) are running.
	waitImageRuns(t, s.ns, run.GetID(), 4)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	t.Log("worker killed with 4 image PipelineRuns running")
	startProcess()
	releaseAll(ctx, t, s.ns, run.GetID())
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("build after the kill: %v", err)
	}
	// One PipelineRun per phase and flavour, all from the first attempt:
	// the new worker re-attached instead of starting any again.
	oneRunPerKey(t, buildRuns(t, s.ns, run.GetID()), 2+11)
}

// oneRunPerKey checks that runs hold want PipelineRuns, one per request
// key, each the first attempt's: none was created twice, and no phase
// needed a fresh run. It returns the runs.
func oneRunPerKey(t *testing.T, runs []pipelinev1.PipelineRun, want int) []pipelinev1.PipelineRun {
	t.Helper()
	keys := map[string]bool{}
	for _, pr := range runs {
		key := pr.Annotations[tekton.AnnotationKey]
		if keys[key] {
			t.Errorf("two pipelineruns for %s", key)
		}
		keys[key] = true
		if !strings.HasSuffix(key, "/a1") {
			t.Errorf("%s: a second attempt was started", key)
		}
	}
	if len(runs) != want {
		t.Errorf("%d pipelineruns, want %d (base, packages, 11 images)", len(runs), want)
	}
	return runs
}

// startKilnWorker starts `kiln worker` (bin/kiln) as a process for the
// config and queue, with extra environment variables, and stops it when the
// test ends, showing its log if the test failed.
func startKilnWorker(t *testing.T, cfgPath, queue string, extraEnv ...string) *exec.Cmd {
	t.Helper()
	kiln, err := kubestack.Tool("kiln")
	if err != nil {
		t.Fatalf("%v: make test builds bin/kiln before this tier", err)
	}
	logf, err := os.CreateTemp(t.TempDir(), "worker-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(kiln, "worker", "--config", cfgPath)
	cmd.Env = append(os.Environ(),
		"TEMPORAL_ADDRESS="+env.temporal.FrontendHostPort(),
		"KUBECONFIG="+env.stack.Kubeconfig,
		"KILN_TASK_QUEUE="+queue,
	)
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s:\n%s", logf.Name(), b)
		}
	})
	return cmd
}

// recordHistory writes the execution's history as JSON to
// $KILN_RECORD_HISTORY/name, for the replay tests in workflows/testdata.
func recordHistory(t *testing.T, id, runID, name string) {
	t.Helper()
	dir := os.Getenv("KILN_RECORD_HISTORY")
	if dir == "" {
		return
	}
	h := &historypb.History{}
	it := env.client.GetWorkflowHistory(context.Background(), id, runID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		h.Events = append(h.Events, e)
	}
	b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".id"), []byte(id+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("recorded %d events of %s in %s", len(h.Events), id, name)
}

func TestCancelBuildStopsEveryRun(t *testing.T) {
	s := newSuite(t)
	runWorker(t, buildConfig(t, s.ns, `    labels: {kiln.test/outcome: hold}`), s.queue)
	run := startBuild(t, s.queue, gardenRequest(s.ns, "build"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// Wait until the four image runs of the first wave are running.
	waitImageRuns(t, s.ns, run.GetID(), 4)
	if err := env.client.CancelWorkflow(ctx, run.GetID(), run.GetRunID()); err != nil {
		t.Fatal(err)
	}
	if err := run.Get(ctx, nil); !temporal.IsCanceledError(err) {
		t.Fatalf("build error = %v, want cancelled", err)
	}
	if p := getProgress(t, run); p.State != workflows.StateCancelled {
		t.Errorf("progress state = %s, want Cancelled", p.State)
	}
	recordHistory(t, run.GetID(), run.GetRunID(), "build-v5-cancelled.json")
	// Nothing is left running: every run kiln started is cancelled by
	// spec.status, and Tekton has finished it.
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		for _, pr := range buildRuns(t, s.ns, run.GetID()) {
			if !pr.IsDone() {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("runs still running after the build was cancelled: %v", err)
	}
	images := 0
	for _, pr := range buildRuns(t, s.ns, run.GetID()) {
		if pr.Labels["kiln.dev/phase"] != workflows.PhaseImage {
			continue
		}
		images++
		if pr.Spec.Status != pipelinev1.PipelineRunSpecStatusCancelled {
			t.Errorf("%s: spec.status %q, want Cancelled", pr.Name, pr.Spec.Status)
		}
	}
	if images != 4 {
		t.Errorf("%d image runs, want the 4 of the first wave and no more", images)
	}
}
