package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/kiln-build/kiln/activities/plan"
	"github.com/kiln-build/kiln/activities/tekton"
	"github.com/kiln-build/kiln/workflows"
	"github.com/kiln-build/kiln/workflows/flavour"
)

func flavours(n int) []flavour.Flavour {
	platforms := []string{"aws", "gcp", "azure", "ali", "kvm", "metal", "openstack", "vmware"}
	var out []flavour.Flavour
	for i := range n {
		out = append(out, flavour.Flavour{
			Platform: platforms[i%len(platforms)], Arch: []string{"amd64", "arm64"}[i/len(platforms)%2],
			Features: []string{"_prod", fmt.Sprintf("f%02d", i)}, Build: true, Test: true, Publish: true,
		})
	}
	return out
}

func testPlan(parallelism int) workflows.Plan {
	ref := func(name string) *workflows.PipelineConfig {
		return &workflows.PipelineConfig{PipelineRef: name, Params: map[string]string{"commit": "{{.Commit}}", "platform": "{{.Flavour.Platform}}"}}
	}
	return workflows.Plan{
		Namespace: "builds", Parallelism: parallelism,
		Base: ref("base"), Packages: ref("packages"), Image: ref("image"), Test: ref("test"),
		Publish: map[string]workflows.PipelineConfig{"aws": *ref("publish-aws"), "gcp": *ref("publish-gcp")},
		S3Only:  []string{"azure", "ali", "kvm", "metal", "openstack", "vmware"},
	}
}

func request(fl []flavour.Flavour, targets ...workflows.Target) workflows.BuildRequest {
	return workflows.BuildRequest{
		Repo: "https://github.com/gardenlinux/gardenlinux", Branch: "main", Commit: "0123abcd", Version: "1443.3",
		Flavours: fl, Targets: targets,
	}
}

// recorder is a RunPipeline stand-in: it records every request and answers
// with outcome(req), after an optional delay, honouring cancellation.
type recorder struct {
	mu       sync.Mutex
	reqs     []tekton.PipelineRunRequest
	inFlight map[string]int
	maxIn    map[string]int
	canceled []string
	delay    time.Duration
	block    string // phase whose runs block until cancelled
	outcome  func(tekton.PipelineRunRequest) error
	results  func(tekton.PipelineRunRequest) []pipelinev1.PipelineRunResult // more results
	// override, if set, runs instead (and may call record).
	override func(context.Context, tekton.PipelineRunRequest) (tekton.PipelineRunResult, error)
	// cancelHook, if set, answers CancelPipelineRun.
	cancelHook func(context.Context, tekton.CancelRequest) error
	// children are the workflow IDs of the child workflows a test's
	// wrappers saw start.
	children []string
}

func (r *recorder) cancelRun(ctx context.Context, in tekton.CancelRequest) error {
	if r.cancelHook != nil {
		return r.cancelHook(ctx, in)
	}
	return nil
}

func (r *recorder) run(ctx context.Context, req tekton.PipelineRunRequest) (tekton.PipelineRunResult, error) {
	if r.override != nil {
		return r.override(ctx, req)
	}
	return r.record(ctx, req)
}

func (r *recorder) record(ctx context.Context, req tekton.PipelineRunRequest) (tekton.PipelineRunResult, error) {
	phase := req.Labels["kiln.dev/phase"]
	r.mu.Lock()
	r.reqs = append(r.reqs, req)
	r.inFlight[phase]++
	r.maxIn[phase] = max(r.maxIn[phase], r.inFlight[phase])
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.inFlight[phase]--
		r.mu.Unlock()
	}()
	if phase == r.block {
		for start := time.Now(); ctx.Err() == nil && time.Since(start) < 10*time.Second; {
			activity.RecordHeartbeat(ctx, tekton.Progress{PipelineRun: tekton.RunName(req.Key)})
			time.Sleep(10 * time.Millisecond)
		}
		r.mu.Lock()
		r.canceled = append(r.canceled, req.Key)
		r.mu.Unlock()
		return tekton.PipelineRunResult{}, ctx.Err()
	}
	time.Sleep(r.delay)
	if r.outcome != nil {
		if err := r.outcome(req); err != nil {
			return tekton.PipelineRunResult{}, err
		}
	}
	res := tekton.PipelineRunResult{
		PipelineRun: tekton.RunName(req.Key),
		Results:     []pipelinev1.PipelineRunResult{{Name: "digest", Value: *pipelinev1.NewStructuredValues("sha256:" + req.Labels["kiln.dev/phase"])}},
	}
	if r.results != nil {
		res.Results = append(res.Results, r.results(req)...)
	}
	return res, nil
}

func (r *recorder) phases() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, q := range r.reqs {
		out = append(out, q.Labels["kiln.dev/phase"])
	}
	return out
}

// quietLogger keeps the test environment's logs out of the test output.
var quietLogger = log.NewStructuredLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 4})))

func newEnv(t *testing.T, p workflows.Plan, rec *recorder, register ...func(*testsuite.TestWorkflowEnvironment)) *testsuite.TestWorkflowEnvironment {
	var s testsuite.WorkflowTestSuite
	s.SetLogger(quietLogger)
	env := s.NewTestWorkflowEnvironment()
	env.SetTestTimeout(30 * time.Second)
	env.RegisterWorkflow(workflows.Build)
	env.RegisterWorkflow(workflows.FlavourBuild)
	env.RegisterActivityWithOptions(plan.New(p, nil).Plan, activity.RegisterOptions{Name: workflows.ActivityPlan})
	for _, r := range register {
		r(env)
	}
	var a *tekton.Activities
	env.RegisterActivity(a)
	rec.inFlight, rec.maxIn = map[string]int{}, map[string]int{}
	env.OnActivity(a.RunPipeline, mock.Anything, mock.Anything).Return(rec.run)
	env.OnActivity(a.CancelPipelineRun, mock.Anything, mock.Anything).Return(rec.cancelRun)
	return env
}

func failed(reason string) error {
	return temporal.NewNonRetryableApplicationError("pipelinerun failed: "+reason, reason, nil, tekton.Failure{Reason: reason})
}

func progressOf(t *testing.T, env *testsuite.TestWorkflowEnvironment) workflows.Progress {
	t.Helper()
	v, err := env.QueryWorkflow(workflows.QueryProgress)
	if err != nil {
		t.Fatal(err)
	}
	var p workflows.Progress
	if err := v.Get(&p); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPhaseOrder(t *testing.T) {
	rec := &recorder{}
	env := newEnv(t, testPlan(2), rec)
	env.ExecuteWorkflow(workflows.Build, request(flavours(3), "build", "manifest", "tests", "publish"))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	got := rec.phases()
	// base, packages, then image and test per flavour in any interleaving,
	// then publish once per platform with a publish pipeline (aws, gcp).
	if len(got) != 2+3+3+2 || got[0] != "base" || got[1] != "packages" || got[8] != "publish" || got[9] != "publish" {
		t.Fatalf("phases in order: %v", got)
	}
	for _, p := range got[2:8] {
		if p != "image" && p != "test" {
			t.Errorf("phase %s between packages and publish", p)
		}
	}
	p := progressOf(t, env)
	if p.State != workflows.StateSucceeded || len(p.Flavours) != 3 {
		t.Fatalf("progress = %+v", p)
	}
	for _, f := range p.Flavours {
		if f.State != workflows.StateSucceeded || len(f.Phases) != 2 || f.Phases[0].PipelineRun == "" {
			t.Errorf("flavour %s: %+v", f.Name, f)
		}
	}
	// Params are rendered from the request and the flavour.
	for _, q := range rec.reqs {
		if q.Params[0].Name != "commit" || q.Params[0].Value.StringVal != "0123abcd" {
			t.Errorf("%s params = %+v", q.Key, q.Params)
		}
	}
}

func TestSkippedTargets(t *testing.T) {
	rec := &recorder{}
	env := newEnv(t, testPlan(4), rec)
	in := request(flavours(2)) // build only
	in.PackagesVersion = "1443.0"
	env.ExecuteWorkflow(workflows.Build, in)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if got := rec.phases(); !slices.Equal(got, []string{"base", "image", "image"}) {
		t.Errorf("phases = %v, want base and one image per flavour", got)
	}
	p := progressOf(t, env)
	states := map[string]string{}
	for _, ph := range p.Phases {
		states[ph.Name] = ph.State + " " + ph.Reason
	}
	if !strings.HasPrefix(states["packages"], "Skipped packages 1443.0") || !strings.HasPrefix(states["publish"], "Skipped") {
		t.Errorf("phase states = %v", states)
	}
	if ph := p.Flavours[0].Phases[1]; ph.State != workflows.StateSkipped || !strings.Contains(ph.Reason, "tests") {
		t.Errorf("test phase = %+v, want skipped for the tests target", ph)
	}
}

func TestFanOutHonoursParallelism(t *testing.T) {
	for _, limit := range []int{1, 3} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			rec := &recorder{delay: 30 * time.Millisecond}
			env := newEnv(t, testPlan(limit), rec)
			env.ExecuteWorkflow(workflows.Build, request(flavours(7)))
			if err := env.GetWorkflowError(); err != nil {
				t.Fatal(err)
			}
			if got := rec.maxIn["image"]; got != limit {
				t.Errorf("at most %d image pipelines ran at once, want %d", got, limit)
			}
		})
	}
}

func TestOneFlavourFailingDoesNotStopTheOthers(t *testing.T) {
	fl := flavours(4)
	bad := fl[2].Name()
	rec := &recorder{outcome: func(q tekton.PipelineRunRequest) error {
		if q.Labels["kiln.dev/flavour"] == bad && q.Labels["kiln.dev/phase"] == "image" {
			return failed("Failed")
		}
		if q.Labels["kiln.dev/flavour"] == fl[0].Name() && q.Labels["kiln.dev/phase"] == "test" {
			return failed("Failed")
		}
		return nil
	}}
	env := newEnv(t, testPlan(2), rec)
	env.ExecuteWorkflow(workflows.Build, request(fl, "build", "manifest", "tests", "publish"))
	err := env.GetWorkflowError()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != workflows.ErrTypeFlavoursFailed || !strings.Contains(appErr.Error(), bad) {
		t.Fatalf("error = %v, want %s naming %s", err, workflows.ErrTypeFlavoursFailed, bad)
	}
	p := progressOf(t, env)
	for _, f := range p.Flavours {
		want := workflows.StateSucceeded
		switch f.Name {
		case bad:
			want = workflows.StateFailed
		case fl[0].Name():
			want = workflows.StateTestFailed
		}
		if f.State != want {
			t.Errorf("flavour %s: %s, want %s", f.Name, f.State, want)
		}
	}
	if slices.Contains(rec.phases(), "publish") {
		t.Error("published although a flavour failed")
	}
}

func TestRetryToSuccessOnSecondAttempt(t *testing.T) {
	p := testPlan(1)
	p.Base.Attempts, p.Base.Backoff = 3, time.Minute
	calls := 0
	rec := &recorder{outcome: func(q tekton.PipelineRunRequest) error {
		if q.Labels["kiln.dev/phase"] == "base" {
			calls++
			if calls == 1 {
				return failed("Failed")
			}
		}
		return nil
	}}
	env := newEnv(t, p, rec)
	env.ExecuteWorkflow(workflows.Build, request(flavours(1)))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, q := range rec.reqs {
		if q.Labels["kiln.dev/phase"] == "base" {
			keys = append(keys, q.Key)
		}
	}
	if len(keys) != 2 || keys[0] == keys[1] || !strings.HasSuffix(keys[0], "/a1") || !strings.HasSuffix(keys[1], "/a2") {
		t.Errorf("base keys = %v, want a fresh PipelineRun per attempt", keys)
	}
	if ph := progressOf(t, env).Phases[0]; ph.Attempt != 2 || ph.State != workflows.StateSucceeded {
		t.Errorf("base = %+v", ph)
	}
}

func TestInvalidSpecIsNotRetriedAsAFreshRun(t *testing.T) {
	p := testPlan(1)
	p.Base.Attempts = 3
	rec := &recorder{outcome: func(q tekton.PipelineRunRequest) error {
		return temporal.NewNonRetryableApplicationError("spec.params: bad", tekton.ErrTypeInvalidSpec, nil)
	}}
	env := newEnv(t, p, rec)
	env.ExecuteWorkflow(workflows.Build, request(flavours(1)))
	if err := env.GetWorkflowError(); err == nil || !strings.Contains(err.Error(), "spec.params") {
		t.Fatalf("error = %v", err)
	}
	if n := len(rec.reqs); n != 1 {
		t.Errorf("%d runs, want 1: an invalid spec fails the same way every time", n)
	}
}

// TestFreshRunOnlyForRerunReasons fails the base phase's first run with
// each class of reason, as RunPipeline returns it (a non-retryable
// ApplicationError with a tekton.Failure, which the workflow sees wrapped
// in an ActivityError), and counts the runs: only an allowed reason gets a
// second, fresh one.
func TestFreshRunOnlyForRerunReasons(t *testing.T) {
	failure := func(reason string, tasks ...string) error {
		f := tekton.Failure{Namespace: "builds", PipelineRun: "run", Reason: reason}
		for _, r := range tasks {
			f.FailedTasks = append(f.FailedTasks, tekton.TaskState{Name: "build", State: tekton.TaskFailed, Reason: r})
		}
		return temporal.NewNonRetryableApplicationError("pipelinerun builds/run "+reason, reason, nil, f)
	}
	for _, tc := range []struct {
		name string
		err  error
		runs int
	}{
		{"Failed", failure("Failed", "Failed"), 2},
		{"PipelineRunTimeout", failure("PipelineRunTimeout", "TaskRunCancelled"), 2},
		{"TaskRunImagePullFailed", failure("Failed", "TaskRunImagePullFailed"), 2},
		{"ExceededNodeResources", failure("Failed", "ExceededNodeResources"), 2},
		{"PipelineValidationFailed", failure("PipelineValidationFailed"), 1},
		{"CouldntGetPipeline", failure("CouldntGetPipeline"), 1},
		{"InvalidWorkspaceBindings", failure("InvalidWorkspaceBindings"), 1},
		{"Failed with TaskRunValidationFailed", failure("Failed", "TaskRunValidationFailed"), 1},
		{"Cancelled", failure("Cancelled", "TaskRunCancelled"), 1},
		{"unknown reason", failure("SomethingTektonAddsLater"), 1},
		{"Deleted", temporal.NewNonRetryableApplicationError("deleted outside kiln", tekton.ErrTypeDeleted, nil), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testPlan(1)
			p.Base.Attempts, p.Base.Backoff = 3, time.Minute
			var runs int
			rec := &recorder{outcome: func(q tekton.PipelineRunRequest) error {
				if q.Labels["kiln.dev/phase"] != "base" {
					return nil
				}
				runs++
				if runs == 1 {
					return tc.err
				}
				return nil
			}}
			env := newEnv(t, p, rec)
			env.ExecuteWorkflow(workflows.Build, request(flavours(1)))
			err := env.GetWorkflowError()
			if runs != tc.runs {
				t.Fatalf("%d base runs, want %d (workflow error: %v)", runs, tc.runs, err)
			}
			if tc.runs == 1 && err == nil {
				t.Error("build succeeded, want the phase's failure")
			}
			if tc.runs == 2 && err != nil {
				t.Errorf("build failed after a fresh run: %v", err)
			}
		})
	}
}

func TestCancellationReachesEveryRunningPipeline(t *testing.T) {
	// Base and packages succeed; the images block until cancelled.
	rec := &recorder{block: "image"}
	env := newEnv(t, testPlan(3), rec)
	var (
		mu        sync.Mutex
		cancelled []string
	)
	env.SetOnActivityCanceledListener(func(info *activity.Info) {
		mu.Lock()
		cancelled = append(cancelled, info.ActivityType.Name+"/"+info.ActivityID)
		mu.Unlock()
	})
	go func() {
		for {
			rec.mu.Lock()
			n := rec.inFlight["image"]
			rec.mu.Unlock()
			if n == 3 {
				env.CancelWorkflow()
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	env.ExecuteWorkflow(workflows.Build, request(flavours(5)))
	err := env.GetWorkflowError()
	if !temporal.IsCanceledError(err) {
		t.Fatalf("error = %v, want canceled", err)
	}
	// Three image runs were in flight (parallelism 3); the cancellation
	// reached each of them, which RunPipeline turns into a spec.status
	// patch (activities/tekton, test/e2e).
	mu.Lock()
	defer mu.Unlock()
	if len(cancelled) != 3 {
		t.Errorf("cancelled activities = %v, want the 3 image runs in flight", cancelled)
	}
	p := progressOf(t, env)
	if p.State != workflows.StateCancelled {
		t.Errorf("state = %s", p.State)
	}
}

func TestBadRequestIsRejectedBeforeAnyActivity(t *testing.T) {
	tests := []struct {
		name string
		in   workflows.BuildRequest
		want []string
	}{
		{"missing prerequisite", request(flavours(1), "build", "release"), []string{"release requires manifest", "release requires freeze-version"}},
		{"unknown target", request(flavours(1), "build", "deploy"), []string{`unknown target "deploy"`}},
		{"no commit", func() workflows.BuildRequest { r := request(flavours(1)); r.Commit = ""; return r }(), []string{"commit: required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			env := newEnv(t, testPlan(1), rec)
			planned := false
			env.SetOnActivityStartedListener(func(*activity.Info, context.Context, converter.EncodedValues) { planned = true })
			env.ExecuteWorkflow(workflows.Build, tt.in)
			var appErr *temporal.ApplicationError
			if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != workflows.ErrTypeInvalidRequest {
				t.Fatalf("error = %v, want %s", err, workflows.ErrTypeInvalidRequest)
			}
			for _, w := range tt.want {
				if !strings.Contains(appErr.Error(), w) {
					t.Errorf("error %q does not say %q", appErr.Error(), w)
				}
			}
			if planned || len(rec.reqs) > 0 {
				t.Error("an activity ran for an invalid request")
			}
		})
	}
}
