package local

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/kiln-build/kiln/activities/tekton"
)

// Activities run Tekton pipelines on this machine and archive their logs.
// Register a pointer with the worker; the method names are the activity
// names, the same as activities/tekton's (RunPipeline, CancelPipelineRun)
// and activities/logs' (ArchiveLogs), so a worker registers one backend or
// the other and workflows do not change. Every exported method is
// therefore an activity: add no other. They are safe for concurrent use.
type Activities struct {
	runner    *Runner
	heartbeat time.Duration
	archive   *Archive
	queue     string
}

// New returns the Activities, running pipelines with a Runner for opts and
// archiving their logs to opts.Archive.
func New(opts Options) (*Activities, error) {
	if err := opts.Archive.validate(); err != nil {
		return nil, err
	}
	r, err := NewRunner(opts)
	if err != nil {
		return nil, err
	}
	a := NewWithRunner(r, opts.HeartbeatInterval)
	a.archive, a.queue = opts.Archive, opts.WorkerQueue
	return a, nil
}

// NewWithRunner returns Activities that run pipelines with r, for a worker
// that uses r itself too (run directories, log files, statuses).
// heartbeat is Options.HeartbeatInterval. (A Runner made with the same
// Root in another process reads the same run directories and statuses.)
// They archive no logs: their ArchiveLogs reports that storage is not
// configured; use New with Options.Archive for that.
func NewWithRunner(r *Runner, heartbeat time.Duration) *Activities {
	return &Activities{runner: r, heartbeat: heartbeat}
}

// RunPipeline runs the PipelineRun for in on this machine and waits until
// it is done, heartbeating a tekton.Progress whenever a task changes and
// at least every HeartbeatInterval.
//
// Idempotency: the run's name is tekton.RunName(in.Key). A retried
// attempt after the run finished returns the recorded outcome (Adopted);
// one that finds it in progress in this worker waits for it; one after a
// crash (the run's process is gone) runs it again from scratch.
//
// Errors, as the cluster backend's: a run whose Succeeded condition is
// False gives a non-retryable ApplicationError whose type is Tekton's
// reason (Failed, PipelineRunTimeout, Cancelled, PipelineValidationFailed,
// CouldntGetPipelineResult) with a tekton.Failure as details; an invalid
// spec or an unsupported feature gives a non-retryable
// tekton.ErrTypeInvalidSpec naming the field; a run name used by another
// spec gives tekton.ErrTypeConflict. When ctx ends (the activity is
// cancelled, or its heartbeats are lost), RunPipeline returns and the run
// goes on: the next attempt in this worker joins it, and a workflow stops
// it with CancelPipelineRun. When the worker stops, the steps are killed
// and the run is left for the next attempt (retryable).
func (a *Activities) RunPipeline(ctx context.Context, in tekton.PipelineRunRequest) (tekton.PipelineRunResult, error) {
	pr, err := pipelineRunFor(in)
	if err != nil {
		return tekton.PipelineRunResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("invalid pipelinerun request: %v", err), tekton.ErrTypeInvalidSpec, nil)
	}
	logger := activity.GetLogger(ctx)

	var (
		mu      sync.Mutex
		last    = tekton.Progress{Namespace: pr.Namespace, PipelineRun: pr.Name}
		changed = make(chan struct{}, 1)
	)
	onProgress := func(s RunStatus) {
		p := s.Progress()
		mu.Lock()
		same := p.Reason == last.Reason && slices.Equal(p.Tasks, last.Tasks)
		last = p
		mu.Unlock()
		if !same {
			select {
			case changed <- struct{}{}:
			default:
			}
		}
	}
	progress := func() tekton.Progress {
		mu.Lock()
		defer mu.Unlock()
		return last
	}

	type result struct {
		out *Outcome
		err error
	}
	done := make(chan result, 1)
	// The run does not end with ctx: ctx also ends when heartbeats cannot
	// reach Temporal, and then the next attempt joins the run in progress.
	// Workflows stop runs with CancelPipelineRun.
	go func() {
		// A first attempt that finds the run finished did not run it: an
		// earlier workflow execution did (a re-run of a failed build), so
		// a run that did not succeed is replaced, not adopted. A later
		// attempt adopts what an earlier attempt of this execution
		// recorded. activities/tekton's create() follows the same rule.
		out, err := a.runner.Run(context.WithoutCancel(ctx), pr, RunOptions{OnProgress: onProgress, Replace: activity.GetInfo(ctx).Attempt == 1})
		done <- result{out, err}
	}()
	activity.RecordHeartbeat(ctx, progress())
	tick := time.NewTicker(a.heartbeatInterval(ctx))
	defer tick.Stop()
	for {
		select {
		case res := <-done:
			if res.err != nil {
				return tekton.PipelineRunResult{}, classify(pr.Name, res.err)
			}
			logger.Info("pipelinerun finished", "pipelinerun", pr.Name, "reason", res.out.Status.Reason, "adopted", res.out.Adopted)
			return outcome(res.out)
		case <-changed:
			p := progress()
			logger.Info("pipelinerun progress", "pipelinerun", pr.Name, "reason", p.Reason, "tasks", p.Summary())
			activity.RecordHeartbeat(ctx, p)
		case <-tick.C:
			activity.RecordHeartbeat(ctx, progress())
		case <-activity.GetWorkerStopChannel(ctx):
			a.runner.abort(pr.Name)
			<-done
			return tekton.PipelineRunResult{}, fmt.Errorf("worker is stopping; pipelinerun %s was interrupted and the next attempt runs it again", pr.Name)
		case <-ctx.Done():
			// A cancelled build's workflow has asked CancelPipelineRun to
			// stop the run, which then ends at once: report its outcome if
			// it does. Otherwise leave it running.
			t := time.NewTimer(cancelGrace)
			defer t.Stop()
			select {
			case res := <-done:
				if res.err == nil {
					logger.Info("pipelinerun finished", "pipelinerun", pr.Name, "reason", res.out.Status.Reason)
					return outcome(res.out)
				}
			case <-t.C:
			}
			logger.Info("stopped awaiting; the pipelinerun keeps running", "pipelinerun", pr.Name, "cause", context.Cause(ctx))
			return tekton.PipelineRunResult{}, fmt.Errorf("stopped awaiting pipelinerun %s, which keeps running: %w", pr.Name, ctx.Err())
		}
	}
}

// cancelGrace is how long RunPipeline waits, once its context ends, for
// the run to end too (as it does at once after CancelPipelineRun).
const cancelGrace = 2 * time.Second

func (a *Activities) heartbeatInterval(ctx context.Context) time.Duration {
	if a.heartbeat > 0 {
		return a.heartbeat
	}
	d := 5 * time.Second
	if hb := activity.GetInfo(ctx).HeartbeatTimeout; hb > 0 && hb/3 < d {
		d = hb / 3
	}
	return max(d, 100*time.Millisecond)
}

// CancelPipelineRun stops the run named in.PipelineRun if it is in
// progress in this worker, with in.Mode (default Cancelled). It is
// idempotent: cancelling a finished, cancelled or unknown run succeeds.
// It does not wait for the run to end.
func (a *Activities) CancelPipelineRun(ctx context.Context, in tekton.CancelRequest) error {
	mode := in.Mode
	if mode == "" {
		mode = pipelinev1.PipelineRunSpecStatusCancelled
	}
	if !slices.Contains(tekton.CancelModes, mode) {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("mode: %q is not one of %v", mode, tekton.CancelModes), tekton.ErrTypeInvalidSpec, nil)
	}
	if in.PipelineRun == "" {
		return temporal.NewNonRetryableApplicationError("pipelineRun is required", tekton.ErrTypeInvalidSpec, nil)
	}
	if a.runner.Cancel(in.PipelineRun, mode) {
		activity.GetLogger(ctx).Info("pipelinerun cancelled", "pipelinerun", in.PipelineRun, "mode", mode)
	}
	return nil
}

// WorkerQueue returns Options.WorkerQueue, the task queue that this worker
// alone polls: a run's processes, logs and cancellation live here, so
// workflows send the run's RunPipeline, CancelPipelineRun and ArchiveLogs
// there. "" (no such queue) means any worker of the build's task queue.
func (a *Activities) WorkerQueue(context.Context) (string, error) { return a.queue, nil }

// pipelineRunFor builds the PipelineRun for a request as the cluster
// backend does; a run needs a namespace only to carry one.
func pipelineRunFor(in tekton.PipelineRunRequest) (*pipelinev1.PipelineRun, error) {
	pr, err := tekton.NewPipelineRun(in)
	if err == nil && pr.Namespace == "" {
		pr.Namespace = "default"
	}
	return pr, err
}

// classify sorts the runner's errors: spec problems and conflicts are
// permanent; anything else (a run busy in another process, disk trouble)
// is retryable.
func classify(name string, err error) error {
	switch {
	case IsSpecError(err):
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("pipelinerun %s is invalid: %v", name, err), tekton.ErrTypeInvalidSpec, nil)
	case errors.Is(err, ErrConflict):
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%v; change the request key or remove the run's directory", err), tekton.ErrTypeConflict, nil)
	default:
		return fmt.Errorf("run pipelinerun %s: %w", name, err)
	}
}

// outcome maps a finished run to the activity's result or error.
func outcome(out *Outcome) (tekton.PipelineRunResult, error) {
	s := out.Status
	if s.State == StateInterrupted {
		return tekton.PipelineRunResult{}, fmt.Errorf("pipelinerun %s was interrupted; the next attempt runs it again", s.Name)
	}
	p := s.Progress()
	res := tekton.PipelineRunResult{
		Namespace: s.Namespace, PipelineRun: s.Name, Adopted: out.Adopted,
		Results: s.Results, Tasks: p.Tasks, StartTime: s.StartTime, Restarts: len(s.Restarts),
	}
	if s.CompletionTime != nil {
		res.CompletionTime = *s.CompletionTime
		res.Duration = res.CompletionTime.Sub(res.StartTime)
	}
	if s.Succeeded() {
		return res, nil
	}
	f := tekton.Failure{Namespace: s.Namespace, PipelineRun: s.Name, Reason: s.Reason, Message: s.Message}
	var parts []string
	for _, t := range p.Tasks {
		if t.State == tekton.TaskFailed && t.Reason != string(pipelinev1.TaskRunReasonFailureIgnored) {
			f.FailedTasks = append(f.FailedTasks, t)
			parts = append(parts, fmt.Sprintf("%s (%s)", t.Name, t.Message))
		}
	}
	msg := fmt.Sprintf("pipelinerun %s/%s %s: %s", s.Namespace, s.Name, s.Reason, s.Message)
	if len(parts) > 0 {
		msg += "; failed tasks: " + strings.Join(parts, ", ")
	}
	return res, temporal.NewNonRetryableApplicationError(msg, s.Reason, nil, f)
}
