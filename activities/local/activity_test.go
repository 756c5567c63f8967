package local

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kiln-build/kiln/activities/tekton"
)

// sdkLogger keeps the SDK's activity logs out of test output.
var sdkLogger = log.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 4})))

type activityOutcome struct {
	res tekton.PipelineRunResult
	err error
}

// execute runs RunPipeline in its own test environment, which configure
// may adjust, and delivers the outcome on the returned channel.
func execute(a *Activities, in tekton.PipelineRunRequest, configure func(*testsuite.TestActivityEnvironment)) <-chan activityOutcome {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(sdkLogger)
	env := s.NewTestActivityEnvironment()
	env.SetTestTimeout(2 * time.Minute)
	env.RegisterActivity(a)
	if configure != nil {
		configure(env)
	}
	out := make(chan activityOutcome, 1)
	go func() {
		var o activityOutcome
		val, err := env.ExecuteActivity(a.RunPipeline, in)
		o.err = err
		if err == nil {
			o.err = val.Get(&o.res)
		}
		out <- o
	}()
	return out
}

func wait(t *testing.T, out <-chan activityOutcome) activityOutcome {
	t.Helper()
	select {
	case o := <-out:
		return o
	case <-time.After(2 * time.Minute):
		t.Fatal("activity did not return within 2 minutes")
		return activityOutcome{}
	}
}

func newActivities(t *testing.T, opts Options) (*Activities, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	if opts.Root == "" {
		opts.Root = t.TempDir()
	}
	opts.Log = logs
	opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = 50 * time.Millisecond
	}
	a, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return a, logs
}

func embedded(name, script string) pipelinev1.PipelineTask {
	return pipelinev1.PipelineTask{Name: name, TaskSpec: &pipelinev1.EmbeddedTask{TaskSpec: pipelinev1.TaskSpec{
		Results: []pipelinev1.TaskResult{{Name: "out"}},
		Steps:   []pipelinev1.Step{{Name: "build", Image: "busybox", Script: script}},
	}}}
}

func request(key string, tasks ...pipelinev1.PipelineTask) tekton.PipelineRunRequest {
	return tekton.PipelineRunRequest{
		Namespace: "builds",
		Key:       key,
		PipelineSpec: &pipelinev1.PipelineSpec{
			Params:  pipelinev1.ParamSpecs{{Name: "commit", Type: pipelinev1.ParamTypeString}},
			Tasks:   tasks,
			Results: []pipelinev1.PipelineResult{{Name: "image", Value: *pipelinev1.NewStructuredValues("$(tasks.build.results.out)")}},
		},
		Params: pipelinev1.Params{{Name: "commit", Value: *pipelinev1.NewStructuredValues("abc123")}},
		Labels: map[string]string{"kiln.dev/phase": "images"},
	}
}

func TestRunPipelineActivity(t *testing.T) {
	a, logs := newActivities(t, Options{Isolation: IsolationNone /* the test watches its steps through host paths */})
	d := t.TempDir()
	in := request("wf-1/images/amd64/1", embedded("build", "echo built >> "+d+"/count; printf 'img@$(params.commit)' > $(results.out.path)"))

	var mu sync.Mutex
	var beats []tekton.Progress
	o := wait(t, execute(a, in, func(env *testsuite.TestActivityEnvironment) {
		env.SetWorkerOptions(worker.Options{DefaultHeartbeatThrottleInterval: time.Millisecond, MaxHeartbeatThrottleInterval: time.Millisecond})
		env.SetOnActivityHeartbeatListener(func(_ *activity.Info, d converter.EncodedValues) {
			var p tekton.Progress
			if err := d.Get(&p); err == nil {
				mu.Lock()
				beats = append(beats, p)
				mu.Unlock()
			}
		})
	}))
	if o.err != nil {
		t.Fatalf("RunPipeline: %v\n%s", o.err, logs)
	}
	name := tekton.RunName(in.Key)
	res := o.res
	if res.PipelineRun != name || res.Namespace != "builds" || res.Adopted {
		t.Errorf("result %+v", res)
	}
	if v, ok := res.Result("image"); !ok || v != "img@abc123" {
		t.Errorf("result image = %q, %v", v, ok)
	}
	if len(res.Tasks) != 1 || res.Tasks[0] != (tekton.TaskState{Name: "build", TaskRun: name + "-build", State: tekton.TaskSucceeded, Reason: "Succeeded", Message: "All Steps have completed executing"}) {
		t.Errorf("tasks %+v", res.Tasks)
	}
	if res.StartTime.IsZero() || res.CompletionTime.Before(res.StartTime) || res.Duration != res.CompletionTime.Sub(res.StartTime) {
		t.Errorf("times %v %v %v", res.StartTime, res.CompletionTime, res.Duration)
	}
	mu.Lock()
	if len(beats) == 0 || beats[0].PipelineRun != name {
		t.Errorf("heartbeats %+v", beats)
	}
	mu.Unlock()

	// A retried attempt after the run finished returns the recorded outcome.
	again := wait(t, execute(a, in, nil))
	if again.err != nil || !again.res.Adopted {
		t.Fatalf("retry: %v adopted=%v", again.err, again.res.Adopted)
	}
	if v, _ := again.res.Result("image"); v != "img@abc123" || !again.res.StartTime.Equal(res.StartTime) {
		t.Errorf("retry result %+v", again.res)
	}
	if got := readFile(t, filepath.Join(d, "count")); got != "built\n" {
		t.Errorf("the step ran %d times", strings.Count(got, "built"))
	}

	// The same key with another spec is a conflict.
	other := in
	other.Params = pipelinev1.Params{{Name: "commit", Value: *pipelinev1.NewStructuredValues("def456")}}
	conflict := wait(t, execute(a, other, nil))
	wantAppError(t, conflict.err, tekton.ErrTypeConflict, "exists with another spec")
}

func wantAppError(t *testing.T, err error, typ, msg string) *temporal.ApplicationError {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		t.Fatalf("error %v (%T), want an ApplicationError", err, err)
	}
	if appErr.Type() != typ || !appErr.NonRetryable() || !strings.Contains(appErr.Error(), msg) {
		t.Errorf("error type %q non-retryable %v %q, want non-retryable %q containing %q", appErr.Type(), appErr.NonRetryable(), appErr.Error(), typ, msg)
	}
	return appErr
}

func TestRunPipelineActivityFailures(t *testing.T) {
	a, _ := newActivities(t, Options{Isolation: IsolationNone /* the test watches its steps through host paths */})
	tests := []struct {
		name   string
		in     tekton.PipelineRunRequest
		typ    string
		msg    string
		failed []tekton.TaskState
	}{
		{
			name: "failed step",
			in:   request("fail", embedded("build", "echo oops; exit 1")),
			typ:  "Failed", msg: `failed tasks: build ("step-build" exited with code 1)`,
			failed: []tekton.TaskState{{Name: "build", TaskRun: tekton.RunName("fail") + "-build", State: tekton.TaskFailed, Reason: "Failed", Message: `"step-build" exited with code 1`}},
		},
		{
			name: "timeout",
			in: func() tekton.PipelineRunRequest {
				in := request("timeout", embedded("build", "sleep 60"))
				in.Timeouts = &pipelinev1.TimeoutFields{Pipeline: &metav1.Duration{Duration: 200 * time.Millisecond}}
				return in
			}(),
			typ: "PipelineRunTimeout", msg: `failed to finish within "200ms"`,
			failed: []tekton.TaskState{{Name: "build", TaskRun: tekton.RunName("timeout") + "-build", State: tekton.TaskFailed, Reason: "TaskRunCancelled",
				Message: `TaskRun "` + tekton.RunName("timeout") + `-build" was cancelled. ` + string(pipelinev1.TaskRunCancelledByPipelineTimeoutMsg)}},
		},
		{
			name: "unsupported",
			in: func() tekton.PipelineRunRequest {
				in := request("matrix", embedded("build", "true"))
				in.PipelineSpec.Tasks[0].Matrix = &pipelinev1.Matrix{Params: pipelinev1.Params{{Name: "p", Value: pipelinev1.ParamValue{Type: pipelinev1.ParamTypeArray, ArrayVal: []string{"a"}}}}}
				return in
			}(),
			typ: tekton.ErrTypeInvalidSpec, msg: "spec.pipelineSpec.tasks[0].matrix: not supported by the local runner",
		},
		{
			name: "missing pipeline",
			in:   tekton.PipelineRunRequest{Key: "ref", PipelineRef: "nope"},
			typ:  tekton.ErrTypeInvalidSpec, msg: `spec.pipelineRef.name: Pipeline "nope" not found`,
		},
		{
			name: "no key",
			in:   request("", embedded("build", "true")),
			typ:  tekton.ErrTypeInvalidSpec, msg: "key: required",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := wait(t, execute(a, tt.in, nil))
			appErr := wantAppError(t, o.err, tt.typ, tt.msg)
			if tt.failed == nil {
				return
			}
			var f tekton.Failure
			if err := appErr.Details(&f); err != nil {
				t.Fatalf("details: %v", err)
			}
			if f.Reason != tt.typ || f.PipelineRun != tekton.RunName(tt.in.Key) || len(f.FailedTasks) != len(tt.failed) {
				t.Fatalf("failure %+v", f)
			}
			for i := range tt.failed {
				if f.FailedTasks[i] != tt.failed[i] {
					t.Errorf("failed task\n got %+v\nwant %+v", f.FailedTasks[i], tt.failed[i])
				}
			}
		})
	}
}

func TestRunPipelineActivityCancellation(t *testing.T) {
	d := t.TempDir()
	long := embedded("build", "touch "+d+"/started-$(context.task.retry-count); sleep 1000")
	started := func() bool { _, err := os.Stat(filepath.Join(d, "started-0")); return err == nil }

	t.Run("context ends", func(t *testing.T) {
		// A lost heartbeat ends the activity's context as a cancel does:
		// the activity stops awaiting, the run goes on, the next attempt
		// joins it, and only CancelPipelineRun stops it.
		a, _ := newActivities(t, Options{Isolation: IsolationNone /* the test watches its steps through host paths */})
		in := request("cancel", long)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		out := execute(a, in, func(env *testsuite.TestActivityEnvironment) {
			env.SetWorkerOptions(worker.Options{BackgroundActivityContext: ctx})
		})
		waitFor(t, "the step to start", time.Minute, started)
		cancel()
		o := wait(t, out)
		if o.err == nil || !strings.Contains(o.err.Error(), "keeps running") {
			t.Errorf("error %v, want the run left running", o.err)
		}
		s, err := a.runner.Status(tekton.RunName(in.Key))
		if err != nil || s.State != StateRunning {
			t.Fatalf("after the context ended: status %v %s, want still running", err, describe(s))
		}
		next := execute(a, in, nil)
		// Cancel only once the next attempt has joined: a first attempt
		// (the test environment's always is) that came after the
		// cancelled run ended would replace it, as a re-run does.
		waitFor(t, "the next attempt to join the run", time.Minute, func() bool {
			a.runner.mu.Lock()
			x := a.runner.active[tekton.RunName(in.Key)]
			a.runner.mu.Unlock()
			if x == nil {
				return false
			}
			x.mu.Lock()
			defer x.mu.Unlock()
			return len(x.listeners) >= 2
		})
		var env testsuite.WorkflowTestSuite
		env.SetLogger(sdkLogger)
		cenv := env.NewTestActivityEnvironment()
		cenv.RegisterActivity(a)
		if _, err := cenv.ExecuteActivity(a.CancelPipelineRun, tekton.CancelRequest{PipelineRun: tekton.RunName(in.Key)}); err != nil {
			t.Fatal(err)
		}
		o = wait(t, next)
		wantAppError(t, o.err, "Cancelled", "was cancelled")
		if n, _ := filepath.Glob(filepath.Join(d, "started-*")); len(n) != 1 {
			t.Errorf("the step started %d times, want once: the next attempt joins the run", len(n))
		}
		os.Remove(filepath.Join(d, "started-0"))
	})

	t.Run("CancelPipelineRun", func(t *testing.T) {
		a, _ := newActivities(t, Options{Isolation: IsolationNone /* the test watches its steps through host paths */})
		in := request("cancel-activity", long)
		out := execute(a, in, nil)
		waitFor(t, "the step to start", time.Minute, started)
		var s testsuite.WorkflowTestSuite
		s.SetLogger(sdkLogger)
		env := s.NewTestActivityEnvironment()
		env.RegisterActivity(a)
		if _, err := env.ExecuteActivity(a.CancelPipelineRun, tekton.CancelRequest{PipelineRun: tekton.RunName(in.Key)}); err != nil {
			t.Fatal(err)
		}
		wantAppError(t, wait(t, out).err, "Cancelled", "was cancelled")
		// Cancelling again, or an unknown run, succeeds; a bad mode does not.
		for _, req := range []tekton.CancelRequest{{PipelineRun: tekton.RunName(in.Key)}, {PipelineRun: "unknown"}} {
			if _, err := env.ExecuteActivity(a.CancelPipelineRun, req); err != nil {
				t.Errorf("CancelPipelineRun(%+v): %v", req, err)
			}
		}
		_, err := env.ExecuteActivity(a.CancelPipelineRun, tekton.CancelRequest{PipelineRun: "x", Mode: "Paused"})
		wantAppError(t, err, tekton.ErrTypeInvalidSpec, "mode")
		os.Remove(filepath.Join(d, "started-0"))
	})

	t.Run("worker stops", func(t *testing.T) {
		a, _ := newActivities(t, Options{Isolation: IsolationNone /* the test watches its steps through host paths */})
		in := request("stop", long)
		stop := make(chan struct{})
		out := execute(a, in, func(env *testsuite.TestActivityEnvironment) { env.SetWorkerStopChannel(stop) })
		waitFor(t, "the step to start", time.Minute, started)
		close(stop)
		o := wait(t, out)
		var appErr *temporal.ApplicationError
		if o.err == nil || (errors.As(o.err, &appErr) && appErr.NonRetryable()) {
			t.Fatalf("error %v, want a retryable one", o.err)
		}
		s, err := a.runner.Status(tekton.RunName(in.Key))
		if err != nil || s.State != StateInterrupted {
			t.Fatalf("status %v %s", err, describe(s))
		}
		// The next attempt runs it again from scratch (and is cancelled here).
		os.Remove(filepath.Join(d, "started-0"))
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		next := execute(a, in, func(env *testsuite.TestActivityEnvironment) {
			env.SetWorkerOptions(worker.Options{BackgroundActivityContext: ctx})
		})
		waitFor(t, "the step to start again", time.Minute, started)
		var ts testsuite.WorkflowTestSuite
		ts.SetLogger(sdkLogger)
		cenv := ts.NewTestActivityEnvironment()
		cenv.RegisterActivity(a)
		if _, err := cenv.ExecuteActivity(a.CancelPipelineRun, tekton.CancelRequest{PipelineRun: tekton.RunName(in.Key)}); err != nil {
			t.Fatal(err)
		}
		wait(t, next)
	})
}
