package tekton_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/activities/tekton"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
)

// TestDeployRBACIsEnough applies deploy/worker/rbac.yaml and runs the activities as
// its ServiceAccount: create, await and cancel work in a bound namespace, and
// a namespace without the binding gives a non-retryable Forbidden.
func TestDeployRBACIsEnough(t *testing.T) {
	h := newHarness(t, tekton.Options{})
	sa := applyRBAC(t, h)

	cfg := rest.CopyConfig(h.st.RESTConfig())
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + sa.Namespace + ":" + sa.Name}
	h.client = versioned.NewForConfigOrDie(h.count.Wrap(cfg))
	h.watcher = tekton.NewWatcher(h.client, 0)
	t.Cleanup(h.watcher.Close)
	acts, err := tekton.New(h.client, h.watcher, tekton.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h.acts = acts

	in := h.request("rbac/succeed")
	out := h.start(in, nil)
	h.created(tekton.RunName(in.Key))
	h.set(tekton.RunName(in.Key), succeeded)
	if o := h.wait(out); o.err != nil {
		t.Fatalf("RunPipeline as %s: %v", sa.Name, o.err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in = h.request("rbac/cancel")
	out = h.start(in, func(env *testsuite.TestActivityEnvironment) {
		env.SetWorkerOptions(worker.Options{BackgroundActivityContext: ctx})
	})
	name := tekton.RunName(in.Key)
	h.created(name)
	h.set(name, running)
	cancel()
	h.wait(out)
	var ts testsuite.WorkflowTestSuite
	cenv := ts.NewTestActivityEnvironment()
	cenv.RegisterActivity(h.acts)
	if _, err := cenv.ExecuteActivity(h.acts.CancelPipelineRun, tekton.CancelRequest{Namespace: h.ns, PipelineRun: name}); err != nil {
		t.Fatalf("CancelPipelineRun as %s: %v", sa.Name, err)
	}
	pr, err := h.sim.Client.TektonV1().PipelineRuns(h.ns).Get(h.ctx(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Spec.Status != "Cancelled" {
		t.Errorf("spec.status = %q after cancel as %s, want Cancelled", pr.Spec.Status, sa.Name)
	}

	other := namespaceFor(t)
	if err := h.st.CreateNamespace(h.ctx(), other); err != nil {
		t.Fatal(err)
	}
	in = h.request("rbac/forbidden")
	in.Namespace = other
	appErr := appError(t, h.wait(h.start(in, nil)).err)
	if appErr.Type() != tekton.ErrTypeForbidden || !appErr.NonRetryable() {
		t.Errorf("type %q non-retryable %v, want %s, true", appErr.Type(), appErr.NonRetryable(), tekton.ErrTypeForbidden)
	}
}

// applyRBAC creates the objects of deploy/worker/rbac.yaml, with the Role and
// RoleBinding in the harness's namespace, and returns the ServiceAccount.
func applyRBAC(t *testing.T, h *harness) *corev1.ServiceAccount {
	t.Helper()
	f, err := os.Open("../../deploy/worker/rbac.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kube := h.st.Kube()
	ctx := h.ctx()
	var sa *corev1.ServiceAccount
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("deploy/worker/rbac.yaml: %v", err)
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			if err := h.st.CreateNamespace(ctx, o.Namespace); err != nil {
				t.Fatal(err)
			}
			_, err = kube.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			sa = o
		case *rbacv1.Role:
			o.Namespace = h.ns
			_, err = kube.RbacV1().Roles(h.ns).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			o.Namespace = h.ns
			_, err = kube.RbacV1().RoleBindings(h.ns).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("deploy/worker/rbac.yaml: unexpected %T", obj)
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	if sa == nil {
		t.Fatal("deploy/worker/rbac.yaml has no ServiceAccount")
	}
	return sa
}

// TestRBACWithoutListOrWatchFailsAtOnce runs RunPipeline as a
// ServiceAccount whose Role lacks one verb the Watcher's informers need:
// it fails within seconds with a non-retryable ErrTypeForbidden naming the
// verb and the resource, rather than hanging until the activity's timeout.
func TestRBACWithoutListOrWatchFailsAtOnce(t *testing.T) {
	for _, tc := range []struct {
		verb, resource string
		runs, tasks    []string
	}{
		{"watch", "pipelineruns", []string{"create", "get", "patch", "list"}, []string{"list", "watch"}},
		{"list", "pipelineruns", []string{"create", "get", "patch", "watch"}, []string{"list", "watch"}},
		{"watch", "taskruns", []string{"create", "get", "patch", "list", "watch"}, []string{"list"}},
	} {
		t.Run("without "+tc.verb+" "+tc.resource, func(t *testing.T) {
			h := newHarness(t, tekton.Options{})
			kube := h.st.Kube()
			ctx := h.ctx()
			sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "partial", Namespace: h.ns}}
			role := &rbacv1.Role{
				ObjectMeta: metav1.ObjectMeta{Name: "partial", Namespace: h.ns},
				Rules: []rbacv1.PolicyRule{
					{APIGroups: []string{"tekton.dev"}, Resources: []string{"pipelineruns"}, Verbs: tc.runs},
					{APIGroups: []string{"tekton.dev"}, Resources: []string{"taskruns"}, Verbs: tc.tasks},
				},
			}
			binding := &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "partial", Namespace: h.ns},
				RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "partial"},
				Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.Name, Namespace: h.ns}},
			}
			if _, err := kube.CoreV1().ServiceAccounts(h.ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := kube.RbacV1().Roles(h.ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := kube.RbacV1().RoleBindings(h.ns).Create(ctx, binding, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			cfg := rest.CopyConfig(h.st.RESTConfig())
			cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + h.ns + ":" + sa.Name}
			h.client = versioned.NewForConfigOrDie(cfg)
			h.watcher = tekton.NewWatcher(h.client, 0)
			t.Cleanup(h.watcher.Close)
			acts, err := tekton.New(h.client, h.watcher, tekton.Options{HeartbeatInterval: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			h.acts = acts

			began := time.Now()
			o := within(t, h.start(h.request("partial-rbac"), nil), 20*time.Second)
			appErr := appError(t, o.err)
			if appErr.Type() != tekton.ErrTypeForbidden || !appErr.NonRetryable() {
				t.Fatalf("type %q non-retryable %v, want %s, true: %v", appErr.Type(), appErr.NonRetryable(), tekton.ErrTypeForbidden, o.err)
			}
			for _, want := range []string{tc.verb + " " + tc.resource, "namespace " + h.ns, "deploy/worker/rbac.yaml"} {
				if !strings.Contains(appErr.Error(), want) {
					t.Errorf("message %q does not name %q", appErr.Error(), want)
				}
			}
			t.Logf("failed after %s: %v", time.Since(began).Round(time.Millisecond), appErr)
		})
	}
}
