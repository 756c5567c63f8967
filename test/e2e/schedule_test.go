//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kiln-build/kiln/test/kubestack"
	"github.com/kiln-build/kiln/workflows"
)

// runKiln runs bin/kiln against the e2e Temporal server and returns its
// output and error.
func runKiln(t *testing.T, args ...string) (string, error) {
	t.Helper()
	kiln, err := kubestack.Tool("kiln")
	if err != nil {
		t.Fatalf("%v: make test builds bin/kiln before this tier", err)
	}
	cmd := exec.Command(kiln, args...)
	cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS="+env.temporal.FrontendHostPort())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// kilnCLI runs bin/kiln, which must succeed, and returns its output.
func kilnCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runKiln(t, args...)
	if err != nil {
		t.Fatalf("kiln %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// gitRepo makes a real repository with one commit on main; commit adds one.
func gitRepo(t *testing.T) (dir string, commit func() string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "os.git")
	git := func(args ...string) string {
		out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if out, err := exec.Command("git", "init", "-q", "-b", "main", dir).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	commit = func() string {
		git("-c", "user.name=kiln", "-c", "user.email=kiln@example.com", "commit", "-q", "--allow-empty", "-m", "change")
		return git("rev-parse", "HEAD")
	}
	commit()
	return dir, commit
}

func TestScheduleApplyTriggerBackfill(t *testing.T) {
	s := newSuite(t)
	runWorker(t, buildConfig(t, s.ns, ""), s.queue)
	repo, commit := gitRepo(t)
	id := "nightly-" + s.ns
	file := filepath.Join(t.TempDir(), "schedules.yaml")
	if err := os.WriteFile(file, []byte(fmt.Sprintf(`
schedules:
- id: %s
  note: e2e nightly
  cron: ["0 2 * * *"]
  timeZone: Europe/Berlin
  overlap: allow-all
  onlyIfChanged: true
  taskQueue: %s
  build: {repo: %q, branch: main, flavourSet: testing, targets: [build]}
`, id, s.queue, repo)), 0o644); err != nil {
		t.Fatal(err)
	}

	out := kilnCLI(t, "schedule", "apply", "-f", file, "--dry-run")
	if !strings.Contains(out, "+ create "+id) || !strings.Contains(out, "(dry run)") {
		t.Fatalf("dry run:\n%s", out)
	}
	out = kilnCLI(t, "schedule", "apply", "-f", file)
	if !strings.Contains(out, "1 changes applied") {
		t.Fatalf("apply:\n%s", out)
	}
	out = kilnCLI(t, "schedule", "apply", "-f", file)
	if !strings.Contains(out, "= unchanged "+id) || !strings.Contains(out, "0 changes") {
		t.Fatalf("second apply is not a no-op:\n%s", out)
	}
	t.Cleanup(func() { kilnCLI(t, "schedule", "delete", id) })

	// Trigger: the head commit is resolved from the real repository and
	// built.
	head := commit()
	kilnCLI(t, "schedule", "trigger", id)
	waitBuild(t, "build/main/"+head)

	// Backfill two nights: the branch has not moved, so both skip, and say
	// so; then it moves, and a backfilled night builds the new commit.
	kilnCLI(t, "schedule", "backfill", id, "--from", "2026-11-01T00:00:00Z", "--to", "2026-11-02T12:00:00Z")
	skipped := waitScheduled(t, id, 3, func(r workflows.ScheduledResult) bool { return r.Skipped })
	if skipped < 2 {
		t.Errorf("%d skipped runs, want the 2 backfilled nights", skipped)
	}
	if list := kilnCLI(t, "list", "--limit", "100"); !strings.Contains(list, "Skipped: build/main/"+head+" succeeded on ") {
		t.Errorf("kiln list does not show the skip:\n%s", list)
	}
	moved := commit()
	kilnCLI(t, "schedule", "backfill", id, "--from", "2026-11-03T00:00:00Z", "--to", "2026-11-03T12:00:00Z")
	waitBuild(t, "build/main/"+moved)
	desc := kilnCLI(t, "schedule", "describe", id)
	if !strings.Contains(desc, "e2e nightly") || !strings.Contains(desc, "4 taken") {
		t.Errorf("describe:\n%s", desc)
	}
}

// waitBuild waits until the build with this ID has succeeded.
func waitBuild(t *testing.T, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := env.client.DescribeWorkflowExecution(ctx, id, "")
		return err == nil, nil
	})
	if err != nil {
		// Say why: what the scheduled runs did.
		resp, _ := env.client.ListWorkflow(context.Background(), &workflowservice.ListWorkflowExecutionsRequest{Query: "WorkflowType = 'Scheduled'"})
		for _, e := range resp.GetExecutions() {
			err := env.client.GetWorkflow(context.Background(), e.Execution.WorkflowId, e.Execution.RunId).Get(context.Background(), nil)
			t.Logf("scheduled run %s: %s %v", e.Execution.WorkflowId, e.Status, err)
		}
		t.Fatalf("build %s never started: %v", id, err)
	}
	if err := env.client.GetWorkflow(ctx, id, "").Get(ctx, nil); err != nil {
		t.Fatalf("build %s: %v", id, err)
	}
}

// waitScheduled waits until at least n Scheduled runs of the schedule have
// closed, and returns how many of them match.
func waitScheduled(t *testing.T, scheduleID string, n int, match func(workflows.ScheduledResult) bool) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	matched := 0
	err := wait.PollUntilContextTimeout(ctx, 300*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		resp, err := env.client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Query: fmt.Sprintf("TemporalScheduledById = '%s' AND ExecutionStatus != 'Running'", scheduleID),
		})
		if err != nil {
			return false, nil
		}
		if len(resp.Executions) < n {
			return false, nil
		}
		matched = 0
		for _, e := range resp.Executions {
			var r workflows.ScheduledResult
			if err := env.client.GetWorkflow(ctx, e.Execution.WorkflowId, e.Execution.RunId).Get(ctx, &r); err == nil && match(r) {
				matched++
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("fewer than %d scheduled runs closed: %v", n, err)
	}
	return matched
}

// TestTriggerQueuesAndCoalesces drives kiln trigger against the real
// server and worker: it says where a build was queued, that a second
// trigger was coalesced, that a succeeded build is not queued again, and
// that a build whose run was terminated is queued and runs again.
func TestTriggerQueuesAndCoalesces(t *testing.T) {
	s := newSuite(t)
	// Image pods hold until released, so the second trigger finds the
	// build running and the terminate lands mid-build.
	runWorker(t, buildConfig(t, s.ns, `    labels: {kiln.test/outcome: hold}`), s.queue)
	repo, commit := gitRepo(t)
	head := commit()
	branch := "main" // the repository's branch; build IDs carry the commit
	args := []string{"trigger", "--repo", repo, "--branch", branch, "--flavour-set", "testing", "--task-queue", s.queue}
	id := "build/main/" + head
	out := kilnCLI(t, args...)
	if !strings.Contains(out, "queued "+id+" at position 1 on queue/main") {
		t.Fatalf("trigger:\n%s", out)
	}
	if out := kilnCLI(t, args...); !strings.Contains(out, "coalesced with the ") || !strings.Contains(out, id) {
		t.Errorf("second trigger:\n%s\nwant coalesced with %s", out, id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	releaseAll(ctx, t, s.ns, id)
	waitBuild(t, id) // until it ends, and it must succeed
	// The queue learns of the build's end just after the build ends.
	q := waitQueueIdle(t, branch)
	n := 0
	for _, d := range q.Done {
		if d.ID == id && d.State == "Succeeded" {
			n++
		}
	}
	if n != 1 || len(q.Pending) != 0 {
		t.Errorf("queue = %+v, want %s done once", q, id)
	}
	if out := kilnCLI(t, args...); !strings.Contains(out, "build "+id+" already succeeded") {
		t.Errorf("trigger of a succeeded build:\n%s", out)
	}

	// A build whose run is terminated runs again on the next trigger.
	next := commit()
	nid := "build/main/" + next
	kilnCLI(t, args...)
	waitImageRuns(t, s.ns, nid, 1)
	if err := env.client.TerminateWorkflow(ctx, nid, "", "e2e: stop it"); err != nil {
		t.Fatal(err)
	}
	releaseAll(ctx, t, s.ns, nid)
	waitQueueIdle(t, branch)
	out = kilnCLI(t, args...)
	if !strings.Contains(out, "queued "+nid+" at position 1") || !strings.Contains(out, "it was terminated before and runs again") {
		t.Errorf("trigger after terminate:\n%s", out)
	}
	if err := env.client.GetWorkflow(ctx, nid, "").Get(ctx, nil); err != nil {
		t.Errorf("the re-triggered build %s: %v", nid, err)
	}
	if err := env.client.TerminateWorkflow(ctx, workflows.QueueID(branch), "", "test done"); err != nil {
		t.Fatal(err)
	}
}

// waitQueueIdle waits until the branch's queue runs nothing.
func waitQueueIdle(t *testing.T, branch string) workflows.QueueState {
	t.Helper()
	var q workflows.QueueState
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		v, err := env.client.QueryWorkflow(ctx, workflows.QueueID(branch), "", workflows.QueryQueue)
		if err != nil {
			return false, nil
		}
		if err := v.Get(&q); err != nil {
			return false, err
		}
		return len(q.Running) == 0, nil
	})
	if err != nil {
		t.Fatalf("queue %s still runs %v: %v", branch, q.Running, err)
	}
	return q
}
