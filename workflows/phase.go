package workflows

import (
	"errors"
	"fmt"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kiln-build/kiln/activities/tekton"
)

type phaseRun struct {
	cfg       PipelineConfig
	namespace string
	key       string
	labels    map[string]string
	data      TemplateData
	plan      *Plan // heartbeat timeout, log archive
	// bg runs the log archives beside the next phases; the workflow waits
	// for it before it returns. Nil: archives run before runPhase returns.
	bg *background
	// state finds the phase's state again when a background archive ends;
	// nil: the st given to runPhase stays valid.
	state func() *PhaseState
}

// runPhase runs cfg's pipeline, starting a fresh PipelineRun for each
// attempt when the pipeline fails for a reason tekton.RerunForError allows
// (the pipeline's own failure, a timeout, the cluster's trouble; never a
// bad spec or an unknown reason), and records everything in st.
func runPhase(ctx workflow.Context, st *PhaseState, r phaseRun) (tekton.PipelineRunResult, error) {
	var res tekton.PipelineRunResult
	params, err := r.cfg.Render(r.data)
	var labels, annotations map[string]string
	if err == nil {
		labels, err = r.cfg.RenderLabels(r.data)
	}
	if err == nil {
		annotations, err = r.cfg.RenderAnnotations(r.data)
	}
	if err != nil {
		st.State, st.Error = StateFailed, err.Error()
		return res, temporal.NewNonRetryableApplicationError(st.Name+": "+err.Error(), ErrTypePhaseFailed, nil)
	}
	for k, v := range r.labels {
		labels[k] = v // kiln's identity labels win
	}
	annotations["kiln.dev/workflow-id"] = r.data.BuildID
	heartbeat := r.plan.HeartbeatTimeout
	if heartbeat <= 0 {
		heartbeat = time.Minute
	}
	timeout := r.cfg.Timeout
	if timeout <= 0 {
		timeout = time.Hour
	}
	attempts := max(r.cfg.Attempts, 1)
	backoff := r.cfg.Backoff
	if backoff <= 0 {
		backoff = 30 * time.Second
	}
	opts := workflow.ActivityOptions{
		// The pipeline's own timeout, and time for the API server to be
		// away for a while.
		StartToCloseTimeout: timeout + 10*time.Minute,
		// RunPipeline heartbeats at a third of this; a lost worker is
		// noticed within it and the next attempt re-attaches. A lost
		// heartbeat only ends the attempt: the run goes on.
		HeartbeatTimeout:    heartbeat,
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    2 * time.Second,
			BackoffCoefficient: 2,
			MaximumInterval:    time.Minute,
			// Retries cover API-server trouble, Temporal outages and lost
			// workers; pipeline failures are non-retryable and handled
			// below with a fresh run.
			MaximumAttempts: 20,
		},
	}
	st.Start = workflow.Now(ctx)
	for attempt := 1; ; attempt++ {
		key := fmt.Sprintf("%s/a%d", r.key, attempt)
		st.State, st.Attempt, st.PipelineRun, st.Error = StateRunning, attempt, tekton.RunName(key), ""
		req := tekton.PipelineRunRequest{
			Namespace: r.namespace, Key: key,
			PipelineRef: r.cfg.PipelineRef, PipelineSpec: r.cfg.PipelineSpec,
			Params: params, Workspaces: r.cfg.Workspaces, ServiceAccountName: r.cfg.ServiceAccountName,
			Labels:      labels,
			Annotations: annotations,
		}
		if r.cfg.Timeout > 0 {
			req.Timeouts = &pipelinev1.TimeoutFields{Pipeline: &metav1.Duration{Duration: r.cfg.Timeout}}
		}
		var queue string
		res, queue, err = awaitRun(ctx, opts, req)
		end := workflow.Now(ctx)
		cancelled := temporal.IsCanceledError(err) || ctx.Err() != nil
		if !cancelled && r.plan.Storage != nil && r.plan.Storage.ArchiveLogs {
			// The pods are there until the run is deleted: archive now,
			// for a failed run as much as for one that succeeded, beside
			// what comes next.
			r.archive(ctx, st, key, queue, attempt, heartbeat)
		}
		st.End = end
		if err == nil {
			st.State, st.Dashboard, st.Restarts = StateSucceeded, res.Dashboard, res.Restarts
			return res, nil
		}
		if cancelled {
			st.State = StateCancelled
			return res, err
		}
		st.Error = rootMessage(err)
		if !tekton.RerunForError(err) || attempt >= attempts {
			st.State = StateFailed
			return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %s", st.Name, st.Error), ErrTypePhaseFailed, err)
		}
		st.State = StateRetrying
		if err := workflow.Sleep(ctx, backoff<<(attempt-1)); err != nil {
			st.State = StateCancelled
			return res, err
		}
	}
}

// awaitRun runs req's PipelineRun on a worker that can run it and awaits
// it. The workflow owns the run's cancellation: when ctx is cancelled (an
// operator's cancel, the build's deadline) or the awaiting activity times
// out for good, it calls CancelPipelineRun at once, from a disconnected
// context, rather than rely on the awaiting activity, which only stops
// awaiting when its context ends (as it also does when Temporal is away
// for longer than the heartbeat timeout). It returns the task queue the
// run went to ("" for any worker).
func awaitRun(ctx workflow.Context, opts workflow.ActivityOptions, req tekton.PipelineRunRequest) (tekton.PipelineRunResult, string, error) {
	var a *tekton.Activities
	name := tekton.RunName(req.Key)
	for {
		var res tekton.PipelineRunResult
		queue, err := workerQueue(ctx)
		if err != nil {
			return res, "", err
		}
		o := opts
		if queue != "" {
			// That worker alone can run it. If it is gone for good, the
			// attempt is never picked up: ask again for a live worker.
			o.TaskQueue, o.ScheduleToStartTimeout = queue, max(2*o.HeartbeatTimeout, time.Minute)
		}
		fut := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, o), a.RunPipeline, req)
		settled := false
		var cancelled workflow.Future
		workflow.Go(ctx, func(gctx workflow.Context) {
			gctx.Done().Receive(gctx, nil)
			if !settled {
				cancelled = cancelRun(ctx, queue, req.Namespace, name)
			}
		})
		err = fut.Get(ctx, &res)
		settled = true
		var te *temporal.TimeoutError
		timedOut := errors.As(err, &te)
		if cancelled == nil && timedOut && te.TimeoutType() != enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START {
			// Out of attempts: the run may still be going.
			cancelled = cancelRun(ctx, queue, req.Namespace, name)
		}
		if cancelled != nil {
			dctx, stop := workflow.NewDisconnectedContext(ctx)
			if cerr := cancelled.Get(dctx, nil); cerr != nil {
				workflow.GetLogger(ctx).Error("cancel pipelinerun", "pipelinerun", name, "error", cerr)
			}
			stop()
		}
		if timedOut && te.TimeoutType() == enumspb.TIMEOUT_TYPE_SCHEDULE_TO_START && ctx.Err() == nil {
			workflow.GetLogger(ctx).Warn("the worker that ran the pipelinerun is gone; asking for another", "pipelinerun", name, "taskQueue", queue)
			continue
		}
		return res, queue, err
	}
}

// workerQueue asks a worker of the build's task queue where the activities
// of one PipelineRun go (RunPipeline, CancelPipelineRun, ArchiveLogs): ""
// for any worker (the cluster executor: every worker sees every
// PipelineRun), or the task queue of the one worker that answered (the
// local executor: a run's processes, logs and cancellation live in the
// worker that runs it).
func workerQueue(ctx workflow.Context) (string, error) {
	var a *tekton.Activities
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 10 * time.Second},
	})
	var queue string
	err := workflow.ExecuteActivity(actx, a.WorkerQueue).Get(ctx, &queue)
	return queue, err
}

// cancelRun starts CancelPipelineRun for the run, in a context of its own
// so that it runs although ctx is cancelled.
func cancelRun(ctx workflow.Context, queue, namespace, name string) workflow.Future {
	var a *tekton.Activities
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	o := workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 10 * time.Second, MaximumAttempts: 10},
	}
	if queue != "" {
		o.TaskQueue, o.ScheduleToStartTimeout = queue, time.Minute
	}
	workflow.GetLogger(ctx).Info("cancelling pipelinerun", "pipelinerun", name)
	return workflow.ExecuteActivity(workflow.WithActivityOptions(dctx, o), a.CancelPipelineRun,
		tekton.CancelRequest{Namespace: namespace, PipelineRun: name})
}

// background is the work a workflow runs beside its phases (log archives)
// and waits for before it returns, so that nothing it started is left
// pending when it completes.
type background struct{ wg workflow.WaitGroup }

func newBackground(ctx workflow.Context) *background {
	return &background{wg: workflow.NewWaitGroup(ctx)}
}

// goDisconnected runs f in a coroutine whose context is not cancelled with
// ctx: a cancelled build still archives the logs of the runs that ended.
func (bg *background) goDisconnected(ctx workflow.Context, f func(workflow.Context)) {
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	bg.wg.Go(dctx, f)
}

// wait blocks until every coroutine started with goDisconnected returned.
func (bg *background) wait(ctx workflow.Context) {
	if bg != nil {
		bg.wg.Wait(ctx)
	}
}
