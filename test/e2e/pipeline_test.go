//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"testing"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"knative.dev/pkg/apis"

	"github.com/kiln-build/kiln/activities/tekton"
	"github.com/kiln-build/kiln/test/kubestack"
)

// phase is the smallest workflow that runs one pipeline: the shape every
// phase of the Build workflow takes. Activity options are deliberate: a short
// heartbeat timeout so that a lost worker is noticed in seconds, retries for
// API-server trouble, and WaitForCancellation so that the workflow ends only
// after the PipelineRun has been cancelled.
func phase(ctx workflow.Context, in tekton.PipelineRunRequest) (tekton.PipelineRunResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 5 * time.Minute,
		HeartbeatTimeout:    3 * time.Second,
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    200 * time.Millisecond,
			BackoffCoefficient: 1,
			MaximumAttempts:    5,
		},
	})
	var a *tekton.Activities
	var res tekton.PipelineRunResult
	err := workflow.ExecuteActivity(ctx, a.RunPipeline, in).Get(ctx, &res)
	if ctx.Err() != nil {
		// As kiln's workflows do: the awaiting activity only stops
		// awaiting; the workflow cancels the run.
		dctx, cancel := workflow.NewDisconnectedContext(ctx)
		defer cancel()
		cerr := workflow.ExecuteActivity(dctx, a.CancelPipelineRun, tekton.CancelRequest{Namespace: in.Namespace, PipelineRun: tekton.RunName(in.Key)}).Get(dctx, nil)
		if cerr != nil {
			return res, cerr
		}
	}
	return res, err
}

// suite is one test's task queue, namespace and worker.
type suite struct {
	t     *testing.T
	ns    string
	queue string
	tk    versioned.Interface
}

// suiteRun and suiteSeq make every suite's namespace (and so its branch
// and build IDs) unique in a run: with a random 16-bit name, two of the
// ~35 suites of a run shared one about once in 100 runs.
var (
	suiteRun = fmt.Sprintf("%04x", rand.IntN(0x10000))
	suiteSeq atomic.Int64
)

func newSuite(t *testing.T) *suite {
	t.Helper()
	n := suiteSeq.Add(1)
	s := &suite{
		t:     t,
		ns:    fmt.Sprintf("e2e-%s-%d", suiteRun, n),
		queue: fmt.Sprintf("%s-%s-%d", t.Name(), suiteRun, n),
		tk:    env.stack.Tekton(),
	}
	if err := env.stack.PrepareNamespace(s.ctx(), s.ns); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *suite) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	s.t.Cleanup(cancel)
	return ctx
}

var workerLogger = log.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))

// startWorker starts a worker process's worth of kiln: its own Tekton client,
// Watcher and Temporal worker. The returned function stops it gracefully.
func (s *suite) startWorker() (stop func()) {
	s.t.Helper()
	w := tekton.NewWatcher(env.stack.Tekton(), 0)
	acts, err := tekton.New(env.stack.Tekton(), w, tekton.Options{
		HeartbeatInterval: 500 * time.Millisecond,
		DashboardURL:      "http://dashboard.test/#/namespaces/{{.Namespace}}/pipelineruns/{{.Name}}",
	})
	if err != nil {
		s.t.Fatal(err)
	}
	wk := worker.New(env.client, s.queue, worker.Options{WorkerStopTimeout: 10 * time.Second})
	wk.RegisterWorkflow(phase)
	wk.RegisterActivity(acts)
	if err := wk.Start(); err != nil {
		s.t.Fatal(err)
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		wk.Stop()
		w.Close()
	}
	s.t.Cleanup(stop)
	return stop
}

func (s *suite) start(id string, in tekton.PipelineRunRequest) client.WorkflowRun {
	s.t.Helper()
	run, err := env.client.ExecuteWorkflow(s.ctx(), client.StartWorkflowOptions{
		ID: s.ns + "/" + id, TaskQueue: s.queue, WorkflowExecutionTimeout: 3 * time.Minute,
	}, phase, in)
	if err != nil {
		s.t.Fatal(err)
	}
	return run
}

// request runs a pipeline of build then test, where build reports a digest
// result (through the pod's termination message, as Tekton's entrypoint
// would write it) and the pipeline passes it on as its own result.
func (s *suite) request(key string, labels map[string]string) tekton.PipelineRunRequest {
	task := func(name string, after ...string) pipelinev1.PipelineTask {
		return pipelinev1.PipelineTask{Name: name, RunAfter: after, TaskSpec: &pipelinev1.EmbeddedTask{TaskSpec: pipelinev1.TaskSpec{
			Params: pipelinev1.ParamSpecs{{Name: "commit", Type: pipelinev1.ParamTypeString}},
			Steps:  []pipelinev1.Step{{Name: "run", Image: "busybox", Script: "echo " + name + " $(params.commit)"}},
		}}, Params: pipelinev1.Params{{Name: "commit", Value: *pipelinev1.NewStructuredValues("$(params.commit)")}}}
	}
	build := task("build")
	build.TaskSpec.Results = []pipelinev1.TaskResult{{Name: "digest"}}
	return tekton.PipelineRunRequest{
		Namespace: s.ns,
		Key:       key,
		PipelineSpec: &pipelinev1.PipelineSpec{
			Params:     pipelinev1.ParamSpecs{{Name: "commit", Type: pipelinev1.ParamTypeString}},
			Workspaces: []pipelinev1.PipelineWorkspaceDeclaration{{Name: "src"}},
			Tasks:      []pipelinev1.PipelineTask{build, task("test", "build")},
			Results: []pipelinev1.PipelineResult{{
				Name: "digest", Value: *pipelinev1.NewStructuredValues("$(tasks.build.results.digest)"),
			}},
		},
		Params:      pipelinev1.Params{{Name: "commit", Value: *pipelinev1.NewStructuredValues("0123abc")}},
		Workspaces:  []pipelinev1.WorkspaceBinding{{Name: "src", EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		Labels:      labels,
		Annotations: map[string]string{kubestack.AnnotationTerminationMessage: `[{"key":"digest","value":"sha256:feed","type":1}]`},
	}
}

// runs lists the PipelineRuns kiln created for key.
func (s *suite) runs(key string) []pipelinev1.PipelineRun {
	s.t.Helper()
	l, err := s.tk.TektonV1().PipelineRuns(s.ns).List(s.ctx(), metav1.ListOptions{
		LabelSelector: tekton.LabelManagedBy + "=kiln",
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return l.Items
}

// heartbeat waits until the server has a heartbeat of the workflow's
// RunPipeline activity, from attempt minAttempt or later, in which pred
// holds, and returns it.
func (s *suite) heartbeat(run client.WorkflowRun, minAttempt int32, pred func(tekton.Progress) bool) tekton.Progress {
	s.t.Helper()
	var p tekton.Progress
	err := wait.PollUntilContextTimeout(s.ctx(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := env.client.DescribeWorkflowExecution(ctx, run.GetID(), run.GetRunID())
		if err != nil {
			return false, err
		}
		for _, a := range d.PendingActivities {
			if a.HeartbeatDetails == nil || a.Attempt < minAttempt {
				continue
			}
			var got tekton.Progress
			if err := converter.GetDefaultDataConverter().FromPayloads(a.HeartbeatDetails, &got); err != nil {
				return false, err
			}
			if pred(got) {
				p = got
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		s.t.Fatalf("no heartbeat as wanted (last: %+v): %v", p, err)
	}
	return p
}

func taskRunning(name string) func(tekton.Progress) bool {
	return func(p tekton.Progress) bool {
		for _, t := range p.Tasks {
			if t.Name == name && t.State == tekton.TaskRunning {
				return true
			}
		}
		return false
	}
}

func TestPipelineSucceedsWithResults(t *testing.T) {
	s := newSuite(t)
	s.startWorker()
	run := s.start("ok", s.request("e2e/ok", map[string]string{"kiln.dev/phase": "images"}))
	var res tekton.PipelineRunResult
	if err := run.Get(s.ctx(), &res); err != nil {
		t.Fatalf("workflow: %v", err)
	}
	if got, ok := res.Result("digest"); !ok || got != "sha256:feed" {
		t.Errorf("result digest = %q, %v; want sha256:feed", got, ok)
	}
	if len(res.Tasks) != 2 || res.Tasks[0].State != tekton.TaskSucceeded || res.Tasks[1].State != tekton.TaskSucceeded {
		t.Errorf("tasks = %+v, want build and test Succeeded", res.Tasks)
	}
	if res.StartTime.IsZero() || res.CompletionTime.Before(res.StartTime) || res.Duration != res.CompletionTime.Sub(res.StartTime) {
		t.Errorf("times: start %v, completion %v, duration %v", res.StartTime, res.CompletionTime, res.Duration)
	}
	if want := "http://dashboard.test/#/namespaces/" + s.ns + "/pipelineruns/" + res.PipelineRun; res.Dashboard != want {
		t.Errorf("dashboard = %q, want %q", res.Dashboard, want)
	}
	runs := s.runs("e2e/ok")
	if len(runs) != 1 || runs[0].Name != res.PipelineRun || runs[0].Name != tekton.RunName("e2e/ok") {
		t.Fatalf("pipelineruns = %d, want exactly one named %s", len(runs), tekton.RunName("e2e/ok"))
	}
	if got := runs[0].Labels["kiln.dev/phase"]; got != "images" {
		t.Errorf("label kiln.dev/phase = %q, want images", got)
	}
	// Tekton copies the run's labels to its TaskRuns, so the phase identity
	// reaches every pod.
	trs, err := s.tk.TektonV1().TaskRuns(s.ns).List(s.ctx(), metav1.ListOptions{LabelSelector: "kiln.dev/phase=images," + tekton.LabelManagedBy + "=kiln"})
	if err != nil || len(trs.Items) != 2 {
		t.Errorf("taskruns labelled with the phase: %d (%v), want 2", len(trs.Items), err)
	}
}

func TestPipelineFailureIsTypedAndNamesTasks(t *testing.T) {
	s := newSuite(t)
	s.startWorker()
	run := s.start("fail", s.request("e2e/fail", map[string]string{kubestack.LabelOutcome: kubestack.OutcomeFail}))
	err := run.Get(s.ctx(), nil)
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		t.Fatalf("workflow error = %v, want an ApplicationError", err)
	}
	if appErr.Type() != string(pipelinev1.PipelineRunReasonFailed) || !appErr.NonRetryable() {
		t.Errorf("type %q, non-retryable %v; want Failed, true", appErr.Type(), appErr.NonRetryable())
	}
	var f tekton.Failure
	if err := appErr.Details(&f); err != nil {
		t.Fatalf("failure details: %v", err)
	}
	if len(f.FailedTasks) != 1 || f.FailedTasks[0].Name != "build" || f.FailedTasks[0].Message == "" {
		t.Errorf("failed tasks = %+v, want build with a message", f.FailedTasks)
	}
	// Non-retryable: one attempt, one run.
	if n := len(s.runs("e2e/fail")); n != 1 {
		t.Errorf("pipelineruns = %d, want 1", n)
	}
	d, err := env.client.DescribeWorkflowExecution(s.ctx(), run.GetID(), run.GetRunID())
	if err != nil {
		t.Fatal(err)
	}
	if st := d.WorkflowExecutionInfo.Status; st != enums.WORKFLOW_EXECUTION_STATUS_FAILED {
		t.Errorf("workflow status = %v, want Failed", st)
	}
}

func TestCancelStopsThePipelineRun(t *testing.T) {
	s := newSuite(t)
	s.startWorker()
	run := s.start("cancel", s.request("e2e/cancel", map[string]string{kubestack.LabelOutcome: kubestack.OutcomeHold}))
	s.heartbeat(run, 1, taskRunning("build"))
	if err := env.client.CancelWorkflow(s.ctx(), run.GetID(), run.GetRunID()); err != nil {
		t.Fatal(err)
	}
	err := run.Get(s.ctx(), nil)
	var canceled *temporal.CanceledError
	if !errors.As(err, &canceled) {
		t.Fatalf("workflow error = %v, want a CanceledError", err)
	}
	// The workflow cancelled the run before it ended: the patch is in.
	pr, err := s.tk.TektonV1().PipelineRuns(s.ns).Get(s.ctx(), tekton.RunName("e2e/cancel"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Spec.Status != pipelinev1.PipelineRunSpecStatusCancelled {
		t.Errorf("spec.status = %q, want Cancelled", pr.Spec.Status)
	}
	// And the real Tekton controller acts on it: nothing is left running.
	err = wait.PollUntilContextTimeout(s.ctx(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		pr, err = s.tk.TektonV1().PipelineRuns(s.ns).Get(ctx, pr.Name, metav1.GetOptions{})
		return err == nil && pr.IsDone(), err
	})
	if err != nil {
		t.Fatalf("pipelinerun not done after cancel: %v", err)
	}
	if c := pr.Status.GetCondition(apis.ConditionSucceeded); c.Reason != string(pipelinev1.PipelineRunReasonCancelled) {
		t.Errorf("pipelinerun reason = %q, want Cancelled", c.Reason)
	}
}

func TestWorkerRestartReattaches(t *testing.T) {
	s := newSuite(t)
	stop := s.startWorker()
	run := s.start("restart", s.request("e2e/restart", map[string]string{kubestack.LabelOutcome: kubestack.OutcomeHold}))
	p := s.heartbeat(run, 1, taskRunning("build"))
	if p.PipelineRun != tekton.RunName("e2e/restart") || p.Namespace != s.ns {
		t.Errorf("heartbeat names %s/%s, want %s/%s", p.Namespace, p.PipelineRun, s.ns, tekton.RunName("e2e/restart"))
	}

	stop() // the attempt returns a retryable error; the run keeps going
	s.startWorker()
	// The build task keeps running in the cluster while no worker awaits it.
	// The second attempt, on the new worker, re-attaches and heartbeats the
	// same run's progress.
	p2 := s.heartbeat(run, 2, taskRunning("build"))
	if p2.PipelineRun != p.PipelineRun {
		t.Errorf("attempt 2 awaits %s, want %s", p2.PipelineRun, p.PipelineRun)
	}
	// Now let the pods finish; the test task's pod appears only after the
	// build task's is done, so keep releasing.
	ctx := s.ctx()
	go func() {
		for ; ctx.Err() == nil; time.Sleep(200 * time.Millisecond) {
			env.stack.Release(ctx, s.ns, p.PipelineRun)
		}
	}()
	var res tekton.PipelineRunResult
	if err := run.Get(s.ctx(), &res); err != nil {
		t.Fatalf("workflow: %v", err)
	}
	if !res.Adopted || res.PipelineRun != p.PipelineRun {
		t.Errorf("result: adopted %v, run %s; want the re-attached %s", res.Adopted, res.PipelineRun, p.PipelineRun)
	}
	if n := len(s.runs("e2e/restart")); n != 1 {
		t.Errorf("pipelineruns = %d, want exactly 1", n)
	}
	d, err := env.client.DescribeWorkflowExecution(s.ctx(), run.GetID(), run.GetRunID())
	if err != nil {
		t.Fatal(err)
	}
	if d.WorkflowExecutionInfo.Status != enums.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		t.Errorf("workflow status = %v", d.WorkflowExecutionInfo.Status)
	}
}
