package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Update names of the approval gate.
const (
	UpdateApprove = "approve"
	UpdateReject  = "reject"
)

// Error types of a build stopped at the approval gate.
const (
	ErrTypeApprovalTimeout = "ApprovalTimeout"
	ErrTypeRejected        = "Rejected"
)

// Approval states.
const (
	ApprovalWaiting  = "Waiting"
	ApprovalApproved = "Approved"
	ApprovalRejected = "Rejected"
	ApprovalTimedOut = "TimedOut"
)

// changeApprovalGate: release builds wait for approval before publishing.
const changeApprovalGate = "approval-gate"

// changeApprovalNotify: reaching the gate notifies the build's people.
const changeApprovalNotify = "approval-notify"

// Decision is the argument of the approve and reject updates.
type Decision struct {
	// By names the approver. Required.
	By string `json:"by"`
	// Comment (approve) or reason (reject).
	Comment string `json:"comment,omitempty"`
}

// Approval is the gate's state in Progress.
type Approval struct {
	State    string    `json:"state"`
	Since    time.Time `json:"since,omitzero"`
	Deadline time.Time `json:"deadline,omitzero"`
	By       string    `json:"by,omitempty"`
	Comment  string    `json:"comment,omitempty"`
	At       time.Time `json:"at,omitzero"`
}

// setupApproval registers the approve and reject updates. Their validators
// refuse a decision without an approver, or when the build is not waiting
// for one, before anything enters the history.
func (b *build) setupApproval(ctx workflow.Context) error {
	validate := func(_ workflow.Context, d Decision) error {
		if strings.TrimSpace(d.By) == "" {
			return errors.New("by: the approver's identity is required")
		}
		a := b.progress.Approval
		if a == nil || a.State != ApprovalWaiting {
			state := "not at the approval gate"
			if a != nil {
				state = "already " + strings.ToLower(a.State)
			}
			return fmt.Errorf("build is not waiting for approval (%s)", state)
		}
		return nil
	}
	decide := func(state string) func(workflow.Context, Decision) (Approval, error) {
		return func(ctx workflow.Context, d Decision) (Approval, error) {
			a := b.progress.Approval
			a.State, a.By, a.Comment, a.At = state, d.By, d.Comment, workflow.Now(ctx)
			return *a, nil
		}
	}
	if err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateApprove, decide(ApprovalApproved),
		workflow.UpdateHandlerOptions{Validator: validate}); err != nil {
		return err
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateReject, decide(ApprovalRejected),
		workflow.UpdateHandlerOptions{Validator: func(ctx workflow.Context, d Decision) error {
			if strings.TrimSpace(d.Comment) == "" {
				return errors.New("reason: say why the release is rejected")
			}
			return validate(ctx, d)
		}})
}

// awaitApproval holds a release build after its images and tests, until an
// approve or reject update arrives or the plan's approval timeout passes.
func (b *build) awaitApproval(ctx workflow.Context) error {
	timeout := b.plan.ApprovalTimeout
	if timeout <= 0 {
		timeout = 72 * time.Hour
	}
	now := workflow.Now(ctx)
	b.progress.Approval = &Approval{State: ApprovalWaiting, Since: now, Deadline: now.Add(timeout)}
	workflow.GetLogger(ctx).Info("waiting for approval", "deadline", b.progress.Approval.Deadline)
	if workflow.GetVersion(ctx, changeApprovalNotify, workflow.DefaultVersion, 1) == 1 {
		// Ask the build's people, through the same channel as failures,
		// without holding the gate while the mail is on its way.
		workflow.Go(ctx, func(ctx workflow.Context) { b.notify(ctx, EventApprovalRequested, now) })
	}
	ok, err := workflow.AwaitWithTimeout(ctx, timeout, func() bool { return b.progress.Approval.State != ApprovalWaiting })
	if err != nil {
		return err
	}
	a := b.progress.Approval
	if !ok {
		a.State, a.At = ApprovalTimedOut, workflow.Now(ctx)
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("no approval within %v", timeout), ErrTypeApprovalTimeout, nil)
	}
	if a.State == ApprovalRejected {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("release rejected by %s: %s", a.By, a.Comment), ErrTypeRejected, nil)
	}
	return nil
}
