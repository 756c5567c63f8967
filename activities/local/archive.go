package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kiln-build/kiln/activities/logs"
	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/activities/tekton"
)

// ErrTypeStorageNotConfigured is the type of the non-retryable error
// ArchiveLogs returns when the Activities were made without an Archive.
const ErrTypeStorageNotConfigured = "StorageNotConfigured"

// archiveHeartbeat is how often ArchiveLogs heartbeats while streaming.
const archiveHeartbeat = time.Second

// Archive says where ArchiveLogs puts the step logs: the same bucket and
// keys as the cluster's activities/logs.
type Archive struct {
	// Client writes to S3. Required.
	Client *s3.Client
	// Bucket receives the logs. Required.
	Bucket string
	// Prefix is prepended to every key, e.g. "gardenlinux/". Optional.
	Prefix string
	// PartSize is the multipart upload's part size, the most memory one
	// archive holds. Optional: default storage.DefaultPartSize, at least
	// storage.MinPartSize.
	PartSize int64
}

func (a *Archive) validate() error {
	if a == nil {
		return nil
	}
	var errs []error
	if a.Client == nil {
		errs = append(errs, errors.New("archive.client: required"))
	}
	if a.Bucket == "" {
		errs = append(errs, errors.New("archive.bucket: required"))
	}
	return errors.Join(errs...)
}

// ArchiveLogs copies the step logs of the local run named in.PipelineRun
// into S3, as activities/logs does for a cluster's PipelineRun: one object
// per pipeline task that got a TaskRun, at logs.Key(prefix, in.Path,
// task), holding the task's steps in order, each introduced by a line
// "==> step-<name> <==" (see OpenTaskLog), and returns their URIs.
// in.Namespace is not used: local runs are identified by name alone.
//
// Retries: the runner appends every attempt of a task to the same step
// log files, so the object holds all attempts, oldest first, each step's
// attempts under the one header (the cluster archives the last attempt's
// pod only).
//
// It streams each file (storage.Upload holds at most one part in memory),
// heartbeats a logs.Progress per task and about once a second while
// streaming, and is idempotent: keys are deterministic and a retry
// overwrites each object with the same content.
//
// A task whose logs are gone from this machine is listed in Missing, or in
// Logs if an earlier attempt archived it. Errors, all non-retryable: a run
// unknown on this machine is logs.ErrTypeNotFound (its tasks cannot be
// known); a missing PipelineRun or Path, or one that cannot name a file,
// is logs.ErrTypeInvalidRequest; Activities without an Archive give
// ErrTypeStorageNotConfigured; S3's AccessDenied and NoSuchBucket are
// storage.ErrTypeAccessDenied. Other S3 and disk trouble is retried.
func (a *Activities) ArchiveLogs(ctx context.Context, in logs.ArchiveRequest) (logs.ArchiveResult, error) {
	if a.archive == nil {
		return logs.ArchiveResult{}, temporal.NewNonRetryableApplicationError(
			"archive logs: storage is not configured; give the worker's config a storage section", ErrTypeStorageNotConfigured, nil)
	}
	if err := validateArchive(in); err != nil {
		return logs.ArchiveResult{}, err
	}
	s, err := a.runner.Status(in.PipelineRun)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return logs.ArchiveResult{}, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("pipelinerun %s does not exist on this machine (no %s)", in.PipelineRun, a.runner.RunDir(in.PipelineRun)), logs.ErrTypeNotFound, err)
	case err != nil:
		return logs.ArchiveResult{}, fmt.Errorf("read pipelinerun %s: %w", in.PipelineRun, err)
	}
	res := logs.ArchiveResult{Logs: map[string]string{}}
	for _, t := range s.Tasks {
		if t.TaskRun == "" { // skipped, or not started: the cluster has no TaskRun either
			continue
		}
		activity.RecordHeartbeat(ctx, logs.Progress{Task: t.Name, Bytes: res.Bytes})
		key := logs.Key(a.archive.Prefix, in.Path, t.Name)
		n, err := a.archiveTask(ctx, in.PipelineRun, t, key, res.Bytes)
		if errors.Is(err, fs.ErrNotExist) {
			n, err = a.archivedBefore(ctx, key)
			if err == nil && n < 0 {
				res.Missing = append(res.Missing, t.Name)
				continue
			}
		}
		if err != nil {
			return res, err
		}
		res.Logs[t.Name] = "s3://" + a.archive.Bucket + "/" + key
		res.Bytes += n
	}
	slices.Sort(res.Missing)
	return res, nil
}

func validateArchive(in logs.ArchiveRequest) error {
	if in.PipelineRun == "" || in.Path == "" {
		return temporal.NewNonRetryableApplicationError("pipelineRun and path are required", logs.ErrTypeInvalidRequest, nil)
	}
	if errs := validation.IsDNS1123Subdomain(in.PipelineRun); len(errs) > 0 {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("pipelineRun %q: %s", in.PipelineRun, errs[0]), logs.ErrTypeInvalidRequest, nil)
	}
	for seg := range strings.SplitSeq(in.Path, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return temporal.NewNonRetryableApplicationError(fmt.Sprintf("path %q is not a clean relative path", in.Path), logs.ErrTypeInvalidRequest, nil)
		}
	}
	return nil
}

// archiveTask streams t's step logs into key and returns their size. It
// returns an error wrapping fs.ErrNotExist if the task has no logs here.
// done is the number of bytes archived before, for the heartbeats.
func (a *Activities) archiveTask(ctx context.Context, run string, t TaskStatus, key string, done int64) (int64, error) {
	r, err := OpenTaskLog(a.runner.root, run, t)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	body := logs.CountingReader(r, archiveHeartbeat, func(n int64) {
		activity.RecordHeartbeat(ctx, logs.Progress{Task: t.Name, TaskBytes: n, Bytes: done + n})
	})
	up, err := storage.Upload(ctx, a.archive.Client, a.archive.Bucket, key, body, a.archive.PartSize, logs.ContentType)
	switch {
	case err == nil:
		return up.Bytes, nil
	case ctx.Err() != nil:
		return 0, ctx.Err()
	default:
		// Disk errors are not S3 API errors: Classify retries them.
		return 0, storage.Classify(fmt.Sprintf("archive logs of task %s", t.Name), err)
	}
}

// archivedBefore returns the size of key if an earlier attempt archived it,
// or -1.
func (a *Activities) archivedBefore(ctx context.Context, key string) (int64, error) {
	head, err := a.archive.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &a.archive.Bucket, Key: &key})
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) && re.HTTPStatusCode() == 404 {
		return -1, nil
	}
	if err != nil {
		return 0, storage.Classify("head "+key, err)
	}
	return aws.ToInt64(head.ContentLength), nil
}

// ReadStatus returns the recorded status of the run named name under root
// (a Runner's Options.Root), without a Runner: for tools that read the runs
// of a worker, in this process or another. It reports an error wrapping
// fs.ErrNotExist for an unknown run. A run in progress may be a moment
// behind its process's own view.
func ReadStatus(root, name string) (RunStatus, error) {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, filepath.Separator) {
		return RunStatus{}, fmt.Errorf("run %q: %w", name, fs.ErrNotExist)
	}
	return readStatus(filepath.Join(root, "runs", name))
}

// OpenTaskLog returns the step logs of the pipeline task t (from the
// RunStatus of the run named run under root) in the format of the
// cluster's archived logs: t's steps in order, each introduced by a line
// "==> step-<name> <==" and followed by its log file's content (every
// attempt of a retried task, oldest first, as the runner appends them); a
// log that does not end with a newline gets one. A step that never ran has
// a line "kiln: no log: ..." instead of its log.
//
// The reader opens one file at a time and holds none in memory. It
// reports an error wrapping fs.ErrNotExist when the task has no logs on
// this machine: it ran no step, or its log directory is gone.
func OpenTaskLog(root, run string, t TaskStatus) (io.ReadCloser, error) {
	dir := filepath.Join(root, "runs", run, "logs", t.Name)
	if len(t.Steps) == 0 {
		return nil, fmt.Errorf("logs of task %s of run %s: the task ran no step: %w", t.Name, run, fs.ErrNotExist)
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("logs of task %s of run %s: %w", t.Name, run, err)
	}
	secs := make([]logs.Section, len(t.Steps))
	for i, st := range t.Steps {
		secs[i] = logs.Section{Name: "step-" + st.Name, Open: func() (io.ReadCloser, string, error) {
			path := filepath.Join(dir, st.Name+".log")
			f, err := os.Open(path)
			switch {
			case errors.Is(err, fs.ErrNotExist) && (st.State == tekton.TaskSkipped || st.State == tekton.TaskPending):
				return nil, fmt.Sprintf("kiln: no log: the step did not run (%s)", st.State), nil
			case errors.Is(err, fs.ErrNotExist):
				return nil, fmt.Sprintf("kiln: no log: %s is gone", path), nil
			case err != nil:
				return nil, "", err
			}
			return f, "", nil
		}}
	}
	return logs.NewReader(secs), nil
}
