package workflows_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/kiln-build/kiln/activities/tekton"
	"github.com/kiln-build/kiln/workflows"
)

func sendResume(env *testsuite.TestWorkflowEnvironment, at time.Duration, name string, d workflows.ResumeDecision, rejected *error) {
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(name, fmt.Sprintf("%s-%v", name, at), &testsuite.TestUpdateCallback{
			OnAccept: func() {}, OnReject: func(err error) {
				if rejected != nil {
					*rejected = err
				}
			}, OnComplete: func(any, error) {},
		}, d)
	}, at)
}

// failOnce fails the image pipeline of the named flavour in the first round
// only: the PipelineRun keys of a retry round carry /r2.
func failOnce(flavourName string) func(tekton.PipelineRunRequest) error {
	return func(q tekton.PipelineRunRequest) error {
		if q.Labels["kiln.dev/flavour"] == flavourName && q.Labels["kiln.dev/phase"] == "image" && !strings.Contains(q.Key, "/r2/") {
			return failed("Failed")
		}
		return nil
	}
}

func TestRetryOneFailedFlavourLeavesTheOthers(t *testing.T) {
	fl := flavours(3)
	bad := fl[1].Name()
	rec := &recorder{outcome: failOnce(bad)}
	env := newEnv(t, testPlan(3), rec)
	in := request(fl, "build", "manifest", "publish")
	in.OnFailure = workflows.OnFailureWait
	var early, wrong, noBy error
	sendResume(env, 0, workflows.UpdateRetry, workflows.ResumeDecision{By: "ops"}, &early)
	sendResume(env, time.Hour, workflows.UpdateRetry, workflows.ResumeDecision{By: "ops", Flavour: fl[0].Name()}, &wrong)
	sendResume(env, 2*time.Hour, workflows.UpdateRetry, workflows.ResumeDecision{Flavour: bad}, &noBy)
	sendResume(env, 3*time.Hour, workflows.UpdateRetry, workflows.ResumeDecision{By: "ops", Flavour: bad}, nil)
	env.ExecuteWorkflow(workflows.Build, in)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if early == nil || wrong == nil || !strings.Contains(wrong.Error(), "has not failed") || noBy == nil {
		t.Errorf("validators: early %v, wrong flavour %v, no by %v", early, wrong, noBy)
	}
	// Each completed flavour's image ran once; the failed one twice, the
	// second time under a fresh key.
	images := map[string][]string{}
	for _, q := range rec.reqs {
		if q.Labels["kiln.dev/phase"] == "image" {
			images[q.Labels["kiln.dev/flavour"]] = append(images[q.Labels["kiln.dev/flavour"]], q.Key)
		}
	}
	if len(images[fl[0].Name()]) != 1 || len(images[fl[2].Name()]) != 1 || len(images[bad]) != 2 || !strings.Contains(images[bad][1], "/r2/") {
		t.Errorf("image runs = %v", images)
	}
	p := progressOf(t, env)
	if p.State != workflows.StateSucceeded || p.Resume == nil || len(p.Resume.Decisions) != 1 || p.Resume.Decisions[0].By != "ops" {
		t.Errorf("progress: %s, resume %+v", p.State, p.Resume)
	}
	if !slices.Contains(rec.phases(), "publish") {
		t.Error("not published after the retry")
	}
}

func TestSkipAndAbort(t *testing.T) {
	fl := flavours(2)
	bad := fl[0].Name()
	always := func(q tekton.PipelineRunRequest) error {
		if q.Labels["kiln.dev/flavour"] == bad && q.Labels["kiln.dev/phase"] == "image" {
			return failed("Failed")
		}
		return nil
	}
	t.Run("skip", func(t *testing.T) {
		rec := &recorder{outcome: always}
		env := newEnv(t, testPlan(2), rec)
		in := request(fl, "build")
		in.OnFailure = workflows.OnFailureWait
		sendResume(env, time.Hour, workflows.UpdateSkip, workflows.ResumeDecision{By: "ops", Flavour: bad}, nil)
		env.ExecuteWorkflow(workflows.Build, in)
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		if f := progressOf(t, env).Flavours[0]; f.Name != bad || f.State != workflows.StateSkipped || !strings.Contains(f.Error, "skipped by ops") {
			t.Errorf("skipped flavour = %+v", f)
		}
	})
	t.Run("skip refused in a release", func(t *testing.T) {
		rec := &recorder{outcome: always}
		env := newEnv(t, testPlan(2), rec)
		in := request(fl, "build", "manifest", "freeze-version", "release")
		in.OnFailure = workflows.OnFailureWait
		var refused error
		sendResume(env, time.Hour, workflows.UpdateSkip, workflows.ResumeDecision{By: "ops", Flavour: bad}, &refused)
		sendResume(env, 2*time.Hour, workflows.UpdateAbort, workflows.ResumeDecision{By: "ops", Reason: "needs a fix"}, nil)
		env.ExecuteWorkflow(workflows.Build, in)
		if refused == nil || !strings.Contains(refused.Error(), "cannot be skipped") {
			t.Errorf("skip in a release: %v", refused)
		}
		var appErr *temporal.ApplicationError
		if err := env.GetWorkflowError(); !errors.As(err, &appErr) || !strings.Contains(appErr.Error(), "aborted by ops: needs a fix") {
			t.Errorf("error = %v, want the abort", err)
		}
	})
	t.Run("window passes", func(t *testing.T) {
		rec := &recorder{outcome: always}
		p := testPlan(2)
		p.ResumeWindow = time.Hour
		env := newEnv(t, p, rec)
		in := request(fl, "build")
		in.OnFailure = workflows.OnFailureWait
		env.ExecuteWorkflow(workflows.Build, in)
		if err := env.GetWorkflowError(); err == nil || !strings.Contains(err.Error(), "no decision within 1h0m0s") {
			t.Errorf("error = %v", err)
		}
	})
}

func TestRetryFailedPhase(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	rec := &recorder{outcome: func(q tekton.PipelineRunRequest) error {
		if q.Labels["kiln.dev/phase"] != "packages" {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			return failed("Failed")
		}
		return nil
	}}
	env := newEnv(t, testPlan(2), rec)
	in := request(flavours(1), "build")
	in.OnFailure = workflows.OnFailureWait
	var wrongPhase error
	sendResume(env, time.Hour, workflows.UpdateRetry, workflows.ResumeDecision{By: "ops", Phase: "base"}, &wrongPhase)
	sendResume(env, 2*time.Hour, workflows.UpdateRetry, workflows.ResumeDecision{By: "ops", Phase: "packages"}, nil)
	env.ExecuteWorkflow(workflows.Build, in)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if wrongPhase == nil {
		t.Error("retry of a phase that did not fail was accepted")
	}
	if got := rec.phases(); !slices.Equal(got, []string{"base", "packages", "packages", "image"}) {
		t.Errorf("phases = %v: base must not run again", got)
	}
}
