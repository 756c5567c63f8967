package workflows

import "time"

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
