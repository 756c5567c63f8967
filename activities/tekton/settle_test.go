package tekton

import (
	"context"
	"testing"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"
)

// TestFinishedRunNamesItsFailedTaskWhenTheCacheLags: the PipelineRun's
// failure can reach the watch before its TaskRun's; the result still names
// the task that failed, read from the API server (a CI run once saw
// "failed tasks = []").
func TestFinishedRunNamesItsFailedTaskWhenTheCacheLags(t *testing.T) {
	tr := &pipelinev1.TaskRun{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "run-build"}}
	tr.Status.Status = duckv1.Status{Conditions: duckv1.Conditions{{
		Type: apis.ConditionSucceeded, Status: corev1.ConditionFalse, Reason: "Failed", Message: "step build exited 1",
	}}}
	a := &Activities{client: fake.NewSimpleClientset(tr)}
	p := Progress{Tasks: []TaskState{
		{Name: "fetch", TaskRun: "run-fetch", State: TaskSucceeded},
		{Name: "build", TaskRun: "run-build", State: TaskRunning}, // the cache's view
		{Name: "gone", TaskRun: "run-gone", State: TaskRunning},   // not on the server: left as is
	}}
	a.settleTasks(context.Background(), "ns", &p)
	if got := p.Tasks[1]; got.State != TaskFailed || got.Message != "step build exited 1" {
		t.Errorf("build = %+v, want Failed with its message", got)
	}
	if p.Tasks[0].State != TaskSucceeded || p.Tasks[2].State != TaskRunning {
		t.Errorf("tasks = %+v", p.Tasks)
	}
}
