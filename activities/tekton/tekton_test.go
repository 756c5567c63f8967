package tekton_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/activities/tekton"
	"github.com/kiln-build/kiln/test/kubestack"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMain(m *testing.M) {
	code := m.Run()
	stopBenchTemporal()
	kubestack.StopShared()
	os.Exit(code)
}

// harness is one test's namespace, clients and activities on the shared
// stack.
type harness struct {
	t       *testing.T
	st      *kubestack.Stack
	ns      string
	sim     *kubestack.Simulator
	count   *kubestack.Counter
	client  versioned.Interface
	watcher *tekton.Watcher
	acts    *tekton.Activities
}

func newHarness(t *testing.T, opts tekton.Options) *harness {
	t.Helper()
	st := kubestack.ForTest(t)
	h := &harness{t: t, st: st, sim: st.NewSimulator(), count: &kubestack.Counter{}}
	h.ns = namespaceFor(t)
	if err := st.CreateNamespace(context.Background(), h.ns); err != nil {
		t.Fatal(err)
	}
	h.client = versioned.NewForConfigOrDie(h.count.Wrap(st.RESTConfig()))
	h.watcher = tekton.NewWatcher(h.client, 0)
	t.Cleanup(h.watcher.Close)
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = 100 * time.Millisecond
	}
	acts, err := tekton.New(h.client, h.watcher, opts)
	if err != nil {
		t.Fatal(err)
	}
	h.acts = acts
	return h
}

// testLogger keeps the SDK's activity logs out of test output unless -v.
var testLogger = log.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))

var nonName = regexp.MustCompile(`[^a-z0-9]+`)

func namespaceFor(t *testing.T) string {
	n := strings.Trim(nonName.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(n) > 40 {
		n = n[:40]
	}
	return fmt.Sprintf("%s-%04x", n, rand.IntN(0xffff))
}

// request is a minimal valid request with an inline two-task pipeline.
func (h *harness) request(key string) tekton.PipelineRunRequest {
	task := func(name string) pipelinev1.PipelineTask {
		return pipelinev1.PipelineTask{Name: name, TaskSpec: &pipelinev1.EmbeddedTask{TaskSpec: pipelinev1.TaskSpec{
			Steps: []pipelinev1.Step{{Name: "run", Image: "busybox", Script: "echo " + name}},
		}}}
	}
	return tekton.PipelineRunRequest{
		Namespace: h.ns,
		Key:       key,
		PipelineSpec: &pipelinev1.PipelineSpec{
			Params: pipelinev1.ParamSpecs{{Name: "commit", Type: pipelinev1.ParamTypeString}},
			Tasks:  []pipelinev1.PipelineTask{task("build"), task("test")},
		},
		Params: pipelinev1.Params{{Name: "commit", Value: *pipelinev1.NewStructuredValues("abc123")}},
		Labels: map[string]string{"kiln.dev/phase": "images"},
	}
}

// outcome is what one activity execution returned.
type outcome struct {
	res tekton.PipelineRunResult
	err error
}

// start runs RunPipeline in its own test environment, which configure may
// adjust, and delivers the outcome on the returned channel.
func (h *harness) start(in tekton.PipelineRunRequest, configure func(*testsuite.TestActivityEnvironment)) <-chan outcome {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(testLogger)
	env := s.NewTestActivityEnvironment()
	env.SetTestTimeout(2 * time.Minute)
	env.RegisterActivity(h.acts)
	if configure != nil {
		configure(env)
	}
	out := make(chan outcome, 1)
	go func() {
		var o outcome
		val, err := env.ExecuteActivity(h.acts.RunPipeline, in)
		o.err = err
		if err == nil {
			o.err = val.Get(&o.res)
		}
		out <- o
	}()
	return out
}

func (h *harness) wait(out <-chan outcome) outcome {
	h.t.Helper()
	select {
	case o := <-out:
		return o
	case <-time.After(90 * time.Second):
		h.t.Fatal("activity did not return within 90 s")
		return outcome{}
	}
}

func (h *harness) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	h.t.Cleanup(cancel)
	return ctx
}

func (h *harness) created(name string) *pipelinev1.PipelineRun {
	h.t.Helper()
	pr, err := h.sim.WaitCreated(h.ctx(), h.ns, name)
	if err != nil {
		h.t.Fatalf("pipelinerun %s was not created: %v", name, err)
	}
	return pr
}

func (h *harness) set(name string, run kubestack.Run) {
	h.t.Helper()
	if err := h.sim.Set(h.ctx(), h.ns, name, run); err != nil {
		h.t.Fatalf("set status of %s: %v", name, err)
	}
}

// replaced waits up to a minute for the run named name to be another than
// old, failing with why if it is not.
func (h *harness) replaced(name string, old *pipelinev1.PipelineRun, why string) {
	h.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		fresh, err := h.sim.Client.TektonV1().PipelineRuns(h.ns).Get(h.ctx(), name, metav1.GetOptions{})
		if err == nil && fresh.UID != old.UID {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatal(why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) runs() []pipelinev1.PipelineRun {
	h.t.Helper()
	l, err := h.sim.Client.TektonV1().PipelineRuns(h.ns).List(h.ctx(), metav1.ListOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return l.Items
}

func appError(t *testing.T, err error) *temporal.ApplicationError {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		t.Fatalf("error %v (%T) is not an ApplicationError", err, err)
	}
	return appErr
}

var (
	running   = kubestack.Run{Status: corev1.ConditionUnknown, Reason: "Running", Tasks: []kubestack.TaskOutcome{{Name: "build", Status: corev1.ConditionUnknown, Reason: "Running"}}}
	succeeded = kubestack.Run{
		Status: corev1.ConditionTrue, Reason: "Succeeded", Message: "Tasks Completed: 2",
		Tasks: []kubestack.TaskOutcome{
			{Name: "build", Status: corev1.ConditionTrue, Reason: "Succeeded"},
			{Name: "test", Status: corev1.ConditionTrue, Reason: "Succeeded"},
		},
		Results: map[string]string{"digest": "sha256:abc", "image": "registry/base:1"},
	}
)

func TestCreateAndSucceedWithResults(t *testing.T) {
	h := newHarness(t, tekton.Options{DashboardURL: "https://dash.example/#/namespaces/{{.Namespace}}/pipelineruns/{{.Name}}"})
	in := h.request("build/main/1.0/base/attempt-1")
	var (
		mu        sync.Mutex
		heartbeat []tekton.Progress
	)
	out := h.start(in, func(env *testsuite.TestActivityEnvironment) {
		env.SetOnActivityHeartbeatListener(func(_ *activity.Info, d converter.EncodedValues) {
			var p tekton.Progress
			if err := d.Get(&p); err == nil {
				mu.Lock()
				heartbeat = append(heartbeat, p)
				mu.Unlock()
			}
		})
	})
	name := tekton.RunName(in.Key)
	pr := h.created(name)
	for k, want := range map[string]string{
		tekton.LabelManagedBy: "kiln", "kiln.dev/phase": "images",
	} {
		if got := pr.Labels[k]; got != want {
			t.Errorf("label %s = %q, want %q", k, got, want)
		}
	}
	if pr.Labels[tekton.LabelKey] == "" || pr.Labels[tekton.LabelSpec] == "" {
		t.Errorf("identity labels missing: %v", pr.Labels)
	}
	if got := pr.Annotations[tekton.AnnotationKey]; got != in.Key {
		t.Errorf("annotation %s = %q, want %q", tekton.AnnotationKey, got, in.Key)
	}
	if pr.Spec.PipelineSpec == nil || len(pr.Spec.PipelineSpec.Tasks) != 2 || pr.Spec.Params[0].Value.StringVal != "abc123" {
		t.Errorf("spec not as requested: %+v", pr.Spec)
	}

	h.set(name, running)
	h.set(name, succeeded)
	o := h.wait(out)
	// The first heartbeat names the run, so that a retry re-attaches. (The
	// test environment throttles later heartbeats to one per 30 s whatever
	// the worker options say; test/e2e shows task progress in heartbeats
	// on a real server.)
	mu.Lock()
	if len(heartbeat) == 0 || heartbeat[0].PipelineRun != name || heartbeat[0].Namespace != h.ns {
		t.Errorf("first heartbeat = %+v, want one naming %s/%s", heartbeat, h.ns, name)
	}
	mu.Unlock()
	if o.err != nil {
		t.Fatalf("RunPipeline: %v", o.err)
	}
	if got, _ := o.res.Result("digest"); got != "sha256:abc" {
		t.Errorf("result digest = %q, want sha256:abc", got)
	}
	if o.res.PipelineRun != name || o.res.Adopted {
		t.Errorf("result names %q adopted=%v, want %q adopted=false", o.res.PipelineRun, o.res.Adopted, name)
	}
	if want := "https://dash.example/#/namespaces/" + h.ns + "/pipelineruns/" + name; o.res.Dashboard != want {
		t.Errorf("dashboard = %q, want %q", o.res.Dashboard, want)
	}
	if len(o.res.Tasks) != 2 || o.res.Tasks[0].State != tekton.TaskSucceeded || o.res.Tasks[1].Name != "test" {
		t.Errorf("tasks = %+v, want build and test succeeded", o.res.Tasks)
	}
	if o.res.StartTime.IsZero() || o.res.CompletionTime.Before(o.res.StartTime) {
		t.Errorf("times: start %v completion %v", o.res.StartTime, o.res.CompletionTime)
	}
	if n := h.count.Get("POST"); n != 1 {
		t.Errorf("%d creates, want 1", n)
	}
}

func TestFailureNamesFailedTasks(t *testing.T) {
	h := newHarness(t, tekton.Options{})
	in := h.request("fail")
	out := h.start(in, nil)
	name := tekton.RunName(in.Key)
	h.created(name)
	h.set(name, kubestack.Run{
		Status: corev1.ConditionFalse, Reason: "Failed", Message: "Tasks Completed: 1 (Failed: 1, Cancelled 0), Skipped: 1",
		Tasks:   []kubestack.TaskOutcome{{Name: "build", Status: corev1.ConditionFalse, Reason: "Failed", Message: `"step-run" exited with code 1`}},
		Skipped: []string{"test"},
	})
	o := h.wait(out)
	appErr := appError(t, o.err)
	if appErr.Type() != "Failed" || !appErr.NonRetryable() {
		t.Errorf("type %q non-retryable %v, want Failed, true", appErr.Type(), appErr.NonRetryable())
	}
	if !strings.Contains(appErr.Error(), `build ("step-run" exited with code 1)`) {
		t.Errorf("message %q does not name the failed task and its message", appErr.Error())
	}
	var f tekton.Failure
	if err := appErr.Details(&f); err != nil {
		t.Fatal(err)
	}
	if len(f.FailedTasks) != 1 || f.FailedTasks[0].Name != "build" || f.Reason != "Failed" || f.PipelineRun != name {
		t.Errorf("failure details = %+v", f)
	}
}

func TestTimeoutIsTyped(t *testing.T) {
	h := newHarness(t, tekton.Options{})
	in := h.request("timeout")
	out := h.start(in, nil)
	name := tekton.RunName(in.Key)
	h.created(name)
	h.set(name, kubestack.Run{Status: corev1.ConditionFalse, Reason: string(pipelinev1.PipelineRunReasonTimedOut), Message: "PipelineRun timed out after 1h0m0s"})
	appErr := appError(t, h.wait(out).err)
	if appErr.Type() != "PipelineRunTimeout" || !appErr.NonRetryable() {
		t.Errorf("type %q non-retryable %v, want PipelineRunTimeout, true", appErr.Type(), appErr.NonRetryable())
	}
}

func TestAlreadyExistsAdoptsSameRequest(t *testing.T) {
	h := newHarness(t, tekton.Options{})
	in := h.request("adopt")
	first := h.start(in, nil)
	name := tekton.RunName(in.Key)
	h.created(name)
	second := h.start(in, nil) // as a retry on another worker would
	// Wait until the second attempt has tried its create.
	deadline := time.Now().Add(30 * time.Second)
	for h.count.Get("POST") < 2 {
		if time.Now().After(deadline) {
			t.Fatal("second attempt never tried to create")
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.set(name, succeeded)
	a, b := h.wait(first), h.wait(second)
	if a.err != nil || b.err != nil {
		t.Fatalf("errors: %v, %v", a.err, b.err)
	}
	if a.res.Adopted == b.res.Adopted {
		t.Errorf("adopted = %v, %v: want exactly one adoption", a.res.Adopted, b.res.Adopted)
	}
	if n := len(h.runs()); n != 1 {
		t.Errorf("%d pipelineruns, want 1", n)
	}
}

func TestFailedRunOfAnEarlierExecutionIsReplaced(t *testing.T) {
	h := newHarness(t, tekton.Options{})
	in := h.request("build/main/1.0/image/aws-amd64/a1")
	name := tekton.RunName(in.Key)
	out := h.start(in, nil)
	old := h.created(name)
	h.set(name, kubestack.Run{Status: corev1.ConditionFalse, Reason: "Failed", Message: "Tasks Completed: 1 (Failed: 1)"})
	if o := h.wait(out); o.err == nil {
		t.Fatal("the first run did not fail")
	}
	// The build runs again (a new execution of the same workflow ID): the
	// first attempt of the same key must run the pipeline again, not
	// repeat the old failure.
	out = h.start(in, nil)
	h.replaced(name, old, "the failed run was not replaced")
	h.set(name, succeeded)
	if o := h.wait(out); o.err != nil || o.res.Adopted {
		t.Fatalf("re-run: %v, adopted %v; want a fresh run that succeeds", o.err, o.res.Adopted)
	}
	if n := len(h.runs()); n != 1 {
		t.Errorf("%d pipelineruns, want 1", n)
	}
}

func TestAlreadyExistsRefusesForeignRun(t *testing.T) {
	h := newHarness(t, tekton.Options{})
	in := h.request("foreign")
	name := tekton.RunName(in.Key)
	// A run someone else created under the same name.
	_, err := h.sim.Client.TektonV1().PipelineRuns(h.ns).Create(h.ctx(), &pipelinev1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: h.ns},
		Spec:       pipelinev1.PipelineRunSpec{PipelineRef: &pipelinev1.PipelineRef{Name: "other"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	appErr := appError(t, h.wait(h.start(in, nil)).err)
	if appErr.Type() != tekton.ErrTypeConflict || !appErr.NonRetryable() || !strings.Contains(appErr.Error(), tekton.LabelManagedBy) {
		t.Errorf("got %q (%s), want non-retryable %s naming %s", appErr.Error(), appErr.Type(), tekton.ErrTypeConflict, tekton.LabelManagedBy)
	}

	// Same key, other content: kiln's own run, but not this request's.
	in2 := h.request("changed")
	out := h.start(in2, nil)
	h.created(tekton.RunName(in2.Key))
	in2.Params[0].Value = *pipelinev1.NewStructuredValues("def456")
	appErr = appError(t, h.wait(h.start(in2, nil)).err)
	if appErr.Type() != tekton.ErrTypeConflict || !strings.Contains(appErr.Error(), tekton.LabelSpec) {
		t.Errorf("got %q (%s), want %s naming %s", appErr.Error(), appErr.Type(), tekton.ErrTypeConflict, tekton.LabelSpec)
	}
	h.set(tekton.RunName(in2.Key), succeeded)
	if o := h.wait(out); o.err != nil {
		t.Fatal(o.err)
	}
}

func TestInvalidSpecIsNonRetryableAndNamesField(t *testing.T) {
	h := newHarness(t, tekton.Options{})
	tests := []struct {
		name   string
		mutate func(*tekton.PipelineRunRequest)
		field  string
	}{
		{"request field", func(r *tekton.PipelineRunRequest) { r.Namespace = "" }, "namespace: required"},
		{"both refs", func(r *tekton.PipelineRunRequest) { r.PipelineRef = "p" }, "pipelineRef, pipelineSpec"},
		{"tekton validation", func(r *tekton.PipelineRunRequest) {
			r.PipelineSpec.Tasks[1].RunAfter = []string{"nonexistent"}
		}, "spec.pipelineSpec.tasks"},
		{"api server", func(r *tekton.PipelineRunRequest) { r.Labels["kiln.dev/flavour"] = "not a valid label value!" }, "metadata.labels"},
		{"missing namespace", func(r *tekton.PipelineRunRequest) { r.Namespace = "no-such-namespace" }, "does the namespace exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := h.request("invalid/" + tt.name)
			tt.mutate(&in)
			appErr := appError(t, h.wait(h.start(in, nil)).err)
			if appErr.Type() != tekton.ErrTypeInvalidSpec || !appErr.NonRetryable() {
				t.Errorf("type %q non-retryable %v, want %s, true", appErr.Type(), appErr.NonRetryable(), tekton.ErrTypeInvalidSpec)
			}
			if !strings.Contains(appErr.Error(), tt.field) {
				t.Errorf("message %q does not name %q", appErr.Error(), tt.field)
			}
		})
	}
	if n := len(h.runs()); n != 0 {
		t.Errorf("%d pipelineruns created from invalid requests", n)
	}
}

// TestContextEndLeavesTheRunAlone: when the activity's context ends (a
// lost heartbeat ends it as a cancel does), RunPipeline stops awaiting and
// leaves the run running; CancelPipelineRun, which the workflow calls on a
// real cancel, patches spec.status with each mode.
func TestContextEndLeavesTheRunAlone(t *testing.T) {
	for _, mode := range tekton.CancelModes {
		t.Run(string(mode), func(t *testing.T) {
			h := newHarness(t, tekton.Options{CancelMode: mode})
			in := h.request("cancel")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			out := h.start(in, func(env *testsuite.TestActivityEnvironment) {
				env.SetWorkerOptions(worker.Options{BackgroundActivityContext: ctx, DefaultHeartbeatThrottleInterval: time.Millisecond, MaxHeartbeatThrottleInterval: time.Millisecond})
			})
			name := tekton.RunName(in.Key)
			h.created(name)
			h.set(name, running)
			cancel()
			o := h.wait(out)
			if o.err == nil || !strings.Contains(o.err.Error(), "keeps running") {
				t.Errorf("error %v (%T), want the run left running", o.err, o.err)
			}
			pr, err := h.sim.Client.TektonV1().PipelineRuns(h.ns).Get(h.ctx(), name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if pr.Spec.Status != "" {
				t.Errorf("spec.status = %q after the context ended, want the run untouched", pr.Spec.Status)
			}
			var s testsuite.WorkflowTestSuite
			env := s.NewTestActivityEnvironment()
			env.RegisterActivity(h.acts)
			if _, err := env.ExecuteActivity(h.acts.CancelPipelineRun, tekton.CancelRequest{Namespace: h.ns, PipelineRun: name}); err != nil {
				t.Fatal(err)
			}
			if pr, err = h.sim.Client.TektonV1().PipelineRuns(h.ns).Get(h.ctx(), name, metav1.GetOptions{}); err != nil {
				t.Fatal(err)
			}
			if pr.Spec.Status != mode {
				t.Errorf("spec.status = %q after CancelPipelineRun, want %q", pr.Spec.Status, mode)
			}
		})
	}
}

// TestWorkerRestartReattaches stops the "worker" while a run is pending,
// then starts a fresh Watcher and Activities (a new process) whose attempt
// carries the last heartbeat: it re-attaches without creating anything and
// sees the completion that happened while no worker was running.
func TestWorkerRestartReattaches(t *testing.T) {
	h := newHarness(t, tekton.Options{})
	in := h.request("restart")
	stop := make(chan struct{})
	var last tekton.Progress
	var mu sync.Mutex
	out := h.start(in, func(env *testsuite.TestActivityEnvironment) {
		env.SetWorkerStopChannel(stop)
		env.SetOnActivityHeartbeatListener(func(_ *activity.Info, d converter.EncodedValues) {
			mu.Lock()
			defer mu.Unlock()
			_ = d.Get(&last)
		})
	})
	name := tekton.RunName(in.Key)
	h.created(name)
	h.set(name, running)
	close(stop)
	o := h.wait(out)
	if o.err == nil || !strings.Contains(o.err.Error(), "re-attaches") {
		t.Fatalf("error %v, want the retryable worker-stopping error", o.err)
	}
	if appErr := (*temporal.ApplicationError)(nil); errors.As(o.err, &appErr) && appErr.NonRetryable() {
		t.Fatalf("worker stop gave a non-retryable error: %v", o.err)
	}
	pr := h.runs()[0]
	if pr.Spec.Status != "" {
		t.Fatalf("worker stop cancelled the run: spec.status = %q", pr.Spec.Status)
	}
	// The run finishes while no worker is up.
	h.set(name, succeeded)

	// A new process: new clients, new watcher, the heartbeat of the last attempt.
	h2 := newHarness(t, tekton.Options{})
	h2.ns = h.ns
	mu.Lock()
	details := last
	mu.Unlock()
	if details.PipelineRun != name {
		t.Fatalf("last heartbeat %+v does not name %s", details, name)
	}
	o = h2.wait(h2.start(in, func(env *testsuite.TestActivityEnvironment) { env.SetHeartbeatDetails(details) }))
	if o.err != nil {
		t.Fatalf("re-attached attempt: %v", o.err)
	}
	if !o.res.Adopted || o.res.PipelineRun != name {
		t.Errorf("result %+v: want adopted %s", o.res, name)
	}
	if n := h2.count.Get("POST"); n != 0 {
		t.Errorf("re-attached attempt made %d creates, want 0", n)
	}
	if n := len(h.runs()); n != 1 {
		t.Errorf("%d pipelineruns, want 1", n)
	}
}

// TestWatchDropDeliversEveryCompletion restarts the kube-apiserver while
// runs are awaited, dropping every watch, and completes the runs as soon as
// it is back, before the informers have re-established their watches: the
// relist must deliver every completion.
func TestWatchDropDeliversEveryCompletion(t *testing.T) {
	h := newHarness(t, tekton.Options{})
	const n = 20
	var outs []<-chan outcome
	for i := range n {
		in := h.request(fmt.Sprintf("drop/%d", i))
		outs = append(outs, h.start(in, nil))
		h.created(tekton.RunName(in.Key))
	}
	watchesBefore := h.count.Get("WATCH")
	h.st.StopAPIServer()
	if err := h.st.StartAPIServer(h.ctx()); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		h.set(tekton.RunName(fmt.Sprintf("drop/%d", i)), succeeded)
	}
	for i, out := range outs {
		if o := h.wait(out); o.err != nil {
			t.Errorf("run %d: %v", i, o.err)
		}
	}
	if h.count.Get("WATCH") <= watchesBefore {
		t.Errorf("no new watch after the restart (%d before, %d after): the test did not drop the watch", watchesBefore, h.count.Get("WATCH"))
	}
}

// TestRunBeingCancelledIsReplacedByAReRun: a build re-run right after its
// cancel finds its runs with spec.status Cancelled but not yet finished by
// the controller; the new execution replaces them rather than adopt a run
// that is about to end Cancelled.
func TestRunBeingCancelledIsReplacedByAReRun(t *testing.T) {
	h := newHarness(t, tekton.Options{})
	in := h.request("build/main/1.0/image/aws-amd64/a1")
	name := tekton.RunName(in.Key)
	ctx, cancel := context.WithCancel(context.Background())
	out := h.start(in, func(env *testsuite.TestActivityEnvironment) {
		env.SetWorkerOptions(worker.Options{BackgroundActivityContext: ctx})
	})
	old := h.created(name)
	h.set(name, running)
	cancel()
	h.wait(out)
	var s testsuite.WorkflowTestSuite
	cenv := s.NewTestActivityEnvironment()
	cenv.RegisterActivity(h.acts)
	if _, err := cenv.ExecuteActivity(h.acts.CancelPipelineRun, tekton.CancelRequest{Namespace: h.ns, PipelineRun: name}); err != nil {
		t.Fatal(err)
	}
	// Still running: the controller has not reconciled the cancel yet.
	out = h.start(in, nil)
	h.replaced(name, old, "the run being cancelled was adopted, not replaced")
	h.set(name, succeeded)
	if o := h.wait(out); o.err != nil || o.res.Adopted {
		t.Fatalf("re-run: %v, adopted %v; want a fresh run that succeeds", o.err, o.res.Adopted)
	}
}
