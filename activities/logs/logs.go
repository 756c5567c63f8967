package logs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/client/clientset/versioned"
	"go.temporal.io/sdk/temporal"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/kiln-build/kiln/activities/storage"
)

// Error types of the non-retryable ApplicationErrors ArchiveLogs returns,
// besides storage.ErrTypeAccessDenied for S3's permanent refusals.
const (
	// ErrTypeInvalidRequest: a required field is missing or Path is not a
	// clean relative path.
	ErrTypeInvalidRequest = "InvalidRequest"
	// ErrTypeNotFound: the PipelineRun does not exist (any more), so its
	// tasks cannot be known.
	ErrTypeNotFound = "PipelineRunNotFound"
	// ErrTypeForbidden: the API server refused the worker's credentials.
	ErrTypeForbidden = "Forbidden"
)

// Labels Tekton sets on TaskRuns and Pods.
const (
	labelPipelineRun  = "tekton.dev/pipelineRun"
	labelPipelineTask = "tekton.dev/pipelineTask"
)

// ContentType is the content type of the archived logs.
const ContentType = "text/plain; charset=utf-8"

// heartbeatEvery is how often ArchiveLogs heartbeats while streaming.
const heartbeatEvery = time.Second

// Config says where the logs go.
type Config struct {
	// Bucket receives the logs. Required.
	Bucket string
	// Prefix is prepended to every key, e.g. "gardenlinux/". Optional.
	Prefix string
	// PartSize is the multipart upload's part size, the most memory one
	// archive holds. Optional: default storage.DefaultPartSize, at least
	// storage.MinPartSize.
	PartSize int64
}

// Activities archives logs. They are safe for concurrent use.
type Activities struct {
	kube kubernetes.Interface
	tk   versioned.Interface
	s3   *s3.Client
	cfg  Config
}

// New returns the activities for the clients: kube reads pods and their
// logs, tk reads PipelineRuns and TaskRuns, client writes to S3.
func New(kube kubernetes.Interface, tk versioned.Interface, client *s3.Client, cfg Config) *Activities {
	return &Activities{kube: kube, tk: tk, s3: client, cfg: cfg}
}

// ArchiveRequest names the PipelineRun whose logs to archive.
type ArchiveRequest struct {
	Namespace   string `json:"namespace"`
	PipelineRun string `json:"pipelineRun"`
	// Path is where under <prefix>logs/ the objects go, e.g.
	// "build/main/1.0/image/aws-amd64/a1". Deterministic, from the caller:
	// never a run ID.
	Path string `json:"path"`
}

// ArchiveResult says where the logs went.
type ArchiveResult struct {
	// Logs maps each pipeline task name to its archived log's
	// s3://bucket/key URI.
	Logs map[string]string `json:"logs,omitempty"`
	// Missing lists tasks whose pods were already gone, sorted.
	Missing []string `json:"missing,omitempty"`
	// Bytes is the size of the archived logs, in all.
	Bytes int64 `json:"bytes"`
}

// Progress is ArchiveLogs' heartbeat detail.
type Progress struct {
	// Task is the pipeline task being archived.
	Task string `json:"task"`
	// TaskBytes is how much of its log is streamed so far.
	TaskBytes int64 `json:"taskBytes"`
	// Bytes is how much is streamed so far, all tasks together.
	Bytes int64 `json:"bytes"`
}

// Key returns the object key of a pipeline task's log.
func Key(prefix, path, task string) string {
	return prefix + "logs/" + path + "/" + task + ".log"
}

// ArchiveLogs streams the logs of the pods of the PipelineRun's TaskRuns,
// one object per pipeline task at Key(prefix, in.Path, task), and returns
// their URIs. It is idempotent (the keys are deterministic, a retry
// overwrites each object with the same content) and heartbeats a Progress
// per task and about once a second while streaming. A task whose pod is gone
// is reported in Missing, not as an error. See the package documentation for
// the format and the error types.
func (a *Activities) ArchiveLogs(ctx context.Context, in ArchiveRequest) (ArchiveResult, error) {
	if err := in.validate(); err != nil {
		return ArchiveResult{}, err
	}
	tasks, err := a.tasks(ctx, in.Namespace, in.PipelineRun)
	if err != nil {
		return ArchiveResult{}, err
	}
	taskLogs := make([]TaskLogs, len(tasks))
	for i, t := range tasks {
		taskLogs[i] = TaskLogs{Name: t.name, Open: func() (io.ReadCloser, error) { return a.open(ctx, in.Namespace, t) }}
	}
	return Store{Client: a.s3, Config: a.cfg}.Archive(ctx, in.Path, taskLogs, func(task string, err error) error {
		var ke *kubeError
		switch {
		case errors.As(err, &ke) && apierrors.IsNotFound(ke.err):
			return fmt.Errorf("%w: %w", ErrNoLogs, err) // deleted while streaming
		case errors.As(err, &ke):
			return classifyKube(ke.op, ke.err)
		default:
			return storage.Classify(fmt.Sprintf("archive logs of task %s", task), err)
		}
	})
}

func (in ArchiveRequest) validate() error {
	if in.Namespace == "" || in.PipelineRun == "" || in.Path == "" {
		return temporal.NewNonRetryableApplicationError("namespace, pipelineRun and path are required", ErrTypeInvalidRequest, nil)
	}
	for seg := range strings.SplitSeq(in.Path, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("path %q is not a clean relative path", in.Path), ErrTypeInvalidRequest, nil)
		}
	}
	return nil
}

// task is a pipeline task and the TaskRuns it ran as: one, or several for a
// matrix.
type task struct {
	name     string
	taskRuns []taskRun
}

// taskRun is a TaskRun's name and its pod's, "" if it has none (any more).
type taskRun struct {
	name, pod string
}

// tasks lists the PipelineRun's pipeline tasks in the order of its status'
// childReferences, or by the TaskRuns' labels when it has none.
func (a *Activities) tasks(ctx context.Context, ns, name string) ([]task, error) {
	pr, err := a.tk.TektonV1().PipelineRuns(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("pipelinerun %s/%s does not exist", ns, name), ErrTypeNotFound, err)
	}
	if err != nil {
		return nil, classifyKube(fmt.Sprintf("get pipelinerun %s/%s", ns, name), err)
	}
	// Listed rather than read one by one: one call, and kiln's Role grants
	// list on taskruns, not get.
	trs, err := a.tk.TektonV1().TaskRuns(ns).List(ctx, metav1.ListOptions{LabelSelector: labelPipelineRun + "=" + name})
	if err != nil {
		return nil, classifyKube(fmt.Sprintf("list taskruns of pipelinerun %s/%s", ns, name), err)
	}
	slices.SortFunc(trs.Items, func(x, y pipelinev1.TaskRun) int { return strings.Compare(x.Name, y.Name) })
	pods := map[string]string{}
	for _, tr := range trs.Items {
		pods[tr.Name] = tr.Status.PodName
	}
	var tasks []task
	add := func(pipelineTask, tr string) {
		i := slices.IndexFunc(tasks, func(t task) bool { return t.name == pipelineTask })
		if i < 0 {
			tasks = append(tasks, task{name: pipelineTask})
			i = len(tasks) - 1
		}
		tasks[i].taskRuns = append(tasks[i].taskRuns, taskRun{name: tr, pod: pods[tr]})
	}
	for _, c := range pr.Status.ChildReferences {
		if c.Kind == pipeline.TaskRunControllerName && c.PipelineTaskName != "" {
			add(c.PipelineTaskName, c.Name)
		}
	}
	if len(tasks) > 0 {
		return tasks, nil
	}
	for _, tr := range trs.Items {
		if t := tr.Labels[labelPipelineTask]; t != "" {
			add(t, tr.Name)
		}
	}
	return tasks, nil
}

// open returns the log of t's pods, one section per container, or an
// error wrapping ErrNoLogs if none of its pods exists any more.
func (a *Activities) open(ctx context.Context, ns string, t task) (io.ReadCloser, error) {
	pods := a.kube.CoreV1().Pods(ns)
	var secs []Section
	for _, tr := range t.taskRuns {
		if tr.pod == "" {
			continue
		}
		pod, err := pods.Get(ctx, tr.pod, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, classifyKube(fmt.Sprintf("get pod %s/%s", ns, tr.pod), err)
		}
		prefix := ""
		if len(t.taskRuns) > 1 {
			prefix = tr.name + "/"
		}
		for _, c := range containers(pod) {
			secs = append(secs, Section{Name: prefix + c, Open: func() (io.ReadCloser, string, error) {
				return containerLog(ctx, pods, pod.Name, c)
			}})
		}
	}
	if len(secs) == 0 {
		return nil, fmt.Errorf("task %s: %w", t.name, ErrNoLogs)
	}
	return NewReader(secs), nil
}

// containers returns the names of a Tekton pod's step containers, then its
// sidecars, in the pod's order.
func containers(pod *corev1.Pod) []string {
	var steps, sidecars []string
	for _, c := range pod.Spec.Containers {
		switch {
		case strings.HasPrefix(c.Name, "step-"):
			steps = append(steps, c.Name)
		case strings.HasPrefix(c.Name, "sidecar-"):
			sidecars = append(sidecars, c.Name)
		}
	}
	return append(steps, sidecars...)
}

// classifyKube sorts an API-server error: refused credentials are permanent,
// anything else is retried.
func classifyKube(op string, err error) error {
	if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
		return temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("%s: %v; grant the worker get on pipelineruns, list on taskruns, get on pods and pods/log", op, err),
			ErrTypeForbidden, nil)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// kubeError is an API-server error met while streaming, told apart from the
// S3 errors of the same upload.
type kubeError struct {
	op  string
	err error
}

func (e *kubeError) Error() string { return e.op + ": " + e.err.Error() }
func (e *kubeError) Unwrap() error { return e.err }

// containerLog opens a container's log stream. A container the kubelet
// has no log for (one that never started, say) gets a note in the object
// rather than failing the task. API-server errors, also while streaming,
// come back as kubeErrors, told apart from the upload's S3 errors.
func containerLog(ctx context.Context, pods corev1client.PodInterface, pod, container string) (io.ReadCloser, string, error) {
	rc, err := pods.GetLogs(pod, &corev1.PodLogOptions{Container: container}).Stream(ctx)
	switch {
	case apierrors.IsBadRequest(err):
		msg := err.Error()
		var st apierrors.APIStatus
		if errors.As(err, &st) {
			msg = st.Status().Message
		}
		return nil, "kiln: no log: " + msg, nil
	case err != nil:
		return nil, "", &kubeError{op: fmt.Sprintf("stream log of %s/%s", pod, container), err: err}
	}
	return kubeStream{rc}, "", nil
}

// kubeStream marks a log stream's read errors as the API server's.
type kubeStream struct{ io.ReadCloser }

func (k kubeStream) Read(b []byte) (int, error) {
	n, err := k.ReadCloser.Read(b)
	if err != nil && err != io.EOF {
		err = &kubeError{op: "read log", err: err}
	}
	return n, err
}
