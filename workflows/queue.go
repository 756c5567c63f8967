package workflows

import (
	"errors"
	"fmt"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Names of the manual-run queue's signal, update and query. The signal and
// the update both queue a build; the update also answers what the queue did
// with it (EnqueueResult), so kiln trigger can say so. The webhook keeps the
// signal: a signal is durable even while no worker runs, which an update is
// not until a worker accepts it.
const (
	SignalBuild   = "build"
	UpdateEnqueue = "enqueue"
	QueryQueue    = "queue"
)

// What the queue did with a request (EnqueueResult.Outcome).
const (
	// EnqueueQueued: the build was added, at Position among the pending.
	EnqueueQueued = "queued"
	// EnqueuePending: the same build was already pending, at Position.
	EnqueuePending = "pending"
	// EnqueueRunning: the same build is running.
	EnqueueRunning = "running"
	// EnqueueSucceeded: the same build succeeded; it is not run again.
	EnqueueSucceeded = "succeeded"
)

// EnqueueRequest is the argument of the enqueue update.
type EnqueueRequest struct {
	Build BuildRequest `json:"build"`
	// Last is how the build's latest run ended, when the caller looked it
	// up and it did not succeed (ExecutionState's Failed, Cancelled,
	// Terminated or TimedOut):
	// the build is then queued again whatever the queue remembers.
	Last string `json:"last,omitempty"`
}

// EnqueueResult is the answer of the enqueue update (and of
// webhook.QueueStarter.Enqueue, which may answer without asking the queue).
type EnqueueResult struct {
	BuildID string `json:"buildID"`
	Outcome string `json:"outcome"`
	// Position is the build's place among the pending builds, from 1, when
	// queued or pending; Running is how many builds run ahead of them.
	Position int `json:"position,omitempty"`
	Running  int `json:"running,omitempty"`
	// RunID is the run that succeeded or runs, when known.
	RunID string `json:"runID,omitempty"`
	// Rerun names the earlier outcome of a build queued again after it
	// failed, was cancelled or timed out.
	Rerun string `json:"rerun,omitempty"`
}

// String says what happened, as kiln trigger prints it.
func (r EnqueueResult) String() string {
	switch r.Outcome {
	case EnqueueQueued, EnqueuePending:
		s := fmt.Sprintf("queued %s at position %d", r.BuildID, r.Position)
		if r.Outcome == EnqueuePending {
			s = fmt.Sprintf("coalesced with the pending build %s (position %d)", r.BuildID, r.Position)
		}
		if r.Running > 0 {
			s += fmt.Sprintf(", behind %d running", r.Running)
		}
		if r.Rerun != "" {
			s += "; it " + r.Rerun + " before and runs again"
		}
		return s
	case EnqueueRunning:
		return "coalesced with the running build " + r.BuildID + runOf(r.RunID)
	case EnqueueSucceeded:
		return "build " + r.BuildID + " already succeeded" + runOf(r.RunID) + "; nothing queued (use another --version or --commit to build again)"
	}
	return r.Outcome + " " + r.BuildID
}

func runOf(id string) string {
	if id == "" {
		return ""
	}
	return " (run " + id + ")"
}

// States of a finished build in QueueInput.Done.
const (
	doneSucceeded = StateSucceeded
	doneFailed    = StateFailed
	doneCancelled = StateCancelled
	// doneElsewhere: the child could not start, because a build of its ID
	// runs or succeeded outside the queue (kiln run).
	doneElsewhere = "StartedElsewhere"
)

// DoneBuild is a build the queue ran, with how it ended.
type DoneBuild struct {
	ID    string `json:"id"`
	State string `json:"state"`
}

// QueueID is the workflow ID of a branch's manual-run queue.
func QueueID(branch string) string { return "queue/" + branch }

// BuildID is the workflow ID of a build: build/<branch>/<version>, or
// build/<branch>/<commit> without a version, so that whichever trigger
// starts the same build, it runs once.
func BuildID(in BuildRequest) string {
	v := in.Version
	if v == "" {
		v = in.Commit
	}
	return "build/" + in.Branch + "/" + v
}

// QueueInput is the state a Queue starts with, also across continue-as-new.
type QueueInput struct {
	Branch string `json:"branch"`
	// Concurrency is how many builds run at once. Optional: default 1.
	Concurrency int `json:"concurrency,omitempty"`
	// Pending are the requests not yet started.
	Pending []BuildRequest `json:"pending,omitempty"`
	// Done are the builds recently finished, newest last, so a late
	// duplicate of one that succeeded is still coalesced after
	// continue-as-new, and one that failed is run again.
	Done []DoneBuild `json:"done,omitempty"`
	// MaxEvents continues the queue as new once its history has this many
	// events and it is idle. Optional: default 10,000 (or when Temporal
	// suggests it).
	MaxEvents int `json:"maxEvents,omitempty"`
}

// QueueState is what the "queue" query returns.
type QueueState struct {
	Branch  string      `json:"branch"`
	Pending []string    `json:"pending"`
	Running []string    `json:"running"`
	Done    []DoneBuild `json:"done"`
}

const queueDoneKept = 50

// Queue is a branch's long-lived manual-run queue, started and fed by
// SignalWithStart (the webhook) or UpdateWithStart (kiln trigger). It
// coalesces requests for a build that is pending, running or succeeded, and
// runs again one that failed, was cancelled or timed out (see start.go);
// runs builds as child workflows, at most Concurrency at once, in arrival
// order; and continues as new, carrying its state, before its history
// grows large.
func Queue(ctx workflow.Context, in QueueInput) error {
	q := &queue{in: in, running: map[string]bool{}}
	if q.in.Concurrency <= 0 {
		q.in.Concurrency = 1
	}
	if q.in.MaxEvents <= 0 {
		q.in.MaxEvents = 10000
	}
	if err := workflow.SetQueryHandler(ctx, QueryQueue, q.state); err != nil {
		return err
	}
	added := workflow.NewBufferedChannel(ctx, 1)
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateEnqueue,
		func(ctx workflow.Context, req EnqueueRequest) (EnqueueResult, error) {
			res := q.add(ctx, req.Build, req.Last)
			added.SendAsync(true) // wake the loop below; one wake is enough
			return res, nil
		},
		workflow.UpdateHandlerOptions{Validator: func(_ workflow.Context, req EnqueueRequest) error {
			return q.withBranch(req.Build).Validate()
		}}); err != nil {
		return err
	}
	signals := workflow.GetSignalChannel(ctx, SignalBuild)
	done := workflow.NewChannel(ctx)
	logger := workflow.GetLogger(ctx)
	for {
		for len(q.running) < q.in.Concurrency && len(q.in.Pending) > 0 {
			req := q.in.Pending[0]
			q.in.Pending = q.in.Pending[1:]
			id := BuildID(req)
			q.running[id] = true
			q.order = append(q.order, id)
			workflow.Go(ctx, func(ctx workflow.Context) {
				opts := BuildChildOptions(req, false)
				// A build outlives a queue that continues as new.
				opts.ParentClosePolicy = enumspb.PARENT_CLOSE_POLICY_ABANDON
				err := workflow.ExecuteChildWorkflow(workflow.WithChildOptions(ctx, opts), "Build", req).Get(ctx, nil)
				d := DoneBuild{ID: id, State: doneSucceeded}
				var elsewhere *temporal.ChildWorkflowExecutionAlreadyStartedError
				switch {
				case err == nil:
				case errors.As(err, &elsewhere):
					d.State = doneElsewhere
					logger.Info("coalesced: the build runs or succeeded outside the queue", "build", id)
				case temporal.IsCanceledError(err):
					d.State = doneCancelled
				default:
					d.State = doneFailed
					logger.Warn("queued build failed", "build", id, "error", err)
				}
				done.Send(ctx, d)
			})
		}
		if len(q.running) == 0 && len(q.in.Pending) == 0 && q.tooLong(ctx) {
			// Idle and long: drain what arrived and continue as new.
			for {
				var req BuildRequest
				if !signals.ReceiveAsync(&req) {
					break
				}
				q.add(ctx, req, "")
			}
			if len(q.in.Pending) == 0 {
				// Updates are answered at once, but one may be mid-way.
				if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
					return err
				}
				return workflow.NewContinueAsNewError(ctx, Queue, q.in)
			}
			continue
		}
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(signals, func(c workflow.ReceiveChannel, _ bool) {
			var req BuildRequest
			c.Receive(ctx, &req)
			q.add(ctx, req, "")
		})
		sel.AddReceive(added, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil) })
		sel.AddReceive(done, func(c workflow.ReceiveChannel, _ bool) {
			var d DoneBuild
			c.Receive(ctx, &d)
			delete(q.running, d.ID)
			for i, r := range q.order {
				if r == d.ID {
					q.order = append(q.order[:i], q.order[i+1:]...)
					break
				}
			}
			q.in.Done = append(q.in.Done, d)
			if len(q.in.Done) > queueDoneKept {
				q.in.Done = q.in.Done[len(q.in.Done)-queueDoneKept:]
			}
		})
		sel.Select(ctx)
	}
}

type queue struct {
	in      QueueInput
	running map[string]bool
	order   []string // running IDs in start order, for the query
}

func (q *queue) tooLong(ctx workflow.Context) bool {
	info := workflow.GetInfo(ctx)
	return info.GetContinueAsNewSuggested() || info.GetCurrentHistoryLength() >= q.in.MaxEvents
}

func (q *queue) withBranch(req BuildRequest) BuildRequest {
	if req.Branch == "" {
		req.Branch = q.in.Branch
	}
	return req
}

// add queues req unless the same build is pending, running or succeeded,
// and says what it did. A build that failed, was cancelled or timed out is
// queued again, as is one whose last run the caller saw end otherwise
// (last). Invalid requests are logged and dropped (the update's
// validator refuses them before they reach here; a signal cannot).
func (q *queue) add(ctx workflow.Context, req BuildRequest, last string) EnqueueResult {
	logger := workflow.GetLogger(ctx)
	req = q.withBranch(req)
	id := BuildID(req)
	res := EnqueueResult{BuildID: id, Running: len(q.running)}
	if err := req.Validate(); err != nil {
		logger.Error("dropped invalid build request", "error", err)
		return EnqueueResult{BuildID: id, Outcome: "invalid: " + err.Error()}
	}
	if q.running[id] {
		logger.Info("coalesced: build running", "build", id)
		res.Outcome = EnqueueRunning
		return res
	}
	for i, p := range q.in.Pending {
		if BuildID(p) == id {
			logger.Info("coalesced: build pending", "build", id)
			res.Outcome, res.Position = EnqueuePending, i+1
			return res
		}
	}
	for i := len(q.in.Done) - 1; i >= 0 && last == ""; i-- {
		d := q.in.Done[i]
		if d.ID != id {
			continue
		}
		if d.State == doneSucceeded {
			logger.Info("coalesced: build succeeded", "build", id)
			res.Outcome = EnqueueSucceeded
			return res
		}
		if d.State != doneElsewhere {
			res.Rerun = endPhrase(d.State)
		}
		break
	}
	if last != "" {
		res.Rerun = endPhrase(last)
	}
	q.in.Pending = append(q.in.Pending, req)
	res.Outcome, res.Position = EnqueueQueued, len(q.in.Pending)
	return res
}

// endPhrase says how a run ended, from a state in ExecutionState's
// vocabulary (which DoneBuild.State shares).
func endPhrase(state string) string {
	switch state {
	case StateCancelled:
		return "was cancelled"
	case StateTerminated:
		return "was terminated"
	case StateTimedOut:
		return "timed out"
	}
	return "failed"
}

func (q *queue) state() (QueueState, error) {
	s := QueueState{Branch: q.in.Branch, Pending: []string{}, Running: []string{}, Done: append([]DoneBuild{}, q.in.Done...)}
	for _, p := range q.in.Pending {
		s.Pending = append(s.Pending, BuildID(p))
	}
	for _, id := range q.order {
		if q.running[id] {
			s.Running = append(s.Running, id)
		}
	}
	return s, nil
}
