package tekton

import (
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// Error types of the non-retryable ApplicationErrors the activities return,
// besides Tekton's own PipelineRun reasons (see FailureReasons).
const (
	// ErrTypeInvalidSpec: the request or the PipelineRun it produced is
	// invalid. The message names the field.
	ErrTypeInvalidSpec = "InvalidSpec"
	// ErrTypeConflict: a PipelineRun with the derived name exists but is not
	// this request's (another key, other content, or not managed by kiln).
	ErrTypeConflict = "PipelineRunConflict"
	// ErrTypeForbidden: the API server refused the worker's credentials.
	ErrTypeForbidden = "Forbidden"
	// ErrTypeDeleted: the PipelineRun disappeared while it was awaited.
	ErrTypeDeleted = "PipelineRunDeleted"
)

// PipelineRunRequest is the input of RunPipeline: everything needed to
// create one PipelineRun. It holds no secrets; credentials reach pipelines
// through the ServiceAccount and Kubernetes Secrets it names.
type PipelineRunRequest struct {
	// Namespace of the PipelineRun. Required.
	Namespace string `json:"namespace"`
	// Key identifies the run: the same key gives the same PipelineRun name,
	// so retries adopt rather than duplicate. Build it from the workflow ID,
	// phase, flavour and attempt, never from a run ID or a random value.
	// Required.
	Key string `json:"key"`
	// PipelineRef names a Pipeline in Namespace. Exactly one of PipelineRef
	// and PipelineSpec is required.
	PipelineRef string `json:"pipelineRef,omitempty"`
	// PipelineSpec is an inline pipeline, typically read from a file by the
	// caller.
	PipelineSpec *pipelinev1.PipelineSpec `json:"pipelineSpec,omitempty"`
	// Params are the PipelineRun's params (string, array or object values).
	Params pipelinev1.Params `json:"params,omitempty"`
	// Workspaces bind the pipeline's workspaces: emptyDir, an existing
	// persistentVolumeClaim, or a volumeClaimTemplate.
	Workspaces []pipelinev1.WorkspaceBinding `json:"workspaces,omitempty"`
	// ServiceAccountName runs the pipeline's pods. Optional: default is the
	// namespace's "default" ServiceAccount.
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// Timeouts bound the pipeline, its tasks and its finally tasks. Optional:
	// default is Tekton's (one hour for the pipeline).
	Timeouts *pipelinev1.TimeoutFields `json:"timeouts,omitempty"`
	// TaskRunSpecs override per-task settings such as pod templates,
	// ServiceAccounts or metadata. Optional.
	TaskRunSpecs []pipelinev1.PipelineTaskRunSpec `json:"taskRunSpecs,omitempty"`
	// Labels are added to the PipelineRun (and by Tekton to its TaskRuns and
	// Pods), typically the build and phase identity. Keys under kiln.dev/ set
	// by the activity win.
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations are added to the PipelineRun.
	Annotations map[string]string `json:"annotations,omitempty"`
}

// TaskState is one pipeline task's state as Tekton reports it.
type TaskState struct {
	// Name is the pipeline task's name.
	Name string `json:"name"`
	// TaskRun is the TaskRun's name; empty for a skipped task.
	TaskRun string `json:"taskRun,omitempty"`
	// State is Pending, Running, Succeeded, Failed or Skipped.
	State string `json:"state"`
	// Reason and Message come from the TaskRun's Succeeded condition, or from
	// the skip reason.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// Task states.
const (
	TaskPending   = "Pending"
	TaskRunning   = "Running"
	TaskSucceeded = "Succeeded"
	TaskFailed    = "Failed"
	TaskSkipped   = "Skipped"
)

// Progress is what RunPipeline heartbeats: enough to re-attach after a
// worker restart and to show where a long run is.
type Progress struct {
	Namespace   string      `json:"namespace"`
	PipelineRun string      `json:"pipelineRun"`
	Dashboard   string      `json:"dashboard,omitempty"`
	Reason      string      `json:"reason,omitempty"`
	Tasks       []TaskState `json:"tasks,omitempty"`
}

// Summary counts the tasks in each state, for log lines and progress bars.
func (p Progress) Summary() map[string]int {
	m := map[string]int{}
	for _, t := range p.Tasks {
		m[t.State]++
	}
	return m
}

// PipelineRunResult is the outcome of a PipelineRun that succeeded.
type PipelineRunResult struct {
	Namespace   string `json:"namespace"`
	PipelineRun string `json:"pipelineRun"`
	Dashboard   string `json:"dashboard,omitempty"`
	// Adopted is true when the run existed before this attempt created it.
	Adopted bool `json:"adopted,omitempty"`
	// Results are the PipelineRun's status.results.
	Results        []pipelinev1.PipelineRunResult `json:"results,omitempty"`
	Tasks          []TaskState                    `json:"tasks,omitempty"`
	StartTime      time.Time                      `json:"startTime"`
	CompletionTime time.Time                      `json:"completionTime"`
	Duration       time.Duration                  `json:"duration"`
	// Restarts counts the times the run was started again from scratch
	// (the local executor: after its worker was lost, or to replace a
	// failed run of an earlier execution); the earlier attempts are kept.
	Restarts int `json:"restarts,omitempty"`
}

// Result returns the string value of the named pipeline result; array and
// object results are returned as JSON.
func (r PipelineRunResult) Result(name string) (string, bool) {
	for _, res := range r.Results {
		if res.Name != name {
			continue
		}
		if res.Value.Type == pipelinev1.ParamTypeString {
			return res.Value.StringVal, true
		}
		b, err := res.Value.MarshalJSON()
		if err != nil {
			return "", false
		}
		return string(b), true
	}
	return "", false
}

// Failure is the details payload of the error RunPipeline returns for a
// PipelineRun whose Succeeded condition is False.
type Failure struct {
	Namespace   string      `json:"namespace"`
	PipelineRun string      `json:"pipelineRun"`
	Dashboard   string      `json:"dashboard,omitempty"`
	Reason      string      `json:"reason"`
	Message     string      `json:"message"`
	FailedTasks []TaskState `json:"failedTasks,omitempty"`
}

// CancelRequest is the input of CancelPipelineRun.
type CancelRequest struct {
	Namespace   string `json:"namespace"`
	PipelineRun string `json:"pipelineRun"`
	// Mode is Cancelled, CancelledRunFinally or StoppedRunFinally. Optional:
	// default is the activities' configured mode.
	Mode pipelinev1.PipelineRunSpecStatus `json:"mode,omitempty"`
}
