//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kiln-build/kiln/test/temporaltest"
	"github.com/kiln-build/kiln/worker"
	"github.com/kiln-build/kiln/workflows"
)

// outageServer is a Temporal dev server of the test's own, which the test
// stops and starts again on the same port with the same database.
type outageServer struct {
	t      *testing.T
	dir    string
	srv    *testsuite.DevServer
	client client.Client
}

func startOutageServer(t *testing.T) *outageServer {
	t.Helper()
	o := &outageServer{t: t, dir: t.TempDir()}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := temporaltest.StartOn(ctx, o.dir, "")
	if err != nil {
		t.Fatal(err)
	}
	o.srv = srv
	c, err := client.Dial(client.Options{HostPort: srv.FrontendHostPort(), Logger: temporaltest.Logger(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	o.client = c
	t.Cleanup(func() {
		c.Close()
		if o.srv != nil {
			o.srv.Stop()
		}
	})
	return o
}

// outage stops the server for d, then starts it again.
func (o *outageServer) outage(d time.Duration) {
	o.t.Helper()
	hostPort := o.srv.FrontendHostPort()
	if err := o.srv.Stop(); err != nil {
		o.t.Logf("stop Temporal: %v", err)
	}
	o.srv = nil
	o.t.Logf("Temporal stopped for %v", d)
	time.Sleep(d)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := temporaltest.StartOn(ctx, o.dir, hostPort)
	if err != nil {
		o.t.Fatal(err)
	}
	o.srv = srv
	o.t.Log("Temporal started again")
}

// runWorkerOn runs an in-process worker for the config on c until the test
// ends.
func runWorkerOn(t *testing.T, c client.Client, path, queue string) {
	t.Helper()
	cfg, err := worker.LoadConfig(path, func(k string) string {
		if k == "KILN_TASK_QUEUE" {
			return queue
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() { done <- worker.Run(ctx, cfg, c, env.stack.RESTConfig(), logger, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
}

func startBuildOn(t *testing.T, c client.Client, queue string, in workflows.BuildRequest) client.WorkflowRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The one start policy (workflows/start.go), with a deadline for tests.
	opts := workflows.BuildStartOptions(in, queue)
	opts.WorkflowExecutionTimeout = 10 * time.Minute
	run, err := c.ExecuteWorkflow(ctx, opts, "Build", in)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// releaseAll releases the build's held pods until ctx ends.
func releaseAll(ctx context.Context, t *testing.T, ns, buildID string) {
	go func() {
		for ctx.Err() == nil {
			for _, pr := range buildRuns(t, ns, buildID) {
				env.stack.Release(ctx, ns, pr.Name)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}()
}

// TestTemporalOutageLeavesPipelineRunsAlone stops the Temporal server for
// three times the heartbeat timeout while four image PipelineRuns run. The
// build completes when it is back; no PipelineRun is cancelled, and none is
// created twice.
func TestTemporalOutageLeavesPipelineRunsAlone(t *testing.T) {
	s := newSuite(t)
	o := startOutageServer(t)
	runWorkerOn(t, o.client, buildConfig(t, s.ns, `    labels: {kiln.test/outcome: hold}`), s.queue)
	run := startBuildOn(t, o.client, s.queue, gardenRequest(s.ns, "build"))
	waitImageRuns(t, s.ns, run.GetID(), 4)
	o.outage(3 * 5 * time.Second) // buildConfig's heartbeatTimeout is 5s
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	releaseAll(ctx, t, s.ns, run.GetID())
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("build after the outage: %v", err)
	}
	for _, pr := range oneRunPerKey(t, buildRuns(t, s.ns, run.GetID()), 2+11) {
		if pr.Spec.Status != "" {
			t.Errorf("%s: spec.status %q: kiln cancelled it", pr.Name, pr.Spec.Status)
		}
	}
}

// localConfig writes a local-executor worker config whose image phase holds
// each flavour's step until the file <marks>/release exists, and marks
// every start of a step in marks: a persistentVolumeClaim workspace, which
// the steps see at their workspace's path and the test at <marks> on the
// host, with the steps in their namespaces (the default isolation). Each
// step's environment carries token, by which stepsAlive finds them.
func localConfig(t *testing.T, heartbeat string) (path, marks, token string) {
	t.Helper()
	dir := t.TempDir()
	marks = filepath.Join(dir, "local", "volumes", "marks")
	if err := os.MkdirAll(marks, 0o755); err != nil {
		t.Fatal(err)
	}
	token = fmt.Sprintf("kiln-drill-%d", time.Now().UnixNano())
	deploy, err := filepath.Abs("../../deploy")
	if err != nil {
		t.Fatal(err)
	}
	pipeline := `apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: hold}
spec:
  params: [{name: flavour, type: string}]
  workspaces: [{name: marks}]
  tasks:
  - name: build
    params: [{name: flavour, value: $(params.flavour)}]
    workspaces: [{name: marks, workspace: marks}]
    taskSpec:
      params: [{name: flavour, type: string}]
      workspaces: [{name: marks}]
      steps:
      - name: hold
        image: busybox
        env: [{name: KILN_DRILL, value: ` + token + `}]
        script: |
          #!/bin/sh
          m=$(workspaces.marks.path)
          touch "$m/$(params.flavour).started.$(context.taskRun.uid)"
          if [ -e "$m/fail-$(params.flavour)" ]; then echo "failing as asked" >&2; exit 1; fi
          while [ ! -e "$m/release" ]; do sleep 0.1; done
          touch "$m/$(params.flavour).done.$(context.taskRun.uid)"
`
	pf := filepath.Join(dir, "hold.yaml")
	if err := os.WriteFile(pf, []byte(pipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	hb := ""
	if heartbeat != "" {
		hb = "heartbeatTimeout: " + heartbeat + "\n"
	}
	cfg := fmt.Sprintf(`executor: local
local: {dir: %[1]s/local, maxParallel: 4}
flavours: %[2]s/flavours.yaml
parallelism: 4
%[3]sphases:
  image:
    pipelineFile: %[4]s
    params: {flavour: "{{.Flavour.Name}}"}
    workspaces:
    - name: marks
      persistentVolumeClaim: {claimName: marks}
`, dir, deploy, hb, pf)
	path = filepath.Join(dir, "kiln.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, marks, token
}

func countMarks(t *testing.T, marks, kind string) int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(marks, "*."+kind+".*"))
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

func waitMarks(t *testing.T, marks, kind string, n int, within time.Duration) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, within, true, func(context.Context) (bool, error) {
		return countMarks(t, marks, kind) >= n, nil
	})
	if err != nil {
		t.Fatalf("%d steps %s, want %d within %v", countMarks(t, marks, kind), kind, n, within)
	}
}

// TestTemporalOutageLeavesLocalStepsAlone is the outage drill for the
// local executor: no step is killed or started twice, and the build
// completes.
func TestTemporalOutageLeavesLocalStepsAlone(t *testing.T) {
	s := newSuite(t)
	o := startOutageServer(t)
	cfg, marks, _ := localConfig(t, "5s")
	runWorkerOn(t, o.client, cfg, s.queue)
	run := startBuildOn(t, o.client, s.queue, gardenRequest(s.ns, "build"))
	waitMarks(t, marks, "started", 4, 2*time.Minute)
	o.outage(3 * 5 * time.Second)
	if err := os.WriteFile(filepath.Join(marks, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("build after the outage: %v", err)
	}
	if started, done := countMarks(t, marks, "started"), countMarks(t, marks, "done"); started != 11 || done != 11 {
		t.Errorf("steps: %d started, %d done; want 11 and 11 (one run per flavour, none cancelled or run twice)", started, done)
	}
}

// TestCancelStopsEveryRunWithinSeconds cancels a build with the default
// heartbeat timeout (one minute), whose heartbeats the SDK throttles to
// 48 s: every image PipelineRun is cancelled within 5 s anyway, since the
// workflow cancels them itself.
func TestCancelStopsEveryRunWithinSeconds(t *testing.T) {
	t.Run("cluster", func(t *testing.T) {
		s := newSuite(t)
		path := buildConfig(t, s.ns, `    labels: {kiln.test/outcome: hold}`)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(strings.Replace(string(b), "heartbeatTimeout: 5s\n", "", 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		runWorker(t, path, s.queue)
		run := startBuild(t, s.queue, gardenRequest(s.ns, "build"))
		waitImageRuns(t, s.ns, run.GetID(), 4)
		start := time.Now()
		if err := env.client.CancelWorkflow(context.Background(), run.GetID(), run.GetRunID()); err != nil {
			t.Fatal(err)
		}
		err = wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
			n := 0
			for _, pr := range buildRuns(t, s.ns, run.GetID()) {
				if pr.Labels["kiln.dev/phase"] == workflows.PhaseImage && pr.Spec.Status == pipelinev1.PipelineRunSpecStatusCancelled {
					n++
				}
			}
			return n == 4, nil
		})
		if err != nil {
			t.Fatalf("the 4 image runs were not all cancelled within 5 s of kiln cancel")
		}
		t.Logf("4 image PipelineRuns cancelled %v after the cancel", time.Since(start).Round(time.Millisecond))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := run.Get(ctx, nil); !temporal.IsCanceledError(err) {
			t.Errorf("build error = %v, want cancelled", err)
		}
	})
	t.Run("local", func(t *testing.T) {
		s := newSuite(t)
		cfg, marks, token := localConfig(t, "")
		runWorker(t, cfg, s.queue)
		run := startBuild(t, s.queue, gardenRequest(s.ns, "build"))
		waitMarks(t, marks, "started", 4, 2*time.Minute)
		start := time.Now()
		if err := env.client.CancelWorkflow(context.Background(), run.GetID(), run.GetRunID()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := run.Get(ctx, nil); !temporal.IsCanceledError(err) {
			t.Fatalf("build error %v %v after the cancel, want cancelled within 5 s", err, time.Since(start).Round(time.Millisecond))
		}
		t.Logf("build cancelled, its steps stopped, %v after the cancel", time.Since(start).Round(time.Millisecond))
		if alive := stepsAlive(t, token); len(alive) > 0 {
			t.Errorf("step processes still running after the cancel: %v", alive)
		}
		if done := countMarks(t, marks, "done"); done != 0 {
			t.Errorf("%d steps ran to the end", done)
		}
	})
}

// stepsAlive lists the processes whose environment holds token: the hold
// steps of localConfig and what they started.
func stepsAlive(t *testing.T, token string) []string {
	t.Helper()
	procs, _ := filepath.Glob("/proc/[0-9]*/environ")
	var alive []string
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), "KILN_DRILL="+token) {
			continue
		}
		stat, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "stat"))
		if f := strings.Fields(string(stat)); len(f) > 2 && f[2] == "Z" {
			continue // a zombie: dead, not yet reaped
		}
		cmd, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline"))
		alive = append(alive, filepath.Base(filepath.Dir(p))+": "+strings.ReplaceAll(string(cmd), "\x00", " "))
	}
	return alive
}

// runUIDs maps the build's PipelineRuns to their UIDs, and to their phase
// and flavour labels.
func runUIDs(t *testing.T, ns, buildID string) (uids map[string]string, labels map[string]map[string]string) {
	t.Helper()
	uids, labels = map[string]string{}, map[string]map[string]string{}
	for _, pr := range buildRuns(t, ns, buildID) {
		uids[pr.Name], labels[pr.Name] = string(pr.UID), pr.Labels
	}
	return uids, labels
}

// TestRerunReplacesOnlyWhatFailed runs a failed build, then a cancelled
// one, again with the same workflow ID: the runs that failed or were
// cancelled are replaced by fresh ones; those that succeeded are adopted.
func TestRerunReplacesOnlyWhatFailed(t *testing.T) {
	t.Run("failed", func(t *testing.T) {
		s := newSuite(t)
		const bad = "gcp-gardener_prod-amd64"
		runWorker(t, buildConfig(t, s.ns, `    labels:
      kiln.test/outcome: '{{if eq .Flavour.Name "`+bad+`"}}fail{{else}}ok{{end}}'`), s.queue)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		in := gardenRequest(s.ns, "build")
		run := startBuild(t, s.queue, in)
		if err := run.Get(ctx, nil); err == nil {
			t.Fatal("the first build succeeded; want the flavour to fail")
		}
		before, labels := runUIDs(t, s.ns, run.GetID())
		again := startBuild(t, s.queue, in)
		if again.GetRunID() == run.GetRunID() {
			t.Fatal("the same execution")
		}
		if err := again.Get(ctx, nil); err == nil {
			t.Fatal("the second build succeeded; the flavour fails by its label")
		}
		after, _ := runUIDs(t, s.ns, run.GetID())
		replaced := 0
		for name, uid := range before {
			failedFlavour := labels[name]["kiln.dev/flavour"] == bad
			switch {
			case after[name] == "":
				t.Errorf("%s is gone", name)
			case failedFlavour && after[name] == uid:
				t.Errorf("%s failed, and was adopted instead of run again", name)
			case failedFlavour:
				replaced++
			case after[name] != uid:
				t.Errorf("%s succeeded, and was run again", name)
			}
		}
		if replaced != 2 || len(after) != len(before) {
			t.Errorf("%d of the failed flavour's runs replaced, want its 2 attempts; %d runs before, %d after", replaced, len(before), len(after))
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		s := newSuite(t)
		runWorker(t, buildConfig(t, s.ns, `    labels: {kiln.test/outcome: hold}`), s.queue)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		in := gardenRequest(s.ns, "build")
		run := startBuild(t, s.queue, in)
		waitImageRuns(t, s.ns, run.GetID(), 4)
		if err := env.client.CancelWorkflow(ctx, run.GetID(), run.GetRunID()); err != nil {
			t.Fatal(err)
		}
		if err := run.Get(ctx, nil); !temporal.IsCanceledError(err) {
			t.Fatalf("build error = %v, want cancelled", err)
		}
		before, labels := runUIDs(t, s.ns, run.GetID())
		again := startBuild(t, s.queue, in)
		releaseAll(ctx, t, s.ns, run.GetID())
		if err := again.Get(ctx, nil); err != nil {
			for _, f := range getProgress(t, again).Flavours {
				if f.Error != "" {
					t.Logf("flavour %s: %s", f.Name, f.Error)
				}
			}
			t.Fatalf("the build run again: %v", err)
		}
		after, _ := runUIDs(t, s.ns, run.GetID())
		for name, uid := range before {
			image := labels[name]["kiln.dev/phase"] == workflows.PhaseImage
			switch {
			case image && after[name] == uid:
				t.Errorf("%s was cancelled, and was adopted instead of run again", name)
			case !image && after[name] != uid:
				t.Errorf("%s succeeded, and was run again", name)
			}
		}
		if len(after) != 2+11 {
			t.Errorf("%d runs, want 13", len(after))
		}
	})
}

// startsOf counts the starts of each flavour's step.
func startsOf(t *testing.T, marks string) map[string]int {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(marks, "*.started.*"))
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, f := range m {
		n[strings.SplitN(filepath.Base(f), ".started.", 2)[0]]++
	}
	return n
}

// TestLocalRerunReplacesOnlyWhatFailed is the re-run drill for the local
// executor: a failed build run again with the same ID runs only the failed
// flavour again, and a cancelled build's cancelled runs are run again.
func TestLocalRerunReplacesOnlyWhatFailed(t *testing.T) {
	t.Run("failed", func(t *testing.T) {
		s := newSuite(t)
		cfg, marks, _ := localConfig(t, "5s")
		runWorker(t, cfg, s.queue)
		const bad = "gcp-gardener_prod-amd64"
		for _, f := range []string{"release", "fail-" + bad} {
			if err := os.WriteFile(filepath.Join(marks, f), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		in := gardenRequest(s.ns, "build")
		if err := startBuild(t, s.queue, in).Get(ctx, nil); err == nil {
			t.Fatal("the first build succeeded; want the flavour to fail")
		}
		if err := os.Remove(filepath.Join(marks, "fail-"+bad)); err != nil {
			t.Fatal(err)
		}
		if err := startBuild(t, s.queue, in).Get(ctx, nil); err != nil {
			t.Fatalf("the build run again, with the flavour fixed: %v", err)
		}
		starts := startsOf(t, marks)
		for f, n := range starts {
			want := 1
			if f == bad {
				want = 2
			}
			if n != want {
				t.Errorf("%s started %d times, want %d", f, n, want)
			}
		}
		if len(starts) != 11 {
			t.Errorf("%d flavours started, want 11", len(starts))
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		s := newSuite(t)
		cfg, marks, _ := localConfig(t, "5s")
		runWorker(t, cfg, s.queue)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		in := gardenRequest(s.ns, "build")
		run := startBuild(t, s.queue, in)
		waitMarks(t, marks, "started", 4, 2*time.Minute)
		if err := env.client.CancelWorkflow(ctx, run.GetID(), run.GetRunID()); err != nil {
			t.Fatal(err)
		}
		if err := run.Get(ctx, nil); !temporal.IsCanceledError(err) {
			t.Fatalf("build error = %v, want cancelled", err)
		}
		cancelled := startsOf(t, marks)
		if err := os.WriteFile(filepath.Join(marks, "release"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := startBuild(t, s.queue, in).Get(ctx, nil); err != nil {
			t.Fatalf("the build run again: %v", err)
		}
		for f, n := range startsOf(t, marks) {
			if want := 1 + cancelled[f]; n != want {
				t.Errorf("%s started %d times, want %d (cancelled runs run again, once)", f, n, want)
			}
		}
		if done := countMarks(t, marks, "done"); done != 11 {
			t.Errorf("%d flavours done, want 11", done)
		}
	})
}

// TestLocalWorkerKilledMidBuild SIGKILLs a local worker (bin/kiln) while
// four steps run: none of their processes outlives it, and its successor
// runs the interrupted runs again and completes the build.
func TestLocalWorkerKilledMidBuild(t *testing.T) {
	s := newSuite(t)
	cfg, marks, token := localConfig(t, "5s")
	first := startKilnWorker(t, cfg, s.queue)
	run := startBuild(t, s.queue, gardenRequest(s.ns, "build"))
	waitMarks(t, marks, "started", 4, 2*time.Minute)
	if len(stepsAlive(t, token)) == 0 {
		t.Fatal("no step process found by its environment: the drill cannot see them")
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 5*time.Second, true, func(context.Context) (bool, error) {
		return len(stepsAlive(t, token)) == 0, nil
	})
	if err != nil {
		t.Fatalf("processes of the killed worker's steps still alive: %v", stepsAlive(t, token))
	}
	before := startsOf(t, marks)
	startKilnWorker(t, cfg, s.queue)
	if err := os.WriteFile(filepath.Join(marks, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("build after the kill: %v", err)
	}
	for f, n := range startsOf(t, marks) {
		if want := 1 + before[f]; n != want {
			t.Errorf("%s started %d times, want %d", f, n, want)
		}
	}
	if done := countMarks(t, marks, "done"); done != 11 {
		t.Errorf("%d flavours done, want 11", done)
	}
	// kiln status shows the restarts: the progress counts them.
	for _, f := range getProgress(t, run).Flavours {
		for _, ph := range f.Phases {
			if want := before[f.Name]; ph.Name == workflows.PhaseImage && ph.Restarts != want {
				t.Errorf("%s image: %d restarts in the progress, want %d", f.Name, ph.Restarts, want)
			}
		}
	}
}
