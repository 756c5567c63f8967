package workflows_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/activities/tekton"
	"github.com/kiln-build/kiln/workflows"
)

// TestNightlyKeepsFailWhenWorkerWaits runs a scheduled build on workers
// whose config says onFailure: wait, and fails its base phase: the build
// fails at once, as the schedule's onFailure (default fail) says, instead
// of waiting the resume window for an operator while the next nights are
// skipped.
func TestNightlyKeepsFailWhenWorkerWaits(t *testing.T) {
	for _, tc := range []struct {
		name      string
		onFailure string // the schedule entry's
		wait      bool
	}{
		{"default", "", false},
		{"fail", workflows.OnFailureFail, false},
		{"wait", workflows.OnFailureWait, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testPlan(2)
			p.OnFailure, p.ResumeWindow = workflows.OnFailureWait, 24*time.Hour
			rec := &recorder{outcome: func(q tekton.PipelineRunRequest) error {
				if q.Labels["kiln.dev/phase"] == "base" {
					return failed("Failed")
				}
				return nil
			}}
			env := newEnv(t, p, rec)
			env.RegisterWorkflow(workflows.Scheduled)
			start := env.Now()
			env.ExecuteWorkflow(workflows.Scheduled, workflows.ScheduledRequest{Template: request(flavours(2), "build"), OnFailure: tc.onFailure})
			err := env.GetWorkflowError()
			waited := env.Now().Sub(start)
			if err == nil {
				t.Fatal("the scheduled build succeeded; its base phase failed")
			}
			if !tc.wait {
				if waited >= time.Hour || strings.Contains(err.Error(), "aborted") {
					t.Errorf("the build waited %v for an operator and ended: %v; want it failed at once", waited, err)
				}
				if !strings.Contains(err.Error(), "base") {
					t.Errorf("error %v does not name the failed phase", err)
				}
				return
			}
			if waited < 24*time.Hour || !strings.Contains(err.Error(), "no decision within 24h") {
				t.Errorf("onFailure: wait in the schedule: waited %v, error %v; want the resume window used", waited, err)
			}
		})
	}
}
