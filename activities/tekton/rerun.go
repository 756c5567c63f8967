package tekton

import (
	"errors"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"go.temporal.io/sdk/temporal"
)

// rerunReasons are the reasons, of a PipelineRun's or of a failed TaskRun's
// Succeeded condition, for which a fresh run of the same request may
// succeed: the pipeline ran and failed, timed out, or lost its pods to the
// cluster. Every other reason, and every reason Tekton adds in a later
// release, is left out on purpose: a bad spec, a reference that does not
// resolve or a cancellation fails the same way every time.
var rerunReasons = map[string]bool{
	// The pipeline ran and a task failed: a flaky test, a mirror that was
	// down. The failed tasks' reasons narrow it (RerunForError).
	// TaskRunReasonFailed is the same "Failed".
	string(pipelinev1.PipelineRunReasonFailed): true,
	string(pipelinev1.TaskRunReasonStepFailed): true,
	// Timeouts: a slow node or a stuck download. PipelineRunCouldntTimeOut
	// is a timeout whose TaskRuns could not all be stopped.
	string(pipelinev1.PipelineRunReasonTimedOut):               true,
	string(pipelinev1.PipelineRunReasonTimedOutRunningFinally): true,
	string(pipelinev1.PipelineRunReasonCouldntTimeOut):         true,
	string(pipelinev1.TaskRunReasonTimedOut):                   true,
	// Images that did not pull: a registry outage or rate limit.
	string(pipelinev1.TaskRunReasonImagePullFailed): true,
	reasonPullImageFailed:                           true,
	// Pods the cluster could not create, place or keep.
	reasonExceededResourceQuota:                             true,
	reasonExceededNodeResources:                             true,
	string(pipelinev1.TaskRunReasonPodCreationFailed):       true,
	string(pipelinev1.TaskRunReasonPodEvicted):              true,
	string(pipelinev1.TaskRunReasonStepOOM):                 true,
	string(pipelinev1.TaskRunReasonSidecarOOM):              true,
	string(pipelinev1.TaskRunReasonSidecarFailed):           true,
	string(pipelinev1.TaskRunReasonInitContainerOOM):        true,
	string(pipelinev1.TaskRunReasonInitContainerFailed):     true,
	string(pipelinev1.TaskRunReasonStopSidecarFailed):       true,
	reasonCouldntCreateOrUpdateAffinityAssistantStatefulSet: true,
}

// Reasons the Tekton controller declares outside its API package, in
// pkg/pod and pkg/reconciler/pipelinerun, which would pull the controller's
// dependencies into the worker; copied from Tekton v1.15.1.
const (
	reasonExceededResourceQuota = "ExceededResourceQuota"
	reasonExceededNodeResources = "ExceededNodeResources"
	reasonPullImageFailed       = "PullImageFailed"
	// The StatefulSet of a PipelineRun's affinity assistant could not be
	// created.
	reasonCouldntCreateOrUpdateAffinityAssistantStatefulSet = "ReasonCouldntCreateOrUpdateAffinityAssistantStatefulSet"
)

// RerunFor reports whether a PipelineRun that failed with reason, the
// reason of its Succeeded condition or of a failed TaskRun's, is worth a
// fresh run of the same request. It is an allow-list of infrastructure and
// flaky reasons: Failed, StepFailed, PipelineRunTimeout, TaskRunTimeout,
// TaskRunImagePullFailed, PullImageFailed, ExceededResourceQuota,
// ExceededNodeResources, PodCreationFailed, PodEvicted, the OOM and
// container failures, TaskRunStopSidecarFailed and the affinity assistant's
// StatefulSet. It is false for everything else:
//
//   - spec, validation and resolution errors, such as
//     PipelineValidationFailed, CouldntGetPipeline, CouldntGetTask,
//     InvalidWorkspaceBindings, ParameterMissing, TaskRunValidationFailed or
//     ResourceVerificationFailed;
//   - CreateRunFailed, which Tekton sets only when the API server refused a
//     child TaskRun as invalid (it retries other errors itself);
//   - CreateContainerConfigError and PodAdmissionFailed: a missing
//     ConfigMap or Secret, or a pod security policy, the same next time;
//   - Cancelled and TaskRunCancelled: someone stopped the run;
//   - kiln's own ErrTypeInvalidSpec, ErrTypeConflict, ErrTypeForbidden and
//     ErrTypeDeleted;
//   - reasons it does not know, including ones a later Tekton adds: a
//     fresh run is a deliberate choice, not a default.
func RerunFor(reason string) bool {
	return rerunReasons[reason]
}

// RerunForError reports whether err, as a workflow sees RunPipeline's error
// (an ActivityError wrapping an ApplicationError whose type is the reason),
// is a failed pipeline worth a fresh run: RerunFor its type. For the
// generic Failed, the failed tasks in the Failure details decide when they
// say why: a fresh run only if one of them failed for a reason RerunFor
// allows. Tasks that say nothing of the cause (no reason, FailureIgnored,
// or TaskRunCancelled, which inside a failed run means Tekton stopped the
// task on a timeout) are left out; when none are left, Failed stands.
// Any other error, such as a retryable one whose retries ran out, is
// false.
func RerunForError(err error) bool {
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || !RerunFor(appErr.Type()) {
		return false
	}
	if appErr.Type() != string(pipelinev1.PipelineRunReasonFailed) || !appErr.HasDetails() {
		return true
	}
	var f Failure
	if appErr.Details(&f) != nil {
		return true
	}
	told := false
	for _, t := range f.FailedTasks {
		switch t.Reason {
		case "", string(pipelinev1.TaskRunReasonFailureIgnored), string(pipelinev1.TaskRunReasonCancelled):
			continue
		}
		if RerunFor(t.Reason) {
			return true
		}
		told = true
	}
	return !told
}
