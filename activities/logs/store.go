package logs

import (
	"context"
	"errors"
	"io"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.temporal.io/sdk/activity"

	"github.com/kiln-build/kiln/activities/storage"
)

// ErrNoLogs means that a task's logs are not here any more: its pods, or
// its step files, are gone.
var ErrNoLogs = errors.New("the task's logs are gone")

// TaskLogs is one pipeline task whose logs an executor archives.
type TaskLogs struct {
	Name string
	// Open returns the task's log, a NewReader of its sections, or an error
	// wrapping ErrNoLogs.
	Open func() (io.ReadCloser, error)
}

// Store is where archived logs go.
type Store struct {
	Client *s3.Client
	Config
}

// Archive streams each task's log into Key(Prefix, path, task), one object
// per task, heartbeating a Progress per task and about once a second while
// streaming. A task with no logs here counts as archived if an earlier
// attempt left its object, and as Missing otherwise. classify turns an
// error met while streaming into the activity's error; one wrapping
// ErrNoLogs means the logs went away on the way (the upload was aborted).
// Both executors' ArchiveLogs are this loop over their own tasks.
func (s Store) Archive(ctx context.Context, path string, tasks []TaskLogs, classify func(task string, err error) error) (ArchiveResult, error) {
	res := ArchiveResult{Logs: map[string]string{}}
	for _, t := range tasks {
		activity.RecordHeartbeat(ctx, Progress{Task: t.Name, Bytes: res.Bytes})
		key := Key(s.Prefix, path, t.Name)
		n, err := s.upload(ctx, t, key, res.Bytes, classify)
		if errors.Is(err, ErrNoLogs) {
			n, err = s.archivedBefore(ctx, key)
			if err == nil && n < 0 {
				res.Missing = append(res.Missing, t.Name)
				continue
			}
		}
		if err != nil {
			return res, err
		}
		res.Logs[t.Name] = "s3://" + s.Bucket + "/" + key
		res.Bytes += n
	}
	slices.Sort(res.Missing)
	return res, nil
}

// upload streams t's log into key and returns its size. done is the
// number of bytes archived before, for the heartbeats.
func (s Store) upload(ctx context.Context, t TaskLogs, key string, done int64, classify func(string, error) error) (int64, error) {
	r, err := t.Open()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	body := CountingReader(r, heartbeatEvery, func(n int64) {
		activity.RecordHeartbeat(ctx, Progress{Task: t.Name, TaskBytes: n, Bytes: done + n})
	})
	up, err := storage.Upload(ctx, s.Client, s.Bucket, key, body, s.PartSize, ContentType)
	switch {
	case err == nil:
		return up.Bytes, nil
	case ctx.Err() != nil:
		return 0, ctx.Err()
	default:
		return 0, classify(t.Name, err)
	}
}

// archivedBefore returns the size of key if an earlier attempt archived it,
// or -1.
func (s Store) archivedBefore(ctx context.Context, key string) (int64, error) {
	head, err := s.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.Bucket, Key: &key})
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) && re.HTTPStatusCode() == 404 {
		return -1, nil
	}
	if err != nil {
		return 0, storage.Classify("head "+key, err)
	}
	return aws.ToInt64(head.ContentLength), nil
}
