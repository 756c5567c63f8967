package tekton

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"text/template"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"knative.dev/pkg/apis"
)

// Options configure the Activities.
type Options struct {
	// CancelMode is written to spec.status by CancelPipelineRun when the
	// request names no mode: Cancelled, CancelledRunFinally or
	// StoppedRunFinally. Optional: default Cancelled.
	CancelMode pipelinev1.PipelineRunSpecStatus
	// DashboardURL is a text/template for a run's Tekton Dashboard link,
	// over .Namespace and .Name. Optional: no links when empty. Example:
	// "https://tekton.example.com/#/namespaces/{{.Namespace}}/pipelineruns/{{.Name}}".
	DashboardURL string
	// HeartbeatInterval is how often RunPipeline heartbeats while nothing
	// changes. Optional: default a third of the activity's heartbeat
	// timeout, at most 10 s.
	HeartbeatInterval time.Duration
}

// CancelModes lists the accepted values of Options.CancelMode.
var CancelModes = []pipelinev1.PipelineRunSpecStatus{
	pipelinev1.PipelineRunSpecStatusCancelled,
	pipelinev1.PipelineRunSpecStatusCancelledRunFinally,
	pipelinev1.PipelineRunSpecStatusStoppedRunFinally,
}

// Activities are kiln's Tekton activities. Register a pointer with the
// worker; every exported method is an activity, named after the method.
// They are safe for concurrent use.
type Activities struct {
	client     versioned.Interface
	watcher    *Watcher
	cancelMode pipelinev1.PipelineRunSpecStatus
	dashboard  *template.Template
	heartbeat  time.Duration
}

// New returns the Activities, using client for writes and w for awaiting.
func New(client versioned.Interface, w *Watcher, opts Options) (*Activities, error) {
	a := &Activities{client: client, watcher: w, cancelMode: opts.CancelMode, heartbeat: opts.HeartbeatInterval}
	if a.cancelMode == "" {
		a.cancelMode = pipelinev1.PipelineRunSpecStatusCancelled
	}
	if !validCancelMode(a.cancelMode) {
		return nil, fmt.Errorf("cancel mode %q: want one of %v", a.cancelMode, CancelModes)
	}
	if opts.DashboardURL != "" {
		t, err := template.New("dashboard").Option("missingkey=error").Parse(opts.DashboardURL)
		if err != nil {
			return nil, fmt.Errorf("dashboard URL template: %w", err)
		}
		if err := t.Execute(&bytes.Buffer{}, dashboardData{Namespace: "ns", Name: "run"}); err != nil {
			return nil, fmt.Errorf("dashboard URL template: %w", err)
		}
		a.dashboard = t
	}
	return a, nil
}

func validCancelMode(m pipelinev1.PipelineRunSpecStatus) bool {
	for _, v := range CancelModes {
		if m == v {
			return true
		}
	}
	return false
}

type dashboardData struct{ Namespace, Name string }

func (a *Activities) dashboardURL(ns, name string) string {
	if a.dashboard == nil {
		return ""
	}
	var b strings.Builder
	if err := a.dashboard.Execute(&b, dashboardData{Namespace: ns, Name: name}); err != nil {
		return ""
	}
	return b.String()
}

// RunPipeline creates the PipelineRun for in, or adopts the one an earlier
// attempt created, and waits until it is done, heartbeating its Progress.
//
// Idempotency: the run's name derives from in.Key (RunName), and a retried
// attempt re-attaches to the run named in its last heartbeat. It never
// creates a second run for one key.
//
// Errors: a run whose Succeeded condition is False gives a non-retryable
// ApplicationError whose type is Tekton's reason, with a Failure as details.
// ErrTypeInvalidSpec, ErrTypeConflict, ErrTypeForbidden and ErrTypeDeleted
// are non-retryable too; everything else (API-server trouble) is retryable.
// When ctx ends RunPipeline returns and leaves the run alone: ctx also ends
// when heartbeats are lost, and the next attempt re-attaches. Workflows
// cancel runs with CancelPipelineRun.
func (a *Activities) RunPipeline(ctx context.Context, in PipelineRunRequest) (PipelineRunResult, error) {
	pr, err := buildPipelineRun(ctx, in)
	if err != nil {
		return PipelineRunResult{}, err
	}
	adopted := false
	var last Progress
	if activity.HasHeartbeatDetails(ctx) && activity.GetHeartbeatDetails(ctx, &last) == nil && last.PipelineRun != "" {
		pr.Name = last.PipelineRun
		if _, err := a.reattach(ctx, pr); err != nil {
			return PipelineRunResult{}, err
		}
		adopted = true
	} else if adopted, err = a.create(ctx, pr); err != nil {
		return PipelineRunResult{}, err
	}
	logger := activity.GetLogger(ctx)
	logger.Info("awaiting pipelinerun", "namespace", pr.Namespace, "pipelinerun", pr.Name, "adopted", adopted)
	// Record the name at once, so that an attempt after a crash re-attaches.
	activity.RecordHeartbeat(ctx, Progress{Namespace: pr.Namespace, PipelineRun: pr.Name, Dashboard: a.dashboardURL(pr.Namespace, pr.Name)})
	res, err := a.await(ctx, pr.Namespace, pr.Name)
	res.Adopted = adopted
	return res, err
}

// create creates pr; on AlreadyExists it adopts the existing run if it is
// this request's, and reports adopted. A run that an earlier execution of
// the workflow left failed or cancelled is replaced instead: a first
// attempt cannot have created it, and adopting it would repeat the old
// failure rather than run the pipeline again.
func (a *Activities) create(ctx context.Context, pr *pipelinev1.PipelineRun) (adopted bool, err error) {
	runs := a.client.TektonV1().PipelineRuns(pr.Namespace)
	for {
		_, err = runs.Create(ctx, pr, metav1.CreateOptions{})
		switch {
		case err == nil:
			return false, nil
		case !apierrors.IsAlreadyExists(err):
			return false, classify(fmt.Sprintf("create pipelinerun %s/%s", pr.Namespace, pr.Name), err)
		}
		existing, err := a.reattach(ctx, pr)
		// A run that is being cancelled (spec.status set, the controller
		// not done yet) is as good as cancelled: an execution re-run right
		// after a cancel must not adopt it.
		failed := existing != nil && ((existing.IsDone() && !existing.IsSuccessful()) || (!existing.IsDone() && existing.Spec.Status != ""))
		if err != nil || !failed || activity.GetInfo(ctx).Attempt > 1 {
			return true, err
		}
		activity.GetLogger(ctx).Info("replacing the pipelinerun an earlier execution left failed or cancelled", "namespace", pr.Namespace, "pipelinerun", pr.Name)
		if err := a.remove(ctx, existing); err != nil {
			return false, err
		}
	}
}

// remove deletes the run and waits until it is gone, so that its name is
// free again.
func (a *Activities) remove(ctx context.Context, pr *pipelinev1.PipelineRun) error {
	runs := a.client.TektonV1().PipelineRuns(pr.Namespace)
	op := fmt.Sprintf("delete pipelinerun %s/%s", pr.Namespace, pr.Name)
	err := runs.Delete(ctx, pr.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pr.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return classify(op, err)
	}
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, 2*time.Second) {
		got, err := runs.Get(ctx, pr.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err), err == nil && got.UID != pr.UID:
			return a.removeTaskRuns(ctx, pr)
		case err != nil:
			return classify(op, err)
		}
		activity.RecordHeartbeat(ctx, Progress{Namespace: pr.Namespace, Reason: "waiting for the old run to be deleted"})
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

// removeTaskRuns deletes the TaskRuns the removed run pr owned, and waits
// until they are gone. The garbage collector would, in its own time; but
// the new run has the same name, so its TaskRuns do too, and Tekton would
// take the old, cancelled or failed ones for its own.
func (a *Activities) removeTaskRuns(ctx context.Context, pr *pipelinev1.PipelineRun) error {
	trs := a.client.TektonV1().TaskRuns(pr.Namespace)
	op := fmt.Sprintf("delete the taskruns of the old pipelinerun %s/%s", pr.Namespace, pr.Name)
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, 2*time.Second) {
		l, err := trs.List(ctx, metav1.ListOptions{LabelSelector: labelPipelineRun + "=" + pr.Name})
		if err != nil {
			return classify(op, err)
		}
		left := 0
		for _, tr := range l.Items {
			if !metav1.IsControlledBy(&tr, pr) {
				continue
			}
			left++
			if tr.DeletionTimestamp != nil {
				continue
			}
			uid := tr.UID
			err := trs.Delete(ctx, tr.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return classify(op, err)
			}
		}
		if left == 0 {
			return nil
		}
		activity.RecordHeartbeat(ctx, Progress{Namespace: pr.Namespace, Reason: "waiting for the old run's taskruns to be deleted"})
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

// reattach checks that the existing run named like pr is pr's request, and
// returns it.
func (a *Activities) reattach(ctx context.Context, pr *pipelinev1.PipelineRun) (*pipelinev1.PipelineRun, error) {
	existing, err := a.client.TektonV1().PipelineRuns(pr.Namespace).Get(ctx, pr.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("pipelinerun %s/%s, created by an earlier attempt, no longer exists: it was deleted outside kiln; start the phase again with a new attempt", pr.Namespace, pr.Name),
			ErrTypeDeleted, nil)
	}
	if err != nil {
		return nil, classify(fmt.Sprintf("get pipelinerun %s/%s", pr.Namespace, pr.Name), err)
	}
	for _, k := range []string{LabelManagedBy, LabelKey, LabelSpec} {
		if got, want := existing.Labels[k], pr.Labels[k]; got != want {
			return nil, temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("pipelinerun %s/%s exists but is not this request's: label %s is %q, want %q; delete it or change the request key", pr.Namespace, pr.Name, k, got, want),
				ErrTypeConflict, nil)
		}
	}
	return existing, nil
}

// await waits for the run through the Watcher until it is done or ctx ends,
// or the Watcher's informers fail (Subscription.Err). It heartbeats from the
// start, while the namespace's cache syncs too.
func (a *Activities) await(ctx context.Context, ns, name string) (PipelineRunResult, error) {
	logger := activity.GetLogger(ctx)
	sub, err := a.watcher.Register(ns, name)
	if err != nil {
		return PipelineRunResult{}, fmt.Errorf("watch pipelinerun %s/%s: %w", ns, name, err)
	}
	defer sub.Close()
	tick := time.NewTicker(a.heartbeatInterval(ctx))
	defer tick.Stop()
	var (
		seen bool
		last = Progress{Namespace: ns, PipelineRun: name, Dashboard: a.dashboardURL(ns, name)}
	)
	for {
		select {
		case <-sub.C:
			if err := sub.Err(); err != nil {
				return PipelineRunResult{}, err
			}
			pr, ok := sub.Get()
			if !ok {
				if seen {
					return PipelineRunResult{}, temporal.NewNonRetryableApplicationError(
						fmt.Sprintf("pipelinerun %s/%s was deleted while kiln awaited it", ns, name), ErrTypeDeleted, nil)
				}
				continue // created, but not yet in the cache
			}
			seen = true
			p := progressOf(sub, pr, last.Dashboard)
			if pr.IsDone() {
				// The run's event can come before its TaskRuns' last
				// events: read those that the cache has not seen end.
				a.settleTasks(ctx, ns, &p)
			}
			if done, res, err := outcome(pr, p); done {
				// No heartbeat: the result carries the final progress.
				logger.Info("pipelinerun finished", "pipelinerun", name, "reason", p.Reason, "tasks", p.Summary())
				return res, err
			}
			if !p.equal(last) {
				logger.Info("pipelinerun progress", "pipelinerun", name, "reason", p.Reason, "tasks", p.Summary())
				last = p
				activity.RecordHeartbeat(ctx, p)
			}
		case <-tick.C:
			if err := sub.Err(); err != nil {
				return PipelineRunResult{}, err
			}
			activity.RecordHeartbeat(ctx, last)
		case <-activity.GetWorkerStopChannel(ctx):
			return PipelineRunResult{}, fmt.Errorf("worker is stopping; pipelinerun %s/%s keeps running and the next attempt re-attaches to it", ns, name)
		case <-ctx.Done():
			return PipelineRunResult{}, a.stopped(ctx, ns, name)
		}
	}
}

func (a *Activities) heartbeatInterval(ctx context.Context) time.Duration {
	if a.heartbeat > 0 {
		return a.heartbeat
	}
	d := 10 * time.Second
	if hb := activity.GetInfo(ctx).HeartbeatTimeout; hb > 0 && hb/3 < d {
		d = hb / 3
	}
	return max(d, 100*time.Millisecond)
}

// stopped handles the end of ctx while awaiting. It never touches the run:
// the context also ends when a heartbeat cannot reach Temporal (a server
// restart, a network partition), and then the run must keep going for the
// next attempt to re-attach to. A real cancellation (an operator's, the
// build's deadline, a phase timeout) is the workflow's to act on: it calls
// CancelPipelineRun for every run it started.
func (a *Activities) stopped(ctx context.Context, ns, name string) error {
	activity.GetLogger(ctx).Info("stopped awaiting; the pipelinerun keeps running", "pipelinerun", name, "cause", context.Cause(ctx))
	return fmt.Errorf("stopped awaiting pipelinerun %s/%s, which keeps running: %w", ns, name, ctx.Err())
}

func (a *Activities) patchStatus(ctx context.Context, ns, name string, mode pipelinev1.PipelineRunSpecStatus) error {
	patch := fmt.Appendf(nil, `{"spec":{"status":%q}}`, mode)
	_, err := a.client.TektonV1().PipelineRuns(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil // nothing left to cancel
	}
	return err
}

// CancelPipelineRun sets the run's spec.status to in.Mode (default: the
// configured mode). It is idempotent: cancelling a finished, cancelled or
// missing run succeeds. Workflows call it, from a disconnected context, for
// every run they started when a build is cancelled or times out: the
// awaiting RunPipeline only stops awaiting.
func (a *Activities) CancelPipelineRun(ctx context.Context, in CancelRequest) error {
	mode := in.Mode
	if mode == "" {
		mode = a.cancelMode
	}
	if !validCancelMode(mode) {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("mode: %q is not one of %v", mode, CancelModes), ErrTypeInvalidSpec, nil)
	}
	if in.Namespace == "" || in.PipelineRun == "" {
		return temporal.NewNonRetryableApplicationError("namespace and pipelineRun are required", ErrTypeInvalidSpec, nil)
	}
	pr, err := a.client.TektonV1().PipelineRuns(in.Namespace).Get(ctx, in.PipelineRun, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return classify("get pipelinerun", err)
	}
	if pr.IsDone() {
		return nil
	}
	if err := a.patchStatus(ctx, in.Namespace, in.PipelineRun, mode); err != nil {
		return classify("cancel pipelinerun", err)
	}
	return nil
}

// WorkerQueue says where the activities of one PipelineRun go: "", any
// worker of the build's task queue, since every worker sees every
// PipelineRun. (The local executor answers with its own worker's queue.)
func (a *Activities) WorkerQueue(context.Context) (string, error) { return "", nil }

// settleTasks reads from the API server each TaskRun of a finished run
// that the watch cache still shows unfinished, so the result names the
// tasks that failed whichever informer delivered its event first. A read
// that fails leaves the cached state.
func (a *Activities) settleTasks(ctx context.Context, ns string, p *Progress) {
	for i, t := range p.Tasks {
		if t.TaskRun == "" || t.State == TaskSucceeded || t.State == TaskFailed || t.State == TaskSkipped {
			continue
		}
		tr, err := a.client.TektonV1().TaskRuns(ns).Get(ctx, t.TaskRun, metav1.GetOptions{})
		if err != nil {
			continue
		}
		p.Tasks[i].State, p.Tasks[i].Reason, p.Tasks[i].Message = taskRunState(tr)
	}
}

// outcome maps a finished run to the activity's result or error.
func outcome(pr *pipelinev1.PipelineRun, p Progress) (done bool, res PipelineRunResult, err error) {
	c := pr.Status.GetCondition(apis.ConditionSucceeded)
	if c == nil || c.IsUnknown() {
		return false, res, nil
	}
	res = PipelineRunResult{
		Namespace: pr.Namespace, PipelineRun: pr.Name, Dashboard: p.Dashboard,
		Results: pr.Status.Results, Tasks: p.Tasks,
	}
	if pr.Status.StartTime != nil {
		res.StartTime = pr.Status.StartTime.Time
	}
	if pr.Status.CompletionTime != nil {
		res.CompletionTime = pr.Status.CompletionTime.Time
	}
	if !res.StartTime.IsZero() && !res.CompletionTime.IsZero() {
		res.Duration = res.CompletionTime.Sub(res.StartTime)
	}
	if c.IsTrue() {
		return true, res, nil
	}
	f := Failure{
		Namespace: pr.Namespace, PipelineRun: pr.Name, Dashboard: p.Dashboard,
		Reason: c.Reason, Message: c.Message,
	}
	var parts []string
	for _, t := range p.Tasks {
		if t.State == TaskFailed {
			f.FailedTasks = append(f.FailedTasks, t)
			parts = append(parts, fmt.Sprintf("%s (%s)", t.Name, t.Message))
		}
	}
	msg := fmt.Sprintf("pipelinerun %s/%s %s: %s", pr.Namespace, pr.Name, c.Reason, c.Message)
	if len(parts) > 0 {
		msg += "; failed tasks: " + strings.Join(parts, ", ")
	}
	reason := c.Reason
	if reason == "" {
		reason = string(pipelinev1.PipelineRunReasonFailed)
	}
	return true, res, temporal.NewNonRetryableApplicationError(msg, reason, nil, f)
}
