package workflows_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/kiln-build/kiln/activities/tekton"
	"github.com/kiln-build/kiln/workflows"
)

// progressAt queries the build's progress at a point in workflow time.
func progressAt(t *testing.T, env *testsuite.TestWorkflowEnvironment, at time.Duration, p *workflows.Progress) {
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(workflows.QueryProgress)
		if err != nil {
			t.Errorf("query at %v: %v", at, err)
			return
		}
		if err := v.Get(p); err != nil {
			t.Error(err)
		}
	}, at)
}

// publishKeys are the publish PipelineRun keys by flavour (or platform,
// for the per-platform publishing).
func publishKeys(rec *recorder) map[string][]string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := map[string][]string{}
	for _, q := range rec.reqs {
		if q.Labels["kiln.dev/phase"] != "publish" {
			continue
		}
		who := q.Labels["kiln.dev/flavour"]
		if who == "" {
			who = q.Labels["kiln.dev/platform"]
		}
		out[who] = append(out[who], q.Key)
	}
	return out
}

// failPublish fails the publish pipeline of the named flavour (or
// platform): in the first round only, or in every round.
func failPublish(name string, always bool) func(tekton.PipelineRunRequest) error {
	return func(q tekton.PipelineRunRequest) error {
		if q.Labels["kiln.dev/phase"] != "publish" || (q.Labels["kiln.dev/flavour"] != name && q.Labels["kiln.dev/platform"] != name) {
			return nil
		}
		if always || !strings.Contains(q.Key, "/r2/") {
			return failed("Failed")
		}
		return nil
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func lastPhase(f workflows.FlavourState) workflows.PhaseState {
	if len(f.Phases) == 0 {
		return workflows.PhaseState{}
	}
	return f.Phases[len(f.Phases)-1]
}

// gateRun builds and publishes one aws flavour (kiln's AWS publishing) and
// one gcp flavour (a publish pipeline) in a build that waits on failure.
func gateRun(t *testing.T, c *cloud, st *store, rec *recorder, in workflows.BuildRequest, setup func(*testsuite.TestWorkflowEnvironment)) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	if rec.results == nil {
		rec.results = gcpResults
	}
	env := newEnv(t, awsPlan(), rec, st.register, c.register, func(env *testsuite.TestWorkflowEnvironment) {
		// PublishFlavour, recording its children's workflow IDs.
		env.RegisterWorkflowWithOptions(func(ctx workflow.Context, in workflows.PublishInput) (workflows.PublishResult, error) {
			rec.mu.Lock()
			rec.children = append(rec.children, workflow.GetInfo(ctx).WorkflowExecution.ID)
			rec.mu.Unlock()
			return workflows.PublishFlavour(ctx, in)
		}, workflow.RegisterOptions{Name: "PublishFlavour"})
	})
	in.OnFailure = workflows.OnFailureWait
	setup(env)
	env.ExecuteWorkflow(workflows.Build, in)
	return env
}

func TestPublishFailureWaitsForRetry(t *testing.T) {
	fl := flavours(2)
	aws, gcp := fl[0].Name(), fl[1].Name()
	c, st := &cloud{}, newStore()
	rec := &recorder{outcome: failPublish(gcp, false)}
	var waiting workflows.Progress
	var notFailed, platform, wrongPhase error
	env := gateRun(t, c, st, rec, request(fl, "build", "manifest", "publish"), func(env *testsuite.TestWorkflowEnvironment) {
		progressAt(t, env, 30*time.Minute, &waiting)
		sendResume(env, 40*time.Minute, workflows.UpdateRetry, workflows.ResumeDecision{By: "ops", Flavour: aws}, &notFailed)
		sendResume(env, 45*time.Minute, workflows.UpdateRetry, workflows.ResumeDecision{By: "ops", Platform: "gcp"}, &platform)
		sendResume(env, 50*time.Minute, workflows.UpdateRetry, workflows.ResumeDecision{By: "ops", Phase: "image"}, &wrongPhase)
		sendResume(env, time.Hour, workflows.UpdateRetry, workflows.ResumeDecision{By: "ops", Phase: "publish", Flavour: gcp}, nil)
	})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	// While it waited, the build said what it waits on.
	if r := waiting.Resume; r == nil || !r.Waiting || r.Phase != workflows.PhasePublish || !slices.Equal(r.Failed, []string{gcp}) || r.FailedKind != workflows.KindFlavour || !r.CanSkip {
		t.Fatalf("resume while waiting = %+v", waiting.Resume)
	}
	if ph := waiting.Phases[len(waiting.Phases)-1]; ph.Name != workflows.PhasePublish || ph.State != workflows.StateFailed || !strings.Contains(ph.Error, gcp) {
		t.Errorf("publish phase while waiting = %+v", ph)
	}
	if ph := lastPhase(waiting.Flavours[1]); ph.State != workflows.StateFailed {
		t.Errorf("gcp publish while waiting = %+v", ph)
	}
	if notFailed == nil || !strings.Contains(notFailed.Error(), "has not failed") {
		t.Errorf("retry of a flavour that published: %v", notFailed)
	}
	if platform == nil || !strings.Contains(platform.Error(), "failed per flavour") {
		t.Errorf("retry naming a platform: %v", platform)
	}
	if wrongPhase == nil || !strings.Contains(wrongPhase.Error(), "the failed phase is publish") {
		t.Errorf("retry naming another phase: %v", wrongPhase)
	}
	// aws was published once; gcp twice, the retry with a fresh key.
	if n := strings.Count(strings.Join(c.calls, "\n"), "ImportSnapshot"); n != 1 {
		t.Errorf("aws imported %d times, want once: %q", n, c.calls)
	}
	if want := []string{"default-test-workflow-id/publish/" + aws, "default-test-workflow-id/publish/" + gcp, "default-test-workflow-id/publish/" + gcp + "/r2"}; !slices.Equal(sorted(rec.children), want) {
		t.Errorf("PublishFlavour children = %q, want %q", rec.children, want)
	}
	keys := publishKeys(rec)
	if g := keys[gcp]; len(g) != 2 || strings.Contains(g[0], "/r2/") || !strings.Contains(g[1], "/publish/"+gcp+"/r2/") {
		t.Errorf("gcp publish runs = %q, want two, the second under /r2/", g)
	}
	for _, f := range fl {
		if m := st.manifests[keyOf(f)]; len(m.PublishedImageMetadata) == 0 {
			t.Errorf("%s: manifest without published images", f.Name())
		}
	}
	p := progressOf(t, env)
	if p.State != workflows.StateSucceeded || p.Resume.Waiting || len(p.Resume.Decisions) != 1 || p.Resume.Decisions[0].Flavour != gcp {
		t.Errorf("progress %s, resume %+v", p.State, p.Resume)
	}
	if ph := p.Phases[len(p.Phases)-1]; ph.State != workflows.StateSucceeded || ph.Reason != "2 flavours published" || ph.Error != "" {
		t.Errorf("publish phase = %+v", ph)
	}
	if ph := lastPhase(p.Flavours[1]); ph.State != workflows.StateSucceeded || ph.Error != "" {
		t.Errorf("gcp publish = %+v", ph)
	}
}

func TestPublishFailureSkippedOrAborted(t *testing.T) {
	fl := flavours(2)
	aws, gcp := fl[0].Name(), fl[1].Name()
	t.Run("skip", func(t *testing.T) {
		c, st := &cloud{}, newStore()
		rec := &recorder{outcome: failPublish(gcp, true)}
		var noName error
		env := gateRun(t, c, st, rec, request(fl, "build", "manifest", "publish"), func(env *testsuite.TestWorkflowEnvironment) {
			sendResume(env, 30*time.Minute, workflows.UpdateSkip, workflows.ResumeDecision{By: "ops"}, &noName)
			sendResume(env, time.Hour, workflows.UpdateSkip, workflows.ResumeDecision{By: "ops", Flavour: gcp}, nil)
		})
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		if noName == nil || !strings.Contains(noName.Error(), "name the flavour to skip") {
			t.Errorf("skip without a flavour: %v", noName)
		}
		p := progressOf(t, env)
		if ph := lastPhase(p.Flavours[1]); ph.State != workflows.StateSkipped || !strings.Contains(ph.Error, "skipped by ops after: ") {
			t.Errorf("gcp publish = %+v", ph)
		}
		if ph := p.Phases[len(p.Phases)-1]; ph.State != workflows.StateSucceeded || ph.Reason != "1 flavours published; skipped by an operator: "+gcp {
			t.Errorf("publish phase = %+v", ph)
		}
		if len(publishKeys(rec)[gcp]) != 1 || len(st.manifests[keyOf(fl[1])].PublishedImageMetadata) != 0 {
			t.Error("the skipped flavour ran again or was recorded as published")
		}
	})
	t.Run("skip refused in a release", func(t *testing.T) {
		c, st := &cloud{}, newStore()
		rec := &recorder{outcome: failPublish(gcp, true)}
		var approved updateResult
		var refused error
		env := gateRun(t, c, st, rec, releaseRequest(), func(env *testsuite.TestWorkflowEnvironment) {
			sendUpdate(env, 10*time.Minute, workflows.UpdateApprove, workflows.Decision{By: "alice"}, &approved)
			sendResume(env, time.Hour, workflows.UpdateSkip, workflows.ResumeDecision{By: "ops", Flavour: gcp}, &refused)
			sendResume(env, 2*time.Hour, workflows.UpdateAbort, workflows.ResumeDecision{By: "ops", Reason: "gcp quota"}, nil)
		})
		if !approved.done {
			t.Fatalf("approval: %+v", approved)
		}
		if refused == nil || !strings.Contains(refused.Error(), "cannot be skipped in a release build") {
			t.Errorf("skip in a release: %v", refused)
		}
		if err := env.GetWorkflowError(); err == nil || !strings.Contains(err.Error(), "aborted by ops: gcp quota") {
			t.Errorf("error = %v, want the abort", err)
		}
	})
	t.Run("abort", func(t *testing.T) {
		c, st := &cloud{}, newStore()
		rec := &recorder{outcome: failPublish(gcp, true)}
		env := gateRun(t, c, st, rec, request(fl, "build", "manifest", "publish"), func(env *testsuite.TestWorkflowEnvironment) {
			sendResume(env, time.Hour, workflows.UpdateAbort, workflows.ResumeDecision{By: "ops", Reason: "gcp quota"}, nil)
		})
		var appErr *temporal.ApplicationError
		err := env.GetWorkflowError()
		if !errors.As(err, &appErr) || !strings.Contains(err.Error(), "publishing of "+gcp+" failed and was aborted by ops: gcp quota") {
			t.Fatalf("error = %v, want the abort", err)
		}
		p := progressOf(t, env)
		if p.State != workflows.StateFailed || lastPhase(p.Flavours[0]).State != workflows.StateSucceeded || len(st.manifests[keyOf(fl[0])].PublishedImageMetadata) == 0 {
			t.Errorf("progress %s, %s publish %+v: the aws flavour must stay published", p.State, aws, lastPhase(p.Flavours[0]))
		}
		if n := len(publishKeys(rec)[gcp]); n != 1 {
			t.Errorf("gcp published %d times, want once", n)
		}
	})
}

func TestManifestSetFailureWaitsForRetry(t *testing.T) {
	fl := flavours(2)
	st := newStore()
	st.failSets = 1
	rec := &recorder{results: artifactResults}
	env := newEnv(t, storagePlan(2), rec, st.register)
	in := request(fl, "build", "manifest")
	in.OnFailure = workflows.OnFailureWait
	var waiting workflows.Progress
	var flavour, skip error
	progressAt(t, env, 30*time.Minute, &waiting)
	sendResume(env, 40*time.Minute, workflows.UpdateRetry, workflows.ResumeDecision{By: "ops", Flavour: fl[0].Name()}, &flavour)
	sendResume(env, 50*time.Minute, workflows.UpdateSkip, workflows.ResumeDecision{By: "ops", Flavour: fl[0].Name()}, &skip)
	sendResume(env, time.Hour, workflows.UpdateRetry, workflows.ResumeDecision{By: "ops", Phase: workflows.PhaseManifest}, nil)
	env.ExecuteWorkflow(workflows.Build, in)
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if r := waiting.Resume; r == nil || !r.Waiting || r.Phase != workflows.PhaseManifest || len(r.Failed) != 0 || r.CanSkip {
		t.Fatalf("resume while waiting = %+v", waiting.Resume)
	}
	if flavour == nil || !strings.Contains(flavour.Error(), "manifest failed as a whole") {
		t.Errorf("retry naming a flavour: %v", flavour)
	}
	if skip == nil || !strings.Contains(skip.Error(), "cannot be skipped") {
		t.Errorf("skip of the manifest set: %v", skip)
	}
	// The set was written twice; nothing else ran again.
	if st.setCalls != 2 || len(st.sets) != 1 {
		t.Errorf("PutManifestSet %d times, %d sets", st.setCalls, len(st.sets))
	}
	if got := rec.phases(); len(got) != 2+2 {
		t.Errorf("pipelines = %v, want base, packages and two images, once each", got)
	}
	p := progressOf(t, env)
	if p.State != workflows.StateSucceeded || p.ManifestSet == "" {
		t.Errorf("progress %s, manifest set %q", p.State, p.ManifestSet)
	}
	for _, ph := range p.Phases {
		if ph.Name == workflows.PhaseManifest && (ph.State != workflows.StateSucceeded || ph.Error != "") {
			t.Errorf("manifest phase = %+v", ph)
		}
	}
}

func TestManifestSetFailureAborted(t *testing.T) {
	st := newStore()
	st.failSets = 1
	env := newEnv(t, storagePlan(2), &recorder{results: artifactResults}, st.register)
	in := request(flavours(1), "build", "manifest")
	in.OnFailure = workflows.OnFailureWait
	sendResume(env, time.Hour, workflows.UpdateAbort, workflows.ResumeDecision{By: "ops", Reason: "bucket policy"}, nil)
	env.ExecuteWorkflow(workflows.Build, in)
	if err := env.GetWorkflowError(); err == nil || !strings.Contains(err.Error(), "the manifest set failed and was aborted by ops: bucket policy") {
		t.Errorf("error = %v", err)
	}
}

func TestAWSPublishFailureCompensatedThenRetried(t *testing.T) {
	fl := flavours(2)
	aws := fl[0].Name()
	c, st := &cloud{failCopy: "eu-west-1"}, newStore()
	rec := &recorder{}
	var waiting workflows.Progress
	var leftWhileWaiting int
	var callsWhileWaiting []string
	env := gateRun(t, c, st, rec, request(fl, "build", "manifest", "publish"), func(env *testsuite.TestWorkflowEnvironment) {
		progressAt(t, env, 30*time.Minute, &waiting)
		env.RegisterDelayedCallback(func() {
			leftWhileWaiting = c.registered()
			c.set(func(c *cloud) { c.failCopy, callsWhileWaiting = "", slices.Clone(c.calls) })
		}, 40*time.Minute)
		sendResume(env, time.Hour, workflows.UpdateRetry, workflows.ResumeDecision{By: "ops", Flavour: aws}, nil)
	})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	// The compensation was done before the build waited.
	if leftWhileWaiting != 0 || len(callsWhileWaiting) == 0 || !strings.HasPrefix(callsWhileWaiting[len(callsWhileWaiting)-1], "DeleteImages ") {
		t.Errorf("while waiting: %d images left, calls %q", leftWhileWaiting, callsWhileWaiting)
	}
	if r := waiting.Resume; r == nil || !r.Waiting || r.Phase != workflows.PhasePublish || !slices.Equal(r.Failed, []string{aws}) {
		t.Fatalf("resume while waiting = %+v", waiting.Resume)
	}
	if ph := lastPhase(waiting.Flavours[0]); ph.State != workflows.StateFailed || !strings.Contains(ph.Error, "compensation succeeded") {
		t.Errorf("aws publish while waiting = %+v", ph)
	}
	// The retry published again, under a key of its own.
	if len(c.keys) != 2 || c.keys[0] == c.keys[1] || !strings.Contains(c.keys[1], "/publish/"+aws+"/r2/") {
		t.Errorf("import keys = %q, want a fresh /r2/ key for the retry", c.keys)
	}
	if n := c.registered(); n != 4 {
		t.Errorf("%d images registered, want 4 (one per region)", n)
	}
	if imgs, _ := st.manifests[keyOf(fl[0])].PublishedImageMetadata["published_aws_images"].([]any); len(imgs) != 4 {
		t.Errorf("aws published images = %v", st.manifests[keyOf(fl[0])].PublishedImageMetadata)
	}
	if n := len(publishKeys(rec)[fl[1].Name()]); n != 1 {
		t.Errorf("gcp published %d times, want once", n)
	}
}

func TestAWSRetryFinishesAFailedCompensationFirst(t *testing.T) {
	fl := flavours(1)
	aws := fl[0].Name()
	c, st := &cloud{failCopy: "eu-west-1", failDelete: 1}, newStore()
	var waiting workflows.Progress
	env := gateRun(t, c, st, &recorder{}, request(fl, "build", "manifest", "publish"), func(env *testsuite.TestWorkflowEnvironment) {
		progressAt(t, env, 30*time.Minute, &waiting)
		env.RegisterDelayedCallback(func() { c.set(func(c *cloud) { c.failCopy = "" }) }, 40*time.Minute)
		sendResume(env, time.Hour, workflows.UpdateRetry, workflows.ResumeDecision{By: "ops"}, nil)
	})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if ph := lastPhase(waiting.Flavours[0]); ph.State != workflows.StateFailed || !strings.Contains(ph.Error, "compensation failed: deregister refused") {
		t.Errorf("aws publish while waiting = %+v", ph)
	}
	// The retry's first call is the undo it finishes; then it publishes.
	second := slices.Index(c.calls, "DeleteImages eu-central-1,ap-southeast-1,eu-west-1,us-east-1")
	imports := 0
	for i, call := range c.calls {
		if strings.HasPrefix(call, "ImportSnapshot") {
			imports++
			if imports == 2 && (second < 0 || second > i) {
				t.Errorf("the retry imported before it finished the undo: %q", c.calls)
			}
		}
	}
	if imports != 2 || c.registered() != 4 {
		t.Errorf("%d imports, %d images registered; calls %q", imports, c.registered(), c.calls)
	}
	if ph := lastPhase(progressOf(t, env).Flavours[0]); ph.State != workflows.StateSucceeded {
		t.Errorf("aws publish = %+v (%s)", ph, aws)
	}
}

func TestPublishRetryRecordsWhatWasPublished(t *testing.T) {
	fl := flavours(1)
	c, st := &cloud{}, newStore()
	st.failPublished = 1
	env := gateRun(t, c, st, &recorder{}, request(fl, "build", "manifest", "publish"), func(env *testsuite.TestWorkflowEnvironment) {
		sendResume(env, time.Hour, workflows.UpdateRetry, workflows.ResumeDecision{By: "ops"}, nil)
	})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	// The images were published once and recorded by the retry.
	if len(c.keys) != 1 || c.registered() != 4 {
		t.Errorf("imports %q, %d images: the retry published again", c.keys, c.registered())
	}
	if imgs, _ := st.manifests[keyOf(fl[0])].PublishedImageMetadata["published_aws_images"].([]any); len(imgs) != 4 {
		t.Errorf("published images = %v", st.manifests[keyOf(fl[0])].PublishedImageMetadata)
	}
}

func TestPlatformPublishFailureWaits(t *testing.T) {
	fl := flavours(2) // aws and gcp, each with a publish pipeline, no storage
	run := func(t *testing.T, always bool, decisions ...func(*testsuite.TestWorkflowEnvironment)) (*recorder, *testsuite.TestWorkflowEnvironment) {
		rec := &recorder{outcome: failPublish("gcp", always)}
		env := newEnv(t, testPlan(2), rec)
		for _, d := range decisions {
			d(env)
		}
		in := request(fl, "build", "manifest", "publish")
		in.OnFailure = workflows.OnFailureWait
		env.ExecuteWorkflow(workflows.Build, in)
		return rec, env
	}
	t.Run("retry", func(t *testing.T) {
		var waiting workflows.Progress
		var flavour error
		rec, env := run(t, false, func(env *testsuite.TestWorkflowEnvironment) {
			progressAt(t, env, 30*time.Minute, &waiting)
			sendResume(env, 40*time.Minute, workflows.UpdateRetry, workflows.ResumeDecision{By: "ops", Flavour: fl[1].Name()}, &flavour)
			sendResume(env, time.Hour, workflows.UpdateRetry, workflows.ResumeDecision{By: "ops", Platform: "gcp"}, nil)
		})
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		if r := waiting.Resume; r == nil || !r.Waiting || r.Phase != workflows.PhasePublish || !slices.Equal(r.Failed, []string{"gcp"}) || r.FailedKind != workflows.KindPlatform {
			t.Fatalf("resume while waiting = %+v", waiting.Resume)
		}
		if flavour == nil || !strings.Contains(flavour.Error(), "failed per platform") {
			t.Errorf("retry naming a flavour: %v", flavour)
		}
		keys := publishKeys(rec)
		if len(keys["aws"]) != 1 || len(keys["gcp"]) != 2 || !strings.Contains(keys["gcp"][1], "/publish/gcp/r2/") {
			t.Errorf("publish runs = %q", keys)
		}
		if p := progressOf(t, env); p.State != workflows.StateSucceeded {
			t.Errorf("state %s", p.State)
		}
	})
	t.Run("skip", func(t *testing.T) {
		rec, env := run(t, true, func(env *testsuite.TestWorkflowEnvironment) {
			sendResume(env, time.Hour, workflows.UpdateSkip, workflows.ResumeDecision{By: "ops", Platform: "gcp"}, nil)
		})
		if err := env.GetWorkflowError(); err != nil {
			t.Fatal(err)
		}
		for _, ph := range progressOf(t, env).Phases {
			if ph.Name == "publish/gcp" && (ph.State != workflows.StateSkipped || !strings.Contains(ph.Error, "skipped by ops")) {
				t.Errorf("publish/gcp = %+v", ph)
			}
		}
		if n := len(publishKeys(rec)["gcp"]); n != 1 {
			t.Errorf("gcp published %d times", n)
		}
	})
	t.Run("abort", func(t *testing.T) {
		_, env := run(t, true, func(env *testsuite.TestWorkflowEnvironment) {
			sendResume(env, time.Hour, workflows.UpdateAbort, workflows.ResumeDecision{By: "ops"}, nil)
		})
		if err := env.GetWorkflowError(); err == nil || !strings.Contains(err.Error(), "publishing of gcp failed and was aborted by ops") {
			t.Errorf("error = %v", err)
		}
	})
}
