//go:build e2e

package kubestack_test

import (
	"context"
	"testing"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"knative.dev/pkg/apis"

	"github.com/kiln-build/kiln/test/kubestack"
)

// TestTekton runs PipelineRuns through the real Tekton controller, with kwok
// as the kubelet. Run it in a private network namespace:
//
//	go test -c -tags e2e -o /tmp/kubestack.test ./test/kubestack
//	test/netns-run /tmp/kubestack.test -test.v -test.run Tekton
func TestTekton(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := kubestack.Start(ctx, kubestack.Options{Dir: t.TempDir()})
	kubestack.SkipWithoutTools(t, err)
	if err != nil {
		t.Fatalf("start kube stack: %v", err)
	}
	t.Cleanup(s.Stop)
	start := time.Now()
	if err := s.StartTekton(ctx); err != nil {
		kubestack.SkipWithoutTools(t, err)
		t.Fatalf("start Tekton tier: %v", err)
	}
	t.Logf("StartTekton took %v", time.Since(start).Round(time.Millisecond))

	const ns = "tekton-test"
	if err := s.PrepareNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	tk := s.Tekton()
	kube := s.Kube()

	t.Run("Succeeds", func(t *testing.T) {
		pr := pipelineRun("chain", ns, task("fetch"), task("build", "fetch"), task("publish", "build"))
		start := time.Now()
		pr = run(ctx, t, tk, pr)
		t.Logf("3-task PipelineRun: create to done in %v", time.Since(start).Round(time.Millisecond))
		if !pr.IsSuccessful() {
			t.Fatalf("Succeeded = %+v, want True", pr.Status.GetCondition(apis.ConditionSucceeded))
		}
		sel := metav1.ListOptions{LabelSelector: "tekton.dev/pipelineRun=" + pr.Name}
		trs, err := tk.TektonV1().TaskRuns(ns).List(ctx, sel)
		if err != nil {
			t.Fatal(err)
		}
		if len(trs.Items) != 3 {
			t.Errorf("got %d TaskRuns, want 3", len(trs.Items))
		}
		for _, tr := range trs.Items {
			if !tr.IsSuccessful() {
				t.Errorf("TaskRun %s: Succeeded = %+v, want True", tr.Name, tr.Status.GetCondition(apis.ConditionSucceeded))
			}
		}
		pods, err := kube.CoreV1().Pods(ns).List(ctx, sel)
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) != 3 {
			t.Errorf("got %d Pods, want 3", len(pods.Items))
		}
		for _, p := range pods.Items {
			if p.Spec.NodeName == "" || p.Status.Phase != corev1.PodSucceeded {
				t.Errorf("Pod %s: node %q, phase %s; want scheduled and Succeeded", p.Name, p.Spec.NodeName, p.Status.Phase)
			}
		}
	})

	t.Run("Fails", func(t *testing.T) {
		pr := pipelineRun("fail", ns, task("build"), task("publish", "build"))
		pr.Labels = map[string]string{kubestack.LabelOutcome: "fail"}
		pr = run(ctx, t, tk, pr)
		c := pr.Status.GetCondition(apis.ConditionSucceeded)
		if !pr.IsFailure() || c.Reason != string(pipelinev1.PipelineRunReasonFailed) {
			t.Fatalf("Succeeded = %+v, want False with reason Failed", c)
		}
		if len(pr.Status.SkippedTasks) != 1 || pr.Status.SkippedTasks[0].Name != "publish" {
			t.Errorf("skipped tasks = %+v, want publish", pr.Status.SkippedTasks)
		}
	})

	t.Run("Results", func(t *testing.T) {
		build := task("build")
		build.TaskSpec.Results = []pipelinev1.TaskResult{{Name: "digest"}}
		pr := pipelineRun("results", ns, build)
		pr.Annotations = map[string]string{
			kubestack.AnnotationTerminationMessage: `[{"key":"digest","value":"sha256:abc","type":1}]`,
		}
		pr.Spec.PipelineSpec.Results = []pipelinev1.PipelineResult{{
			Name:  "digest",
			Value: *pipelinev1.NewStructuredValues("$(tasks.build.results.digest)"),
		}}
		pr = run(ctx, t, tk, pr)
		if !pr.IsSuccessful() {
			t.Fatalf("Succeeded = %+v, want True", pr.Status.GetCondition(apis.ConditionSucceeded))
		}
		var got []string
		for _, r := range pr.Status.Results {
			got = append(got, r.Name+"="+r.Value.StringVal)
		}
		if len(got) != 1 || got[0] != "digest=sha256:abc" {
			t.Errorf("results = %q, want [digest=sha256:abc]", got)
		}
	})
}

// task returns a pipeline task with one busybox script step, run after the
// named tasks.
func task(name string, after ...string) pipelinev1.PipelineTask {
	return pipelinev1.PipelineTask{
		Name:     name,
		RunAfter: after,
		TaskSpec: &pipelinev1.EmbeddedTask{TaskSpec: pipelinev1.TaskSpec{
			Steps: []pipelinev1.Step{{Name: "main", Image: "busybox", Script: "echo " + name}},
		}},
	}
}

func pipelineRun(name, ns string, tasks ...pipelinev1.PipelineTask) *pipelinev1.PipelineRun {
	return &pipelinev1.PipelineRun{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       pipelinev1.PipelineRunSpec{PipelineSpec: &pipelinev1.PipelineSpec{Tasks: tasks}},
	}
}

// run creates pr and polls until it is done.
func run(ctx context.Context, t *testing.T, tk versioned.Interface, pr *pipelinev1.PipelineRun) *pipelinev1.PipelineRun {
	t.Helper()
	runs := tk.TektonV1().PipelineRuns(pr.Namespace)
	if _, err := runs.Create(ctx, pr, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create PipelineRun %s: %v", pr.Name, err)
	}
	var got *pipelinev1.PipelineRun
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		got, err = runs.Get(ctx, pr.Name, metav1.GetOptions{})
		return err == nil && got.IsDone(), nil
	})
	if err != nil {
		var c *apis.Condition
		if got != nil {
			c = got.Status.GetCondition(apis.ConditionSucceeded)
		}
		t.Fatalf("PipelineRun %s not done: %v; Succeeded = %+v", pr.Name, err, c)
	}
	return got
}
