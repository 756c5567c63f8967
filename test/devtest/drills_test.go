//go:build e2e

package devtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/activities/local"
	"github.com/kiln-build/kiln/test/smtptest"
	"github.com/kiln-build/kiln/workflows"
)

// TestDrillTwoWorkersOneQueue is issue 12's drill of two local workers on
// one task queue, each with its own local.dir, sharing S3: every run's
// logs are archived from the worker that ran it, and `kiln logs` with one
// worker's config prints every run's logs (the other worker's from the
// archive) and exits 0. Before the runs' activities went to the worker
// that ran them (WorkerQueue), ArchiveLogs went to either worker, and the
// one without the run failed, non-retryable (6 of 16 runs unarchived when
// this drill ran against that code), and kiln logs exited 0 all the same.
func TestDrillTwoWorkersOneQueue(t *testing.T) {
	s := startDrillStack(t)
	a := s.startWorker("worker-a", s.workerConfig("worker-a", nil))
	b := s.startWorker("worker-b", s.workerConfig("worker-b", nil))
	s.waitPollers(2)

	start := time.Now()
	id, out, err := s.run("two.1", "--target", "build", "--target", "manifest", "--target", "tests", "--param", "delay=1")
	if err != nil {
		t.Fatalf("kiln run: %v\n%s", err, out)
	}
	t.Logf("the build took %v", time.Since(start).Round(time.Second))
	p := s.progress(id)
	if p.State != workflows.StateSucceeded {
		t.Fatalf("build %s: %s %s", id, p.State, p.Error)
	}
	runs := checkArchived(t, p)

	// The work was shared: each worker ran some of the runs, and each run
	// is in exactly one worker's directory.
	ranOn := map[string]*drillWorker{}
	count := map[*drillWorker]int{}
	for _, r := range runs {
		for _, w := range []*drillWorker{a, b} {
			st, err := local.ReadStatus(w.dir, r.PipelineRun)
			switch {
			case errors.Is(err, fs.ErrNotExist):
				continue
			case err != nil:
				t.Fatal(err)
			case st.State != local.StateDone:
				t.Errorf("%s on %s: %s, want %s", r.PipelineRun, w.name, st.State, local.StateDone)
			}
			if prev := ranOn[r.PipelineRun]; prev != nil {
				t.Errorf("%s ran on %s and on %s", r.PipelineRun, prev.name, w.name)
			}
			ranOn[r.PipelineRun] = w
			count[w]++
		}
		if ranOn[r.PipelineRun] == nil {
			t.Errorf("%s %s ran on neither worker", r.title, r.PipelineRun)
		}
	}
	t.Logf("%d runs: %d on %s, %d on %s", len(runs), count[a], a.name, count[b], b.name)
	if count[a] == 0 || count[b] == 0 {
		t.Fatalf("one worker ran every run (%s %d, %s %d): the drill needs both", a.name, count[a], b.name, count[b])
	}

	// kiln logs with worker a's config: a's runs from its directory, b's
	// from the archive, every run's and task's logs printed, exit 0.
	logs, notes, err := s.kiln("logs", id, "--config", a.config)
	if err != nil {
		t.Fatalf("kiln logs %s --config %s: %v\nstderr:\n%s\nstdout:\n%s", id, a.config, err, notes, logs)
	}
	for _, r := range runs {
		name := r.title + " " + r.PipelineRun
		source := "local logs in " + a.dir
		if ranOn[r.PipelineRun] == b {
			source = "archived logs"
		}
		if !strings.Contains(notes, "kiln: "+name+": "+source) {
			t.Errorf("kiln logs does not say %q for %s:\n%s", source, name, notes)
		}
		for task := range r.Logs {
			if !strings.Contains(logs, "=== "+name+" task "+task+" ===\n==> step-") {
				t.Errorf("kiln logs lacks the steps of %s task %s", name, task)
			}
		}
		flavour, _ := strings.CutPrefix(r.title, workflows.PhaseImage+"/")
		if r.Name == workflows.PhaseImage && !strings.Contains(logs, "built "+flavour+" as ") {
			t.Errorf("kiln logs lacks the image step's output of %s", flavour)
		}
	}
	if strings.Contains(logs, "kiln: no ") {
		t.Errorf("kiln logs reports missing logs:\n%s", logs)
	}
}

// TestDrillRerunFailureMail is issue 12's drill of a failed build run
// again with the same workflow ID: each run's failure mail has its own
// Message-ID. Before, the Message-ID hashed the build ID and the event
// only, and mail systems deduplicating on it could drop the re-run's.
func TestDrillRerunFailureMail(t *testing.T) {
	s := startDrillStack(t)
	s.startWorker("worker", s.workerConfig("worker", nil))
	s.waitPollers(1)

	type failure struct{ runID, messageID, subject string }
	var failures []failure
	for i := range 2 {
		// `sleep x` fails every image step.
		id, out, err := s.run("fail.1", "--target", "build", "--param", "delay=x")
		if err == nil {
			t.Fatalf("run %d of %s succeeded, want it failed:\n%s", i+1, id, out)
		}
		desc, err := s.client.DescribeWorkflowExecution(context.Background(), id, "")
		if err != nil {
			t.Fatal(err)
		}
		info := desc.GetWorkflowExecutionInfo()
		if st := info.GetStatus().String(); st != "Failed" {
			t.Fatalf("run %d of %s: %s, want Failed", i+1, id, st)
		}
		var msgs []mailHeader
		waitUntil(t, time.Minute, fmt.Sprintf("the failure mail of run %d", i+1), func() bool {
			msgs = mailHeaders(t, s.smtp.Messages())
			return len(msgs) == i+1
		})
		m := msgs[i]
		if !strings.Contains(m.subject, "Failed") {
			t.Errorf("run %d's mail: subject %q, want a failure", i+1, m.subject)
		}
		failures = append(failures, failure{info.GetExecution().GetRunId(), m.messageID, m.subject})
	}
	t.Logf("runs %s and %s: Message-IDs %s and %s", failures[0].runID, failures[1].runID, failures[0].messageID, failures[1].messageID)
	if failures[0].runID == failures[1].runID {
		t.Fatalf("both failures are of run %s: the build did not run again", failures[0].runID)
	}
	if failures[0].messageID == "" || failures[0].messageID == failures[1].messageID {
		t.Errorf("the re-run's failure mail has the Message-ID %q of the first run's: a mail system deduplicating on it drops it", failures[1].messageID)
	}
}

type mailHeader struct{ messageID, subject string }

// mailHeaders reads the Message-ID and the decoded subject of each mail.
func mailHeaders(t *testing.T, msgs []smtptest.Message) []mailHeader {
	t.Helper()
	var out []mailHeader
	for _, m := range msgs {
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatalf("a mail the sink received: %v\n%s", err, m.Data)
		}
		subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
		if err != nil {
			subject = msg.Header.Get("Subject")
		}
		out = append(out, mailHeader{messageID: msg.Header.Get("Message-Id"), subject: subject})
	}
	return out
}
