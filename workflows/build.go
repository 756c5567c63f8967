package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/kiln-build/kiln/activities/tekton"
	"github.com/kiln-build/kiln/workflows/flavour"
)

// Error types of the Build workflow's non-retryable failures.
const (
	// ErrTypeInvalidRequest: the BuildRequest was rejected before anything
	// ran. The message names every bad field.
	ErrTypeInvalidRequest = "InvalidRequest"
	// ErrTypePhaseFailed: a phase's pipeline failed in every attempt.
	ErrTypePhaseFailed = "PhaseFailed"
	// ErrTypeFlavoursFailed: one or more flavours failed; the others ran
	// to the end.
	ErrTypeFlavoursFailed = "FlavoursFailed"
)

// Change IDs for workflow.GetVersion. Every change to the commands a Build
// issues gets one, and keeps it: replay tests (testdata/) run the old
// histories.
const (
	// changePlanLocal: Plan runs as a local activity (was a regular one).
	changePlanLocal = "plan-local-activity"
	// changePublishParallel: the platforms publish in parallel (were one
	// after another).
	changePublishParallel = "publish-parallel"
	// changeApprovalGate (approval.go): release builds wait for approval.
)

// QueryProgress is the name of the query that returns a build's Progress.
const QueryProgress = "progress"

// Memo keys of a Build execution.
const (
	MemoBranch     = "branch"
	MemoCommit     = "commit"
	MemoVersion    = "version"
	MemoFlavourSet = "flavourSet"
)

// BuildResult is what a Build returns, also on failure through Progress.
type BuildResult struct {
	Progress Progress `json:"progress"`
}

// Build runs one build: it validates the request, gets the plan, runs the
// base and packages phases, builds and tests every flavour as a child
// workflow with bounded parallelism, then publishes per platform. Its
// progress is always available through the "progress" query.
func Build(ctx workflow.Context, in BuildRequest) (BuildResult, error) {
	b := &build{in: in, id: workflow.GetInfo(ctx).WorkflowExecution.ID, bg: newBackground(ctx)}
	b.progress.State = StateRunning
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() (Progress, error) { return b.progress, nil }); err != nil {
		return BuildResult{}, err
	}
	if err := b.setupApproval(ctx); err != nil {
		return BuildResult{}, err
	}
	if err := b.setupResume(ctx); err != nil {
		return BuildResult{}, err
	}
	if err := workflow.UpsertMemo(ctx, map[string]any{
		MemoBranch: in.Branch, MemoCommit: in.Commit, MemoVersion: in.Version, MemoFlavourSet: in.FlavourSet,
	}); err != nil {
		return BuildResult{}, err
	}
	if err := in.Validate(); err != nil {
		b.progress.State = StateFailed
		b.progress.Error = err.Error()
		return BuildResult{Progress: b.progress}, temporal.NewNonRetryableApplicationError("invalid build request: "+err.Error(), ErrTypeInvalidRequest, nil)
	}
	start := workflow.Now(ctx)
	notifying := workflow.GetVersion(ctx, changeNotify, workflow.DefaultVersion, 1) == 1
	runCtx, cancelRun := workflow.WithCancel(ctx)
	timedOut := false
	if notifying && b.in.Timeout > 0 {
		// The build's own deadline is a timer here, so the code below
		// still runs when it fires.
		timerCtx, cancelTimer := workflow.WithCancel(ctx)
		defer cancelTimer()
		workflow.Go(timerCtx, func(ctx workflow.Context) {
			if workflow.Sleep(ctx, b.in.Timeout) == nil {
				timedOut = true
				cancelRun()
			}
		})
	}
	// runCtx is not cancelled after run: that would cancel timers the
	// recorded histories leave pending.
	err := b.run(runCtx)
	event := ""
	switch {
	case err == nil:
		b.progress.State = StateSucceeded
		if b.in.Has(TargetRelease) || b.plan.NotifySuccess {
			event = EventSucceeded
		}
	case timedOut:
		b.progress.State, b.progress.Error = StateFailed, fmt.Sprintf("the build's deadline (%v) passed", b.in.Timeout)
		err = temporal.NewNonRetryableApplicationError(b.progress.Error, ErrTypeBuildTimeout, err)
		event = EventTimedOut
	case temporal.IsCanceledError(err):
		b.progress.State = StateCancelled
		event = EventCancelled
	default:
		b.progress.State = StateFailed
		b.progress.Error = err.Error()
		event = EventFailed
	}
	// The outcome is decided: kiln list shows it from here on, also while
	// the log archives and the notification below still run.
	if err := workflow.UpsertMemo(ctx, map[string]any{MemoState: b.progress.State}); err != nil {
		workflow.GetLogger(ctx).Warn("memo: the build's state", "error", err)
	}
	// The log archives of the last runs may still be going.
	b.bg.wait(ctx)
	if notifying && event != "" {
		// The result stays the build's own, whatever happens to the mail.
		b.notify(ctx, event, start)
	}
	return BuildResult{Progress: b.progress}, err
}

type build struct {
	in       BuildRequest
	id       string
	plan     Plan
	progress Progress
	results  map[string]map[string]string
	decision *ResumeDecision // the operator's, while the resume gate waits
	resume   bool            // the resume gate is part of this build (GetVersion)
	// flavourResults are the flavours' children's results, by name.
	flavourResults map[string]FlavourResult
	// bg holds the log archives, which run beside the next phases.
	bg *background
}

func (b *build) run(ctx workflow.Context) error {
	var planned workflow.Future
	if workflow.GetVersion(ctx, changePlanLocal, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		planned = workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			StartToCloseTimeout: time.Minute, RetryPolicy: planRetry,
		}), ActivityPlan, PlanRequest{FlavourSet: b.in.FlavourSet, Flavours: b.in.Flavours})
	} else {
		planned = planBuild(ctx, b.in)
	}
	if err := planned.Get(ctx, &b.plan); err != nil {
		return fmt.Errorf("plan: %w", err)
	}
	if workflow.GetVersion(ctx, changeCheckTargets, workflow.DefaultVersion, 1) == 1 {
		// The same check kiln run and kiln trigger ask for (CheckBuild)
		// before they start a build; this one catches the webhook's and
		// the nightly's requests, and the build still notifies.
		if err := b.plan.checkRequest(b.in); err != nil {
			return invalidRequest(err)
		}
	} else if len(b.plan.Flavours) == 0 {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("flavour set %q has no buildable flavours", b.in.FlavourSet), ErrTypeInvalidRequest, nil)
	}
	b.results = map[string]map[string]string{}
	b.flavourResults = map[string]FlavourResult{}
	b.progress.Phases = []PhaseState{{Name: PhaseBase}, {Name: PhasePackages}, {Name: PhaseImage}}
	if b.in.Has(TargetManifest) {
		b.progress.Phases = append(b.progress.Phases, PhaseState{Name: PhaseManifest})
	}
	b.progress.Phases = append(b.progress.Phases, PhaseState{Name: PhasePublish})
	for _, f := range b.plan.Flavours {
		b.progress.Flavours = append(b.progress.Flavours, FlavourState{Name: f.Name(), State: StatePending})
	}

	packagesReason := ""
	if b.in.PackagesVersion != "" {
		// Before anything runs: a version that does not exist refuses
		// the build.
		var err error
		if packagesReason, err = b.checkPackages(ctx, 10*time.Minute); err != nil {
			return err
		}
	}
	if err := b.phase(ctx, PhaseBase, b.plan.Base); err != nil {
		return err
	}
	if b.in.PackagesVersion != "" {
		b.skip(PhasePackages, packagesReason)
	} else if err := b.phase(ctx, PhasePackages, b.plan.Packages); err != nil {
		return err
	}
	if err := b.flavours(ctx); err != nil {
		return err
	}
	switch {
	case !b.in.Has(TargetManifest):
	case b.plan.Storage == nil:
		b.skip(PhaseManifest, "the workers have no storage (config: storage)")
	default:
		if err := b.manifestSet(ctx); err != nil {
			return err
		}
	}
	if workflow.GetVersion(ctx, changeApprovalGate, workflow.DefaultVersion, 1) == 1 && b.in.Has(TargetRelease) {
		if err := b.awaitApproval(ctx); err != nil {
			return err
		}
	}
	return b.publish(ctx)
}

func (b *build) state(name string) *PhaseState {
	for i := range b.progress.Phases {
		if b.progress.Phases[i].Name == name {
			return &b.progress.Phases[i]
		}
	}
	b.progress.Phases = append(b.progress.Phases, PhaseState{Name: name})
	return &b.progress.Phases[len(b.progress.Phases)-1]
}

func (b *build) skip(name, reason string) {
	st := b.state(name)
	st.State, st.Reason = StateSkipped, reason
}

func (b *build) data(f flavour.Flavour, platform string) TemplateData {
	return TemplateData{
		BuildID: b.id, Repo: b.in.Repo, Branch: b.in.Branch, Commit: b.in.Commit, Version: b.in.Version,
		PackagesVersion: b.in.PackagesVersion, Flavour: f, Platform: platform, Params: b.in.Params, Results: b.results,
	}
}

// phase runs one build-level phase (base, packages) and records its results.
func (b *build) phase(ctx workflow.Context, name string, cfg *PipelineConfig) error {
	if cfg == nil {
		b.skip(name, "not configured")
		return nil
	}
	for round := 1; ; round++ {
		res, err := runPhase(ctx, b.state(name), phaseRun{
			cfg: *cfg, namespace: b.plan.Namespace, key: roundKey(b.id+"/"+name, round),
			labels: map[string]string{labelBuild: labelValue(b.id), labelPhase: name},
			data:   b.data(flavour.Flavour{}, ""), plan: &b.plan,
			bg: b.bg, state: func() *PhaseState { return b.state(name) },
		})
		if err == nil {
			b.results[name] = resultMap(res)
			return nil
		}
		if !b.waitOnFailure(ctx, err) {
			return err
		}
		if d := b.askOperator(ctx, name, nil, false); d.Action != UpdateRetry {
			return abortError(name, d, err)
		}
	}
}

// roundKey marks the PipelineRun keys of an operator's retry, so a retried
// phase gets fresh runs while the first round's keys stay as they were.
func roundKey(key string, round int) string {
	if round <= 1 {
		return key
	}
	return fmt.Sprintf("%s/r%d", key, round)
}

// waitOnFailure reports whether the build waits for an operator after err.
func (b *build) waitOnFailure(ctx workflow.Context, err error) bool {
	if temporal.IsCanceledError(err) || ctx.Err() != nil || b.onFailure() != OnFailureWait {
		return false
	}
	if !b.resume {
		b.resume = workflow.GetVersion(ctx, changeResume, workflow.DefaultVersion, 1) == 1
	}
	return b.resume
}

func abortError(what string, d ResumeDecision, cause error) error {
	msg := fmt.Sprintf("%s failed and was aborted", what)
	if d.By != "" {
		msg += " by " + d.By
	}
	if d.Reason != "" {
		msg += ": " + d.Reason
	}
	return temporal.NewNonRetryableApplicationError(msg, ErrTypePhaseFailed, cause)
}

// flavours builds every flavour as a child workflow, at most Parallelism at
// once, and waits for all of them. A failed flavour does not stop the
// others; the phase fails at the end, naming them.
func (b *build) flavours(ctx workflow.Context) error {
	st := b.state(PhaseImage)
	if b.plan.Image == nil {
		st.State, st.Reason = StateSkipped, "not configured"
		for i := range b.progress.Flavours {
			b.progress.Flavours[i].State = StateSkipped
		}
		return nil
	}
	st.State, st.Start = StateRunning, workflow.Now(ctx)
	all := make([]int, len(b.plan.Flavours))
	for i := range all {
		all[i] = i
	}
	b.runFlavours(ctx, all, 1)
	for round := 2; ; round++ {
		st.End = workflow.Now(ctx)
		if ctx.Err() != nil {
			st.State = StateCancelled
			return temporal.NewCanceledError()
		}
		var failed []string
		var failedIdx []int
		for i, fs := range b.progress.Flavours {
			if fs.State == StateFailed {
				failed = append(failed, fs.Name)
				failedIdx = append(failedIdx, i)
			}
		}
		if len(failed) == 0 {
			st.State, st.Error = StateSucceeded, ""
			return nil
		}
		st.State = StateFailed
		st.Error = fmt.Sprintf("%d of %d flavours failed: %s", len(failed), len(b.plan.Flavours), strings.Join(failed, ", "))
		err := temporal.NewNonRetryableApplicationError(st.Error, ErrTypeFlavoursFailed, nil, failed)
		if !b.waitOnFailure(ctx, err) {
			return err
		}
		d := b.askOperator(ctx, PhaseImage, failed, !b.in.Has(TargetRelease))
		switch d.Action {
		case UpdateSkip:
			for _, i := range failedIdx {
				if b.progress.Flavours[i].Name == d.Flavour {
					fs := &b.progress.Flavours[i]
					fs.State, fs.Error = StateSkipped, "skipped by "+d.By+" after: "+fs.Error
				}
			}
		case UpdateRetry:
			var again []int
			for _, i := range failedIdx {
				if d.Flavour == "" || b.progress.Flavours[i].Name == d.Flavour {
					again = append(again, i)
				}
			}
			st.State = StateRunning
			b.runFlavours(ctx, again, round)
		default:
			return abortError("flavours "+strings.Join(failed, ", "), d, err)
		}
	}
}

// runFlavours runs the flavours at the given indexes as child workflows, at
// most Parallelism at once, and records their outcomes. Round 1 is the
// first run; later rounds are an operator's retries, with their own child
// workflow IDs and PipelineRun keys.
func (b *build) runFlavours(ctx workflow.Context, idx []int, round int) {
	limit := b.plan.Parallelism
	if limit <= 0 {
		limit = 4
	}
	sem := workflow.NewBufferedChannel(ctx, limit)
	wg := workflow.NewWaitGroup(ctx)
	for _, i := range idx {
		f := b.plan.Flavours[i]
		wg.Add(1)
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer wg.Done()
			sem.Send(ctx, struct{}{})
			defer sem.ReceiveAsync(nil)
			fs := &b.progress.Flavours[i]
			if ctx.Err() != nil {
				fs.State = StateCancelled
				return
			}
			fs.State, fs.Start, fs.Error = StateRunning, workflow.Now(ctx), ""
			fs.Workflow = roundKey(b.id+"/flavour/"+f.Name(), round)
			cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
				WorkflowID:          fs.Workflow,
				WaitForCancellation: true,
			})
			var res FlavourResult
			err := workflow.ExecuteChildWorkflow(cctx, FlavourBuild, FlavourInput{
				BuildID: b.id, Request: b.in, Plan: b.plan, Flavour: f, Results: b.results, Round: round,
			}).Get(ctx, &res)
			fs.End = workflow.Now(ctx)
			var appErr *temporal.ApplicationError
			if errors.As(err, &appErr) && appErr.HasDetails() {
				_ = appErr.Details(&res) // the failed flavour's phases
			}
			fs.Phases, fs.Manifest, fs.Reused, fs.Base = res.Phases, res.Manifest, res.Reused, res.Base
			b.flavourResults[f.Name()] = res
			switch {
			case err == nil && res.Reused:
				fs.State, fs.Reason = StateSkipped, "built before: manifest "+res.Manifest
			case err == nil && res.TestFailed:
				fs.State, fs.Error = StateTestFailed, res.Error
			case err == nil:
				fs.State = StateSucceeded
			case temporal.IsCanceledError(err):
				fs.State = StateCancelled
			default:
				fs.State, fs.Error = StateFailed, rootMessage(err)
			}
		})
	}
	wg.Wait(ctx)
}

// publish publishes the build: with storage, every flavour on its own
// (publishFlavours); otherwise it runs the publish pipeline of every
// platform that has a publishable flavour, all at once (one after another
// in the oldest histories), under the resume gate when the build waits on
// failure.
func (b *build) publish(ctx workflow.Context) error {
	if !b.in.Has(TargetPublish) {
		b.skip(PhasePublish, "target publish not requested")
		return nil
	}
	if b.plan.Storage != nil && workflow.GetVersion(ctx, changePublishFlavours, workflow.DefaultVersion, 1) == 1 {
		return b.publishFlavours(ctx)
	}
	st := b.state(PhasePublish)
	var platforms []string
	first := map[string]flavour.Flavour{}
	for _, f := range b.plan.Flavours {
		if _, ok := b.plan.Publish[f.Platform]; ok && f.Publish {
			if _, seen := first[f.Platform]; !seen {
				first[f.Platform] = f
				platforms = append(platforms, f.Platform)
			}
		}
	}
	slices.Sort(platforms)
	if len(platforms) == 0 {
		st.State, st.Reason = StateSkipped, "no publish pipeline for the flavours' platforms"
		return nil
	}
	st.State, st.Start = StateRunning, workflow.Now(ctx)
	for _, p := range platforms { // one entry per platform, before pointers are taken
		b.state(PhasePublish + "/" + p).State = StatePending
	}
	publishOne := func(ctx workflow.Context, p string, round int) error {
		_, err := runPhase(ctx, b.state(PhasePublish+"/"+p), phaseRun{
			cfg: b.plan.Publish[p], namespace: b.plan.Namespace, key: roundKey(b.id+"/"+PhasePublish+"/"+p, round),
			labels: map[string]string{labelBuild: labelValue(b.id), labelPhase: PhasePublish, labelPlatform: p},
			data:   b.data(first[p], p), plan: &b.plan,
			bg: b.bg, state: func() *PhaseState { return b.state(PhasePublish + "/" + p) },
		})
		return err
	}
	if workflow.GetVersion(ctx, changePublishParallel, workflow.DefaultVersion, 1) == workflow.DefaultVersion {
		var err error
		for _, p := range platforms {
			if err = publishOne(ctx, p, 1); err != nil {
				break
			}
		}
		st = b.state(PhasePublish)
		st.End = workflow.Now(ctx)
		if err != nil {
			st.State, st.Error = StateFailed, rootMessage(err)
			return err
		}
		st.State = StateSucceeded
		return nil
	}
	// Platforms are independent: publish them all at once, and let one
	// platform's failure not stop the others. A build that waits on
	// failure asks the operator: retry the failed platforms (or one),
	// skip one (not in a release), or abort.
	errs := map[string]error{}
	todo := platforms
	var skipped []string
	for round := 1; ; round++ {
		wg := workflow.NewWaitGroup(ctx)
		for _, p := range todo {
			wg.Add(1)
			workflow.Go(ctx, func(ctx workflow.Context) {
				defer wg.Done()
				errs[p] = publishOne(ctx, p, round)
			})
		}
		wg.Wait(ctx)
		var failed []string
		for _, p := range platforms {
			if errs[p] != nil {
				failed = append(failed, p)
			}
		}
		st = b.state(PhasePublish)
		st.End = workflow.Now(ctx)
		if len(failed) == 0 {
			st.State, st.Error = StateSucceeded, ""
			if len(skipped) > 0 {
				st.Reason = "skipped by an operator: " + strings.Join(skipped, ", ")
			}
			return nil
		}
		err := errs[failed[0]]
		st.State, st.Error = StateFailed, rootMessage(err)
		if !b.waitOnFailure(ctx, err) {
			return err
		}
		d := b.ask(ctx, gate{phase: PhasePublish, failed: failed, kind: KindPlatform, canSkip: !b.in.Has(TargetRelease)})
		todo = nil
		switch d.Action {
		case UpdateSkip:
			ps := b.state(PhasePublish + "/" + d.Platform)
			ps.State, ps.Error = StateSkipped, "skipped by "+d.By+" after: "+ps.Error
			delete(errs, d.Platform)
			skipped = append(skipped, d.Platform)
		case UpdateRetry:
			for _, p := range failed {
				if d.Platform == "" || p == d.Platform {
					todo = append(todo, p)
				}
			}
			st = b.state(PhasePublish)
			st.State, st.Error = StateRunning, ""
		default:
			return abortError("publishing of "+strings.Join(failed, ", "), d, err)
		}
	}
}

// Labels kiln puts on a build's PipelineRuns, besides tekton's own.
const (
	labelBuild    = "kiln.dev/build"
	labelPhase    = "kiln.dev/phase"
	labelFlavour  = "kiln.dev/flavour"
	labelPlatform = "kiln.dev/platform"
)

// rootMessage is the innermost message of a chain of Temporal errors, which
// says what went wrong without the "activity error (type …)" wrapping.
func rootMessage(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		err = u
	}
}

func resultMap(res tekton.PipelineRunResult) map[string]string {
	m := map[string]string{}
	for _, r := range res.Results {
		if v, ok := res.Result(r.Name); ok {
			m[r.Name] = v
		}
	}
	return m
}
