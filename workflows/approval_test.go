package workflows_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/kiln-build/kiln/workflows"
)

func releaseRequest() workflows.BuildRequest {
	return request(flavours(2), "build", "manifest", "freeze-version", "release", "publish")
}

// update sends an update at a point in workflow time and records the
// outcome.
type updateResult struct {
	rejected error
	done     bool
}

func sendUpdate(env *testsuite.TestWorkflowEnvironment, at time.Duration, name string, d workflows.Decision, res *updateResult) {
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(name, fmt.Sprintf("%s-%v", name, at), &testsuite.TestUpdateCallback{
			OnAccept:   func() {},
			OnReject:   func(err error) { res.rejected = err },
			OnComplete: func(any, error) { res.done = true },
		}, d)
	}, at)
}

func TestApprovalApprove(t *testing.T) {
	rec := &recorder{}
	env := newEnv(t, testPlan(2), rec)
	var noBy, early, ok updateResult
	sendUpdate(env, 0, workflows.UpdateApprove, workflows.Decision{By: "alice"}, &early) // before the gate
	sendUpdate(env, time.Hour, workflows.UpdateApprove, workflows.Decision{}, &noBy)
	sendUpdate(env, 2*time.Hour, workflows.UpdateApprove, workflows.Decision{By: "alice", Comment: "ship it"}, &ok)
	env.ExecuteWorkflow(workflows.Build, releaseRequest())
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if early.rejected == nil || !strings.Contains(early.rejected.Error(), "not waiting for approval") {
		t.Errorf("approve before the gate: %v", early.rejected)
	}
	if noBy.rejected == nil || !strings.Contains(noBy.rejected.Error(), "by: the approver") {
		t.Errorf("approve without by: %v", noBy.rejected)
	}
	if !ok.done || ok.rejected != nil {
		t.Errorf("approve: %+v", ok)
	}
	p := progressOf(t, env)
	if a := p.Approval; a == nil || a.State != workflows.ApprovalApproved || a.By != "alice" || a.Comment != "ship it" || a.At.IsZero() {
		t.Errorf("approval = %+v", p.Approval)
	}
	// Publish ran after the approval, images before it.
	if got := rec.phases(); got[len(got)-1] != "publish" {
		t.Errorf("phases = %v, want publish last", got)
	}
}

func TestApprovalReject(t *testing.T) {
	rec := &recorder{}
	env := newEnv(t, testPlan(2), rec)
	var noReason, res updateResult
	sendUpdate(env, time.Hour, workflows.UpdateReject, workflows.Decision{By: "bob"}, &noReason)
	sendUpdate(env, 2*time.Hour, workflows.UpdateReject, workflows.Decision{By: "bob", Comment: "kernel regression"}, &res)
	env.ExecuteWorkflow(workflows.Build, releaseRequest())
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != workflows.ErrTypeRejected || !strings.Contains(appErr.Error(), "bob: kernel regression") {
		t.Fatalf("error = %v, want Rejected by bob", err)
	}
	if noReason.rejected == nil {
		t.Error("reject without a reason was accepted")
	}
	for _, p := range rec.phases() {
		if p == "publish" {
			t.Error("published a rejected release")
		}
	}
	if a := progressOf(t, env).Approval; a.State != workflows.ApprovalRejected || a.By != "bob" {
		t.Errorf("approval = %+v", a)
	}
}

func TestApprovalTimeout(t *testing.T) {
	rec := &recorder{}
	p := testPlan(2)
	p.ApprovalTimeout = 24 * time.Hour
	env := newEnv(t, p, rec)
	var late updateResult
	sendUpdate(env, 25*time.Hour, workflows.UpdateApprove, workflows.Decision{By: "carol"}, &late)
	env.ExecuteWorkflow(workflows.Build, releaseRequest())
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != workflows.ErrTypeApprovalTimeout {
		t.Fatalf("error = %v, want ApprovalTimeout", err)
	}
	if a := progressOf(t, env).Approval; a.State != workflows.ApprovalTimedOut || a.Deadline.Sub(a.Since) != 24*time.Hour {
		t.Errorf("approval = %+v", a)
	}
}

func TestNoGateWithoutRelease(t *testing.T) {
	rec := &recorder{}
	env := newEnv(t, testPlan(2), rec)
	env.ExecuteWorkflow(workflows.Build, request(flavours(1), "build", "manifest", "publish"))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if a := progressOf(t, env).Approval; a != nil {
		t.Errorf("approval = %+v for a build without release", a)
	}
}
