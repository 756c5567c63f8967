package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/workflow"
)

// What a build does when a phase or flavour has used all its attempts, when
// its manifest set could not be written, or when publishing a flavour (or
// a platform) failed.
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
	// to skip: a flavour whose build failed, or, while publish waits, one
	// whose publishing failed.
	Flavour string `json:"flavour,omitempty"`
	// Platform does the same for the platforms of the per-platform
	// publishing (workers without storage).
	Platform string `json:"platform,omitempty"`
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
	Waiting bool `json:"waiting"`
	// Phase is the failed phase: base, packages, image (the flavours'
	// builds), manifest (the manifest set) or publish.
	Phase string `json:"phase,omitempty"`
	// Failed are the failed flavours or platforms (FailedKind says which),
	// none when the phase failed as a whole.
	Failed     []string `json:"failed,omitempty"`
	FailedKind string   `json:"failedKind,omitempty"`
	// CanSkip: a failed flavour or platform may be skipped; never in a
	// release build.
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
	// failed checks the flavour or platform a decision names.
	failed := func(d ResumeDecision) error {
		r := b.progress.Resume
		kind, name := KindFlavour, d.Flavour
		if d.Platform != "" {
			kind, name = KindPlatform, d.Platform
		}
		want := r.FailedKind
		if want == "" {
			want = KindFlavour
		}
		switch {
		case d.Flavour != "" && d.Platform != "":
			return errors.New("flavour and platform exclude each other: name one")
		case len(r.Failed) == 0:
			return fmt.Errorf("%s %s: %s failed as a whole; retry or abort it without naming a flavour or platform", kind, name, r.Phase)
		case kind != want:
			return fmt.Errorf("%s %s: %s failed per %s; name one of the failed %ss (--%s): %s", kind, name, r.Phase, want, want, want, strings.Join(r.Failed, ", "))
		case !slices.Contains(r.Failed, name):
			return fmt.Errorf("%s %s has not failed; failed: %s", kind, name, strings.Join(r.Failed, ", "))
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
			if d.Flavour != "" || d.Platform != "" {
				return failed(d)
			}
			return nil
		}},
		{UpdateSkip, func(_ workflow.Context, d ResumeDecision) error {
			if err := waiting(d); err != nil {
				return err
			}
			r := b.progress.Resume
			switch {
			case r.CanSkip:
			case len(r.Failed) > 0 && b.in.Has(TargetRelease):
				return fmt.Errorf("%s cannot be skipped in a release build, which ships every flavour it plans: retry or abort", r.Phase)
			default:
				return fmt.Errorf("%s cannot be skipped (only a failed flavour's build or publishing, or a platform's publishing, can): retry or abort", r.Phase)
			}
			if d.Flavour == "" && d.Platform == "" {
				if r.FailedKind == KindPlatform {
					return errors.New("platform: name the platform to skip")
				}
				return errors.New("flavour: name the flavour to skip")
			}
			return failed(d)
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

// What ResumeState.Failed names.
const (
	KindFlavour  = "flavour"
	KindPlatform = "platform"
)

// gate is what a failed step puts before the operator.
type gate struct {
	phase  string
	failed []string // flavours or platforms; none when the phase failed as a whole
	kind   string   // KindFlavour or KindPlatform
	// canSkip: a failed flavour or platform may be skipped.
	canSkip bool
}

// askOperator waits for a retry, skip or abort of the failed phase or
// flavours, at most the plan's resume window. A timeout is an abort.
func (b *build) askOperator(ctx workflow.Context, phase string, failed []string, canSkip bool) ResumeDecision {
	return b.ask(ctx, gate{phase: phase, failed: failed, kind: KindFlavour, canSkip: canSkip})
}

// ask waits for a retry, skip or abort of what g names, at most the plan's
// resume window. A timeout is an abort.
func (b *build) ask(ctx workflow.Context, g gate) ResumeDecision {
	phase, failed := g.phase, g.failed
	window := b.plan.ResumeWindow
	if window <= 0 {
		window = 24 * time.Hour
	}
	now := workflow.Now(ctx)
	if b.progress.Resume == nil {
		b.progress.Resume = &ResumeState{}
	}
	r := b.progress.Resume
	r.Waiting, r.Phase, r.Failed, r.CanSkip, r.Since, r.Deadline = true, phase, failed, g.canSkip, now, now.Add(window)
	r.FailedKind = ""
	if len(failed) > 0 {
		r.FailedKind = g.kind
	}
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
