package kubestack

import (
	"context"
	"fmt"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/util/retry"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"
)

// Simulator plays Tekton's controller for tests of the API tier: it writes
// the statuses Tekton would write, creating TaskRuns for the tasks it names.
// It talks to the API server with its own client, so its requests are not
// counted against the code under test.
type Simulator struct {
	Client versioned.Interface
}

// NewSimulator returns a Simulator with its own client for s.
func (s *Stack) NewSimulator() *Simulator {
	return &Simulator{Client: versioned.NewForConfigOrDie(s.RESTConfig())}
}

// TaskOutcome is one pipeline task's state for Simulator.Set.
type TaskOutcome struct {
	Name    string
	Status  corev1.ConditionStatus // True, False, or Unknown (running)
	Reason  string
	Message string
}

// Run describes the PipelineRun status to write.
type Run struct {
	Status  corev1.ConditionStatus // Unknown: running
	Reason  string
	Message string
	Tasks   []TaskOutcome
	Results map[string]string
	Skipped []string
}

// Set writes run's status to the named PipelineRun, creating or updating a
// TaskRun (labelled as Tekton labels them) for every task, and returns when
// the API server has accepted the PipelineRun's status.
func (sim *Simulator) Set(ctx context.Context, ns, name string, run Run) error {
	pr, err := sim.Client.TektonV1().PipelineRuns(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	var refs []pipelinev1.ChildStatusReference
	for _, t := range run.Tasks {
		trName := name + "-" + t.Name
		if err := sim.setTaskRun(ctx, pr, trName, t); err != nil {
			return fmt.Errorf("taskrun %s: %w", trName, err)
		}
		refs = append(refs, pipelinev1.ChildStatusReference{
			TypeMeta:         runtime.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "TaskRun"},
			Name:             trName,
			PipelineTaskName: t.Name,
		})
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pr, err := sim.Client.TektonV1().PipelineRuns(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		if pr.Status.StartTime == nil {
			pr.Status.StartTime = &now
		}
		pr.Status.Conditions = duckv1.Conditions{{
			Type: apis.ConditionSucceeded, Status: run.Status,
			Reason: run.Reason, Message: run.Message,
			LastTransitionTime: apis.VolatileTime{Inner: now},
		}}
		if run.Status != corev1.ConditionUnknown {
			pr.Status.CompletionTime = &now
		}
		pr.Status.ChildReferences = refs
		pr.Status.Results = nil
		for k, v := range run.Results {
			pr.Status.Results = append(pr.Status.Results, pipelinev1.PipelineRunResult{Name: k, Value: *pipelinev1.NewStructuredValues(v)})
		}
		pr.Status.SkippedTasks = nil
		for _, s := range run.Skipped {
			pr.Status.SkippedTasks = append(pr.Status.SkippedTasks, pipelinev1.SkippedTask{Name: s, Reason: pipelinev1.WhenExpressionsSkip})
		}
		_, err = sim.Client.TektonV1().PipelineRuns(ns).UpdateStatus(ctx, pr, metav1.UpdateOptions{})
		return err
	})
}

func (sim *Simulator) setTaskRun(ctx context.Context, pr *pipelinev1.PipelineRun, name string, t TaskOutcome) error {
	trs := sim.Client.TektonV1().TaskRuns(pr.Namespace)
	tr, err := trs.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		labels := map[string]string{"tekton.dev/pipelineRun": pr.Name, "tekton.dev/pipelineTask": t.Name}
		for k, v := range pr.Labels {
			labels[k] = v
		}
		tr, err = trs.Create(ctx, &pipelinev1.TaskRun{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: pr.Namespace, Labels: labels},
			Spec:       pipelinev1.TaskRunSpec{TaskRef: &pipelinev1.TaskRef{Name: t.Name}},
		}, metav1.CreateOptions{})
	}
	if err != nil {
		return err
	}
	now := metav1.Now()
	tr.Status.Conditions = duckv1.Conditions{{
		Type: apis.ConditionSucceeded, Status: t.Status, Reason: t.Reason, Message: t.Message,
		LastTransitionTime: apis.VolatileTime{Inner: now},
	}}
	tr.Status.StartTime = &now
	_, err = trs.UpdateStatus(ctx, tr, metav1.UpdateOptions{})
	return err
}

// WaitCreated polls until the named PipelineRun exists and returns it.
func (sim *Simulator) WaitCreated(ctx context.Context, ns, name string) (*pipelinev1.PipelineRun, error) {
	var pr *pipelinev1.PipelineRun
	err := poll(ctx, 20*time.Millisecond, func() (bool, error) {
		var err error
		pr, err = sim.Client.TektonV1().PipelineRuns(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	return pr, err
}

// CreateNamespace creates a namespace for one test.
func (s *Stack) CreateNamespace(ctx context.Context, name string) error {
	_, err := s.Kube().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}
