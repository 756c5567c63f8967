package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"
)

// What a build does when a phase or flavour has used all its attempts.
const (
	OnFailureFail = "fail" // fail the build at once (the default)
	OnFailureWait = "wait" // wait for an operator: retry, skip or abort
)

// Update names of the resume gate.
const (
	UpdateRetry = "retry"
	UpdateSkip  = "skip"
	UpdateAbort = "abort"
)

// changeResume: a build may wait for an operator after a failure.
const changeResume = "resume-on-failure"

// ResumeDecision is the argument of the retry, skip and abort updates.
type ResumeDecision struct {
	// By names the operator. Required.
	By string `json:"by"`
	// Flavour limits a retry to one failed flavour, or names the flavour
	// to skip.
	Flavour string `json:"flavour,omitempty"`
	// Phase, for a retry, must name the phase that failed (a check, not a
	// choice: completed phases never run again).
	Phase string `json:"phase,omitempty"`
	// Reason, for an abort.
	Reason string `json:"reason,omitempty"`

	Action string    `json:"action,omitempty"`
	At     time.Time `json:"at,omitzero"`
}

// ResumeState is the resume gate in Progress.
type ResumeState struct {
	// Waiting is true while the build waits for a decision.
	Waiting  bool      `json:"waiting"`
	Phase    string    `json:"phase,omitempty"`
	Failed   []string  `json:"failed,omitempty"`
	CanSkip  bool      `json:"canSkip,omitempty"`
	Since    time.Time `json:"since,omitzero"`
	Deadline time.Time `json:"deadline,omitzero"`
	// Decisions are every decision taken, oldest first.
	Decisions []ResumeDecision `json:"decisions,omitempty"`
}

func (b *build) onFailure() string {
	if b.in.OnFailure != "" {
		return b.in.OnFailure
	}
	if b.plan.OnFailure != "" {
		return b.plan.OnFailure
	}
	return OnFailureFail
}

func (b *build) setupResume(ctx workflow.Context) error {
	waiting := func(d ResumeDecision) error {
		if strings.TrimSpace(d.By) == "" {
			return errors.New("by: the operator's identity is required")
		}
		if r := b.progress.Resume; r == nil || !r.Waiting {
			return errors.New("build is not waiting for an operator: nothing failed, or the decision is taken")
		}
		return nil
	}
	failed := func(name string) error {
		if !slices.Contains(b.progress.Resume.Failed, name) {
			return fmt.Errorf("flavour %s has not failed; failed: %s", name, strings.Join(b.progress.Resume.Failed, ", "))
		}
		return nil
	}
	decide := func(action string) func(workflow.Context, ResumeDecision) (ResumeState, error) {
		return func(ctx workflow.Context, d ResumeDecision) (ResumeState, error) {
			d.Action, d.At = action, workflow.Now(ctx)
			r := b.progress.Resume
			r.Decisions = append(r.Decisions, d)
			r.Waiting = false
			b.decision = &d
			return *r, nil
		}
	}
	for _, u := range []struct {
		name     string
		validate func(workflow.Context, ResumeDecision) error
	}{
		{UpdateRetry, func(_ workflow.Context, d ResumeDecision) error {
			if err := waiting(d); err != nil {
				return err
			}
			if d.Phase != "" && d.Phase != b.progress.Resume.Phase {
				return fmt.Errorf("phase %s: the failed phase is %s", d.Phase, b.progress.Resume.Phase)
			}
			if d.Flavour != "" {
				return failed(d.Flavour)
			}
			return nil
		}},
		{UpdateSkip, func(_ workflow.Context, d ResumeDecision) error {
			if err := waiting(d); err != nil {
				return err
			}
			if !b.progress.Resume.CanSkip {
				return fmt.Errorf("%s cannot be skipped (only flavours can, and not in a release)", b.progress.Resume.Phase)
			}
			if d.Flavour == "" {
				return errors.New("flavour: name the flavour to skip")
			}
			return failed(d.Flavour)
		}},
		{UpdateAbort, func(_ workflow.Context, d ResumeDecision) error { return waiting(d) }},
	} {
		if err := workflow.SetUpdateHandlerWithOptions(ctx, u.name, decide(u.name),
			workflow.UpdateHandlerOptions{Validator: u.validate}); err != nil {
			return err
		}
	}
	return nil
}

// askOperator waits for a retry, skip or abort of the failed phase or
// flavours, at most the plan's resume window. A timeout is an abort.
func (b *build) askOperator(ctx workflow.Context, phase string, failed []string, canSkip bool) ResumeDecision {
	window := b.plan.ResumeWindow
	if window <= 0 {
		window = 24 * time.Hour
	}
	now := workflow.Now(ctx)
	if b.progress.Resume == nil {
		b.progress.Resume = &ResumeState{}
	}
	r := b.progress.Resume
	r.Waiting, r.Phase, r.Failed, r.CanSkip, r.Since, r.Deadline = true, phase, failed, canSkip, now, now.Add(window)
	b.decision = nil
	workflow.GetLogger(ctx).Info("waiting for an operator", "phase", phase, "failed", failed, "deadline", r.Deadline)
	ok, err := workflow.AwaitWithTimeout(ctx, window, func() bool { return b.decision != nil })
	if err != nil || !ok {
		r.Waiting = false
		d := ResumeDecision{Action: UpdateAbort, Reason: fmt.Sprintf("no decision within %v", window), At: workflow.Now(ctx)}
		if err != nil {
			d.Reason = "cancelled"
		}
		r.Decisions = append(r.Decisions, d)
		return d
	}
	return *b.decision
}
