package notify

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"

	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/testsuite"

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
			Request:  workflows.BuildRequest{Repo: "https://example.com/gl.git", Branch: "main", Commit: "75df9f40", Recipients: workflows.Recipients{Only: []string{"ops@example.com"}}},
			Progress: workflows.Progress{State: workflows.StateFailed, Error: "base failed"}}
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
