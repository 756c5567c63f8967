package main

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
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

	"github.com/kiln-build/kiln/activities/local"
	"github.com/kiln-build/kiln/activities/logs"
	"github.com/kiln-build/kiln/test/kubestack"
	"github.com/kiln-build/kiln/test/s3test"
	"github.com/kiln-build/kiln/workflows"
)

// logsPipeline has two tasks, compile then unit, and a skipped one.
const logsPipeline = `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: NAME}
spec:
  pipelineSpec:
    tasks:
    - name: compile
      taskSpec:
        steps:
        - {name: gcc, image: x, script: "echo compiling; echo done"}
        - {name: strip, image: x, script: "printf stripped"}
    - name: unit
      runAfter: [compile]
      taskSpec:
        steps: [{name: go-test, image: x, script: "echo PASS"}]
EXTRA`

const skippedTask = `    - name: lint
      when: [{input: a, operator: in, values: [b]}]
      taskSpec:
        steps: [{name: vet, image: x, script: "echo never"}]
`

// localRun runs logsPipeline as name with the local executor under root
// (extra adds tasks) and returns its Activities.
func localRun(t *testing.T, root, name, extra string, archive *local.Archive) *local.Activities {
	t.Helper()
	objs, err := local.Decode(strings.NewReader(strings.NewReplacer("NAME", name, "EXTRA", extra).Replace(logsPipeline)))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	opts := objs.Options(local.Options{Root: root, Log: io.Discard, Logger: slog.New(slog.NewTextHandler(&out, nil)), Archive: archive})
	r, err := local.NewRunner(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o, err := r.Run(ctx, &objs.PipelineRuns[0], local.RunOptions{})
	if err != nil || !o.Status.Succeeded() {
		t.Fatalf("run %s: %v %+v\n%s", name, err, o, &out)
	}
	a, err := local.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// noBuilds fails the test if kiln logs asks Temporal for a build.
func noBuilds(t *testing.T) progressFunc {
	return func(_ context.Context, id string) (workflows.Progress, error) {
		t.Errorf("asked for build %s", id)
		return workflows.Progress{}, errors.New("no Temporal here")
	}
}

// builds answers kiln logs' progress queries from a map.
func builds(m map[string]workflows.Progress) progressFunc {
	return func(_ context.Context, id string) (workflows.Progress, error) {
		p, ok := m[id]
		if !ok {
			return p, errors.New("workflow not found for ID: " + id)
		}
		return p, nil
	}
}

// runLogs runs kiln logs with args and returns its output.
func runLogs(progress progressFunc, args ...string) (string, error) {
	cmd := logsCommand(progress)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return out.String(), err
}

func compileLog(title string) string {
	return "=== " + title + " task compile ===\n==> step-gcc <==\ncompiling\ndone\n==> step-strip <==\nstripped\n"
}

func unitLog(title string) string {
	return "=== " + title + " task unit ===\n==> step-go-test <==\nPASS\n"
}

func TestLogsOfALocalRun(t *testing.T) {
	dir := t.TempDir()
	localRun(t, dir, "run-a", skippedTask, nil)
	for _, tc := range []struct {
		name    string
		args    []string
		build   bool // asks for a build
		want    string
		wantErr string
	}{
		{"every task", []string{"run-a", "--dir", dir}, false,
			compileLog("run-a") + unitLog("run-a") + "=== run-a task lint ===\nkiln: the task did not run (Skipped: When Expressions evaluated to false)\n", ""},
		{"one task", []string{"run-a", "--dir", dir, "--task", "unit"}, false, unitLog("run-a"), ""},
		{"unknown task", []string{"run-a", "--dir", dir, "--task", "nosuch"}, false, "", "run run-a has no task nosuch; its tasks: compile, unit, lint"},
		{"unknown run", []string{"run-b", "--dir", dir}, true, "", "no local run run-b in " + dir + " (runs there: run-a), and no build run-b: workflow not found"},
		{"empty dir", []string{"run-b", "--dir", t.TempDir()}, true, "", "(no runs there)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			progress := noBuilds(t)
			if tc.build {
				progress = builds(nil)
			}
			got, err := runLogs(progress, tc.args...)
			switch {
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			case tc.wantErr == "" && err != nil:
				t.Errorf("error %v", err)
			}
			if got != tc.want {
				t.Errorf("output:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

func TestLogsOfABuild(t *testing.T) {
	dir := t.TempDir()
	localRun(t, dir, "base-run", "", nil)
	localRun(t, dir, "image-run", "", nil)
	progress := builds(map[string]workflows.Progress{
		"build/main/1": {
			State: workflows.StateRunning,
			Phases: []workflows.PhaseState{
				{Name: workflows.PhaseBase, PipelineRun: "base-run"},
				{Name: workflows.PhasePackages, State: workflows.StateSkipped},
				{Name: workflows.PhaseImage},
				{Name: workflows.PhasePublish, PipelineRun: "publish-run", LogsError: "pods gone before their logs were read: push"},
			},
			Flavours: []workflows.FlavourState{{Name: "kvm-amd64", Phases: []workflows.PhaseState{
				{Name: workflows.PhaseImage, PipelineRun: "image-run"},
				{Name: workflows.PhaseTest, PipelineRun: "test-run", Logs: map[string]string{"unit": "s3://logs/x/unit.log"}},
			}}},
		},
		"build/main/2": {State: workflows.StateRunning, Phases: []workflows.PhaseState{{Name: workflows.PhaseBase, State: workflows.StateRunning}}},
		"build/main/3": {Phases: []workflows.PhaseState{{Name: workflows.PhaseBase, PipelineRun: "elsewhere"}}},
	})
	for _, tc := range []struct {
		name    string
		args    []string
		want    string
		wantErr string
	}{
		{"in order, with what is missing", []string{"build/main/1", "--dir", dir},
			compileLog("base base-run") + unitLog("base base-run") +
				compileLog("image/kvm-amd64 image-run") + unitLog("image/kvm-amd64 image-run") +
				"=== test/kvm-amd64 test-run ===\nkiln: no local logs for run test-run in " + dir + "; its archived logs need --config with storage\n" +
				"=== publish publish-run ===\nkiln: no local logs for run publish-run in " + dir + "; not archived: pods gone before their logs were read: push\n",
			"logs of build/main/1 are missing for 2 of its runs or tasks (see above): test/kvm-amd64 test-run, publish publish-run"},
		{"one task", []string{"build/main/1", "--dir", dir, "--task", "compile"},
			compileLog("base base-run") + compileLog("image/kvm-amd64 image-run") +
				"=== publish publish-run ===\nkiln: no local logs for run publish-run in " + dir + "; not archived: pods gone before their logs were read: push\n",
			"missing for 1 of its runs or tasks (see above): publish publish-run"},
		{"a task no run has", []string{"build/main/1", "--dir", dir, "--task", "lint"}, "",
			"no run of build build/main/1 has a task lint; its runs' tasks:\n  base base-run: compile, unit\n  image/kvm-amd64 image-run: compile, unit\n  test/kvm-amd64 test-run: unit\n  publish publish-run: unknown (no logs here)"},
		{"no run yet", []string{"build/main/2", "--dir", dir}, "", "build build/main/2 has run no PipelineRun yet (state Running)"},
		{"no logs anywhere", []string{"build/main/3", "--dir", dir},
			"=== base elsewhere ===\nkiln: no local logs for run elsewhere in " + dir + "; the build archived none (it has no storage, or the worker ran elsewhere)\n",
			"found no logs of build build/main/3"},
		{"unknown build", []string{"build/main/4", "--dir", dir}, "", "build build/main/4: workflow not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := runLogs(progress, tc.args...)
			switch {
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			case tc.wantErr == "" && err != nil:
				t.Errorf("error %v", err)
			}
			if got != tc.want {
				t.Errorf("output:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}
}

// TestLogsFromTheArchive archives a local run with ArchiveLogs into a real
// S3 server, removes the run, and reads the build's logs back from S3 with
// a worker config's storage: the same output as from the local run.
func TestLogsFromTheArchive(t *testing.T) {
	srv, err := s3test.Start(context.Background(), t.TempDir())
	kubestack.SkipWithoutTools(t, err)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	client := srv.Client()
	if _, err := client.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String("releases")}); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KILN_TEST_S3_ACCESS", srv.Access)
	t.Setenv("KILN_TEST_S3_SECRET", srv.Secret)
	cfgDir := t.TempDir()
	cfgPath := filepath.Join(cfgDir, "kiln.yaml")
	config := `executor: local
local: {dir: runs}
storage:
  endpoint: ` + srv.Endpoint + `
  pathStyle: true
  region: us-east-1
  stagingBucket: staging
  releaseBucket: releases
  prefix: kiln/
  credentials: {accessKeyIdEnv: KILN_TEST_S3_ACCESS, secretAccessKeyEnv: KILN_TEST_S3_SECRET}
`
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	runs := filepath.Join(cfgDir, "runs")
	a := localRun(t, runs, "base-run", "", &local.Archive{Client: client, Bucket: "releases", Prefix: "kiln/"})

	var s testsuite.WorkflowTestSuite
	s.SetLogger(sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	val, err := env.ExecuteActivity(workflows.ActivityArchiveLogs, logs.ArchiveRequest{Namespace: "default", PipelineRun: "base-run", Path: "build/main/1/base/a1"})
	var res logs.ArchiveResult
	if err == nil {
		err = val.Get(&res)
	}
	if err != nil || len(res.Logs) != 2 {
		t.Fatalf("archive: %+v %v", res, err)
	}
	progress := builds(map[string]workflows.Progress{"build/main/1": {
		Phases: []workflows.PhaseState{{Name: workflows.PhaseBase, PipelineRun: "base-run", Logs: res.Logs}},
	}})
	want := compileLog("base base-run") + unitLog("base base-run")

	// The config's local.dir holds the run: read from there.
	got, err := runLogs(progress, "build/main/1", "--config", cfgPath)
	if err != nil || got != want {
		t.Fatalf("from the local run: %v\n%s\nwant:\n%s", err, got, want)
	}
	if err := os.RemoveAll(filepath.Join(runs, "runs", "base-run", "logs", "unit")); err != nil {
		t.Fatal(err)
	}
	got, err = runLogs(progress, "build/main/1", "--config", cfgPath)
	if err != nil || got != want {
		t.Errorf("with the unit task's logs gone here, from S3: %v\n%s\nwant:\n%s", err, got, want)
	}
	// A stale local run (an attempt whose worker died; the one that
	// completed ran elsewhere and was archived) gives way to the archive.
	statusPath := filepath.Join(runs, "runs", "base-run", "status.json")
	b, err := os.ReadFile(statusPath)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte(`"state":"Done"`), []byte(`"state":"Interrupted"`), 1)
	if !bytes.Contains(b, []byte(`"state":"Interrupted"`)) {
		t.Fatalf("status.json has no state Done to replace:\n%s", b)
	}
	if err := os.WriteFile(statusPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(runs, "runs", "base-run", "logs")); err != nil {
		t.Fatal(err)
	}
	got, err = runLogs(progress, "build/main/1", "--config", cfgPath)
	if err != nil || got != want {
		t.Errorf("with a stale interrupted attempt here, from S3: %v\n%s\nwant:\n%s", err, got, want)
	}
	if err := os.RemoveAll(runs); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"every task", []string{"build/main/1", "--config", cfgPath}, want},
		{"one task", []string{"build/main/1", "--config", cfgPath, "--task", "unit"}, unitLog("base base-run")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := runLogs(progress, tc.args...)
			if err != nil || got != tc.want {
				t.Errorf("from S3: %v\n%s\nwant:\n%s", err, got, tc.want)
			}
		})
	}

	// Without the config, kiln logs says where the logs are.
	empty := t.TempDir()
	got, err = runLogs(progress, "build/main/1", "--dir", empty)
	if err == nil || got != "=== base base-run ===\nkiln: no local logs for run base-run in "+empty+"; its archived logs need --config with storage\n" {
		t.Errorf("without the config: %v\n%s", err, got)
	}
}

// TestLogsHelpTeaches checks what root_test's walk checks for registered
// commands: kiln logs has examples and explains where logs come from.
func TestLogsHelpTeaches(t *testing.T) {
	out, err := runLogs(noBuilds(t), "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kiln logs build/main/1443.3 --config kiln.yaml", "--task", "--dir", "archived", "TEMPORAL_ADDRESS"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q:\n%s", want, out)
		}
	}
}
