package workflows_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/kiln-build/kiln/activities/tekton"
	"github.com/kiln-build/kiln/workflows"
)

// runs is a RunPipeline stand-in whose runs end only when CancelPipelineRun
// stops them: it ignores its context, as a run does whose activity only
// stops awaiting (a lost heartbeat is not a cancel).
type runs struct {
	mu        sync.Mutex
	stop      map[string]chan struct{}
	cancelled []string
	queues    map[string][]string // activity type → task queues it ran on
}

func newRuns() *runs {
	return &runs{stop: map[string]chan struct{}{}, queues: map[string][]string{}}
}

func (r *runs) ch(name string) chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stop[name] == nil {
		r.stop[name] = make(chan struct{})
	}
	return r.stop[name]
}

func (r *runs) ran(ctx context.Context) {
	info := activity.GetInfo(ctx)
	r.mu.Lock()
	r.queues[info.ActivityType.Name] = append(r.queues[info.ActivityType.Name], info.TaskQueue)
	r.mu.Unlock()
}

func (r *runs) run(ctx context.Context, req tekton.PipelineRunRequest) (tekton.PipelineRunResult, error) {
	r.ran(ctx)
	name := tekton.RunName(req.Key)
	if req.Labels["kiln.dev/phase"] != "image" {
		return tekton.PipelineRunResult{PipelineRun: name}, nil
	}
	select {
	case <-r.ch(name):
		return tekton.PipelineRunResult{}, temporal.NewNonRetryableApplicationError("pipelinerun "+name+" Cancelled", "Cancelled", nil, tekton.Failure{Reason: "Cancelled"})
	case <-time.After(10 * time.Second):
		return tekton.PipelineRunResult{}, errors.New("nobody cancelled pipelinerun " + name)
	}
}

func (r *runs) cancel(ctx context.Context, in tekton.CancelRequest) error {
	r.ran(ctx)
	r.mu.Lock()
	r.cancelled = append(r.cancelled, in.PipelineRun)
	r.mu.Unlock()
	close(r.ch(in.PipelineRun))
	return nil
}

// TestCancelledBuildCancelsItsRuns: cancelling a build makes the workflow
// call CancelPipelineRun for every run in flight at once, without waiting
// for the awaiting activity to notice (through a throttled heartbeat) and
// without the activity cancelling anything itself.
func TestCancelledBuildCancelsItsRuns(t *testing.T) {
	rec := &recorder{}
	env := newEnv(t, testPlan(3), rec)
	r := newRuns()
	rec.override = r.run
	rec.cancelHook = r.cancel
	go func() {
		for {
			r.mu.Lock()
			n := len(r.queues["RunPipeline"])
			r.mu.Unlock()
			if n == 2+3 { // base, packages, then three images (parallelism 3)
				time.Sleep(50 * time.Millisecond)
				env.CancelWorkflow()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	env.ExecuteWorkflow(workflows.Build, request(flavours(5)))
	if err := env.GetWorkflowError(); !temporal.IsCanceledError(err) {
		t.Fatalf("error = %v, want canceled", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cancelled) != 3 {
		t.Fatalf("CancelPipelineRun called for %v, want the 3 image runs in flight", r.cancelled)
	}
	p := progressOf(t, env)
	for _, f := range p.Flavours {
		for _, ph := range f.Phases {
			if ph.Name == "image" && ph.PipelineRun != "" && ph.State != workflows.StateCancelled && !slices.Contains(r.cancelled, ph.PipelineRun) {
				t.Errorf("flavour %s image %s: state %s, not cancelled", f.Name, ph.PipelineRun, ph.State)
			}
		}
	}
}

// TestRunActivitiesGoToTheWorkerThatRuns: when WorkerQueue names a queue
// (the local executor), RunPipeline, ArchiveLogs and CancelPipelineRun go
// there, not to the build's shared task queue.
func TestRunActivitiesGoToTheWorkerThatRuns(t *testing.T) {
	st := newStore()
	rec := &recorder{results: artifactResults}
	env := newEnv(t, storagePlan(1), rec, st.register)
	r := newRuns()
	var a *tekton.Activities
	env.OnActivity(a.WorkerQueue, mock.Anything).Return("kiln@host:/var/lib/kiln", nil)
	rec.override = func(ctx context.Context, req tekton.PipelineRunRequest) (tekton.PipelineRunResult, error) {
		r.ran(ctx)
		return rec.record(ctx, req)
	}
	env.ExecuteWorkflow(workflows.Build, request(flavours(1), "build", "manifest"))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	q := r.queues["RunPipeline"]
	if len(q) == 0 {
		t.Fatal("no RunPipeline")
	}
	for _, got := range q {
		if got != "kiln@host:/var/lib/kiln" {
			t.Errorf("RunPipeline on task queue %q, want the worker's own", got)
		}
	}
	if len(st.archived) != len(q) {
		t.Errorf("archived %v, want one archive per run (%d)", st.archived, len(q))
	}
}

// TestLogArchiveRunsBesideTheNextPhase: archiving the image run's logs does
// not hold up the tests; the build waits for it before it completes, and
// the logs are recorded.
func TestLogArchiveRunsBesideTheNextPhase(t *testing.T) {
	st := newStore()
	rec := &recorder{results: artifactResults}
	p := storagePlan(1)
	env := newEnv(t, p, rec, st.register)
	testStarted := make(chan struct{})
	var once sync.Once
	rec.override = func(ctx context.Context, req tekton.PipelineRunRequest) (tekton.PipelineRunResult, error) {
		if req.Labels["kiln.dev/phase"] == "test" {
			once.Do(func() { close(testStarted) })
		}
		return rec.record(ctx, req)
	}
	// The image run's archive ends only once the test phase has started.
	st.beforeArchive = func(path string) error {
		if strings.Contains(path, "/image/") {
			select {
			case <-testStarted:
			case <-time.After(5 * time.Second):
				return temporal.NewNonRetryableApplicationError("the test phase waited for this archive", "Serial", nil)
			}
		}
		return nil
	}
	env.ExecuteWorkflow(workflows.Build, request(flavours(1), "build", "tests"))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	for _, f := range progressOf(t, env).Flavours {
		for _, ph := range f.Phases {
			if ph.Name == "image" && (ph.LogsError != "" || ph.Logs["build"] == "" || ph.LogsAttempt != 1) {
				t.Errorf("image phase logs = %v, error %q, attempt %d; want archived beside the tests", ph.Logs, ph.LogsError, ph.LogsAttempt)
			}
		}
	}
}
