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
)

// Change IDs of the artifact work (Plan.Storage).
const (
	// changeArtifacts: flavours verify, promote and write release
	// manifests, and a flavour whose manifest exists is not built again.
	changeArtifacts = "artifacts"
	// changeLogArchive: every PipelineRun's logs are archived after it
	// ends.
	changeLogArchive = "log-archive"
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
// {"name": "rootfs.raw", "key": "…", "size": 123, "sha256": "<hex>"}, as a
// string result or an array result of such objects' JSON.
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

// archiveLogs archives the logs of the run that the phase's last attempt
// ran, and records the links (or why there are none) in st. A failure to
// archive is reported, never the phase's failure.
func archiveLogs(ctx workflow.Context, st *PhaseState, namespace, key string, heartbeat time.Duration) {
	if heartbeat <= 0 {
		heartbeat = time.Minute
	}
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Minute,
		HeartbeatTimeout:    heartbeat,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 2 * time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 5},
	})
	var out logs.ArchiveResult
	err := workflow.ExecuteActivity(actx, ActivityArchiveLogs, logs.ArchiveRequest{Namespace: namespace, PipelineRun: st.PipelineRun, Path: key}).Get(ctx, &out)
	switch {
	case err != nil:
		st.Logs, st.LogsError = nil, rootMessage(err)
		workflow.GetLogger(ctx).Warn("log archive failed", "pipelinerun", st.PipelineRun, "error", err)
	case len(out.Missing) > 0:
		st.Logs, st.LogsError = out.Logs, "pods gone before their logs were read: "+strings.Join(out.Missing, ", ")
	default:
		st.Logs, st.LogsError = out.Logs, ""
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

// flavourArtifacts is FlavourBuild's artifact work.
type flavourArtifacts struct {
	in        FlavourInput
	res       *FlavourResult
	st        *PhaseState
	artifacts []storage.Artifact // verified
}

// findManifest looks for the flavour's manifest. When it exists, the
// flavour was built before: every phase is skipped and the result carries
// the manifest.
func (fa *flavourArtifacts) findManifest(ctx workflow.Context) (bool, error) {
	var s *storage.Activities
	var found storage.Found
	req := storage.FindManifestRequest{Flavour: fa.in.Flavour.Name(), Version: fa.in.Request.Version, Commit: fa.in.Request.Commit}
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
	fa.res.Manifest, fa.res.Reused, fa.res.Files = found.Key, true, found.Manifest.Files
	fa.res.Published = len(found.Manifest.PublishedImages) > 0
	fa.res.TestFailed = found.Manifest.TestResult == storage.TestFailed
	return true, nil
}

// verify checks the artifacts the image pipeline reported.
func (fa *flavourArtifacts) verify(ctx workflow.Context) error {
	fa.st.State, fa.st.Start = StateRunning, workflow.Now(ctx)
	arts, err := parseArtifacts(fa.in.Flavour.Name(), fa.res.Image)
	if err == nil {
		var s *storage.Activities
		err = workflow.ExecuteActivity(storageCtx(ctx, fa.in.Plan.HeartbeatTimeout), s.Verify, storage.VerifyRequest{Flavour: fa.in.Flavour.Name(), Artifacts: arts}).Get(ctx, nil)
	}
	if err != nil {
		fa.st.End = workflow.Now(ctx)
		fa.st.State, fa.st.Error = StateFailed, rootMessage(err)
		if temporal.IsCanceledError(err) {
			fa.st.State = StateCancelled
		}
		return err
	}
	fa.artifacts = arts
	return nil
}

// manifest promotes the verified artifacts and writes the flavour's
// release manifest.
func (fa *flavourArtifacts) manifest(ctx workflow.Context, built time.Time) error {
	var s *storage.Activities
	sctx := storageCtx(ctx, fa.in.Plan.HeartbeatTimeout)
	var promoted storage.PromoteResult
	err := workflow.ExecuteActivity(sctx, s.Promote, storage.PromoteRequest{Artifacts: fa.artifacts}).Get(ctx, &promoted)
	if err == nil {
		fa.res.Files = promoted.Files
		test := storage.TestNotRun
		switch {
		case fa.res.Phases[1].State == StateSucceeded:
			test = storage.TestPassed
		case fa.res.TestFailed:
			test = storage.TestFailed
		}
		logs := map[string]string{}
		for _, ph := range fa.res.Phases {
			for task, uri := range ph.Logs {
				logs[ph.Name+"/"+task] = uri
			}
		}
		m := storage.Manifest{
			BuildID: fa.in.BuildID, Flavour: fa.in.Flavour.Name(), Repo: fa.in.Request.Repo,
			Commit: fa.in.Request.Commit, Version: fa.in.Request.Version,
			Architecture: fa.in.Flavour.Arch, Platform: fa.in.Flavour.Platform, Features: fa.in.Flavour.Features,
			BuildTimestamp: built.UTC(), Files: promoted.Files, TestResult: test, Logs: logs,
		}
		err = workflow.ExecuteActivity(sctx, s.PutManifest, m).Get(ctx, &fa.res.Manifest)
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

// artifactURIs maps a manifest's files to their s3:// URIs.
func artifactURIs(bucket string, files []storage.File) map[string]string {
	m := make(map[string]string, len(files))
	for _, f := range files {
		m[f.Name] = "s3://" + bucket + "/" + f.Key
	}
	return m
}

// manifestSet writes the build's manifest set, listing every flavour's
// manifest.
func (b *build) manifestSet(ctx workflow.Context) error {
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
	st.State, st.Start = StateRunning, workflow.Now(ctx)
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
