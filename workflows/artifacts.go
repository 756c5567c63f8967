package workflows

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/kiln-build/kiln/activities/logs"
	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/activities/tekton"
	"github.com/kiln-build/kiln/workflows/release"
)

// Change IDs of the artifact work (Plan.Storage).
const (
	// changeCheckTargets: a publish target with a platform that nothing
	// publishes fails the build before anything runs.
	changeCheckTargets = "check-targets"
)

// PhaseManifest is the build-level phase that writes the manifest set.
const PhaseManifest = "manifest"

// PhaseArtifacts is the name, in a flavour's phases, of the verification
// and promotion of its artifacts and the writing of its manifest.
const PhaseArtifacts = "artifacts"

// ResultArtifacts is the image pipeline's result that lists the flavour's
// artifacts in the staging bucket: a JSON array of
// {"name": "<base>.raw", "key": "…", "size": 123, "sha256": "<hex>",
// "md5": "<hex>"} (md5 optional: kiln computes it when absent), as a string
// result or an array result of such objects' JSON. Garden Linux names its
// files <base><suffix>; a file named otherwise is released as
// <base>.<name>.
const ResultArtifacts = "artifacts"

// ErrTypeArtifactsMissing: the image pipeline did not report its
// artifacts result, or reported one that is not a valid list.
const ErrTypeArtifactsMissing = "ArtifactsMissing"

// ActivityArchiveLogs archives a PipelineRun's logs (activities/logs for
// the cluster, activities/local on one machine).
const ActivityArchiveLogs = "ArchiveLogs"

// storageCtx sets the options of the S3 activities: short calls, retried
// while S3 is away, permanent errors non-retryable.
func storageCtx(ctx workflow.Context, heartbeat time.Duration) workflow.Context {
	if heartbeat <= 0 {
		heartbeat = time.Minute
	}
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		// Verify may stream a large image to hash it; Promote copies in
		// parts. Both heartbeat.
		StartToCloseTimeout: 2 * time.Hour,
		HeartbeatTimeout:    heartbeat,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 2 * time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute, MaximumAttempts: 20,
		},
	})
}

// archive archives the logs of the run that attempt ran (key), on the
// worker that ran it (queue, "" for any), and records the outcome in the
// phase's state: in the background when r.bg is set, else at once.
func (r phaseRun) archive(ctx workflow.Context, st *PhaseState, key, queue string, attempt int, heartbeat time.Duration) {
	name := tekton.RunName(key)
	run := func(ctx workflow.Context) {
		logs, lerr := archiveLogs(ctx, r.namespace, name, key, queue, heartbeat)
		if r.state != nil {
			st = r.state()
		}
		if attempt < st.LogsAttempt {
			return // a later attempt's logs are there already
		}
		st.Logs, st.LogsError, st.LogsAttempt = logs, lerr, attempt
	}
	if r.bg == nil {
		run(ctx)
		return
	}
	r.bg.goDisconnected(ctx, run)
}

// archiveLogs archives a run's logs and returns them by task, or why not.
// Its retry budget outlasts an S3 outage of well over ten minutes.
func archiveLogs(ctx workflow.Context, namespace, name, key, queue string, heartbeat time.Duration) (map[string]string, string) {
	if heartbeat <= 0 {
		heartbeat = time.Minute
	}
	o := workflow.ActivityOptions{
		StartToCloseTimeout:    10 * time.Minute,
		ScheduleToCloseTimeout: 40 * time.Minute,
		HeartbeatTimeout:       heartbeat,
		RetryPolicy:            &temporal.RetryPolicy{InitialInterval: 2 * time.Second, BackoffCoefficient: 2, MaximumInterval: time.Minute},
	}
	if queue != "" {
		// The run's logs are on that worker. If it is gone for good, so
		// are they: say so after a while, rather than hold the manifest
		// for the whole budget.
		o.TaskQueue, o.ScheduleToStartTimeout = queue, 10*time.Minute
	}
	var out logs.ArchiveResult
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, o), ActivityArchiveLogs,
		logs.ArchiveRequest{Namespace: namespace, PipelineRun: name, Path: key}).Get(ctx, &out)
	switch {
	case err != nil:
		workflow.GetLogger(ctx).Warn("log archive failed", "pipelinerun", name, "error", err)
		return nil, rootMessage(err)
	case len(out.Missing) > 0:
		return out.Logs, "pods gone before their logs were read: " + strings.Join(out.Missing, ", ")
	default:
		return out.Logs, ""
	}
}

// parseArtifacts reads the image pipeline's artifacts result.
func parseArtifacts(flavourName string, results map[string]string) ([]storage.Artifact, error) {
	v, ok := results[ResultArtifacts]
	if !ok {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: the image pipeline reported no %q result; declare it in the pipeline's results, listing the staged files", flavourName, ResultArtifacts), ErrTypeArtifactsMissing, nil)
	}
	var arts []storage.Artifact
	if err := json.Unmarshal([]byte(v), &arts); err != nil {
		// An array result: each element is one artifact's JSON.
		var elems []string
		if json.Unmarshal([]byte(v), &elems) != nil {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: result %q is not a JSON list of artifacts: %v", flavourName, ResultArtifacts, err), ErrTypeArtifactsMissing, nil)
		}
		arts = make([]storage.Artifact, len(elems))
		for i, e := range elems {
			if err := json.Unmarshal([]byte(e), &arts[i]); err != nil {
				return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: result %q[%d] is not an artifact: %v", flavourName, ResultArtifacts, i, err), ErrTypeArtifactsMissing, nil)
			}
		}
	}
	if len(arts) == 0 {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: result %q lists no artifacts", flavourName, ResultArtifacts), ErrTypeArtifactsMissing, nil)
	}
	for i, a := range arts {
		if a.Name == "" || a.Key == "" || len(a.SHA256) != 64 || a.Size < 0 {
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: result %q[%d]: name, key, size and a hex sha256 are required, got %+v", flavourName, ResultArtifacts, i, a), ErrTypeArtifactsMissing, nil)
		}
	}
	return arts, nil
}

// ResultCName is the image pipeline's optional result that names the
// flavour's canonical name as the build resolved it (Garden Linux's
// GARDENLINUX_CNAME: <cname>, <cname>-<arch> or the whole base name). A
// <cname>.release file among the artifacts says the same and wins.
const ResultCName = "cname"

// ErrTypeCNameInvalid: the canonical name the build reported (its cname
// result or .release file) is malformed or disagrees with the build's
// version, commit or architecture.
const ErrTypeCNameInvalid = "CNameInvalid"

// flavourArtifacts is FlavourBuild's artifact work.
type flavourArtifacts struct {
	in        FlavourInput
	res       *FlavourResult
	st        *PhaseState
	artifacts []storage.Artifact // verified
	identity  release.Identity   // the build's canonical name and facts
}

// findManifest looks for the flavour's manifest, written by kiln or by
// Garden Linux's own tools (whose canonical name may order the features
// differently). When it exists, the flavour was built before: every phase
// is skipped and the result carries the manifest.
func (fa *flavourArtifacts) findManifest(ctx workflow.Context) (bool, error) {
	var s *storage.Activities
	var found storage.Found
	f := fa.in.Flavour
	req := storage.FindManifestRequest{
		Flavour: f.Name(), Platform: f.Platform, Arch: f.Arch, Features: f.Features,
		Version: fa.in.Request.Version, Commit: fa.in.Request.Commit,
	}
	if err := workflow.ExecuteActivity(storageCtx(ctx, fa.in.Plan.HeartbeatTimeout), s.FindManifest, req).Get(ctx, &found); err != nil {
		return false, err
	}
	if !found.Found {
		return false, nil
	}
	reason := "built before: manifest " + found.Key
	for i := range fa.res.Phases {
		fa.res.Phases[i].State, fa.res.Phases[i].Reason = StateSkipped, reason
	}
	fa.res.Manifest, fa.res.Reused, fa.res.Files = found.Key, true, found.Files
	fa.res.Base = found.Base
	fa.res.Published = found.Published
	fa.res.TestFailed = found.TestResult == storage.TestFailed
	return true, nil
}

// verify checks the artifacts the image pipeline reported and resolves the
// flavour's canonical name from its .release file or cname result.
func (fa *flavourArtifacts) verify(ctx workflow.Context) error {
	fa.st.State, fa.st.Start = StateRunning, workflow.Now(ctx)
	arts, err := parseArtifacts(fa.in.Flavour.Name(), fa.res.Image)
	var vr storage.VerifyResult
	if err == nil {
		var s *storage.Activities
		err = workflow.ExecuteActivity(storageCtx(ctx, fa.in.Plan.HeartbeatTimeout), s.Verify, storage.VerifyRequest{Flavour: fa.in.Flavour.Name(), Artifacts: arts}).Get(ctx, &vr)
	}
	if err == nil {
		fa.identity, err = fa.identify(vr)
	}
	if err != nil {
		fa.st.End = workflow.Now(ctx)
		fa.st.State, fa.st.Error = StateFailed, rootMessage(err)
		if temporal.IsCanceledError(err) {
			fa.st.State = StateCancelled
		}
		return err
	}
	fa.artifacts = vr.Artifacts
	if len(fa.artifacts) == 0 {
		fa.artifacts = arts
	}
	fa.res.Base = fa.identity.Base
	return nil
}

// identify resolves the build's identity: its canonical name from the
// .release artifact, else the cname result, else the flavour's own name,
// checked against the build's version, commit and architecture.
func (fa *flavourArtifacts) identify(vr storage.VerifyResult) (release.Identity, error) {
	f := fa.in.Flavour
	in := release.ResolveInput{
		FlavourName: f.Name(), Platform: f.Platform, Arch: f.Arch, Features: f.Features,
		Version: fa.in.Request.Version, Commit: fa.in.Request.Commit, CName: fa.res.Image[ResultCName],
	}
	bad := func(what string, err error) (release.Identity, error) {
		return release.Identity{}, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %s: %v", f.Name(), what, err), ErrTypeCNameInvalid, nil)
	}
	if vr.Release != "" {
		r, err := release.ParseRelease([]byte(vr.Release))
		if err != nil {
			return bad("its .release file", err)
		}
		in.Release = &r
	}
	if vr.Requirements != "" {
		r, err := release.ParseRequirements([]byte(vr.Requirements))
		if err != nil {
			return bad("its .requirements file", err)
		}
		in.Requirements = &r
	}
	id, err := release.Resolve(in)
	if err != nil {
		return release.Identity{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeCNameInvalid, nil)
	}
	return id, nil
}

// manifest promotes the verified artifacts and writes the flavour's
// release manifest.
func (fa *flavourArtifacts) manifest(ctx workflow.Context, built time.Time) error {
	var s *storage.Activities
	sctx := storageCtx(ctx, fa.in.Plan.HeartbeatTimeout)
	var promoted storage.PromoteResult
	err := workflow.ExecuteActivity(sctx, s.Promote, storage.PromoteRequest{Artifacts: fa.artifacts, Identity: fa.identity}).Get(ctx, &promoted)
	if err == nil {
		fa.res.Files = promoted.Files
		test := ""
		switch {
		case fa.res.TestFailed:
			test = storage.TestFailed
		case fa.res.phase(PhaseTest).State == StateSucceeded:
			test = storage.TestPassed
		}
		logs := map[string]string{}
		for _, ph := range fa.res.Phases {
			for task, uri := range ph.Logs {
				logs[ph.Name+"/"+task] = uri
			}
		}
		err = workflow.ExecuteActivity(sctx, s.PutManifest, storage.PutManifestRequest{
			Identity: fa.identity, Files: promoted.Files, BuildTimestamp: built.UTC(), TestResult: test,
			BuildID: fa.in.BuildID, Repo: fa.in.Request.Repo, Flavour: fa.in.Flavour.Name(), Logs: logs,
		}).Get(ctx, &fa.res.Manifest)
	}
	fa.st.End = workflow.Now(ctx)
	if err != nil {
		fa.st.State, fa.st.Error = StateFailed, rootMessage(err)
		if temporal.IsCanceledError(err) {
			fa.st.State = StateCancelled
		}
		return err
	}
	fa.st.State, fa.st.Reason = StateSucceeded, fmt.Sprintf("%d files (%d copied), manifest %s", len(promoted.Files), promoted.Copied, fa.res.Manifest)
	return nil
}

// artifactURIs maps a manifest's files to their s3:// URIs, by name
// (<base>.raw) and by suffix (.raw), so a publish pipeline's params need not
// spell the base name: {{index .Artifacts ".raw"}}.
func artifactURIs(bucket string, files []storage.File) map[string]string {
	m := make(map[string]string, 2*len(files))
	for _, f := range files {
		uri := "s3://" + bucket + "/" + f.Key
		m[f.Name] = uri
		if f.Suffix != "" {
			m[f.Suffix] = uri
		}
	}
	return m
}

// manifestSet writes the build's manifest set, listing every flavour's
// manifest. When that fails and the build waits on failure, an operator's
// retry writes the set again (nothing else runs again), and an abort fails
// the build.
func (b *build) manifestSet(ctx workflow.Context) error {
	for {
		err := b.writeManifestSet(ctx)
		if err == nil || !b.waitOnFailure(ctx, err) {
			return err
		}
		if d := b.ask(ctx, gate{phase: PhaseManifest}); d.Action != UpdateRetry {
			return abortError("the manifest set", d, err)
		}
	}
}

func (b *build) writeManifestSet(ctx workflow.Context) error {
	st := b.state(PhaseManifest)
	set := storage.ManifestSet{BuildID: b.id, Commit: b.in.Commit, Version: b.in.Version, Manifests: map[string]string{}}
	for _, fs := range b.progress.Flavours {
		if fs.Manifest != "" {
			set.Manifests[fs.Name] = fs.Manifest
		}
	}
	if len(set.Manifests) == 0 {
		st.State, st.Reason = StateSkipped, "no flavour has a manifest"
		return nil
	}
	st.State, st.Start, st.Error = StateRunning, workflow.Now(ctx), ""
	var s *storage.Activities
	var key string
	err := workflow.ExecuteActivity(storageCtx(ctx, b.plan.HeartbeatTimeout), s.PutManifestSet, set).Get(ctx, &key)
	st.End = workflow.Now(ctx)
	if err != nil {
		st.State, st.Error = StateFailed, rootMessage(err)
		return fmt.Errorf("manifest set: %w", err)
	}
	st.State, st.Reason = StateSucceeded, fmt.Sprintf("%d manifests in %s", len(set.Manifests), key)
	b.progress.ManifestSet = key
	return nil
}
