package local

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"

	"github.com/kiln-build/kiln/activities/tekton"
)

// Run states recorded in RunStatus.State.
const (
	// StateRunning: the run is in progress, or the process running it
	// died (a later Run with the same name starts it again).
	StateRunning = "Running"
	// StateDone: the run finished; Reason says how.
	StateDone = "Done"
	// StateInterrupted: the run was stopped without an outcome (the worker
	// was shutting down); a later Run with the same name starts it again.
	StateInterrupted = "Interrupted"
)

// RunStatus is a run's record, kept in <run dir>/status.json and rewritten
// as tasks change state, so that a crashed worker can see what ran and a
// re-run of a finished run returns this record instead of running again
// (unless it replaces a run that did not succeed, RunOptions.Replace).
type RunStatus struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	UID       string `json:"uid"`
	// Pipeline is the referenced Pipeline's name, or the run's name for an
	// inline spec (Tekton's $(context.pipeline.name)).
	Pipeline string `json:"pipeline"`
	// SpecHash identifies the PipelineRun spec that produced this run; a
	// run with the same name and another spec is a conflict.
	SpecHash string `json:"specHash"`
	PID      int    `json:"pid"`
	State    string `json:"state"`
	// Attempt numbers the run's attempts from 1: a run restarted after
	// its worker died, or replaced after it failed, gets a new attempt,
	// and the earlier one is kept (Runner.Attempts). 0 in records written
	// before attempts were counted.
	Attempt int `json:"attempt,omitempty"`
	// Restarts lists the earlier attempts that were set aside, oldest
	// first.
	Restarts []Restart `json:"restarts,omitempty"`
	// Reason and Message are Tekton's PipelineRun Succeeded condition:
	// Succeeded, Completed, Failed, PipelineRunTimeout, Cancelled,
	// PipelineValidationFailed or CouldntGetPipelineResult.
	Reason         string                         `json:"reason,omitempty"`
	Message        string                         `json:"message,omitempty"`
	StartTime      time.Time                      `json:"startTime"`
	CompletionTime *time.Time                     `json:"completionTime,omitempty"`
	Tasks          []TaskStatus                   `json:"tasks"`
	Results        []pipelinev1.PipelineRunResult `json:"results,omitempty"`
}

// TaskStatus is one pipeline task's record.
type TaskStatus struct {
	Name    string `json:"name"`
	Finally bool   `json:"finally,omitempty"`
	// TaskRun is the name Tekton would give the TaskRun; empty while the
	// task is pending and for skipped tasks.
	TaskRun string `json:"taskRun,omitempty"`
	// State is one of the tekton.Task* states.
	State string `json:"state"`
	// Reason is the TaskRun's reason (Succeeded, Failed, TaskRunTimeout,
	// TaskRunCancelled, FailureIgnored, TaskRunValidationFailed) or, for a
	// skipped task, Tekton's skipping reason.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// RetryCount is the number of retries made ($(context.task.retry-count)
	// of the last attempt).
	RetryCount     int                        `json:"retryCount,omitempty"`
	StartTime      *time.Time                 `json:"startTime,omitempty"`
	CompletionTime *time.Time                 `json:"completionTime,omitempty"`
	Results        []pipelinev1.TaskRunResult `json:"results,omitempty"`
	Steps          []StepStatus               `json:"steps,omitempty"`
}

// StepStatus is one step's record, for the last attempt of its task.
type StepStatus struct {
	Name string `json:"name"`
	// State is Succeeded, Failed, Running, Skipped (not run because an
	// earlier step failed or the task stopped) or Pending.
	State string `json:"state"`
	// ExitCode is set once the step's process exited. A step killed by a
	// signal has 128+signal.
	ExitCode *int `json:"exitCode,omitempty"`
	// Log is the step's log file, relative to the run directory.
	Log     string `json:"log,omitempty"`
	Message string `json:"message,omitempty"`
}

// Succeeded reports whether the run finished with Tekton's Succeeded
// condition True (reason Succeeded or Completed).
func (s RunStatus) Succeeded() bool {
	return s.State == StateDone && (s.Reason == string(pipelinev1.PipelineRunReasonSuccessful) ||
		s.Reason == string(pipelinev1.PipelineRunReasonCompleted))
}

// Progress returns the run as the cluster backend heartbeats it.
func (s RunStatus) Progress() tekton.Progress {
	p := tekton.Progress{Namespace: s.Namespace, PipelineRun: s.Name, Reason: s.Reason}
	for _, t := range s.Tasks {
		p.Tasks = append(p.Tasks, t.state())
	}
	if p.Reason == "" {
		p.Reason = string(pipelinev1.PipelineRunReasonRunning)
	}
	return p
}

func (t TaskStatus) state() tekton.TaskState {
	return tekton.TaskState{Name: t.Name, TaskRun: t.TaskRun, State: t.State, Reason: t.Reason, Message: t.Message}
}

// readStatus reads a run's status.json; it reports os.ErrNotExist when the
// run never started.
func readStatus(dir string) (RunStatus, error) {
	var s RunStatus
	b, err := os.ReadFile(filepath.Join(dir, statusFile))
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("read %s: %w", filepath.Join(dir, statusFile), err)
	}
	return s, nil
}

// writeStatus replaces status.json atomically (write and rename). It does
// not fsync: a crash may lose the last update, which only makes a re-run
// start the run again.
func writeStatus(dir string, s *RunStatus) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	tmp := filepath.Join(dir, statusFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, statusFile)); err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	return nil
}
