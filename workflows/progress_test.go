package workflows

import (
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
)

// TestOneStateVocabulary: kiln list and kiln status name a build's state
// alike, from its execution status and its own recorded state.
func TestOneStateVocabulary(t *testing.T) {
	for _, c := range []struct {
		status    enumspb.WorkflowExecutionStatus
		own       string
		want      string
		notifying bool
	}{
		{enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, "", StateRunning, false},
		{enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, StateRunning, StateRunning, false},
		// Decided, and mailing while the relay is down.
		{enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, StateFailed, StateFailed, true},
		{enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, "", StateSucceeded, false},
		{enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, StateSucceeded, StateSucceeded, false},
		{enumspb.WORKFLOW_EXECUTION_STATUS_FAILED, StateCancelled, StateCancelled, false},
		{enumspb.WORKFLOW_EXECUTION_STATUS_FAILED, StateRunning, StateFailed, false},
		{enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED, StateRunning, StateCancelled, false},
		{enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED, StateRunning, StateTerminated, false},
		{enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT, StateRunning, StateTimedOut, false},
	} {
		got, notifying := ExecutionState(c.status, c.own)
		if got != c.want || notifying != c.notifying {
			t.Errorf("%v with %q = %s (notifying %v), want %s (%v)", c.status, c.own, got, notifying, c.want, c.notifying)
		}
	}
}
