package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/sdk/temporal"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/kiln-build/kiln/activities/logs"
	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/activities/tekton"
)

// ErrTypeStorageNotConfigured is the type of the non-retryable error
// ArchiveLogs returns when the Activities were made without an Archive.
const ErrTypeStorageNotConfigured = "StorageNotConfigured"

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
	var tasks []logs.TaskLogs
	for _, t := range s.Tasks {
		if t.TaskRun == "" { // skipped, or not started: the cluster has no TaskRun either
			continue
		}
		tasks = append(tasks, logs.TaskLogs{Name: t.Name, Open: func() (io.ReadCloser, error) {
			r, err := OpenTaskLog(a.runner.root, in.PipelineRun, t)
			if errors.Is(err, fs.ErrNotExist) {
				err = fmt.Errorf("%w: %w", logs.ErrNoLogs, err)
			}
			return r, err
		}})
	}
	store := logs.Store{Client: a.archive.Client, Config: logs.Config{Bucket: a.archive.Bucket, Prefix: a.archive.Prefix, PartSize: a.archive.PartSize}}
	return store.Archive(ctx, in.Path, tasks, func(task string, err error) error {
		// Disk errors are not S3 API errors: Classify retries them.
		return storage.Classify(fmt.Sprintf("archive logs of task %s", task), err)
	})
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
	return openTaskLog(filepath.Join(root, "runs", run), run, t)
}

// openTaskLog is OpenTaskLog for the attempt in runDir; run names it in
// errors.
func openTaskLog(runDir, run string, t TaskStatus) (io.ReadCloser, error) {
	dir := filepath.Join(runDir, "logs", t.Name)
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
