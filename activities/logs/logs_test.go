package logs_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	tektonfake "github.com/tektoncd/pipeline/pkg/client/clientset/versioned/fake"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kiln-build/kiln/activities/logs"
	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/test/kubestack"
	"github.com/kiln-build/kiln/test/s3test"
)

const (
	ns     = "builds"
	bucket = "logs"
	prefix = "gardenlinux/"
	path   = "build/main/1.0/image/aws-amd64/a1"
)

var podsResource = schema.GroupResource{Resource: "pods"}

// startS3 starts a versitygw with the bucket, for one test.
func startS3(t testing.TB) *s3.Client {
	t.Helper()
	srv, err := s3test.Start(context.Background(), t.TempDir())
	kubestack.SkipWithoutTools(t, err)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	c := srv.Client()
	if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatal(err)
	}
	return c
}

// cluster is the fake cluster of one test case: a PipelineRun, its TaskRuns
// and their pods, and what each container logs.
type cluster struct {
	objs    []runtime.Object
	podObjs []runtime.Object
	// logs maps a container to its log; absent ones log "fake logs".
	logs map[string]string
	// logErrs maps a container to the error streaming its log returns.
	logErrs map[string]error
	// podErr is returned by every pod read, if set.
	podErr error
}

func (c *cluster) clients() (*kubefake.Clientset, *tektonfake.Clientset) {
	kube := kubefake.NewClientset(c.podObjs...)
	kube.PrependReactor("get", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "log" {
			if c.podErr != nil {
				return true, nil, c.podErr
			}
			return false, nil, nil
		}
		// The fake's log action names no pod: containers are told apart
		// by name alone.
		id := a.(k8stesting.GenericAction).GetValue().(*corev1.PodLogOptions).Container
		if err := c.logErrs[id]; err != nil {
			return true, nil, err
		}
		if l, ok := c.logs[id]; ok {
			return true, &runtime.Unknown{Raw: []byte(l)}, nil
		}
		return false, nil, nil
	})
	return kube, tektonfake.NewSimpleClientset(c.objs...)
}

// run adds a PipelineRun with a TaskRun per task, each with a pod named
// <taskrun>-pod holding the containers (init containers Tekton adds are
// never archived). withStatus false leaves the run's childReferences empty.
func (c *cluster) run(name string, withStatus bool, tasks ...taskSpec) *cluster {
	pr := &pipelinev1.PipelineRun{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	for _, t := range tasks {
		tr := name + "-" + t.name
		if t.taskRun != "" {
			tr = t.taskRun
		}
		if withStatus {
			pr.Status.ChildReferences = append(pr.Status.ChildReferences, pipelinev1.ChildStatusReference{
				TypeMeta: runtime.TypeMeta{APIVersion: "tekton.dev/v1", Kind: "TaskRun"}, Name: tr, PipelineTaskName: t.name,
			})
		}
		taskRun := &pipelinev1.TaskRun{ObjectMeta: metav1.ObjectMeta{
			Name: tr, Namespace: ns,
			Labels: map[string]string{"tekton.dev/pipelineRun": name, "tekton.dev/pipelineTask": t.name},
		}}
		taskRun.Status.PodName = tr + "-pod"
		c.objs = append(c.objs, taskRun)
		if t.gone {
			continue
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: tr + "-pod", Namespace: ns}}
		pod.Spec.InitContainers = []corev1.Container{{Name: "prepare"}, {Name: "place-scripts"}}
		for _, ctr := range t.containers {
			pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: ctr})
		}
		c.podObjs = append(c.podObjs, pod)
	}
	c.objs = append(c.objs, pr)
	return c
}

type taskSpec struct {
	name       string
	taskRun    string // default <run>-<name>
	containers []string
	gone       bool // the pod was deleted
}

func newCluster() *cluster {
	return &cluster{logs: map[string]string{}, logErrs: map[string]error{}}
}

// object reads an archived log.
func object(t *testing.T, c *s3.Client, uri string) string {
	t.Helper()
	key, ok := strings.CutPrefix(uri, "s3://"+bucket+"/")
	if !ok {
		t.Fatalf("uri %s is not in bucket %s", uri, bucket)
	}
	obj, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: &key})
	if err != nil {
		t.Fatalf("get %s: %v", uri, err)
	}
	defer obj.Body.Close()
	b, err := io.ReadAll(obj.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := aws.ToString(obj.ContentType); ct != logs.ContentType {
		t.Errorf("%s: content type %q", uri, ct)
	}
	return string(b)
}

func uri(path, task string) string { return "s3://" + bucket + "/" + logs.Key(prefix, path, task) }

// quiet logs the activity environment's warnings and errors only.
var quiet = log.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))

// archive runs ArchiveLogs in a test activity environment and returns its
// result and the tasks it heartbeat about.
func archive(kube kubernetes.Interface, tk versioned.Interface, c *s3.Client, cfg logs.Config, in logs.ArchiveRequest) (logs.ArchiveResult, []string, error) {
	acts := logs.New(kube, tk, c, cfg)
	var s testsuite.WorkflowTestSuite
	s.SetLogger(quiet)
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	var mu sync.Mutex
	var beats []string
	env.SetOnActivityHeartbeatListener(func(_ *activity.Info, d converter.EncodedValues) {
		var p logs.Progress
		if d.Get(&p) == nil {
			mu.Lock()
			beats = append(beats, p.Task)
			mu.Unlock()
		}
	})
	var res logs.ArchiveResult
	v, err := env.ExecuteActivity(acts.ArchiveLogs, in)
	if err == nil {
		err = v.Get(&res)
	}
	return res, beats, err
}

func TestArchiveLogs(t *testing.T) {
	c := startS3(t)
	notFound := apierrors.NewNotFound(podsResource, "gone")
	for i, tt := range []struct {
		name        string
		cluster     *cluster
		wantLogs    map[string]string // task -> content
		wantMissing []string
	}{{
		name: "steps in order, then sidecars, each with a header",
		cluster: func() *cluster {
			c := newCluster().run("r", true,
				taskSpec{name: "build", containers: []string{"step-fetch", "istio-proxy", "step-compile", "sidecar-registry"}},
				taskSpec{name: "test", containers: []string{"step-run"}})
			c.logs["step-fetch"] = "fetched\n"
			c.logs["step-compile"] = "compiling\nno newline at the end"
			c.logs["step-run"] = ""
			return c
		}(),
		wantLogs: map[string]string{
			"build": "==> step-fetch <==\nfetched\n==> step-compile <==\ncompiling\nno newline at the end\n==> sidecar-registry <==\nfake logs\n",
			"test":  "==> step-run <==\n",
		},
	}, {
		name:        "a deleted pod is missing",
		cluster:     newCluster().run("r", true, taskSpec{name: "build", containers: []string{"step-a"}}, taskSpec{name: "test", gone: true}),
		wantLogs:    map[string]string{"build": "==> step-a <==\nfake logs\n"},
		wantMissing: []string{"test"},
	}, {
		name: "a pod deleted while streaming is missing",
		cluster: func() *cluster {
			c := newCluster().run("r", true, taskSpec{name: "build", containers: []string{"step-a"}}, taskSpec{name: "test", containers: []string{"step-a", "step-b"}})
			c.logErrs["step-b"] = notFound
			return c
		}(),
		wantLogs:    map[string]string{"build": "==> step-a <==\nfake logs\n"},
		wantMissing: []string{"test"},
	}, {
		name: "a container without a log says why",
		cluster: func() *cluster {
			c := newCluster().run("r", true, taskSpec{name: "build", containers: []string{"step-a", "step-b"}})
			c.logErrs["step-a"] = apierrors.NewBadRequest(`container "step-a" is waiting to start: ErrImagePull`)
			return c
		}(),
		wantLogs: map[string]string{"build": "==> step-a <==\nkiln: no log: container \"step-a\" is waiting to start: ErrImagePull\n==> step-b <==\nfake logs\n"},
	}, {
		name: "tasks found by label when the run has no childReferences",
		cluster: newCluster().run("r", false, taskSpec{name: "build", containers: []string{"step-a"}},
			taskSpec{name: "test", containers: []string{"step-a"}}),
		wantLogs: map[string]string{"build": "==> step-a <==\nfake logs\n", "test": "==> step-a <==\nfake logs\n"},
	}, {
		name: "a matrixed task names its TaskRuns",
		cluster: newCluster().run("r", true, taskSpec{name: "build", taskRun: "r-build-0", containers: []string{"step-a"}},
			taskSpec{name: "build", taskRun: "r-build-1", containers: []string{"step-a"}}),
		wantLogs: map[string]string{"build": "==> r-build-0/step-a <==\nfake logs\n==> r-build-1/step-a <==\nfake logs\n"},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			kube, tk := tt.cluster.clients()
			path := fmt.Sprintf("%s/case-%d", path, i) // cases share the bucket
			res, beats, err := archive(kube, tk, c, logs.Config{Bucket: bucket, Prefix: prefix}, logs.ArchiveRequest{Namespace: ns, PipelineRun: "r", Path: path})
			if err != nil {
				t.Fatalf("archive: %v", err)
			}
			if !slices.Equal(res.Missing, tt.wantMissing) {
				t.Errorf("missing = %q, want %q", res.Missing, tt.wantMissing)
			}
			if len(res.Logs) != len(tt.wantLogs) {
				t.Errorf("logs = %v, want tasks of %v", res.Logs, tt.wantLogs)
			}
			var total int64
			for task, want := range tt.wantLogs {
				if res.Logs[task] != uri(path, task) {
					t.Errorf("logs[%s] = %q, want %q", task, res.Logs[task], uri(path, task))
					continue
				}
				if got := object(t, c, res.Logs[task]); got != want {
					t.Errorf("%s's log:\n%q\nwant\n%q", task, got, want)
				}
				total += int64(len(want))
			}
			if res.Bytes != total {
				t.Errorf("bytes = %d, want %d", res.Bytes, total)
			}
			if len(beats) == 0 {
				t.Error("no heartbeat")
			}
		})
	}
}

// A retry writes the same objects, and one after the pods were deleted still
// reports what an earlier attempt archived.
func TestArchiveLogsIsIdempotent(t *testing.T) {
	c := startS3(t)
	cl := newCluster().run("r", true, taskSpec{name: "build", containers: []string{"step-build"}}, taskSpec{name: "test", containers: []string{"step-test"}})
	cl.logs["step-build"] = "built\n"
	kube, tk := cl.clients()
	in := logs.ArchiveRequest{Namespace: ns, PipelineRun: "r", Path: path}
	first, _, err := archive(kube, tk, c, logs.Config{Bucket: bucket, Prefix: prefix}, in)
	if err != nil {
		t.Fatal(err)
	}
	again, _, err := archive(kube, tk, c, logs.Config{Bucket: bucket, Prefix: prefix}, in)
	if err != nil {
		t.Fatal(err)
	}
	if first.Bytes != again.Bytes || len(again.Logs) != 2 || object(t, c, again.Logs["build"]) != "==> step-build <==\nbuilt\n" {
		t.Errorf("second attempt: %+v, first %+v", again, first)
	}
	for _, p := range []string{"r-build-pod", "r-test-pod"} {
		if err := kube.CoreV1().Pods(ns).Delete(context.Background(), p, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	late, _, err := archive(kube, tk, c, logs.Config{Bucket: bucket, Prefix: prefix}, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(late.Missing) != 0 || late.Logs["build"] != uri(path, "build") || late.Logs["test"] != uri(path, "test") || late.Bytes != first.Bytes {
		t.Errorf("after the pods were deleted: %+v, want the first attempt's %+v", late, first)
	}
}

func TestArchiveLogsErrors(t *testing.T) {
	c := startS3(t)
	valid := logs.ArchiveRequest{Namespace: ns, PipelineRun: "r", Path: path}
	for _, tt := range []struct {
		name     string
		cluster  *cluster
		in       logs.ArchiveRequest
		bucket   string
		wantType string // "" for a retryable error
	}{
		{"no path", newCluster(), logs.ArchiveRequest{Namespace: ns, PipelineRun: "r"}, bucket, logs.ErrTypeInvalidRequest},
		{"path escapes", newCluster(), logs.ArchiveRequest{Namespace: ns, PipelineRun: "r", Path: "a/../../b"}, bucket, logs.ErrTypeInvalidRequest},
		{"no such pipelinerun", newCluster(), valid, bucket, logs.ErrTypeNotFound},
		{"no such bucket", newCluster().run("r", true, taskSpec{name: "build", containers: []string{"step-a"}}), valid, "missing-bucket", storage.ErrTypeAccessDenied},
		{"pods forbidden", func() *cluster {
			c := newCluster().run("r", true, taskSpec{name: "build", containers: []string{"step-a"}})
			c.podErr = apierrors.NewForbidden(podsResource, "r-build-pod", errors.New("RBAC"))
			return c
		}(), valid, bucket, logs.ErrTypeForbidden},
		{"api server trouble reading a pod", func() *cluster {
			c := newCluster().run("r", true, taskSpec{name: "build", containers: []string{"step-a"}})
			c.podErr = apierrors.NewInternalError(errors.New("etcd timeout"))
			return c
		}(), valid, bucket, ""},
		{"api server trouble streaming a log", func() *cluster {
			c := newCluster().run("r", true, taskSpec{name: "build", containers: []string{"step-a"}})
			c.logErrs["step-a"] = apierrors.NewServiceUnavailable("kubelet unreachable")
			return c
		}(), valid, bucket, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			kube, tk := tt.cluster.clients()
			_, _, err := archive(kube, tk, c, logs.Config{Bucket: tt.bucket, Prefix: prefix}, tt.in)
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) {
				t.Fatalf("error = %v, want an ApplicationError", err)
			}
			if tt.wantType == "" {
				if appErr.NonRetryable() {
					t.Errorf("error = %v (type %s), want a retryable one", err, appErr.Type())
				}
				return
			}
			if appErr.Type() != tt.wantType || !appErr.NonRetryable() {
				t.Errorf("error = %v: type %q, non-retryable %v; want %q, true", err, appErr.Type(), appErr.NonRetryable(), tt.wantType)
			}
		})
	}
}
