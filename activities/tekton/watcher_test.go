package tekton_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-build/kiln/activities/tekton"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	k8stesting "k8s.io/client-go/testing"
	"knative.dev/pkg/apis"
	duckv1 "knative.dev/pkg/apis/duck/v1"
)

// fakeHarness is a harness over a fake clientset, for tests that need no
// API server: the reactors stand in for RBAC and outages.
func fakeHarness(t *testing.T, client *fake.Clientset, grace time.Duration) *harness {
	t.Helper()
	h := &harness{t: t, ns: "builds", client: client, watcher: tekton.NewWatcher(client, 0)}
	t.Cleanup(h.watcher.Close)
	if grace > 0 {
		h.watcher.SetWatchErrorGrace(grace)
	}
	acts, err := tekton.New(client, h.watcher, tekton.Options{HeartbeatInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	h.acts = acts
	return h
}

// within waits for the activity's outcome for d: an activity that hangs
// fails the test instead of running into the activity's timeout.
func within(t *testing.T, out <-chan outcome, d time.Duration) outcome {
	t.Helper()
	select {
	case o := <-out:
		return o
	case <-time.After(d):
		t.Fatalf("RunPipeline did not return within %s", d)
		return outcome{}
	}
}

func forbidden(verb, resource string) error {
	return apierrors.NewForbidden(schema.GroupResource{Group: "tekton.dev", Resource: resource}, "",
		errors.New(`User "system:serviceaccount:kiln:kiln-worker" cannot `+verb+` resource "`+resource+`" in API group "tekton.dev" in the namespace "builds"`))
}

// TestUnitRefusedListOrWatchFailsAtOnce: a LIST or WATCH of pipelineruns or
// taskruns that the API server refuses fails RunPipeline within seconds with
// a non-retryable ErrTypeForbidden naming the verb, the resource, the
// namespace and the fix, rather than hanging until the activity's timeout.
func TestUnitRefusedListOrWatchFailsAtOnce(t *testing.T) {
	for _, tc := range []struct{ verb, resource string }{
		{"list", "pipelineruns"}, {"watch", "pipelineruns"},
		{"list", "taskruns"}, {"watch", "taskruns"},
	} {
		t.Run(tc.verb+" "+tc.resource, func(t *testing.T) {
			client := fake.NewSimpleClientset()
			if tc.verb == "list" {
				client.PrependReactor("list", tc.resource, func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, forbidden(tc.verb, tc.resource)
				})
			} else {
				client.PrependWatchReactor(tc.resource, func(k8stesting.Action) (bool, watch.Interface, error) {
					return true, nil, forbidden(tc.verb, tc.resource)
				})
			}
			h := fakeHarness(t, client, time.Hour)
			o := within(t, h.start(h.request("refused"), nil), 15*time.Second)
			appErr := appError(t, o.err)
			if appErr.Type() != tekton.ErrTypeForbidden || !appErr.NonRetryable() {
				t.Fatalf("type %q non-retryable %v, want %s, true: %v", appErr.Type(), appErr.NonRetryable(), tekton.ErrTypeForbidden, o.err)
			}
			for _, want := range []string{tc.verb + " " + tc.resource, "namespace builds", "deploy/worker/rbac.yaml", "list and watch"} {
				if !strings.Contains(appErr.Error(), want) {
					t.Errorf("message %q does not name %q", appErr.Error(), want)
				}
			}
		})
	}
}

// TestUnitFailingListIsReportedAfterGrace: a LIST that fails with a 5xx is
// retried by client-go and reported, as retryable, only once the grace
// period is over; RunPipeline heartbeats meanwhile.
func TestUnitFailingListIsReportedAfterGrace(t *testing.T) {
	client := fake.NewSimpleClientset()
	client.PrependReactor("list", "pipelineruns", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewInternalError(errors.New("etcdserver: request timed out"))
	})
	const grace = 1500 * time.Millisecond
	h := fakeHarness(t, client, grace)
	var beats atomic.Int32
	began := time.Now()
	o := within(t, h.start(h.request("outage"), func(env *testsuite.TestActivityEnvironment) {
		env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{&heartbeats{n: &beats}}})
	}), 15*time.Second)
	took := time.Since(began)
	if o.err == nil {
		t.Fatal("RunPipeline succeeded through a failing LIST")
	}
	if appErr := (*temporal.ApplicationError)(nil); errors.As(o.err, &appErr) && appErr.NonRetryable() {
		t.Fatalf("a 5xx LIST gave a non-retryable error: %v", o.err)
	}
	if took < grace {
		t.Errorf("reported after %s, before the grace period of %s", took, grace)
	}
	for _, want := range []string{"list pipelineruns", "namespace builds", "request timed out"} {
		if !strings.Contains(o.err.Error(), want) {
			t.Errorf("error %q does not name %q", o.err, want)
		}
	}
	if n := beats.Load(); n < 5 {
		t.Errorf("%d heartbeats in %s while the cache could not sync, want one every 50 ms", n, took)
	}
}

// TestUnitListBlipIsNotReported: a LIST that fails once and then works
// costs a retry, not the activity.
func TestUnitListBlipIsNotReported(t *testing.T) {
	client := fake.NewSimpleClientset()
	var lists atomic.Int32
	client.PrependReactor("list", "pipelineruns", func(k8stesting.Action) (bool, runtime.Object, error) {
		if lists.Add(1) == 1 {
			return true, nil, apierrors.NewServiceUnavailable("apiserver is restarting")
		}
		return false, nil, nil
	})
	h := fakeHarness(t, client, 30*time.Second)
	in := h.request("blip")
	out := h.start(in, nil)
	finish(t, client, in)
	if o := within(t, out, 30*time.Second); o.err != nil {
		t.Fatalf("RunPipeline: %v", o.err)
	}
	if n := lists.Load(); n < 2 {
		t.Errorf("%d LISTs, want the failed one and a retry", n)
	}
}

// TestUnitHeartbeatsWhileCacheSyncs: a LIST that takes longer than a
// heartbeat timeout does not stop RunPipeline's heartbeats.
func TestUnitHeartbeatsWhileCacheSyncs(t *testing.T) {
	client := fake.NewSimpleClientset()
	release := make(chan struct{})
	var once sync.Once
	client.PrependReactor("list", "pipelineruns", func(k8stesting.Action) (bool, runtime.Object, error) {
		once.Do(func() { <-release })
		return false, nil, nil
	})
	h := fakeHarness(t, client, 0)
	var beats atomic.Int32
	in := h.request("slow-sync")
	out := h.start(in, func(env *testsuite.TestActivityEnvironment) {
		env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{&heartbeats{n: &beats}}})
	})
	time.Sleep(time.Second) // the LIST is blocked for this long
	n := beats.Load()
	close(release)
	finish(t, client, in)
	if o := within(t, out, 30*time.Second); o.err != nil {
		t.Fatalf("RunPipeline: %v", o.err)
	}
	if n < 5 {
		t.Errorf("%d heartbeats during a 1 s LIST, want one every 50 ms", n)
	}
}

// heartbeats counts every RecordHeartbeat call of the activities, which the
// SDK's throttling hides from the test environment's heartbeat listener.
type heartbeats struct {
	interceptor.WorkerInterceptorBase
	n *atomic.Int32
}

func (h *heartbeats) InterceptActivity(_ context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &heartbeatsInbound{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}, n: h.n}
}

type heartbeatsInbound struct {
	interceptor.ActivityInboundInterceptorBase
	n *atomic.Int32
}

func (i *heartbeatsInbound) Init(outbound interceptor.ActivityOutboundInterceptor) error {
	return i.Next.Init(&heartbeatsOutbound{ActivityOutboundInterceptorBase: interceptor.ActivityOutboundInterceptorBase{Next: outbound}, n: i.n})
}

type heartbeatsOutbound struct {
	interceptor.ActivityOutboundInterceptorBase
	n *atomic.Int32
}

func (o *heartbeatsOutbound) RecordHeartbeat(ctx context.Context, details ...any) {
	o.n.Add(1)
	o.Next.RecordHeartbeat(ctx, details...)
}

// finish waits until RunPipeline created in's run and marks it succeeded.
func finish(t *testing.T, client *fake.Clientset, in tekton.PipelineRunRequest) {
	t.Helper()
	name := tekton.RunName(in.Key)
	runs := client.TektonV1().PipelineRuns(in.Namespace)
	deadline := time.Now().Add(10 * time.Second)
	for {
		pr, err := runs.Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			pr.Status.Status = duckv1.Status{Conditions: duckv1.Conditions{{
				Type: apis.ConditionSucceeded, Status: corev1.ConditionTrue, Reason: string(pipelinev1.PipelineRunReasonSuccessful),
			}}}
			if _, err := runs.UpdateStatus(context.Background(), pr, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pipelinerun %s was not created: %v", name, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
