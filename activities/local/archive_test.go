package local

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/kiln-build/kiln/activities/logs"
	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/test/kubestack"
	"github.com/kiln-build/kiln/test/s3test"
)

const (
	archiveBucket = "logs"
	archivePrefix = "gardenlinux/"
	archivePath   = "build/main/1.0/image/aws-amd64/a1"
)

// archivePipeline has two tasks that run (build, then test, whose first
// attempt fails and is retried), a skipped one, and a finally task whose
// second step never runs.
const archivePipeline = `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: archive-me, namespace: builds}
spec:
  pipelineSpec:
    tasks:
    - name: build
      taskSpec:
        steps:
        - {name: compile, image: x, script: "echo compiling; echo compiled"}
        - {name: package, image: x, script: "printf 'no newline'"}
    - name: test
      runAfter: [build]
      retries: 1
      taskSpec:
        steps:
        - {name: check, image: x, script: "echo attempt $(context.task.retry-count); [ $(context.task.retry-count) -ge 1 ]"}
        - {name: report, image: x, script: "echo report"}
    - name: skipped
      when: [{input: a, operator: in, values: [b]}]
      taskSpec:
        steps: [{name: never, image: x, script: "echo never"}]
    finally:
    - name: cleanup
      taskSpec:
        steps:
        - {name: fail, image: x, script: "echo cleaning; exit 3"}
        - {name: after, image: x, script: "echo after"}
`

// wantArchive is what each archived task holds for archivePipeline.
var wantArchive = map[string]string{
	"build": "==> step-compile <==\ncompiling\ncompiled\n==> step-package <==\nno newline\n",
	"test":  "==> step-check <==\nattempt 0\nattempt 1\n==> step-report <==\nreport\n",
	"cleanup": "==> step-fail <==\ncleaning\n==> step-after <==\n" +
		"kiln: no log: the step did not run (Skipped)\n",
}

// startArchiveS3 starts a versitygw with the log bucket, for one test.
func startArchiveS3(t testing.TB) *s3.Client {
	t.Helper()
	srv, err := s3test.Start(context.Background(), t.TempDir())
	kubestack.SkipWithoutTools(t, err)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	c := srv.Client()
	if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(archiveBucket)}); err != nil {
		t.Fatal(err)
	}
	return c
}

// archiveActivities returns Activities archiving to client (none if nil)
// and runs the PipelineRuns of yamlDoc with their runner.
func archiveActivities(t *testing.T, client *s3.Client, partSize int64, yamlDoc string) (*Activities, []RunStatus) {
	t.Helper()
	objs, err := Decode(strings.NewReader(yamlDoc))
	if err != nil {
		t.Fatal(err)
	}
	live := &syncBuffer{}
	opts := Options{Root: t.TempDir(), Log: live, Logger: slog.New(slog.NewTextHandler(live, nil))}
	if client != nil {
		opts.Archive = &Archive{Client: client, Bucket: archiveBucket, Prefix: archivePrefix, PartSize: partSize}
	}
	a, err := New(objs.Options(opts))
	if err != nil {
		t.Fatal(err)
	}
	var runs []RunStatus
	for i := range objs.PipelineRuns {
		runs = append(runs, runOne(t, a.runner, &objs.PipelineRuns[i], live))
	}
	return a, runs
}

// archive runs ArchiveLogs, registered by name as the worker registers the
// struct, and returns its result and the heartbeats it recorded.
func archive(t *testing.T, a *Activities, in logs.ArchiveRequest) (logs.ArchiveResult, []logs.Progress, error) {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	s.SetLogger(sdkLogger)
	env := s.NewTestActivityEnvironment()
	env.SetTestTimeout(2 * time.Minute)
	// The test environment throttles heartbeats to one per 30 s (it has
	// no heartbeat timeout), so they are counted where they are recorded.
	beats := &beatRecorder{}
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{beats}})
	env.RegisterActivity(a)
	val, err := env.ExecuteActivity(workflowsArchiveLogs, in)
	var res logs.ArchiveResult
	if err == nil {
		err = val.Get(&res)
	}
	beats.mu.Lock()
	defer beats.mu.Unlock()
	return res, slices.Clone(beats.beats), err
}

// beatTasks lists the tasks of the heartbeats, each once, in order.
func beatTasks(beats []logs.Progress) []string {
	var tasks []string
	for _, b := range beats {
		if !slices.Contains(tasks, b.Task) {
			tasks = append(tasks, b.Task)
		}
	}
	return tasks
}

// beatRecorder records the logs.Progress heartbeats of the activities it
// intercepts.
type beatRecorder struct {
	interceptor.WorkerInterceptorBase
	mu    sync.Mutex
	beats []logs.Progress
}

func (r *beatRecorder) InterceptActivity(_ context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	return &beatInbound{ActivityInboundInterceptorBase: interceptor.ActivityInboundInterceptorBase{Next: next}, r: r}
}

type beatInbound struct {
	interceptor.ActivityInboundInterceptorBase
	r *beatRecorder
}

func (i *beatInbound) Init(outbound interceptor.ActivityOutboundInterceptor) error {
	return i.Next.Init(&beatOutbound{ActivityOutboundInterceptorBase: interceptor.ActivityOutboundInterceptorBase{Next: outbound}, r: i.r})
}

type beatOutbound struct {
	interceptor.ActivityOutboundInterceptorBase
	r *beatRecorder
}

func (o *beatOutbound) RecordHeartbeat(ctx context.Context, details ...any) {
	if len(details) == 1 {
		if p, ok := details[0].(logs.Progress); ok {
			o.r.mu.Lock()
			o.r.beats = append(o.r.beats, p)
			o.r.mu.Unlock()
		}
	}
	o.Next.RecordHeartbeat(ctx, details...)
}

// workflowsArchiveLogs is the activity name the workflows call
// (workflows.ActivityArchiveLogs; not imported, to keep this package free
// of the workflows).
const workflowsArchiveLogs = "ArchiveLogs"

// getObject returns an object's content.
func getObject(t *testing.T, c *s3.Client, key string) string {
	t.Helper()
	out, err := c.GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String(archiveBucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := aws.ToString(out.ContentType); ct != logs.ContentType {
		t.Errorf("%s: content type %q, want %q", key, ct, logs.ContentType)
	}
	return string(b)
}

// fromFiles builds what a task's archive must hold from its step log
// files, as they are on disk.
func fromFiles(t *testing.T, a *Activities, run string, ts TaskStatus) string {
	t.Helper()
	var b strings.Builder
	for _, st := range ts.Steps {
		b.WriteString("==> step-" + st.Name + " <==\n")
		content, err := os.ReadFile(a.runner.LogFile(run, ts.Name, st.Name))
		if errors.Is(err, os.ErrNotExist) {
			b.WriteString("kiln: no log: the step did not run (" + st.State + ")\n")
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		b.Write(content)
		if len(content) > 0 && content[len(content)-1] != '\n' {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func TestArchiveLogs(t *testing.T) {
	client := startArchiveS3(t)
	a, runs := archiveActivities(t, client, 0, archivePipeline)
	s := runs[0]
	if s.Reason != string(pipelinev1.PipelineRunReasonFailed) || task(t, s, "test").RetryCount != 1 {
		t.Fatalf("want a failed run (its finally task fails) whose test task was retried once:\n%s", describe(s))
	}
	in := logs.ArchiveRequest{Namespace: "builds", PipelineRun: "archive-me", Path: archivePath}
	res, beats, err := archive(t, a, in)
	if err != nil {
		t.Fatal(err)
	}
	wantLogs := map[string]string{}
	var total int64
	for name, want := range wantArchive {
		key := logs.Key(archivePrefix, archivePath, name)
		wantLogs[name] = "s3://" + archiveBucket + "/" + key
		got := getObject(t, client, key)
		if got != want {
			t.Errorf("task %s archived:\n%q\nwant:\n%q", name, got, want)
		}
		if files := fromFiles(t, a, "archive-me", task(t, s, name)); got != files {
			t.Errorf("task %s archived:\n%q\nthe step log files give:\n%q", name, got, files)
		}
		total += int64(len(want))
	}
	if !maps.Equal(res.Logs, wantLogs) || len(res.Missing) != 0 || res.Bytes != total {
		t.Errorf("result %+v, want logs %v (not the skipped task), none missing, %d bytes", res, wantLogs, total)
	}
	if want := []string{"build", "test", "cleanup"}; !slices.Equal(beatTasks(beats), want) {
		t.Errorf("heartbeats for tasks %v, want %v", beats, want)
	}

	// Archiving again (a retried activity) writes the same objects.
	again, _, err := archive(t, a, in)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(again.Logs, res.Logs) || again.Bytes != res.Bytes || len(again.Missing) != 0 {
		t.Errorf("re-archive %+v, want %+v", again, res)
	}
	for name, want := range wantArchive {
		if got := getObject(t, client, logs.Key(archivePrefix, archivePath, name)); got != want {
			t.Errorf("task %s after re-archive: %q", name, got)
		}
	}

	// A task whose logs are gone from this machine is missing, unless an
	// earlier attempt archived it.
	if err := os.RemoveAll(filepath.Join(a.runner.RunDir("archive-me"), "logs", "test")); err != nil {
		t.Fatal(err)
	}
	kept, _, err := archive(t, a, in)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(kept.Logs, res.Logs) || len(kept.Missing) != 0 || kept.Bytes != res.Bytes {
		t.Errorf("after the test task's logs went, at the archived path: %+v, want %+v", kept, res)
	}
	elsewhere := in
	elsewhere.Path = "build/main/1.0/image/aws-amd64/a2"
	gone, _, err := archive(t, a, elsewhere)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gone.Missing, []string{"test"}) || len(gone.Logs) != 2 || gone.Logs["test"] != "" {
		t.Errorf("after the test task's logs went, at a new path: %+v, want test missing and the two others archived", gone)
	}
	if _, err := client.HeadObject(context.Background(), &s3.HeadObjectInput{
		Bucket: aws.String(archiveBucket), Key: aws.String(logs.Key(archivePrefix, elsewhere.Path, "test")),
	}); err == nil {
		t.Error("an object was written for the missing task")
	}
}

// TestArchiveLogsStreamsParts archives a log of several parts: the object
// is the log, byte for byte, and the part size bounds the memory.
func TestArchiveLogsStreamsParts(t *testing.T) {
	client := startArchiveS3(t)
	a, runs := archiveActivities(t, client, storage.MinPartSize, `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: big}
spec:
  pipelineSpec:
    tasks:
    - name: loud
      taskSpec:
        steps: [{name: talk, image: x, script: "seq 1 2000000"}]
`)
	if !runs[0].Succeeded() {
		t.Fatal(describe(runs[0]))
	}
	res, beats, err := archive(t, a, logs.ArchiveRequest{Namespace: "default", PipelineRun: "big", Path: "big/1"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(beats, func(p logs.Progress) bool { return p.Task == "loud" && p.TaskBytes > 0 }) {
		t.Errorf("no heartbeat while streaming: %+v", beats)
	}
	file := readFile(t, a.runner.LogFile("big", "loud", "talk"))
	if int64(len(file)) < 2*storage.MinPartSize {
		t.Fatalf("the log is %d bytes, want at least two parts", len(file))
	}
	got := getObject(t, client, logs.Key(archivePrefix, "big/1", "loud"))
	if want := "==> step-talk <==\n" + file; got != want {
		t.Errorf("archived %d bytes, want the %d of the header and the log", len(got), len(want))
	}
	if res.Bytes != int64(len(got)) {
		t.Errorf("bytes %d, want %d", res.Bytes, len(got))
	}
}

func TestArchiveLogsErrors(t *testing.T) {
	client := startArchiveS3(t)
	a, _ := archiveActivities(t, client, 0, archivePipeline)
	noStorage, _ := archiveActivities(t, nil, 0, "")
	noBucket, _ := archiveActivities(t, client, 0, archivePipeline)
	noBucket.archive.Bucket = "nosuch"

	valid := logs.ArchiveRequest{Namespace: "builds", PipelineRun: "archive-me", Path: archivePath}
	with := func(f func(*logs.ArchiveRequest)) logs.ArchiveRequest {
		in := valid
		f(&in)
		return in
	}
	for _, tc := range []struct {
		name    string
		a       *Activities
		in      logs.ArchiveRequest
		errType string
		msg     string
	}{
		{"unknown run", a, with(func(in *logs.ArchiveRequest) { in.PipelineRun = "nosuch" }), logs.ErrTypeNotFound, "pipelinerun nosuch does not exist on this machine"},
		{"no storage", noStorage, valid, ErrTypeStorageNotConfigured, "storage is not configured"},
		{"no run", a, with(func(in *logs.ArchiveRequest) { in.PipelineRun = "" }), logs.ErrTypeInvalidRequest, "pipelineRun and path are required"},
		{"no path", a, with(func(in *logs.ArchiveRequest) { in.Path = "" }), logs.ErrTypeInvalidRequest, "pipelineRun and path are required"},
		{"run not a name", a, with(func(in *logs.ArchiveRequest) { in.PipelineRun = "../etc" }), logs.ErrTypeInvalidRequest, `pipelineRun "../etc"`},
		{"unclean path", a, with(func(in *logs.ArchiveRequest) { in.Path = "a/../b" }), logs.ErrTypeInvalidRequest, "not a clean relative path"},
		{"no bucket", noBucket, valid, storage.ErrTypeAccessDenied, "NoSuchBucket"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := archive(t, tc.a, tc.in)
			var appErr *temporal.ApplicationError
			if !errors.As(err, &appErr) {
				t.Fatalf("error %v, want an ApplicationError", err)
			}
			if appErr.Type() != tc.errType || !appErr.NonRetryable() || !strings.Contains(appErr.Error(), tc.msg) {
				t.Errorf("error type %q non-retryable %v %q, want non-retryable %q containing %q", appErr.Type(), appErr.NonRetryable(), appErr.Error(), tc.errType, tc.msg)
			}
		})
	}
}

func TestNewRejectsIncompleteArchive(t *testing.T) {
	for _, tc := range []struct {
		name    string
		archive Archive
		want    string
	}{
		{"no client", Archive{Bucket: "b"}, "archive.client: required"},
		{"no bucket", Archive{Client: s3.New(s3.Options{})}, "archive.bucket: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Options{Root: t.TempDir(), Archive: &tc.archive})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
