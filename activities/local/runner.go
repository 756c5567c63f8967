package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/workspace"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/util/validation"
)

const statusFile = "status.json"

// Options configure a Runner, and the Activities built on one.
type Options struct {
	// Root is the directory under which runs keep their state. Required.
	// A run named N lives in <Root>/runs/N; persistentVolumeClaim
	// workspaces live in <Root>/volumes/<claimName> and outlive runs.
	Root string
	// Pipelines and Tasks resolve pipelineRef and taskRef by name (the
	// namespace is ignored). Optional.
	Pipelines []pipelinev1.Pipeline
	Tasks     []pipelinev1.Task
	// ConfigMaps and Secrets back configMap, secret and projected
	// workspaces and env valueFrom/envFrom references. Optional.
	ConfigMaps []corev1.ConfigMap
	Secrets    []corev1.Secret
	// MaxParallel bounds how many tasks run at once, across all runs of
	// the Runner. Optional: default runtime.NumCPU().
	MaxParallel int
	// Log receives the steps' output live, line by line, each line
	// prefixed with "[task/step] ". Writes are serialised. Optional: the
	// output is still kept in each step's log file.
	Log io.Writer
	// Logger receives the runner's own messages, including the warning
	// that step images are ignored. Optional: default slog.Default().
	Logger *slog.Logger
	// Env is the environment steps start from, before their own env.
	// Optional: default the worker's (os.Environ()).
	Env []string
	// ScriptShell runs step scripts that have no shebang line. Tekton runs
	// them with the step image's /bin/sh (and "set -e"); on the host that
	// may be another shell (dash on Debian, where busybox images accept
	// [[ ]] and ==). Optional: default /bin/sh.
	ScriptShell string
	// Isolation is how steps are kept from the host and from each other:
	// IsolationNamespaces runs each step (and sidecar) in user, mount and
	// PID namespaces of its own, with the paths a pod's container has
	// (/workspace, /tekton/home, /tekton/results, workspaces at their
	// mountPath, volumes at their volumeMounts) and the host's other
	// directories read-only; no root is needed, but the kernel must allow
	// unprivileged user namespaces, which NewRunner checks.
	// IsolationNone runs steps on the host, in directories under Root,
	// without volumes, volumeMounts or sidecars. Optional: default
	// IsolationNamespaces.
	Isolation string
	// HeartbeatInterval is how often RunPipeline heartbeats while nothing
	// changes (Activities only). Optional: default a third of the
	// activity's heartbeat timeout, at most 5 s.
	HeartbeatInterval time.Duration
	// WorkerQueue is the Temporal task queue that only this worker polls,
	// which WorkerQueue reports (Activities only). Optional: "" sends a
	// run's activities to any worker, right only for a single worker.
	WorkerQueue string
	// Archive is where ArchiveLogs puts the step logs (Activities only).
	// Optional: without it, ArchiveLogs fails with
	// ErrTypeStorageNotConfigured.
	Archive *Archive
}

// Runner runs Tekton PipelineRuns as processes on this machine. It is safe
// for concurrent use; runs with distinct names run concurrently.
type Runner struct {
	root       string
	pipelines  map[string]*pipelinev1.Pipeline
	tasks      map[string]*pipelinev1.Task
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
	slots      chan struct{}
	live       *liveLog
	logger     *slog.Logger
	environ    []string
	preamble   string
	firstStep  sync.Once
	// namespaces is true with IsolationNamespaces.
	namespaces bool

	mu       sync.Mutex
	active   map[string]*execution
	starting map[string]chan struct{} // closed when begin has prepared the run
}

// NewRunner returns a Runner for opts.
func NewRunner(opts Options) (*Runner, error) {
	r, err := newRunner(opts)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"runs", "attempts", "volumes", "locks", "root"} {
		if err := os.MkdirAll(filepath.Join(r.root, d), 0o755); err != nil {
			return nil, fmt.Errorf("root: %w", err)
		}
	}
	if r.namespaces {
		if err := probeNamespaces(r.root); err != nil {
			return nil, namespaceError(err)
		}
	}
	return r, nil
}

// Check reports, without running or writing anything, what Run would
// refuse in pr before running it: Tekton's own validation, references to
// Pipelines and Tasks that opts does not hold, and features the local
// runner does not support, each naming its field.
func Check(ctx context.Context, opts Options, pr *pipelinev1.PipelineRun) error {
	r, err := newRunner(opts)
	if err != nil {
		return err
	}
	_, err = r.plan(ctx, pr, "check")
	return err
}

func newRunner(opts Options) (*Runner, error) {
	if opts.Root == "" {
		return nil, errors.New("root: required")
	}
	root, err := filepath.Abs(opts.Root)
	if err != nil {
		return nil, fmt.Errorf("root: %w", err)
	}
	n := opts.MaxParallel
	if n <= 0 {
		n = runtime.NumCPU()
	}
	r := &Runner{
		root:       root,
		pipelines:  map[string]*pipelinev1.Pipeline{},
		tasks:      map[string]*pipelinev1.Task{},
		configMaps: map[string]*corev1.ConfigMap{},
		secrets:    map[string]*corev1.Secret{},
		slots:      make(chan struct{}, n),
		logger:     opts.Logger,
		environ:    opts.Env,
		active:     map[string]*execution{},
		starting:   map[string]chan struct{}{},
	}
	switch opts.Isolation {
	case "", IsolationNamespaces:
		r.namespaces = true
	case IsolationNone:
	default:
		return nil, fmt.Errorf("isolation: %q is neither %q nor %q", opts.Isolation, IsolationNamespaces, IsolationNone)
	}
	if r.environ == nil {
		r.environ = os.Environ()
	}
	shell := opts.ScriptShell
	if shell == "" {
		shell = "/bin/sh"
	}
	r.preamble = "#!" + shell + "\nset -e\n"
	if r.logger == nil {
		r.logger = slog.Default()
	}
	if opts.Log != nil {
		r.live = &liveLog{w: opts.Log}
	}
	if err := index(r.pipelines, opts.Pipelines, func(p *pipelinev1.Pipeline) string { return p.Name }, "pipeline"); err != nil {
		return nil, err
	}
	if err := index(r.tasks, opts.Tasks, func(t *pipelinev1.Task) string { return t.Name }, "task"); err != nil {
		return nil, err
	}
	if err := index(r.configMaps, opts.ConfigMaps, func(c *corev1.ConfigMap) string { return c.Name }, "configmap"); err != nil {
		return nil, err
	}
	if err := index(r.secrets, opts.Secrets, func(s *corev1.Secret) string { return s.Name }, "secret"); err != nil {
		return nil, err
	}
	return r, nil
}

func index[T any](m map[string]*T, items []T, name func(*T) string, kind string) error {
	for i := range items {
		n := name(&items[i])
		if n == "" {
			return fmt.Errorf("%s %d: no name", kind, i)
		}
		if _, dup := m[n]; dup {
			return fmt.Errorf("%s %q: given twice", kind, n)
		}
		m[n] = &items[i]
	}
	return nil
}

// Outcome is a finished (or interrupted) run.
type Outcome struct {
	// Status is the run's final record, as in status.json.
	Status RunStatus
	// Adopted is true when Run found the run already finished and returned
	// its record, or joined a run already in progress in this process.
	Adopted bool
	// Dir is the run's directory.
	Dir string
}

// ErrConflict reports a run name already used by a run of another spec.
var ErrConflict = errors.New("run exists with another spec")

// ErrBusy reports a run in progress in another process.
var ErrBusy = errors.New("run in progress in another process")

// RunDir returns the directory of the run named name.
func (r *Runner) RunDir(name string) string { return filepath.Join(r.root, "runs", name) }

// LogFile returns the log file of a step: <run dir>/logs/<task>/<step>.log,
// where an unnamed step is "unnamed-<index>".
func (r *Runner) LogFile(run, task, step string) string {
	return filepath.Join(r.RunDir(run), "logs", task, step+".log")
}

// Status returns the recorded status of the run named name, live if it is
// in progress in this process; it reports an error wrapping
// fs.ErrNotExist for an unknown run.
func (r *Runner) Status(name string) (RunStatus, error) {
	r.mu.Lock()
	x := r.active[name]
	r.mu.Unlock()
	if x != nil {
		return x.snapshot(), nil
	}
	return readStatus(r.RunDir(name))
}

// RunOptions tune one call of Runner.Run.
type RunOptions struct {
	// OnProgress is called with the run's status whenever a task or step
	// changes. Optional.
	OnProgress func(RunStatus)
	// Replace runs again a run of the same name that finished without
	// succeeding (failed, cancelled, timed out, failed validation),
	// instead of returning its recorded outcome. A run that succeeded is
	// adopted all the same. Set it when the caller knows that the recorded
	// run is not its own: a re-run of a failed build, not a retry of the
	// call that ran it.
	Replace bool
}

// Run runs pr on this machine and waits for its outcome.
//
// The run's name identifies it. If a run with that name already finished,
// Run returns its recorded outcome (Adopted) without running anything, or
// ErrConflict if its spec differs; with opts.Replace, a run that finished
// without succeeding is run again instead. If it is in progress in this
// process, Run waits for it. If it was in progress in a process that died,
// Run starts it again in a fresh directory. If another live process is
// running it, Run returns ErrBusy.
//
// Everything is validated and resolved before anything runs: an invalid
// spec or an unsupported feature gives a *SpecError naming the field.
// When ctx ends, the run is cancelled (Tekton's Cancelled: every step's
// process group is killed, finally tasks do not run), recorded, and
// returned with ctx's error.
func (r *Runner) Run(ctx context.Context, pr *pipelinev1.PipelineRun, opts RunOptions) (*Outcome, error) {
	if errs := validation.IsDNS1123Subdomain(pr.Name); len(errs) > 0 {
		return nil, &SpecError{Problems: []string{fmt.Sprintf("metadata.name: %q: %s", pr.Name, errs[0])}}
	}
	p, err := r.plan(ctx, pr, string(uuid.NewUUID()))
	if err != nil {
		return nil, err
	}
	x, adopted, err := r.begin(p, opts)
	if err != nil {
		return nil, err
	}
	if x == nil {
		return adopted, nil
	}
	select {
	case <-x.done:
	case <-ctx.Done():
		r.Cancel(p.pr.Name, pipelinev1.PipelineRunSpecStatusCancelled)
		<-x.done
		return &Outcome{Status: x.snapshot(), Dir: x.dir}, ctx.Err()
	}
	return &Outcome{Status: x.snapshot(), Dir: x.dir, Adopted: adopted != nil}, nil
}

// begin starts p's run or finds it, with opts.OnProgress listening before
// anything runs. It returns the execution to wait for (with a non-nil
// Outcome if it was already in progress here), or only an Outcome for a
// finished run.
func (r *Runner) begin(p *plan, opts RunOptions) (*execution, *Outcome, error) {
	name := p.pr.Name
	dir := r.RunDir(name)
	r.mu.Lock()
	for r.starting[name] != nil { // another call is preparing the run: join it
		ready := r.starting[name]
		r.mu.Unlock()
		<-ready
		r.mu.Lock()
	}
	if x := r.active[name]; x != nil {
		defer r.mu.Unlock()
		if x.plan.specHash != p.specHash {
			return nil, nil, fmt.Errorf("run %q: %w", name, ErrConflict)
		}
		x.listen(opts.OnProgress)
		return x, &Outcome{Adopted: true, Dir: dir}, nil
	}
	lock, err := LockFile(filepath.Join(r.root, "locks", name))
	if err != nil {
		r.mu.Unlock()
		return nil, nil, fmt.Errorf("run %q: %w", name, err)
	}
	// Preparing may wait for an earlier attempt's processes to die: not
	// under r.mu, which every run's Status and Cancel need.
	ready := make(chan struct{})
	r.starting[name] = ready
	r.mu.Unlock()
	x, adopted, err := r.prepare(p, opts, dir)
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.starting, name)
	close(ready)
	if x == nil {
		lock.Close()
		return nil, adopted, err
	}
	r.active[name] = x
	go func() {
		x.loop()
		// Released before done is closed, so that a Run after this one
		// returned finds the run finished, on disk, and not in progress.
		r.mu.Lock()
		delete(r.active, name)
		r.mu.Unlock()
		lock.Close()
		close(x.done)
	}()
	return x, nil, nil
}

// prepare decides, holding the run's lock, whether the recorded run is
// adopted (it returns only an Outcome) or run, and then sets up the new
// attempt's directory and returns its execution, not yet started.
func (r *Runner) prepare(p *plan, opts RunOptions, dir string) (*execution, *Outcome, error) {
	name := p.pr.Name
	prev, err := readStatus(dir)
	reason := RestartWorkerGone
	switch {
	case err == nil && prev.State == StateDone && prev.SpecHash != p.specHash:
		return nil, nil, fmt.Errorf("run %q: %w (recorded %s, requested %s)", name, ErrConflict, prev.SpecHash, p.specHash)
	case err == nil && prev.State == StateDone && (prev.Succeeded() || !opts.Replace):
		return nil, &Outcome{Status: prev, Adopted: true, Dir: dir}, nil
	case err == nil && prev.State == StateDone:
		reason = RestartReplaced + prev.Reason
		r.logger.Info("replacing a run that did not succeed", "pipelinerun", name, "reason", prev.Reason)
	case err == nil:
		if prev.State == StateInterrupted {
			reason = RestartInterrupted
		}
		r.logger.Warn("restarting a run whose process is gone", "pipelinerun", name, "state", prev.State, "pid", prev.PID)
	case !errors.Is(err, fs.ErrNotExist):
		reason = RestartUnreadable
		r.logger.Warn("restarting a run with an unreadable status", "pipelinerun", name, "error", err)
	}
	attempt, restarts, err := r.retire(name, dir, prev, reason)
	if err != nil {
		return nil, nil, fmt.Errorf("run %q: %w", name, err)
	}
	for _, d := range []string{"", "logs", "workspaces", "results", "scripts", "steps", "work"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, nil, fmt.Errorf("run %q: %w", name, err)
		}
	}
	for _, w := range p.warnings {
		r.logger.Warn("ignored by the local runner", "pipelinerun", name, "field", w)
	}
	x := newExecution(r, p, dir)
	x.status.Attempt, x.status.Restarts = attempt, restarts
	x.listen(opts.OnProgress)
	return x, nil, nil
}

// retire sets the run's current attempt aside, if it has a directory: it
// kills what that attempt left running (killLeftovers) and waits for it to
// die, then moves the directory to AttemptDir. It returns the number of
// the attempt to come and its restarts (prev's, and this one).
func (r *Runner) retire(name, dir string, prev RunStatus, reason string) (int, []Restart, error) {
	kept, err := keptAttempts(r.root, name)
	if err != nil {
		return 0, nil, err
	}
	n := 0 // the last kept attempt's number
	if len(kept) > 0 {
		n = kept[len(kept)-1]
	}
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return n + 1, nil, nil
	} else if err != nil {
		return 0, nil, err
	}
	if err := killLeftovers(dir); err != nil {
		return 0, nil, fmt.Errorf("end the earlier attempt's processes: %w", err)
	}
	n = max(n+1, prev.Attempt)
	to := r.AttemptDir(name, n)
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return 0, nil, fmt.Errorf("keep attempt %d: %w", n, err)
	}
	if err := os.Rename(dir, to); err != nil {
		return 0, nil, fmt.Errorf("keep attempt %d: %w", n, err)
	}
	restarts := append(slices.Clone(prev.Restarts), Restart{Attempt: n, Reason: reason, PreviousState: prev.State, At: time.Now().UTC()})
	return n + 1, restarts, nil
}

// LockFile takes an exclusive lock on the file at path (created if
// missing), which stays locked until the returned file is closed or the
// process dies; it returns ErrBusy if another process holds it. A run's
// lock file is locked while a process runs it; a worker locks its root.
func LockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrBusy
		}
		return nil, fmt.Errorf("lock: %w", err)
	}
	return f, nil
}

// Cancel asks the run named name, if it is in progress in this process, to
// stop: mode is Cancelled (kill every step, no finally tasks),
// CancelledRunFinally (kill the DAG tasks' steps, run finally) or
// StoppedRunFinally (start no new DAG task, run finally). It reports
// whether such a run was found; it does not wait.
func (r *Runner) Cancel(name string, mode pipelinev1.PipelineRunSpecStatus) bool {
	r.mu.Lock()
	x := r.active[name]
	r.mu.Unlock()
	if x == nil {
		return false
	}
	select {
	case x.requests <- mode:
	case <-x.done:
	}
	return true
}

// abort kills the run named name without an outcome: it is recorded as
// Interrupted, so that the next Run with its name starts it again. It
// waits until the run's processes are gone.
func (r *Runner) abort(name string) {
	r.mu.Lock()
	x := r.active[name]
	r.mu.Unlock()
	if x == nil {
		return
	}
	x.abortOnce.Do(func() { close(x.abort) })
	<-x.done
}

func defaultTimeout(*plan) time.Duration {
	return time.Duration(config.FromContextOrDefaults(context.Background()).Defaults.DefaultTimeoutMinutes) * time.Minute
}

func applyBindingStrings(b *pipelinev1.WorkspaceBinding, m map[string]string) {
	*b = workspace.ReplaceWorkspaceBindingsVars([]pipelinev1.WorkspaceBinding{*b}, m)[0]
}

// IsSpecError reports whether err is a *SpecError.
func IsSpecError(err error) bool {
	var se *SpecError
	return errors.As(err, &se)
}
