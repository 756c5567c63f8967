package workflows

import (
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
)

// States of builds, phases and flavours.
const (
	StatePending    = "Pending"
	StateRunning    = "Running"
	StateRetrying   = "Retrying"
	StateSucceeded  = "Succeeded"
	StateFailed     = "Failed"
	StateTestFailed = "TestFailed"
	StateSkipped    = "Skipped"
	StateCancelled  = "Cancelled"
	// StateTerminated and StateTimedOut are builds ended from outside
	// their code: terminated, or past Temporal's execution timeout.
	StateTerminated = "Terminated"
	StateTimedOut   = "TimedOut"
)

// Progress is a build's state, answered by the "progress" query and
// returned as the result.
type Progress struct {
	State    string         `json:"state"`
	Error    string         `json:"error,omitempty"`
	Phases   []PhaseState   `json:"phases"`
	Flavours []FlavourState `json:"flavours,omitempty"`
	// Approval is the release gate's state, once the build reaches it.
	Approval *Approval `json:"approval,omitempty"`
	// Resume is the operator gate's state, once something failed in a build
	// that waits on failure.
	Resume *ResumeState `json:"resume,omitempty"`
	// Notification is the outcome of the build's notification, if any.
	Notification *NotificationState `json:"notification,omitempty"`
	// ManifestSet is the key of the build's manifest set, once written.
	ManifestSet string `json:"manifestSet,omitempty"`
}

// PhaseState is one phase's (or one platform's publish) state.
type PhaseState struct {
	Name        string    `json:"name"`
	State       string    `json:"state,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	PipelineRun string    `json:"pipelineRun,omitempty"`
	Dashboard   string    `json:"dashboard,omitempty"`
	Attempt     int       `json:"attempt,omitempty"`
	Start       time.Time `json:"start,omitzero"`
	End         time.Time `json:"end,omitzero"`
	Error       string    `json:"error,omitempty"`
	// Logs maps each pipeline task to its archived log (s3:// URI), once
	// the run's logs are archived; LogsError says why they are not.
	Logs      map[string]string `json:"logs,omitempty"`
	LogsError string            `json:"logsError,omitempty"`
	// LogsAttempt is the attempt whose logs Logs holds: the archive runs
	// beside the next attempt or phase.
	LogsAttempt int `json:"logsAttempt,omitempty"`
	// Restarts counts the times the last attempt's run was started again
	// from scratch (the local executor, after a lost worker).
	Restarts int `json:"restarts,omitempty"`
}

// FlavourState is one flavour's state: its child workflow and its image
// and test phases.
type FlavourState struct {
	Name     string    `json:"name"`
	State    string    `json:"state"`
	Workflow string    `json:"workflow,omitempty"`
	Start    time.Time `json:"start,omitzero"`
	End      time.Time `json:"end,omitzero"`
	Error    string    `json:"error,omitempty"`
	// Reason says why a flavour was skipped.
	Reason string       `json:"reason,omitempty"`
	Phases []PhaseState `json:"phases,omitempty"`
	// Base is the flavour's base name as its build reported it,
	// <cname>-<arch>-<version>-<commit8>: its objects' and manifest's name.
	Base string `json:"base,omitempty"`
	// Manifest is the key of the flavour's release manifest; Reused is set
	// when it existed before this build, which then skipped the flavour.
	Manifest string `json:"manifest,omitempty"`
	Reused   bool   `json:"reused,omitempty"`
}

// MemoState is the memo key of a Build's own outcome (Succeeded, Failed,
// Cancelled), set when it is decided, before the build notifies.
const MemoState = "state"

// ExecutionState is a build's state in the one vocabulary that kiln list
// and kiln status share, from the execution's Temporal status and the
// build's own state (its MemoState, or Progress.State; "" if unknown). A
// build that has decided its outcome but still runs, mailing it, is that
// outcome with notifying set; an execution ended from outside its code is
// Terminated or TimedOut, whatever it had recorded.
func ExecutionState(status enumspb.WorkflowExecutionStatus, own string) (state string, notifying bool) {
	final := own == StateSucceeded || own == StateFailed || own == StateCancelled
	switch status {
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING:
		if final {
			return own, true
		}
		if own != "" {
			return own, false
		}
		return StateRunning, false
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED:
		return StateSucceeded, false
	case enumspb.WORKFLOW_EXECUTION_STATUS_FAILED:
		if final {
			return own, false
		}
		return StateFailed, false
	case enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED:
		return StateCancelled, false
	case enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED:
		return StateTerminated, false
	case enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT:
		return StateTimedOut, false
	}
	return strings.TrimPrefix(status.String(), "WORKFLOW_EXECUTION_STATUS_"), false
}
