package workflows

import (
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/workflow"
)

// Names of the manual-run queue's signal and query.
const (
	SignalBuild = "build"
	QueryQueue  = "queue"
)

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
	// Done are the build IDs recently finished, newest last, so a late
	// duplicate is still coalesced after continue-as-new.
	Done []string `json:"done,omitempty"`
	// MaxEvents continues the queue as new once its history has this many
	// events and it is idle. Optional: default 10,000 (or when Temporal
	// suggests it).
	MaxEvents int `json:"maxEvents,omitempty"`
}

// QueueState is what the "queue" query returns.
type QueueState struct {
	Branch  string   `json:"branch"`
	Pending []string `json:"pending"`
	Running []string `json:"running"`
	Done    []string `json:"done"`
}

const queueDoneKept = 50

// Queue is a branch's long-lived manual-run queue, started and fed by
// SignalWithStart (kiln trigger). It coalesces requests for a build that is
// pending, running or recently done; runs builds as child workflows, at most
// Concurrency at once, in arrival order; and continues as new, carrying its
// state, before its history grows large.
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
				cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
					WorkflowID: id,
					// A build outlives a queue that continues as new.
					ParentClosePolicy:     enumspb.PARENT_CLOSE_POLICY_ABANDON,
					WorkflowIDReusePolicy: enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
					Memo: map[string]any{
						MemoBranch: req.Branch, MemoCommit: req.Commit, MemoVersion: req.Version, MemoFlavourSet: req.FlavourSet,
					},
				})
				err := workflow.ExecuteChildWorkflow(cctx, "Build", req).Get(ctx, nil)
				if err != nil {
					logger.Warn("queued build failed", "build", id, "error", err)
				}
				done.Send(ctx, id)
			})
		}
		if len(q.running) == 0 && len(q.in.Pending) == 0 && q.tooLong(ctx) {
			// Idle and long: drain what arrived and continue as new.
			for {
				var req BuildRequest
				if !signals.ReceiveAsync(&req) {
					break
				}
				q.add(ctx, req)
			}
			if len(q.in.Pending) == 0 {
				return workflow.NewContinueAsNewError(ctx, Queue, q.in)
			}
			continue
		}
		sel := workflow.NewSelector(ctx)
		sel.AddReceive(signals, func(c workflow.ReceiveChannel, _ bool) {
			var req BuildRequest
			c.Receive(ctx, &req)
			q.add(ctx, req)
		})
		sel.AddReceive(done, func(c workflow.ReceiveChannel, _ bool) {
			var id string
			c.Receive(ctx, &id)
			delete(q.running, id)
			for i, r := range q.order {
				if r == id {
					q.order = append(q.order[:i], q.order[i+1:]...)
					break
				}
			}
			q.in.Done = append(q.in.Done, id)
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

// add queues req unless the same build is pending, running or recently
// done; invalid requests are logged and dropped (kiln trigger validates
// before signalling).
func (q *queue) add(ctx workflow.Context, req BuildRequest) {
	logger := workflow.GetLogger(ctx)
	if req.Branch == "" {
		req.Branch = q.in.Branch
	}
	if err := req.Validate(); err != nil {
		logger.Error("dropped invalid build request", "error", err)
		return
	}
	id := BuildID(req)
	if q.running[id] {
		logger.Info("coalesced: build running", "build", id)
		return
	}
	for _, p := range q.in.Pending {
		if BuildID(p) == id {
			logger.Info("coalesced: build pending", "build", id)
			return
		}
	}
	for _, d := range q.in.Done {
		if d == id {
			logger.Info("coalesced: build done", "build", id)
			return
		}
	}
	q.in.Pending = append(q.in.Pending, req)
}

func (q *queue) state() (QueueState, error) {
	s := QueueState{Branch: q.in.Branch, Pending: []string{}, Running: []string{}, Done: append([]string{}, q.in.Done...)}
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
