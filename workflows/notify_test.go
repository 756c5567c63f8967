package workflows_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/kiln-build/kiln/activities/notify"
	"github.com/kiln-build/kiln/activities/plan"
	"github.com/kiln-build/kiln/activities/tekton"
	"github.com/kiln-build/kiln/workflows"
	"github.com/kiln-build/kiln/workflows/flavour"
)

// notifications records the ResolveRecipients and NotifyBuild activities
// a build schedules.
type notifications struct {
	mu     sync.Mutex
	events []string
	states []string
	// runIDs are the requests' run IDs; runs the run IDs of the
	// workflows that scheduled them, as the activities see them.
	runIDs, runs []string
	fail         error
	// failSends is how many sends fail retryably (a relay that is down)
	// before one goes through.
	failSends int
	resolves  []notify.RecipientsRequest
	sends     []notify.NotifyRequest
}

func (n *notifications) resolve(_ context.Context, in notify.RecipientsRequest) (notify.MailRecipients, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.resolves = append(n.resolves, in)
	return notify.MailRecipients{To: []string{"owner@example.com"}, Unresolved: []string{"@ghost"}}, nil
}

func (n *notifications) activity(ctx context.Context, in notify.NotifyRequest) (notify.NotifyResult, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sends = append(n.sends, in)
	if len(n.sends) <= n.failSends {
		return notify.NotifyResult{}, errors.New("dial tcp 127.0.0.1:25: connection refused")
	}
	n.events = append(n.events, in.Event)
	n.states = append(n.states, in.Progress.State)
	n.runIDs = append(n.runIDs, in.RunID)
	n.runs = append(n.runs, activity.GetInfo(ctx).WorkflowExecution.RunID)
	if n.fail != nil {
		return notify.NotifyResult{}, n.fail
	}
	return notify.NotifyResult{MessageID: "<m@kiln>", To: in.Recipients.To}, nil
}

func (n *notifications) register(env *testsuite.TestWorkflowEnvironment) {
	env.RegisterActivityWithOptions(n.resolve, activity.RegisterOptions{Name: workflows.ActivityResolveRecipients})
	env.RegisterActivityWithOptions(n.activity, activity.RegisterOptions{Name: workflows.ActivityNotifyBuild})
}

func TestExactlyOneNotificationAndTheErrorIsKept(t *testing.T) {
	failIn := func(phase string) func(tekton.PipelineRunRequest) error {
		return func(q tekton.PipelineRunRequest) error {
			if q.Labels["kiln.dev/phase"] == phase {
				return failed("Failed")
			}
			return nil
		}
	}
	tests := []struct {
		name      string
		outcome   func(tekton.PipelineRunRequest) error
		block     string
		cancelAt  time.Duration
		timeout   time.Duration
		targets   []workflows.Target
		event     string
		errType   string
		mailFails bool
	}{
		{name: "base fails", outcome: failIn("base"), event: "Failed", errType: workflows.ErrTypePhaseFailed},
		{name: "packages fail", outcome: failIn("packages"), event: "Failed", errType: workflows.ErrTypePhaseFailed},
		{name: "an image fails", outcome: failIn("image"), event: "Failed", errType: workflows.ErrTypeFlavoursFailed},
		{name: "publish fails", outcome: failIn("publish"), targets: []workflows.Target{"build", "manifest", "publish"}, event: "Failed", errType: workflows.ErrTypePhaseFailed},
		{name: "cancelled", block: "image", cancelAt: time.Minute, event: "Cancelled"},
		// The deadline passes while the release waits at its approval gate.
		{name: "deadline", timeout: 2 * time.Hour, targets: []workflows.Target{"build", "manifest", "freeze-version", "release"}, event: "TimedOut", errType: workflows.ErrTypeBuildTimeout},
		{name: "mail fails, build error kept", outcome: failIn("base"), event: "Failed", errType: workflows.ErrTypePhaseFailed, mailFails: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{outcome: tt.outcome, block: tt.block}
			p := testPlan(2)
			p.Notify = true
			n := &notifications{}
			if tt.mailFails {
				n.fail = temporal.NewNonRetryableApplicationError("550 no such user", notify.ErrTypeMailRejected, nil)
			}
			env := newEnv(t, p, rec, n.register)
			if tt.cancelAt > 0 {
				go func() {
					for {
						rec.mu.Lock()
						running := rec.inFlight["image"]
						rec.mu.Unlock()
						if running > 0 {
							env.CancelWorkflow()
							return
						}
						time.Sleep(5 * time.Millisecond)
					}
				}()
			}
			in := request(flavours(2), tt.targets...)
			in.Timeout = tt.timeout
			env.ExecuteWorkflow(workflows.Build, in)
			err := env.GetWorkflowError()
			if tt.errType != "" {
				var appErr *temporal.ApplicationError
				if !errors.As(err, &appErr) || appErr.Type() != tt.errType {
					t.Errorf("build error = %v, want type %s", err, tt.errType)
				}
			} else if !temporal.IsCanceledError(err) {
				t.Errorf("build error = %v, want cancelled", err)
			}
			n.mu.Lock()
			defer n.mu.Unlock()
			var endings []string
			for _, e := range n.events {
				if e != workflows.EventApprovalRequested {
					endings = append(endings, e)
				}
			}
			if len(endings) != 1 || endings[0] != tt.event {
				t.Errorf("notifications = %v, want exactly one %s", n.events, tt.event)
			}
			pr := progressOf(t, env)
			want := "Sent"
			if tt.mailFails {
				want = "Failed"
			}
			if pr.Notification == nil || pr.Notification.State != want || pr.Notification.Event != tt.event {
				t.Errorf("progress.notification = %+v, want %s %s", pr.Notification, tt.event, want)
			}
		})
	}
}

func TestSuccessNotifiesOnlyReleases(t *testing.T) {
	for _, tt := range []struct {
		targets []workflows.Target
		want    int
	}{{nil, 0}, {[]workflows.Target{"build", "manifest", "freeze-version", "release"}, 1}} {
		rec := &recorder{}
		p := testPlan(2)
		p.Notify = true
		n := &notifications{}
		env := newEnv(t, p, rec, n.register)
		if tt.want == 1 {
			sendUpdate(env, time.Hour, workflows.UpdateApprove, workflows.Decision{By: "a"}, &updateResult{})
		}
		env.ExecuteWorkflow(workflows.Build, request(flavours(1), tt.targets...))
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		if tt.want == 1 {
			tt.want = 2 // the approval request, then the success
		}
		if len(n.events) != tt.want {
			t.Errorf("targets %v: notifications %v, want %d", tt.targets, n.events, tt.want)
		}
	}
}

func TestChatGoesWithTheMail(t *testing.T) {
	rec := &recorder{outcome: func(q tekton.PipelineRunRequest) error {
		if q.Labels["kiln.dev/phase"] == "base" {
			return failed("Failed")
		}
		return nil
	}}
	p := testPlan(2)
	p.Notify, p.NotifyChat = true, true
	n := &notifications{}
	var chats []string
	var mu sync.Mutex
	env := newEnv(t, p, rec, n.register, func(env *testsuite.TestWorkflowEnvironment) {
		env.RegisterActivityWithOptions(func(_ context.Context, in notify.NotifyRequest) error {
			mu.Lock()
			chats = append(chats, in.Event)
			mu.Unlock()
			return temporal.NewNonRetryableApplicationError("chat: 404 Not Found", notify.ErrTypeChatRejected, nil)
		}, activity.RegisterOptions{Name: workflows.ActivityNotifyChat})
	})
	env.ExecuteWorkflow(workflows.Build, request(flavours(1)))
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != workflows.ErrTypePhaseFailed {
		t.Fatalf("build error = %v", err)
	}
	pr := progressOf(t, env)
	if len(chats) != 1 || chats[0] != "Failed" || pr.Notification.State != "Sent" || !strings.Contains(pr.Notification.Chat, "404") {
		t.Errorf("chats %v, notification %+v", chats, pr.Notification)
	}
}

// TestNotificationCarriesTheRunID: the NotifyBuild request names the
// workflow run, from which the activity derives a Message-ID per run, so
// a re-run's mail is not deduplicated as the first run's (issue 12).
func TestNotificationCarriesTheRunID(t *testing.T) {
	rec := &recorder{outcome: func(q tekton.PipelineRunRequest) error {
		if q.Labels["kiln.dev/phase"] == "base" {
			return failed("Failed")
		}
		return nil
	}}
	p := testPlan(2)
	p.Notify = true
	n := &notifications{}
	env := newEnv(t, p, rec, n.register)
	env.ExecuteWorkflow(workflows.Build, request(flavours(1)))
	if env.GetWorkflowError() == nil {
		t.Fatal("the build succeeded; want it failed")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.runIDs) != 1 || n.runIDs[0] == "" || n.runIDs[0] != n.runs[0] {
		t.Errorf("requests' run IDs %q, want exactly one, the workflow's run ID %q", n.runIDs, n.runs)
	}
}

// TestUnknownFlavourSetFailsOnceAndNotifies: a request the webhook or a
// nightly sends with a flavour set the worker's file lacks fails the build
// at once, non-retryably, with one message that names the sets there are,
// and the failure is mailed like any other.
func TestUnknownFlavourSetFailsOnceAndNotifies(t *testing.T) {
	file, err := flavour.Parse([]byte("targets:\n- name: kvm\n  category: x\n  flavors:\n  - features: [gardener]\n    arch: amd64\n    build: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	var s testsuite.WorkflowTestSuite
	s.SetLogger(quietLogger)
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflow(workflows.Build)
	p := testPlan(1)
	p.Notify = true
	env.RegisterActivityWithOptions(plan.New(p, file).Plan, activity.RegisterOptions{Name: workflows.ActivityPlan})
	n := &notifications{}
	n.register(env)
	in := request(nil)
	in.FlavourSet = "nightlyy"
	env.ExecuteWorkflow(workflows.Build, in)
	err = env.GetWorkflowError()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != workflows.ErrTypeInvalidRequest || !appErr.NonRetryable() {
		t.Fatalf("build error = %v, want a non-retryable %s", err, workflows.ErrTypeInvalidRequest)
	}
	if msg := appErr.Error(); !strings.Contains(msg, `flavour set "nightlyy" not found; the file has all`) || strings.Count(msg, "not found") != 1 {
		t.Errorf("message = %q, want it once, naming the sets", msg)
	}
	if !slices.Equal(n.events, []string{workflows.EventFailed}) {
		t.Errorf("notifications = %v, want one Failed", n.events)
	}
}

// TestRecipientsResolvedOnceWhileTheSendRetries: while the relay is down,
// only NotifyBuild is retried; ResolveRecipients (which fetches the
// repository for CODEOWNERS) ran once, and every send carries its result
// (issue 13: each retry fetched the repository again).
func TestRecipientsResolvedOnceWhileTheSendRetries(t *testing.T) {
	rec := &recorder{outcome: func(q tekton.PipelineRunRequest) error {
		if q.Labels["kiln.dev/phase"] == "base" {
			return failed("Failed")
		}
		return nil
	}}
	p := testPlan(2)
	p.Notify = true
	n := &notifications{failSends: 4}
	env := newEnv(t, p, rec, n.register)
	in := request(flavours(1))
	in.ChangedPaths = []string{"features/_prod/pkg.include"}
	in.Recipients.Additional = []string{"ops@example.com"}
	env.ExecuteWorkflow(workflows.Build, in)
	if env.GetWorkflowError() == nil {
		t.Fatal("the build succeeded; want it failed")
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.resolves) != 1 {
		t.Fatalf("ResolveRecipients ran %d times, want once", len(n.resolves))
	}
	if r := n.resolves[0]; r.Repo != in.Repo || r.Commit != in.Commit || !slices.Equal(r.ChangedPaths, in.ChangedPaths) || !slices.Equal(r.Recipients.Additional, in.Recipients.Additional) {
		t.Errorf("ResolveRecipients got %+v, want the build's repo, commit, changed paths and recipients", r)
	}
	if len(n.sends) != 5 {
		t.Fatalf("NotifyBuild ran %d times, want 5 (4 failures, then the send)", len(n.sends))
	}
	for i, s := range n.sends {
		if s.Recipients == nil || !slices.Equal(s.Recipients.To, []string{"owner@example.com"}) || !slices.Equal(s.Recipients.Unresolved, []string{"@ghost"}) ||
			s.BuildID != n.sends[0].BuildID || s.RunID != n.sends[0].RunID || s.Event != n.sends[0].Event {
			t.Errorf("send %d: %+v, want the resolved recipients and the first send's identity", i, s)
		}
	}
	if pr := progressOf(t, env); pr.Notification == nil || pr.Notification.State != "Sent" {
		t.Errorf("notification = %+v, want Sent", pr.Notification)
	}
}
