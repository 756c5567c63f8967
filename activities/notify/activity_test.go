package notify

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/kiln-build/kiln/workflows"
)

// sent records the mails of a Sender.
type sent struct {
	mu    sync.Mutex
	mails []Mail
}

func (s *sent) Send(_ context.Context, m Mail) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mails = append(s.mails, m)
	return nil
}

// TestNotifyBuildMessageIDPerRun runs NotifyBuild as a worker would for two
// runs of one build, the second run twice (an activity retry): the runs'
// mails have two Message-IDs, the retry repeats its run's (issue 12: a
// re-run's failure mail reused the first run's and was deduplicated away).
func TestNotifyBuildMessageIDPerRun(t *testing.T) {
	tpl, err := LoadTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	s := &sent{}
	a, err := New(s, tpl, nil, Options{Domain: "kiln.test"})
	if err != nil {
		t.Fatal(err)
	}
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivity(a)
	req := func(runID string) NotifyRequest {
		return NotifyRequest{Event: EventFailed, BuildID: "build/main/1443.3", RunID: runID,
			Request:    workflows.BuildRequest{Repo: "https://example.com/gl.git", Branch: "main", Commit: "75df9f40"},
			Progress:   workflows.Progress{State: workflows.StateFailed, Error: "base failed"},
			Recipients: &MailRecipients{To: []string{"ops@example.com"}}}
	}
	var ids []string
	for _, runID := range []string{"run-1", "run-2", "run-2"} {
		v, err := env.ExecuteActivity(a.NotifyBuild, req(runID))
		if err != nil {
			t.Fatalf("%s: %v", runID, err)
		}
		var res NotifyResult
		if err := v.Get(&res); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.MessageID)
	}
	if len(s.mails) != 3 {
		t.Fatalf("%d mails sent, want 3", len(s.mails))
	}
	for i, m := range s.mails {
		if m.MessageID != ids[i] {
			t.Errorf("mail %d has Message-ID %s, the result says %s", i, m.MessageID, ids[i])
		}
	}
	if ids[0] == ids[1] {
		t.Errorf("two runs of one build both sent Message-ID %s, want two", ids[0])
	}
	if ids[1] != ids[2] {
		t.Errorf("one run sent %s, then %s on a retry, want the same", ids[1], ids[2])
	}
}

// resolveWorkflow runs ResolveRecipients as the Build workflow does:
// retried.
func resolveWorkflow(ctx workflow.Context, in RecipientsRequest) (MailRecipients, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 10 * time.Second, BackoffCoefficient: 2, MaximumAttempts: 10},
	})
	var out MailRecipients
	err := workflow.ExecuteActivity(ctx, workflows.ActivityResolveRecipients, in).Get(ctx, &out)
	return out, err
}

// TestResolveRecipients: CODEOWNERS is read at the build's commit (not its
// branch); trouble reading it is retried a few times, then the mail goes
// to the others with a note; a permanent error is not retried; with Only,
// CODEOWNERS is not read at all; with nobody at all, it fails for good.
func TestResolveRecipients(t *testing.T) {
	transient := errors.New("fetch commit: 503 Service Unavailable")
	permanent := temporal.NewNonRetryableApplicationError(`commit "75df9f40": want the full 40-hex hash`, "BadCommit", nil)
	tests := []struct {
		name       string
		read       error
		recipients workflows.Recipients
		reads      int
		to         []string
		note       string
		failed     bool
	}{
		{name: "owners and additional", reads: 1, recipients: workflows.Recipients{Additional: []string{"ops@example.com"}},
			to: []string{"maintainers@example.com", "ops@example.com"}},
		{name: "read fails for now: retried, then without", read: transient, reads: codeownersAttempts, recipients: workflows.Recipients{Additional: []string{"ops@example.com"}},
			to: []string{"ops@example.com"}, note: "CODEOWNERS not read: fetch commit: 503"},
		{name: "read fails for good: not retried", read: permanent, reads: 1, recipients: workflows.Recipients{Additional: []string{"ops@example.com"}},
			to: []string{"ops@example.com"}, note: "full 40-hex"},
		{name: "only: CODEOWNERS not read", reads: 0, recipients: workflows.Recipients{Only: []string{"rel@example.com"}}, to: []string{"rel@example.com"}},
		{name: "nobody", read: permanent, reads: 1, failed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var reads []string
			read := func(_ context.Context, repo, commit string) (string, error) {
				reads = append(reads, repo+"@"+commit)
				if tt.read != nil {
					return "", tt.read
				}
				return "* @gardenlinux/maintainers\n", nil
			}
			a, err := New(&sent{}, nil, read, Options{Handles: map[string]string{"@gardenlinux/maintainers": "maintainers@example.com"}})
			if err != nil {
				t.Fatal(err)
			}
			var suite testsuite.WorkflowTestSuite
			suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
			env := suite.NewTestWorkflowEnvironment()
			env.RegisterWorkflow(resolveWorkflow)
			env.RegisterActivityWithOptions(a.ResolveRecipients, activity.RegisterOptions{Name: workflows.ActivityResolveRecipients})
			commit := "4f1c2e9d8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e"
			env.ExecuteWorkflow(resolveWorkflow, RecipientsRequest{Repo: "https://example.com/gl.git", Commit: commit, Recipients: tt.recipients})
			err = env.GetWorkflowError()
			var appErr *temporal.ApplicationError
			if tt.failed {
				if !errors.As(err, &appErr) || appErr.Type() != ErrTypeMailRejected || !strings.Contains(err.Error(), "nobody to notify") {
					t.Errorf("error = %v, want nobody to notify", err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if len(reads) != tt.reads || (tt.reads > 0 && reads[0] != "https://example.com/gl.git@"+commit) {
				t.Errorf("CODEOWNERS reads %v, want %d at the commit", reads, tt.reads)
			}
			if tt.failed {
				return
			}
			var out MailRecipients
			if err := env.GetWorkflowResult(&out); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(out.To, tt.to) {
				t.Errorf("to = %v, want %v", out.To, tt.to)
			}
			if note := strings.Join(out.Unresolved, "; "); (tt.note == "") != (note == "") || !strings.Contains(note, tt.note) {
				t.Errorf("unresolved = %q, want a note with %q", out.Unresolved, tt.note)
			}
		})
	}
}
