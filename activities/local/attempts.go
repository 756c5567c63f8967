package local

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Restart reasons, in Restart.Reason.
const (
	// RestartWorkerGone: the attempt was running (or had not written its
	// status yet) when the process running it died.
	RestartWorkerGone = "worker gone"
	// RestartInterrupted: the attempt was interrupted (StateInterrupted)
	// when its worker stopped.
	RestartInterrupted = "interrupted"
	// RestartUnreadable: the attempt's status.json could not be read.
	RestartUnreadable = "unreadable status"
	// RestartReplaced prefixes the reason of an attempt that finished
	// without succeeding and was replaced (RunOptions.Replace), followed
	// by its Tekton reason: "replaced: Failed", "replaced: Cancelled".
	RestartReplaced = "replaced: "
)

// Restart records that a run's attempt was set aside and the run started
// again.
type Restart struct {
	// Attempt is the number of the attempt set aside; its directory is
	// kept, see Runner.AttemptDir.
	Attempt int `json:"attempt"`
	// Reason is why: RestartWorkerGone, RestartInterrupted,
	// RestartUnreadable, or RestartReplaced followed by the attempt's
	// reason.
	Reason string `json:"reason"`
	// PreviousState is the attempt's recorded State ("" if it had none).
	PreviousState string    `json:"previousState,omitempty"`
	At            time.Time `json:"at"`
}

// AttemptDir returns the directory in which an earlier attempt of the run
// named name is kept: <Root>/attempts/<name>/<attempt>. The current
// attempt is in RunDir(name).
func (r *Runner) AttemptDir(name string, attempt int) string {
	return attemptDir(r.root, name, attempt)
}

func attemptDir(root, name string, attempt int) string {
	return filepath.Join(root, "attempts", name, strconv.Itoa(attempt))
}

// Attempts returns the records of the earlier attempts of the run named
// name, oldest first (none for a run that never restarted); see
// ReadAttempts.
func (r *Runner) Attempts(name string) ([]RunStatus, error) {
	return ReadAttempts(r.root, name)
}

// ReadAttempts returns the records of the earlier attempts of the run
// named name under root (a Runner's Options.Root), oldest first, without a
// Runner: when a run restarts after a crash or is replaced, its directory
// is kept, with its status and logs, and the new attempt's status lists
// the restarts (RunStatus.Restarts). Each record's Attempt is its number;
// an attempt that never wrote its status has only Name and Attempt.
// Its step logs are read with OpenAttemptTaskLog.
func ReadAttempts(root, name string) ([]RunStatus, error) {
	if !validRunName(name) {
		return nil, fmt.Errorf("run %q: %w", name, fs.ErrNotExist)
	}
	ns, err := keptAttempts(root, name)
	if err != nil {
		return nil, err
	}
	var out []RunStatus
	for _, n := range ns {
		s, err := readStatus(attemptDir(root, name, n))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			s = RunStatus{Name: name}
		case err != nil:
			return nil, fmt.Errorf("attempt %d of run %s: %w", n, name, err)
		}
		s.Attempt = n
		out = append(out, s)
	}
	return out, nil
}

// OpenAttemptTaskLog is OpenTaskLog for an earlier attempt of the run (its
// number from ReadAttempts), with t from that attempt's record.
func OpenAttemptTaskLog(root, run string, attempt int, t TaskStatus) (io.ReadCloser, error) {
	if !validRunName(run) {
		return nil, fmt.Errorf("run %q: %w", run, fs.ErrNotExist)
	}
	return openTaskLog(attemptDir(root, run, attempt), fmt.Sprintf("%s (attempt %d)", run, attempt), t)
}

// keptAttempts returns the numbers of the kept attempts of the run, in
// order.
func keptAttempts(root, name string) ([]int, error) {
	ents, err := os.ReadDir(filepath.Join(root, "attempts", name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("attempts of run %s: %w", name, err)
	}
	var ns []int
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil && n > 0 && e.IsDir() {
			ns = append(ns, n)
		}
	}
	slices.Sort(ns)
	return ns, nil
}

func validRunName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsRune(name, filepath.Separator)
}
