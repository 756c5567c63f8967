package tekton

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"go.temporal.io/sdk/temporal"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// buildPipelineRun turns a request into the PipelineRun to create, and
// checks both: the request's own fields, then the run with Tekton's own
// validation, so that an invalid spec fails before anything is created, even
// on clusters where no Tekton admission webhook answers.
func buildPipelineRun(ctx context.Context, in PipelineRunRequest) (*pipelinev1.PipelineRun, error) {
	var problems []error
	if in.Namespace == "" {
		problems = append(problems, errors.New("namespace: required"))
	} else if errs := validation.IsDNS1123Label(in.Namespace); len(errs) > 0 {
		problems = append(problems, fmt.Errorf("namespace: %q: %s", in.Namespace, errs[0]))
	}
	pr, err := NewPipelineRun(in)
	if err != nil || len(problems) > 0 {
		return nil, invalid("invalid pipelinerun request", errors.Join(append(problems, err)...))
	}
	// Validate a defaulted copy, as Tekton's webhook would; create the
	// original, so the cluster applies its own defaults.
	check := pr.DeepCopy()
	check.SetDefaults(ctx)
	if ferr := check.Validate(ctx); ferr != nil {
		return nil, invalid(fmt.Sprintf("pipelinerun %s/%s is invalid", pr.Namespace, pr.Name), ferr)
	}
	return pr, nil
}

// NewPipelineRun turns a request into its PipelineRun: the name derived
// from the key (RunName), the request's labels and annotations with kiln's
// identity (LabelManagedBy, LabelKey, LabelSpec, AnnotationKey). It checks
// the request's own fields, naming every problem; validating the run is
// the caller's. Both executors build their runs with it.
func NewPipelineRun(in PipelineRunRequest) (*pipelinev1.PipelineRun, error) {
	var problems []error
	if in.Key == "" {
		problems = append(problems, errors.New("key: required; derive it from the workflow ID, phase, flavour and attempt"))
	}
	if (in.PipelineRef == "") == (in.PipelineSpec == nil) {
		problems = append(problems, errors.New("pipelineRef, pipelineSpec: exactly one is required"))
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	spec, err := specLabel(in)
	if err != nil {
		return nil, err
	}
	labels := maps.Clone(in.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelManagedBy] = ManagedByValue
	labels[LabelKey] = keyLabel(in.Key)
	labels[LabelSpec] = spec
	annotations := maps.Clone(in.Annotations)
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[AnnotationKey] = in.Key
	pr := &pipelinev1.PipelineRun{
		TypeMeta: metav1.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "PipelineRun"},
		ObjectMeta: metav1.ObjectMeta{
			Name: RunName(in.Key), Namespace: in.Namespace,
			Labels: labels, Annotations: annotations,
		},
		Spec: pipelinev1.PipelineRunSpec{
			PipelineSpec: in.PipelineSpec,
			Params:       in.Params,
			Workspaces:   in.Workspaces,
			Timeouts:     in.Timeouts,
			TaskRunSpecs: in.TaskRunSpecs,
			TaskRunTemplate: pipelinev1.PipelineTaskRunTemplate{
				ServiceAccountName: in.ServiceAccountName,
			},
		},
	}
	if in.PipelineRef != "" {
		pr.Spec.PipelineRef = &pipelinev1.PipelineRef{Name: in.PipelineRef}
	}
	return pr, nil
}

func invalid(msg string, cause error) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %v", msg, cause), ErrTypeInvalidSpec, nil)
}

// classify sorts an API-server error into permanent (non-retryable, typed)
// and transient. Unknown errors are retryable.
func classify(op string, err error) error {
	switch {
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
		// The API server's message names the field, e.g.
		// `metadata.labels: Invalid value: "a b": ...`.
		return invalid(op, err)
	case apierrors.IsNotFound(err):
		return invalid(op, fmt.Errorf("%w (does the namespace exist?)", err))
	case apierrors.IsForbidden(err) && !isQuota(err):
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s: %v; grant the worker's ServiceAccount the verbs in deploy/ (create, get, list, watch, patch on pipelineruns)", op, err),
			ErrTypeForbidden, nil)
	default:
		return fmt.Errorf("%s: %w", op, err)
	}
}

// isQuota reports a ResourceQuota refusal, which clears as runs finish.
func isQuota(err error) bool {
	var se *apierrors.StatusError
	return errors.As(err, &se) && se.ErrStatus.Reason == metav1.StatusReasonForbidden &&
		strings.Contains(se.ErrStatus.Message, "exceeded quota")
}
