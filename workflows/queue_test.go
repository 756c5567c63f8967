package workflows_test

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/kiln-build/kiln/workflows"
)

func queueEnv(t *testing.T) (*testsuite.TestWorkflowEnvironment, *[]string) {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(quietLogger)
	env := s.NewTestWorkflowEnvironment()
	env.SetTestTimeout(20 * time.Second)
	env.RegisterWorkflow(workflows.Queue)
	var mu sync.Mutex
	var built []string
	// Each build takes an hour of workflow time.
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, in workflows.BuildRequest) error {
		mu.Lock()
		built = append(built, workflows.BuildID(in))
		mu.Unlock()
		return workflow.Sleep(ctx, time.Hour)
	}, workflow.RegisterOptions{Name: "Build"})
	return env, &built
}

func req(commit string) workflows.BuildRequest {
	return workflows.BuildRequest{Repo: "r", Branch: "main", Commit: commit, FlavourSet: "all"}
}

func TestQueueCoalescesAndRunsOneAtATime(t *testing.T) {
	env, built := queueEnv(t)
	signal := func(at time.Duration, r workflows.BuildRequest) {
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(workflows.SignalBuild, r) }, at)
	}
	signal(time.Minute, req("a"))
	signal(2*time.Minute, req("a")) // running: coalesced
	signal(3*time.Minute, req("b"))
	signal(4*time.Minute, req("b")) // pending: coalesced
	signal(5*time.Minute, req("c"))
	var mid workflows.QueueState
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(workflows.QueryQueue)
		if err == nil {
			err = v.Get(&mid)
		}
		if err != nil {
			t.Error(err)
		}
	}, 6*time.Minute)
	signal(5*time.Hour, req("a")) // done: coalesced
	env.RegisterDelayedCallback(env.CancelWorkflow, 6*time.Hour)
	env.ExecuteWorkflow(workflows.Queue, workflows.QueueInput{Branch: "main"})
	if want := []string{"build/main/a", "build/main/b", "build/main/c"}; !slices.Equal(*built, want) {
		t.Errorf("built %v, want %v", *built, want)
	}
	if !slices.Equal(mid.Running, []string{"build/main/a"}) || !slices.Equal(mid.Pending, []string{"build/main/b", "build/main/c"}) {
		t.Errorf("queue at 6m = %+v, want a running, b and c pending", mid)
	}
}

func TestQueueRunsUpToConcurrency(t *testing.T) {
	env, built := queueEnv(t)
	for i, c := range []string{"a", "b", "c"} {
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(workflows.SignalBuild, req(c)) }, time.Duration(i+1)*time.Second)
	}
	var mid workflows.QueueState
	env.RegisterDelayedCallback(func() {
		v, _ := env.QueryWorkflow(workflows.QueryQueue)
		_ = v.Get(&mid)
	}, time.Minute)
	env.RegisterDelayedCallback(env.CancelWorkflow, 5*time.Hour)
	env.ExecuteWorkflow(workflows.Queue, workflows.QueueInput{Branch: "main", Concurrency: 2})
	if len(mid.Running) != 2 || len(mid.Pending) != 1 || len(*built) != 3 {
		t.Errorf("at 1m: %+v; built %v", mid, *built)
	}
}

func TestQueueContinuesAsNewWhenIdleAndLong(t *testing.T) {
	env, _ := queueEnv(t)
	for i, c := range []string{"a", "b"} {
		env.RegisterDelayedCallback(func() { env.SignalWorkflow(workflows.SignalBuild, req(c)) }, time.Duration(i+1)*time.Second)
	}
	// The history grows long while builds run; the queue waits until it is
	// idle to continue as new.
	env.RegisterDelayedCallback(func() { env.SetCurrentHistoryLength(25) }, 10*time.Second)
	env.ExecuteWorkflow(workflows.Queue, workflows.QueueInput{Branch: "main", MaxEvents: 20})
	err := env.GetWorkflowError()
	var can *workflow.ContinueAsNewError
	if !errors.As(err, &can) {
		t.Fatalf("error = %v, want continue-as-new", err)
	}
	// The new run carries the finished builds, so late duplicates are
	// still coalesced.
	var next workflows.QueueInput
	if err := converter.GetDefaultDataConverter().FromPayloads(can.Input, &next); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(next.Done, []workflows.DoneBuild{{ID: "build/main/a", State: "Succeeded"}, {ID: "build/main/b", State: "Succeeded"}}) {
		t.Errorf("carried done = %v", next.Done)
	}
}

// TestRetriggerOfAFailedBuildRunsAgain: a trigger of a build that failed or
// was cancelled runs it again; one of a build that succeeded does not. The
// enqueue update says which happened.
func TestRetriggerOfAFailedBuildRunsAgain(t *testing.T) {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(quietLogger)
	env := s.NewTestWorkflowEnvironment()
	env.SetTestTimeout(20 * time.Second)
	env.RegisterWorkflow(workflows.Queue)
	var built []string
	runs := map[string]int{}
	// a fails the first time and succeeds the second; b is cancelled the
	// first time; c succeeds.
	env.RegisterWorkflowWithOptions(func(ctx workflow.Context, in workflows.BuildRequest) error {
		id := workflows.BuildID(in)
		built = append(built, id)
		runs[id]++
		if err := workflow.Sleep(ctx, time.Hour); err != nil {
			return err
		}
		switch {
		case id == "build/main/a" && runs[id] == 1:
			return errors.New("image phase failed")
		case id == "build/main/b" && runs[id] == 1:
			return temporal.NewCanceledError()
		}
		return nil
	}, workflow.RegisterOptions{Name: "Build"})
	answers := map[string]workflows.EnqueueResult{}
	enqueue := func(at time.Duration, name, commit string) {
		env.RegisterDelayedCallback(func() {
			env.UpdateWorkflow(workflows.UpdateEnqueue, name, &testsuite.TestUpdateCallback{
				OnReject: func(err error) { t.Errorf("%s rejected: %v", name, err) },
				OnComplete: func(v any, err error) {
					if err != nil {
						t.Errorf("%s: %v", name, err)
						return
					}
					answers[name] = v.(workflows.EnqueueResult)
				},
			}, workflows.EnqueueRequest{Build: req(commit)})
		}, at)
	}
	enqueue(time.Minute, "a1", "a")
	enqueue(2*time.Minute, "b1", "b")
	enqueue(3*time.Minute, "c1", "c")
	enqueue(4*time.Minute, "b-pending", "b")
	// By 5h all three have run once: a failed, b was cancelled, c succeeded.
	enqueue(5*time.Hour, "a2", "a")
	enqueue(5*time.Hour+time.Minute, "b2", "b")
	enqueue(5*time.Hour+2*time.Minute, "c2", "c")
	enqueue(5*time.Hour+3*time.Minute, "a-running", "a")
	env.RegisterDelayedCallback(env.CancelWorkflow, 10*time.Hour)
	env.ExecuteWorkflow(workflows.Queue, workflows.QueueInput{Branch: "main"})

	want := []string{"build/main/a", "build/main/b", "build/main/c", "build/main/a", "build/main/b"}
	if !slices.Equal(built, want) {
		t.Errorf("built %v, want %v", built, want)
	}
	for name, w := range map[string]workflows.EnqueueResult{
		"a1":        {BuildID: "build/main/a", Outcome: workflows.EnqueueQueued, Position: 1},
		"b1":        {BuildID: "build/main/b", Outcome: workflows.EnqueueQueued, Position: 1, Running: 1},
		"c1":        {BuildID: "build/main/c", Outcome: workflows.EnqueueQueued, Position: 2, Running: 1},
		"b-pending": {BuildID: "build/main/b", Outcome: workflows.EnqueuePending, Position: 1, Running: 1},
		"a-running": {BuildID: "build/main/a", Outcome: workflows.EnqueueRunning, Running: 1},
		"a2":        {BuildID: "build/main/a", Outcome: workflows.EnqueueQueued, Position: 1, Rerun: "failed"},
		"b2":        {BuildID: "build/main/b", Outcome: workflows.EnqueueQueued, Position: 1, Running: 1, Rerun: "was cancelled"},
		"c2":        {BuildID: "build/main/c", Outcome: workflows.EnqueueSucceeded, Running: 1},
	} {
		if got := answers[name]; got != w {
			t.Errorf("%s: answer %+v, want %+v", name, got, w)
		}
	}
}
