package workflows_test

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/converter"
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
	if !slices.Equal(next.Done, []string{"build/main/a", "build/main/b"}) {
		t.Errorf("carried done = %v", next.Done)
	}
}
