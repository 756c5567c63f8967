package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/reconciler/pipeline/dag"
	"k8s.io/apimachinery/pkg/util/uuid"

	"github.com/kiln-build/kiln/activities/tekton"
)

// execution is one PipelineRun in progress. Its scheduler goroutine owns
// the task states; task goroutines report to it through events, and
// callers read snapshots of the status under mu.
type execution struct {
	r    *Runner
	plan *plan
	dir  string

	mu        sync.Mutex
	status    RunStatus
	listeners []func(RunStatus)
	done      chan struct{} // closed when the run has finished and released its name (Runner.begin)

	events    chan taskEvent
	requests  chan pipelinev1.PipelineRunSpecStatus
	abort     chan struct{}
	abortOnce sync.Once

	// Scheduler state.
	tasks            []*taskState
	byName           map[string]*taskState
	stopping         bool // a DAG task failed (not ignored) or failed validation
	specStatus       pipelinev1.PipelineRunSpecStatus
	aborted          bool
	pipelineTimedOut bool
	tasksTimedOut    bool
	finallyStarted   bool
	finallyTimer     *time.Timer
	validationErrors []string
	running          int
}

type phase int

const (
	pending phase = iota
	running
	finished
)

// taskState is the scheduler's view of one pipeline task.
type taskState struct {
	p     *planTask
	index int // into status.Tasks
	pt    pipelinev1.PipelineTask
	phase phase

	skip             pipelinev1.SkippingReason
	succeeded        bool
	failed           bool // TaskRun condition False (also when cancelled or ignored)
	ignored          bool // failed, with onError: continue
	cancelled        bool
	timedOutByRun    bool
	validationFailed bool
	reason           string
	results          []pipelinev1.TaskRunResult
	cancel           context.CancelCauseFunc
}

func (t *taskState) skipped() bool { return t.skip != "" }

// done reports Tekton's isDone: skipped, succeeded, failed or failed
// validation.
func (t *taskState) done() bool { return t.phase == finished }

type eventKind int

const (
	eventStarted eventKind = iota
	eventSteps
	eventDone
)

type taskEvent struct {
	t       *taskState
	kind    eventKind
	at      time.Time
	steps   []StepStatus
	retry   int
	outcome taskOutcome
}

func (x *execution) send(ev taskEvent) { x.events <- ev }

func newExecution(r *Runner, p *plan, dir string) *execution {
	x := &execution{
		r: r, plan: p, dir: dir,
		done:     make(chan struct{}),
		events:   make(chan taskEvent, 16),
		requests: make(chan pipelinev1.PipelineRunSpecStatus, 4),
		abort:    make(chan struct{}),
		byName:   map[string]*taskState{},
	}
	x.status = RunStatus{
		Name: p.pr.Name, Namespace: p.pr.Namespace, UID: p.uid, Pipeline: p.pipelineName,
		SpecHash: p.specHash, PID: os.Getpid(), State: StateRunning, StartTime: time.Now().UTC(),
		Reason: string(pipelinev1.PipelineRunReasonRunning),
	}
	for i, pt := range p.tasks {
		t := &taskState{p: pt, index: i, pt: pt.pt}
		x.tasks = append(x.tasks, t)
		x.byName[pt.pt.Name] = t
		x.status.Tasks = append(x.status.Tasks, TaskStatus{Name: pt.pt.Name, Finally: pt.final, State: tekton.TaskPending})
	}
	return x
}

// snapshot returns a deep enough copy of the status for readers.
func (x *execution) snapshot() RunStatus {
	x.mu.Lock()
	defer x.mu.Unlock()
	return cloneStatus(x.status)
}

func cloneStatus(s RunStatus) RunStatus {
	s.Restarts = slices.Clone(s.Restarts)
	s.Tasks = slices.Clone(s.Tasks)
	for i := range s.Tasks {
		s.Tasks[i].Steps = slices.Clone(s.Tasks[i].Steps)
	}
	return s
}

func (x *execution) update(f func(s *RunStatus)) {
	x.mu.Lock()
	f(&x.status)
	x.mu.Unlock()
}

// publish persists the status and tells the listeners.
func (x *execution) publish() {
	x.mu.Lock()
	s := cloneStatus(x.status)
	ls := slices.Clone(x.listeners)
	x.mu.Unlock()
	if err := writeStatus(x.dir, &s); err != nil {
		x.r.logger.Error("write run status", "pipelinerun", s.Name, "error", err)
	}
	for _, l := range ls {
		l(s)
	}
}

func (x *execution) listen(f func(RunStatus)) {
	if f == nil {
		return
	}
	x.mu.Lock()
	x.listeners = append(x.listeners, f)
	x.mu.Unlock()
}

func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

func newTimer(d time.Duration) *time.Timer {
	if d <= 0 {
		return nil
	}
	return time.NewTimer(d)
}

// stepPublishInterval bounds how often step-level changes are written.
const stepPublishInterval = 200 * time.Millisecond

// loop schedules the run's tasks until none is left to run.
func (x *execution) loop() {
	start := time.Now()
	pipelineTimer := newTimer(x.plan.pipelineTimeout)
	tasksTimer := newTimer(x.plan.tasksTimeout)
	for _, t := range []*time.Timer{pipelineTimer, tasksTimer} {
		if t != nil {
			defer t.Stop()
		}
	}
	abort := x.abort
	// Step-level changes are published (status.json, listeners) at most
	// every stepPublishInterval; task-level changes at once.
	var stepFlush *time.Timer
	defer func() {
		if stepFlush != nil {
			stepFlush.Stop()
		}
	}()
	publish := true
	for {
		if publish { // step changes do not affect scheduling
			x.schedule()
		}
		if publish {
			x.publish()
			if stepFlush != nil {
				stepFlush.Stop()
				stepFlush = nil
			}
		}
		publish = true
		if x.running == 0 && (x.hardStopped() || x.allDone()) {
			break
		}
		select {
		case ev := <-x.events:
			x.handle(ev)
			if ev.kind == eventSteps {
				publish = false
				if stepFlush == nil {
					stepFlush = time.NewTimer(stepPublishInterval)
				}
			}
		case <-timerC(stepFlush):
			stepFlush = nil
			x.publish()
			publish = false
		case <-timerC(pipelineTimer):
			x.pipelineTimedOut = true
			x.cancelRunning(func(*taskState) bool { return true }, errPipelineTimeout)
		case <-timerC(tasksTimer):
			if !x.finallyStarted {
				x.tasksTimedOut = true
				x.cancelRunning(func(t *taskState) bool { return !t.p.final }, errTasksTimeout)
			}
		case <-timerC(x.finallyTimer):
			x.cancelRunning(func(t *taskState) bool { return t.p.final }, errFinallyTimeout)
		case mode := <-x.requests:
			x.cancelWith(mode)
		case <-abort:
			abort = nil
			x.aborted = true
			x.cancelRunning(func(*taskState) bool { return true }, errAborted)
		}
	}
	if x.finallyTimer != nil {
		x.finallyTimer.Stop()
	}
	x.finish(time.Since(start))
	x.publish()
}

// cancelWith applies a cancellation request: Cancelled stops everything;
// CancelledRunFinally stops the DAG tasks and runs finally;
// StoppedRunFinally lets running tasks finish, starts no new DAG task and
// runs finally.
func (x *execution) cancelWith(mode pipelinev1.PipelineRunSpecStatus) {
	if x.specStatus == pipelinev1.PipelineRunSpecStatusCancelled {
		return
	}
	x.specStatus = mode
	switch mode {
	case pipelinev1.PipelineRunSpecStatusCancelled:
		x.cancelRunning(func(*taskState) bool { return true }, errRunCancelled)
	case pipelinev1.PipelineRunSpecStatusCancelledRunFinally:
		x.cancelRunning(func(t *taskState) bool { return !t.p.final }, errRunCancelled)
	}
}

func (x *execution) cancelRunning(which func(*taskState) bool, cause error) {
	for _, t := range x.tasks {
		if t.phase == running && which(t) && t.cancel != nil {
			t.cancel(cause)
		}
	}
}

// hardStopped: no task may start any more.
func (x *execution) hardStopped() bool {
	return x.aborted || x.pipelineTimedOut || x.specStatus == pipelinev1.PipelineRunSpecStatusCancelled
}

func (x *execution) allDone() bool {
	for _, t := range x.tasks {
		if !t.done() {
			return false
		}
	}
	return true
}

func (x *execution) dagDone() bool {
	for _, t := range x.tasks {
		if !t.p.final && !t.done() {
			return false
		}
	}
	return true
}

// dagStopReason is why no new DAG task may start, in the order Tekton's
// skip checks them, or "" if they may.
func (x *execution) dagStopReason() pipelinev1.SkippingReason {
	switch {
	case x.stopping:
		return pipelinev1.StoppingSkip
	case x.specStatus == pipelinev1.PipelineRunSpecStatusCancelledRunFinally:
		return pipelinev1.GracefullyCancelledSkip
	case x.specStatus == pipelinev1.PipelineRunSpecStatusStoppedRunFinally:
		return pipelinev1.GracefullyStoppedSkip
	case x.tasksTimedOut:
		return pipelinev1.TasksTimedOutSkip
	}
	return ""
}

// schedule starts or skips every task that can be decided now.
func (x *execution) schedule() {
	if x.hardStopped() {
		return
	}
	for changed := true; changed; {
		changed = false
		if reason := x.dagStopReason(); reason != "" {
			for _, t := range x.tasks {
				if !t.p.final && t.phase == pending {
					x.setSkipped(t, reason)
				}
			}
			break
		}
		var doneNames []string
		for _, t := range x.tasks {
			if !t.p.final && t.done() {
				doneNames = append(doneNames, t.p.pt.Name)
			}
		}
		cands, err := dag.GetCandidateTasks(x.plan.graph, doneNames...)
		if err != nil { // cannot happen with a graph from dag.Build
			x.r.logger.Error("schedule tasks", "pipelinerun", x.plan.pr.Name, "error", err)
			return
		}
		for _, t := range x.tasks {
			if !t.p.final && t.phase == pending && cands.Has(t.p.pt.Name) {
				if x.decide(t) {
					changed = true
				}
			}
		}
	}
	if !x.finallyStarted && x.dagDone() {
		x.startFinally()
	}
}

// decide skips, fails or starts a DAG task whose parents are done, as
// Tekton's ResolvedPipelineTask.Skip orders it; it reports whether the
// task is done now.
func (x *execution) decide(t *taskState) bool {
	pt := t.p.pt.DeepCopy()
	applyResolved(pt, strRepl(map[string]string{"context.pipelineTask.retries": strconv.Itoa(pt.Retries)}))
	refs, refTask, refErr := x.resolveResults(pt)
	if refErr == nil {
		applyResolved(pt, refs)
	}
	t.pt = *pt
	switch {
	case !pt.When.AllowsExecution(nil):
		x.setSkipped(t, pipelinev1.WhenExpressionsSkip)
	case x.parentSkipped(t):
		x.setSkipped(t, pipelinev1.ParentTasksSkip)
	case refErr != nil && (pt.OnError == pipelinev1.PipelineTaskContinue || x.byName[refTask] != nil && x.byName[refTask].skip == pipelinev1.WhenExpressionsSkip):
		x.setSkipped(t, pipelinev1.MissingResultsSkip)
	case refErr != nil:
		t.phase, t.validationFailed, x.stopping = finished, true, true
		msg := fmt.Sprintf("Task %q failed result validation: %v", t.p.pt.Name, refErr)
		x.validationErrors = append(x.validationErrors, msg)
		x.update(func(s *RunStatus) {
			st := &s.Tasks[t.index]
			st.State, st.Reason, st.Message = tekton.TaskFailed, string(pipelinev1.PipelineRunReasonFailedValidation), msg
		})
	default:
		x.start(t)
		return false
	}
	return true
}

// parentSkipped reports a parent skipped for another reason than its
// when expressions, which are scoped to the parent alone.
func (x *execution) parentSkipped(t *taskState) bool {
	node := x.plan.graph.Nodes[t.p.pt.Name]
	for _, p := range node.Prev {
		if pt := x.byName[p.Key]; pt.skipped() && pt.skip != pipelinev1.WhenExpressionsSkip {
			return true
		}
	}
	return false
}

// resolveResults resolves every result reference of pt, all or nothing,
// as ResolveResultRefs does; on failure it names the referenced task.
func (x *execution) resolveResults(pt *pipelinev1.PipelineTask) (repl, string, error) {
	r := newRepl()
	for _, ref := range pipelinev1.PipelineTaskResultRefs(pt) {
		t, ok := x.byName[ref.PipelineTask]
		if !ok {
			return r, ref.PipelineTask, fmt.Errorf("could not find task %q referenced by result", ref.PipelineTask)
		}
		if !t.succeeded && !t.failed {
			return r, ref.PipelineTask, fmt.Errorf("task %q referenced by result was not finished", ref.PipelineTask)
		}
		i := slices.IndexFunc(t.results, func(res pipelinev1.TaskRunResult) bool { return res.Name == ref.Result })
		if i < 0 {
			return r, ref.PipelineTask, fmt.Errorf("invalid task result reference: could not find result with name %s for pipeline task %s", ref.Result, ref.PipelineTask)
		}
		res := t.results[i]
		if ref.ResultsIndex != nil && res.Value.Type == pipelinev1.ParamTypeArray && *ref.ResultsIndex >= len(res.Value.ArrayVal) {
			return r, ref.PipelineTask, fmt.Errorf("array index %d out of bound for result %s of pipeline task %s (length %d)", *ref.ResultsIndex, ref.Result, ref.PipelineTask, len(res.Value.ArrayVal))
		}
		r.addResult(ref.PipelineTask, res)
	}
	return r, "", nil
}

// startFinally decides every finally task once the DAG is done, with the
// DAG tasks' execution status available as $(tasks.<name>.status),
// $(tasks.<name>.reason) and $(tasks.status).
func (x *execution) startFinally() {
	x.finallyStarted = true
	if slices.ContainsFunc(x.tasks, func(t *taskState) bool { return t.p.final }) {
		x.finallyTimer = newTimer(x.plan.finallyTimeout)
	}
	status := x.executionStatus()
	for _, t := range x.tasks {
		if !t.p.final || t.phase != pending {
			continue
		}
		pt := t.p.pt.DeepCopy()
		applyResolved(pt, strRepl(map[string]string{"context.pipelineTask.retries": strconv.Itoa(pt.Retries)}))
		applyResolved(pt, strRepl(status))
		refs, _, err := x.resolveResults(pt)
		if err == nil {
			applyResolved(pt, refs)
		}
		t.pt = *pt
		switch {
		case err != nil:
			x.setSkipped(t, pipelinev1.MissingResultsSkip)
		case !pt.When.AllowsExecution(nil):
			x.setSkipped(t, pipelinev1.WhenExpressionsSkip)
		default:
			x.start(t)
		}
	}
}

// executionStatus is GetPipelineTaskStatus: each DAG task's status
// (Succeeded, Failed or None) and reason, and the aggregate status.
func (x *execution) executionStatus() map[string]string {
	m := map[string]string{}
	agg := string(pipelinev1.PipelineRunReasonSuccessful)
	for _, t := range x.tasks {
		if t.p.final {
			continue
		}
		s := "None"
		switch {
		case t.succeeded:
			s = string(pipelinev1.TaskRunReasonSuccessful)
		case t.failed:
			s = string(pipelinev1.TaskRunReasonFailed)
		}
		m["tasks."+t.p.pt.Name+".status"] = s
		m["tasks."+t.p.pt.Name+".reason"] = t.reason
		switch {
		case agg == string(pipelinev1.PipelineRunReasonFailed):
		case t.failed:
			agg = string(pipelinev1.PipelineRunReasonFailed)
		case t.skipped():
			agg = string(pipelinev1.PipelineRunReasonCompleted)
		}
	}
	m[pipelinev1.PipelineTasksAggregateStatus] = agg
	return m
}

func (x *execution) setSkipped(t *taskState, reason pipelinev1.SkippingReason) {
	t.phase, t.skip = finished, reason
	x.update(func(s *RunStatus) {
		st := &s.Tasks[t.index]
		st.State, st.Reason = tekton.TaskSkipped, string(reason)
	})
}

// taskResults are the results of every task that ran, by task name.
func (x *execution) taskResults() map[string][]pipelinev1.TaskRunResult {
	m := map[string][]pipelinev1.TaskRunResult{}
	for _, t := range x.tasks {
		if len(t.results) > 0 {
			m[t.p.pt.Name] = t.results
		}
	}
	return m
}

// start launches the task's TaskRun.
func (x *execution) start(t *taskState) {
	t.phase = running
	x.running++
	spec := t.p.spec
	if rs := x.taskResults(); len(rs) > 0 {
		spec = applyTaskSpec(spec, propagatedResults(rs))
	}
	bindings := slices.Clone(t.p.bindings)
	if rs := x.taskResults(); len(rs) > 0 {
		r := newRepl()
		for name, res := range rs {
			for _, v := range res {
				r.addResult(name, v)
			}
		}
		for i := range bindings {
			bindings[i].WorkspaceBinding = *bindings[i].DeepCopy()
			applyBindingStrings(&bindings[i].WorkspaceBinding, r.str)
		}
	}
	tr := &taskRun{
		x: x, t: t, name: t.p.taskRun, uid: string(uuid.NewUUID()),
		spec: spec, params: t.pt.Params, timeout: x.taskTimeout(t), retries: t.pt.Retries, bindings: bindings,
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	t.cancel = cancel
	x.update(func(s *RunStatus) { s.Tasks[t.index].TaskRun = tr.name })
	go func() {
		out := tr.run(ctx)
		cancel(nil)
		x.send(taskEvent{t: t, kind: eventDone, outcome: out})
	}()
}

// taskTimeout is the TaskRun timeout Tekton would set: the pipeline
// task's, else the run's tasks (or finally) timeout when it exceeds the
// default, else the default (60 minutes); a taskRunSpecs timeout wins.
func (x *execution) taskTimeout(t *taskState) time.Duration {
	pr := x.plan.pr
	def := defaultTimeout(x.plan)
	d := def
	prTimeout := pr.TasksTimeout()
	if t.p.final {
		prTimeout = pr.FinallyTimeout()
	}
	switch {
	case t.pt.Timeout != nil:
		d = t.pt.Timeout.Duration
	case prTimeout != nil && (prTimeout.Duration == 0 || prTimeout.Duration > def):
		d = prTimeout.Duration
	}
	for _, s := range pr.Spec.TaskRunSpecs {
		if s.PipelineTaskName == t.p.pt.Name && s.Timeout != nil {
			d = s.Timeout.Duration
		}
	}
	return d
}

func (x *execution) handle(ev taskEvent) {
	t := ev.t
	switch ev.kind {
	case eventStarted:
		at := ev.at.UTC()
		x.update(func(s *RunStatus) {
			st := &s.Tasks[t.index]
			st.State, st.StartTime = tekton.TaskRunning, &at
		})
	case eventSteps:
		x.update(func(s *RunStatus) {
			st := &s.Tasks[t.index]
			st.Steps, st.RetryCount = ev.steps, ev.retry
		})
	case eventDone:
		x.running--
		out := ev.outcome
		t.phase, t.results, t.reason = finished, out.results, out.reason
		state := tekton.TaskFailed
		switch {
		case out.ok:
			t.succeeded, state = true, tekton.TaskSucceeded
		case errors.Is(out.cause, errRunCancelled) || errors.Is(out.cause, errAborted):
			t.failed, t.cancelled = true, true
		case out.cause != nil:
			t.failed, t.timedOutByRun = true, true
		case t.pt.OnError == pipelinev1.PipelineTaskContinue:
			t.failed, t.ignored = true, true
			t.reason = string(pipelinev1.TaskRunReasonFailureIgnored)
		default:
			t.failed = true
		}
		if t.failed && !t.ignored && !t.p.final {
			x.stopping = true
		}
		start, end := out.start.UTC(), out.end.UTC()
		x.update(func(s *RunStatus) {
			st := &s.Tasks[t.index]
			st.State, st.Reason, st.Message = state, t.reason, out.message
			st.Results, st.RetryCount, st.CompletionTime = out.results, out.retryCount, &end
			if out.steps != nil {
				st.Steps = out.steps
			}
			if st.StartTime == nil {
				st.StartTime = &start
			}
		})
	}
}

// finish sets the run's outcome, as GetPipelineConditionStatus and the
// pipeline-results step of the reconciler do.
func (x *execution) finish(elapsed time.Duration) {
	pr := x.plan.pr
	reason, message := x.condition()
	state := StateDone
	if x.aborted {
		state = StateInterrupted
	}
	var results []pipelinev1.PipelineRunResult
	if !x.aborted {
		var err error
		results, err = pipelineResults(x.plan.spec.Results, x.taskResults(), func(name string) bool {
			t := x.byName[name]
			return t != nil && t.succeeded
		})
		if err != nil {
			reason = string(pipelinev1.PipelineRunReasonCouldntGetPipelineResult)
			message = fmt.Sprintf("Failed to get PipelineResult from TaskRun Results for PipelineRun %s: %s", pr.Name, err)
		}
	}
	now := time.Now().UTC()
	x.update(func(s *RunStatus) {
		s.State, s.Reason, s.Message, s.Results, s.CompletionTime = state, reason, message, results, &now
	})
	x.r.logger.Info("pipelinerun finished", "pipelinerun", pr.Name, "reason", reason, "duration", elapsed.Round(time.Millisecond))
}

func (x *execution) condition() (reason, message string) {
	pr := x.plan.pr
	switch {
	case x.aborted:
		return "Interrupted", fmt.Sprintf("PipelineRun %q was interrupted: %v", pr.Name, errAborted)
	case x.pipelineTimedOut:
		return string(pipelinev1.PipelineRunReasonTimedOut), fmt.Sprintf("PipelineRun %q failed to finish within %q", pr.Name, x.plan.pipelineTimeout.String())
	case x.tasksTimedOut:
		return string(pipelinev1.PipelineRunReasonTimedOut), fmt.Sprintf("PipelineRun %q failed due to tasks failed to finish within %q", pr.Name, x.plan.tasksTimeout.String())
	case x.specStatus == pipelinev1.PipelineRunSpecStatusCancelled:
		return string(pipelinev1.PipelineRunReasonCancelled), fmt.Sprintf("PipelineRun %q was cancelled", pr.Name)
	}
	var succeeded, failed, ignored, cancelled, skipped, skippedTimeout, invalid, incomplete int
	for _, t := range x.tasks {
		switch {
		case t.succeeded:
			succeeded++
		case t.timedOutByRun:
			failed++
		case t.cancelled:
			cancelled++
		case t.ignored:
			ignored++
		case t.failed:
			failed++
		case t.validationFailed:
			invalid++
		case t.skip == pipelinev1.PipelineTimedOutSkip || t.skip == pipelinev1.TasksTimedOutSkip || t.skip == pipelinev1.FinallyTimedOutSkip:
			skipped++
			skippedTimeout++
		case t.skipped():
			skipped++
		default:
			incomplete++
		}
	}
	completed := succeeded + failed + cancelled + ignored
	if ignored > 0 {
		message = fmt.Sprintf("Tasks Completed: %d (Failed: %d (Ignored: %d), Cancelled %d), Skipped: %d", completed, failed+ignored, ignored, cancelled, skipped)
	} else {
		message = fmt.Sprintf("Tasks Completed: %d (Failed: %d, Cancelled %d), Skipped: %d", completed, failed, cancelled, skipped)
	}
	if invalid > 0 {
		sort.Strings(x.validationErrors)
		message += fmt.Sprintf(", Failed Validation: %d (%s)", invalid, joinTrim(x.validationErrors, 1024))
	}
	reason = string(pipelinev1.PipelineRunReasonSuccessful)
	if skipped > 0 {
		reason = string(pipelinev1.PipelineRunReasonCompleted)
	}
	switch {
	case invalid > 0:
		reason = string(pipelinev1.PipelineRunReasonFailedValidation)
	case failed > 0 || skippedTimeout > 0 || incomplete > 0:
		reason = string(pipelinev1.PipelineRunReasonFailed)
	case x.specStatus == pipelinev1.PipelineRunSpecStatusCancelledRunFinally || x.specStatus == pipelinev1.PipelineRunSpecStatusStoppedRunFinally:
		reason, message = string(pipelinev1.PipelineRunReasonCancelled), fmt.Sprintf("PipelineRun %q was cancelled", pr.Name)
	case cancelled > 0:
		reason = string(pipelinev1.PipelineRunReasonCancelled)
	}
	return reason, message
}

func joinTrim(parts []string, limit int) string {
	s := ""
	for i, p := range parts {
		if i > 0 {
			s += "; "
		}
		s += p
	}
	if len(s) > limit {
		s = s[:limit] + "..."
	}
	return s
}
