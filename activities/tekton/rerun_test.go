package tekton_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/kiln-build/kiln/activities/tekton"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"go.temporal.io/sdk/temporal"
)

func TestUnitRerunFor(t *testing.T) {
	for _, tc := range []struct {
		class  string
		rerun  bool
		reason []string
	}{
		{"ran and failed", true, []string{
			string(pipelinev1.PipelineRunReasonFailed),
			string(pipelinev1.TaskRunReasonFailed),
			string(pipelinev1.TaskRunReasonStepFailed),
		}},
		{"timeout", true, []string{
			string(pipelinev1.PipelineRunReasonTimedOut),
			string(pipelinev1.PipelineRunReasonCouldntTimeOut),
			string(pipelinev1.TaskRunReasonTimedOut),
		}},
		{"infrastructure", true, []string{
			string(pipelinev1.TaskRunReasonImagePullFailed),
			"PullImageFailed",
			"ExceededResourceQuota",
			"ExceededNodeResources",
			string(pipelinev1.TaskRunReasonPodCreationFailed),
			string(pipelinev1.TaskRunReasonPodEvicted),
			string(pipelinev1.TaskRunReasonStepOOM),
			string(pipelinev1.TaskRunReasonSidecarOOM),
			string(pipelinev1.TaskRunReasonSidecarFailed),
			string(pipelinev1.TaskRunReasonInitContainerOOM),
			string(pipelinev1.TaskRunReasonInitContainerFailed),
			string(pipelinev1.TaskRunReasonStopSidecarFailed),
			"ReasonCouldntCreateOrUpdateAffinityAssistantStatefulSet",
		}},
		{"spec, validation, resolution", false, []string{
			string(pipelinev1.PipelineRunReasonFailedValidation),
			string(pipelinev1.PipelineRunReasonCouldntGetPipeline),
			string(pipelinev1.PipelineRunReasonCouldntGetTask),
			string(pipelinev1.PipelineRunReasonInvalidWorkspaceBinding),
			string(pipelinev1.PipelineRunReasonInvalidBindings),
			string(pipelinev1.PipelineRunReasonInvalidTaskRunSpec),
			string(pipelinev1.PipelineRunReasonParameterMissing),
			string(pipelinev1.PipelineRunReasonParameterTypeMismatch),
			string(pipelinev1.PipelineRunReasonObjectParameterMissKeys),
			string(pipelinev1.PipelineRunReasonParamArrayIndexingInvalid),
			string(pipelinev1.PipelineRunReasonInvalidTaskResultReference),
			string(pipelinev1.PipelineRunReasonInvalidPipelineResultReference),
			string(pipelinev1.PipelineRunReasonInvalidMatrixParameterTypes),
			string(pipelinev1.PipelineRunReasonRequiredWorkspaceMarkedOptional),
			string(pipelinev1.PipelineRunReasonInvalidGraph),
			string(pipelinev1.PipelineRunReasonResourceVerificationFailed),
			string(pipelinev1.PipelineRunReasonCreateRunFailed),
			string(pipelinev1.PipelineRunReasonCouldntGetPipelineResult),
			string(pipelinev1.PipelineRunReasonCELEvaluationFailed),
			string(pipelinev1.PipelineRunReasonInvalidParamValue),
			string(pipelinev1.TaskRunReasonFailedValidation),
			string(pipelinev1.TaskRunReasonTaskFailedValidation),
			string(pipelinev1.TaskRunReasonFailedResolution),
			string(pipelinev1.TaskRunReasonResultLargerThanAllowedLimit),
			string(pipelinev1.TaskRunReasonCreateContainerConfigError),
			"PodAdmissionFailed",
			"CouldntCreateWorkspacePVC",
		}},
		{"cancelled", false, []string{
			string(pipelinev1.PipelineRunReasonCancelled),
			string(pipelinev1.PipelineRunReasonCouldntCancel),
			string(pipelinev1.TaskRunReasonCancelled),
		}},
		{"not finished or not failed", false, []string{
			string(pipelinev1.PipelineRunReasonSuccessful),
			string(pipelinev1.PipelineRunReasonCompleted),
			string(pipelinev1.PipelineRunReasonRunning),
			string(pipelinev1.PipelineRunReasonPending),
			string(pipelinev1.TaskRunReasonFailureIgnored),
		}},
		{"kiln's own", false, []string{
			tekton.ErrTypeInvalidSpec, tekton.ErrTypeConflict, tekton.ErrTypeForbidden, tekton.ErrTypeDeleted,
		}},
		{"unknown", false, []string{"", "SomethingTektonAddsLater", "failed", "*errors.errorString"}},
	} {
		for _, r := range tc.reason {
			if got := tekton.RerunFor(r); got != tc.rerun {
				t.Errorf("%s: RerunFor(%q) = %v, want %v", tc.class, r, got, tc.rerun)
			}
		}
	}
}

func TestUnitRerunForError(t *testing.T) {
	failure := func(reason string, tasks ...string) error {
		f := tekton.Failure{Namespace: "builds", PipelineRun: "run", Reason: reason, Message: "m"}
		for i, r := range tasks {
			f.FailedTasks = append(f.FailedTasks, tekton.TaskState{Name: fmt.Sprintf("t%d", i), State: tekton.TaskFailed, Reason: r})
		}
		return temporal.NewNonRetryableApplicationError("pipelinerun builds/run "+reason, reason, nil, f)
	}
	for _, tc := range []struct {
		name  string
		err   error
		rerun bool
	}{
		{"nil", nil, false},
		{"plain error", errors.New("connection refused"), false},
		{"retryable application error", temporal.NewApplicationError("5xx", "InternalError"), false},
		{"Failed without details", temporal.NewNonRetryableApplicationError("failed", "Failed", nil), true},
		{"Failed without failed tasks", failure("Failed"), true},
		{"Failed: step failed", failure("Failed", "Failed"), true},
		{"Failed: StepFailed", failure("Failed", "StepFailed"), true},
		{"Failed: image pull", failure("Failed", "TaskRunImagePullFailed"), true},
		{"Failed: evicted beside a validation error", failure("Failed", "TaskRunValidationFailed", "PodEvicted"), true},
		{"Failed: only a validation error", failure("Failed", "TaskRunValidationFailed"), false},
		{"Failed: resolution error and a task Tekton cancelled", failure("Failed", "TaskRunResolutionFailed", "TaskRunCancelled"), false},
		{"Failed: only tasks Tekton cancelled on a tasks timeout", failure("Failed", "TaskRunCancelled", "TaskRunCancelled"), true},
		{"Failed: an ignored failure beside an unknown reason", failure("Failed", "FailureIgnored", "NewInTekton2"), false},
		{"Failed: only an ignored failure", failure("Failed", "FailureIgnored"), true},
		{"Failed: a task without a reason", failure("Failed", ""), true},
		{"PipelineRunTimeout", failure("PipelineRunTimeout", "TaskRunCancelled"), true},
		{"PipelineRunTimeout, tasks not consulted", failure("PipelineRunTimeout", "TaskRunValidationFailed"), true},
		{"PipelineValidationFailed", failure("PipelineValidationFailed"), false},
		{"CouldntGetPipeline", failure("CouldntGetPipeline"), false},
		{"InvalidWorkspaceBindings", failure("InvalidWorkspaceBindings"), false},
		{"Cancelled", failure("Cancelled", "TaskRunCancelled"), false},
		{"unknown reason", failure("NewInTekton2", "Failed"), false},
		{"InvalidSpec", temporal.NewNonRetryableApplicationError("spec.params: bad", tekton.ErrTypeInvalidSpec, nil), false},
		{"Conflict", temporal.NewNonRetryableApplicationError("not ours", tekton.ErrTypeConflict, nil), false},
		{"Forbidden", temporal.NewNonRetryableApplicationError("forbidden", tekton.ErrTypeForbidden, nil), false},
		{"Deleted", temporal.NewNonRetryableApplicationError("deleted", tekton.ErrTypeDeleted, nil), false},
		{"wrapped", fmt.Errorf("phase base: %w", failure("Failed", "Failed")), true},
		{"wrapped never", fmt.Errorf("phase base: %w", failure("CouldntGetTask")), false},
	} {
		if got := tekton.RerunForError(tc.err); got != tc.rerun {
			t.Errorf("%s: RerunForError(%v) = %v, want %v", tc.name, tc.err, got, tc.rerun)
		}
	}
}
