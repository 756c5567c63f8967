package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/kiln-build/kiln/activities/publish"
	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/workflows/flavour"
)

// changePublishFlavours: with storage, every flavour is published on its
// own (a PublishFlavour child), and its published images go into its
// manifest; before, one publish pipeline ran per platform.
const changePublishFlavours = "publish-flavours"

// ErrTypePublishFailed: a flavour's publishing failed; what it had created
// was removed (see PublishResult.Compensation).
const ErrTypePublishFailed = "PublishFailed"

// PublishInput is the input of PublishFlavour.
type PublishInput struct {
	BuildID string          `json:"buildID"`
	Request BuildRequest    `json:"request"`
	Plan    Plan            `json:"plan"`
	Flavour flavour.Flavour `json:"flavour"`
	// Base is the flavour's base name (<cname>-<arch>-<version>-<commit8>),
	// Manifest its manifest key, and Files its promoted artifacts.
	Base     string                       `json:"base,omitempty"`
	Manifest string                       `json:"manifest"`
	Files    []storage.File               `json:"files"`
	Results  map[string]map[string]string `json:"results,omitempty"`
	// Round is the operator's retry round; 0 or 1 is the first run. A
	// retry's PipelineRun keys and AWS client tokens are its own.
	Round int `json:"round,omitempty"`
	// Images, on a retry, are what the failed round published but could
	// not record in the manifest: the retry records them and publishes
	// nothing again.
	Images map[string]any `json:"images,omitempty"`
	// Undo, on a retry, is the failed round's AWS compensation that did
	// not finish: the retry finishes it before it publishes anything.
	Undo *Compensation `json:"undo,omitempty"`
}

// PublishResult is a flavour's publishing outcome.
type PublishResult struct {
	Phase PhaseState `json:"phase"`
	// Images is the platform's published-image metadata, as written into
	// the manifest; also on a failure to write it.
	Images map[string]any `json:"images,omitempty"`
	// Compensation is what a failed AWS publish removed again.
	Compensation *Compensation `json:"compensation,omitempty"`
}

// Compensation is the outcome of undoing a failed publish.
type Compensation struct {
	State            string                   `json:"state"` // Succeeded or Failed
	Deregistered     []publish.RegionImage    `json:"deregistered,omitempty"`
	DeletedSnapshots []publish.RegionSnapshot `json:"deletedSnapshots,omitempty"`
	Error            string                   `json:"error,omitempty"`
	// Key and Regions are what the undo looked for: the images and
	// snapshots tagged with the key in those regions.
	Key     string   `json:"key,omitempty"`
	Regions []string `json:"regions,omitempty"`
}

// publishFlavours publishes every built, publishable flavour on its
// platform, each in its own PublishFlavour child, at most Parallelism at
// once, and fails at the end naming the flavours that failed. A build that
// waits on failure asks the operator instead: a retry publishes the failed
// flavours (or the one named) again in fresh children, a skip leaves one
// unpublished (not in a release), an abort fails the build.
func (b *build) publishFlavours(ctx workflow.Context) error {
	st := b.state(PhasePublish)
	st.State, st.Start = StateRunning, workflow.Now(ctx)
	var todo []int
	phase := map[int]int{} // flavour index → index of its publish phase
	for i, f := range b.plan.Flavours {
		fs := &b.progress.Flavours[i]
		res := b.flavourResults[f.Name()]
		skip := ""
		switch {
		case !f.Publish:
			skip = "publish: false in the flavour file"
		case fs.State == StateTestFailed:
			skip = "tests failed"
		case fs.State != StateSucceeded && !fs.Reused:
			skip = "not built"
		case res.Manifest == "":
			skip = "no manifest"
		case res.Published:
			skip = "published before: manifest " + res.Manifest
		case b.plan.publisher(f.Platform) == "s3":
			skip = "promoted to the release bucket only (publishing.s3Only)"
		}
		fs.Phases = append(fs.Phases, PhaseState{Name: PhasePublish})
		phase[i] = len(fs.Phases) - 1
		if skip != "" {
			fs.Phases[phase[i]].State, fs.Phases[phase[i]].Reason = StateSkipped, skip
			continue
		}
		todo = append(todo, i)
	}
	last := map[string]PublishResult{} // each flavour's last outcome
	b.runPublishes(ctx, todo, phase, 1, last)
	var skipped []string
	for round := 2; ; round++ {
		st.End = workflow.Now(ctx)
		if ctx.Err() != nil {
			st.State = StateCancelled
			return temporal.NewCanceledError()
		}
		var failed []string
		var failedIdx []int
		for _, i := range todo {
			if b.progress.Flavours[i].Phases[phase[i]].State == StateFailed {
				failed = append(failed, b.plan.Flavours[i].Name())
				failedIdx = append(failedIdx, i)
			}
		}
		if len(failed) == 0 {
			break
		}
		st.State = StateFailed
		st.Error = fmt.Sprintf("%d of %d flavours failed to publish: %s", len(failed), len(todo), strings.Join(failed, ", "))
		err := temporal.NewNonRetryableApplicationError(st.Error, ErrTypePublishFailed, nil, failed)
		if !b.waitOnFailure(ctx, err) {
			return err
		}
		d := b.ask(ctx, gate{phase: PhasePublish, failed: failed, kind: KindFlavour, canSkip: !b.in.Has(TargetRelease)})
		switch d.Action {
		case UpdateSkip:
			for _, i := range failedIdx {
				if b.plan.Flavours[i].Name() == d.Flavour {
					ph := &b.progress.Flavours[i].Phases[phase[i]]
					ph.State, ph.Error = StateSkipped, "skipped by "+d.By+" after: "+ph.Error
					skipped = append(skipped, d.Flavour)
				}
			}
		case UpdateRetry:
			var again []int
			for _, i := range failedIdx {
				if d.Flavour == "" || b.plan.Flavours[i].Name() == d.Flavour {
					again = append(again, i)
				}
			}
			st.State, st.Error = StateRunning, ""
			b.runPublishes(ctx, again, phase, round, last)
		default:
			return abortError("publishing of "+strings.Join(failed, ", "), d, err)
		}
	}
	published := len(todo) - len(skipped)
	switch {
	case len(todo) == 0:
		st.State, st.Reason = StateSkipped, "nothing to publish"
	case len(skipped) > 0:
		st.State, st.Error = StateSucceeded, ""
		st.Reason = fmt.Sprintf("%d flavours published; skipped by an operator: %s", published, strings.Join(skipped, ", "))
	default:
		st.State, st.Error = StateSucceeded, ""
		st.Reason = fmt.Sprintf("%d flavours published", published)
	}
	return nil
}

// runPublishes publishes the flavours at the given indexes, each in a
// PublishFlavour child, at most Parallelism at once, and records their
// outcomes in their publish phases and in last. Round 1 is the first run;
// later rounds are an operator's retries, with their own child workflow
// IDs and PipelineRun keys. A retry starts only after the round before has
// ended, and so after a failed AWS publish's compensation: the child
// returns only once it has undone what it created, and a compensation
// that failed is finished by the retry before it publishes anything.
func (b *build) runPublishes(ctx workflow.Context, idx []int, phase map[int]int, round int, last map[string]PublishResult) {
	limit := b.plan.Parallelism
	if limit <= 0 {
		limit = 4
	}
	sem := workflow.NewBufferedChannel(ctx, limit)
	wg := workflow.NewWaitGroup(ctx)
	for _, i := range idx {
		f := b.plan.Flavours[i]
		res := b.flavourResults[f.Name()]
		in := PublishInput{
			BuildID: b.id, Request: b.in, Plan: b.plan, Flavour: f,
			Base: res.Base, Manifest: res.Manifest, Files: res.Files, Results: b.results, Round: round,
		}
		if prev, ok := last[f.Name()]; ok {
			// What the failed round left for this one: images published
			// but not recorded, or an undo that did not finish.
			in.Images = prev.Images
			if c := prev.Compensation; c != nil && c.State != StateSucceeded {
				in.Undo = c
			}
		}
		wg.Add(1)
		workflow.Go(ctx, func(ctx workflow.Context) {
			defer wg.Done()
			sem.Send(ctx, struct{}{})
			defer sem.ReceiveAsync(nil)
			phase := &b.progress.Flavours[i].Phases[phase[i]]
			if ctx.Err() != nil {
				phase.State = StateCancelled
				return
			}
			*phase = PhaseState{Name: PhasePublish, State: StateRunning, Start: workflow.Now(ctx)}
			cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
				WorkflowID:          roundKey(b.id+"/publish/"+f.Name(), round),
				WaitForCancellation: true,
			})
			var out PublishResult
			err := workflow.ExecuteChildWorkflow(cctx, PublishFlavour, in).Get(ctx, &out)
			var appErr *temporal.ApplicationError
			if errors.As(err, &appErr) && appErr.HasDetails() {
				_ = appErr.Details(&out)
			}
			last[f.Name()] = out
			*phase = out.Phase
			if phase.Name == "" { // the child never ran
				phase.Name, phase.Start = PhasePublish, workflow.Now(ctx)
			}
			switch {
			case err == nil:
			case temporal.IsCanceledError(err):
				phase.State = StateCancelled
			default:
				phase.State = StateFailed
				if phase.Error == "" {
					phase.Error = rootMessage(err)
				}
			}
			phase.End = workflow.Now(ctx)
		})
	}
	wg.Wait(ctx)
}

// PublishFlavour publishes one flavour's image on its platform — with the
// workers' AWS publishing for aws, otherwise with the platform's publish
// pipeline — and records the published images in the flavour's manifest.
// A failed AWS publish removes what it created before it fails.
func PublishFlavour(ctx workflow.Context, in PublishInput) (PublishResult, error) {
	res := PublishResult{Phase: PhaseState{Name: PhasePublish, State: StateRunning, Start: workflow.Now(ctx)}}
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() (PublishResult, error) { return res, nil }); err != nil {
		return res, err
	}
	var images map[string]any
	var err error
	switch {
	case in.Images != nil:
		images = in.Images
		res.Phase.Reason = "published by the round before; recording the images in the manifest"
	case in.Plan.publisher(in.Flavour.Platform) == "aws":
		images, err = publishAWS(ctx, in, &res)
	case in.Plan.publisher(in.Flavour.Platform) == "pipeline":
		images, err = publishPipeline(ctx, in, &res)
	default:
		err = temporal.NewNonRetryableApplicationError("no publisher for platform "+in.Flavour.Platform, ErrTypeInvalidRequest, nil)
	}
	if err == nil {
		res.Images = images // kept on a failure below, for a retry to record
		var s *storage.Activities
		err = workflow.ExecuteActivity(storageCtx(ctx, in.Plan.HeartbeatTimeout), s.SetPublished,
			storage.SetPublishedRequest{Key: in.Manifest, Images: images}).Get(ctx, nil)
	}
	res.Phase.End = workflow.Now(ctx)
	if err != nil {
		if temporal.IsCanceledError(err) {
			res.Phase.State = StateCancelled
			return res, err
		}
		res.Phase.State, res.Phase.Error = StateFailed, rootMessage(err)
		if c := res.Compensation; c != nil {
			res.Phase.Error += "; compensation " + strings.ToLower(c.State)
			if c.Error != "" {
				res.Phase.Error += ": " + c.Error
			}
		}
		return res, temporal.NewNonRetryableApplicationError(res.Phase.Error, ErrTypePublishFailed, err, res)
	}
	res.Phase.State = StateSucceeded
	return res, nil
}

// publishPipeline runs the platform's publish pipeline for the flavour and
// maps its results into the platform's published-image metadata.
func publishPipeline(ctx workflow.Context, in PublishInput, res *PublishResult) (map[string]any, error) {
	p := in.Flavour.Platform
	data := TemplateData{
		BuildID: in.BuildID, Repo: in.Request.Repo, Branch: in.Request.Branch, Commit: in.Request.Commit,
		Version: in.Request.Version, PackagesVersion: in.Request.PackagesVersion, Flavour: in.Flavour, Platform: p, Params: in.Request.Params, Results: in.Results,
		Artifacts: artifactURIs(in.Plan.Storage.ReleaseBucket, in.Files), Manifest: in.Manifest,
	}
	out, err := runPhase(ctx, &res.Phase, phaseRun{
		cfg: in.Plan.Publish[p], namespace: in.Plan.Namespace, key: roundKey(in.BuildID+"/"+PhasePublish+"/"+in.Flavour.Name(), in.Round),
		labels: map[string]string{labelBuild: labelValue(in.BuildID), labelPhase: PhasePublish, labelFlavour: labelValue(in.Flavour.Name()), labelPlatform: p},
		data:   data, plan: &in.Plan,
	})
	if err != nil {
		return nil, err
	}
	images, err := publish.MapResults(p, resultMap(out))
	if err != nil {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %v", in.Flavour.Name(), err), ErrTypePublishFailed, nil)
	}
	return images, nil
}

// awsCtx sets the options of the AWS activities. Every attempt heartbeats
// or is short, so a lost worker is noticed within the heartbeat timeout and
// the next attempt finds the earlier one's result (client tokens, names).
func awsCtx(ctx workflow.Context, heartbeat, startToClose time.Duration) workflow.Context {
	if heartbeat <= 0 {
		heartbeat = time.Minute
	}
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: startToClose,
		HeartbeatTimeout:    heartbeat,
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 5 * time.Second, BackoffCoefficient: 2, MaximumInterval: 2 * time.Minute, MaximumAttempts: 10,
		},
	})
}

// publishAWS is the AWS saga: import the raw image as a snapshot, register
// it, tag it, copy it to every region, wait for the copies, and make them
// public if asked. When a step fails, everything this publish created is
// deregistered and deleted in every region (itself retried), and the
// outcome is recorded in res.Compensation.
func publishAWS(ctx workflow.Context, in PublishInput, res *PublishResult) (map[string]any, error) {
	cfg := *in.Plan.AWS
	hb := in.Plan.HeartbeatTimeout
	var raw *storage.File
	for i, f := range in.Files {
		if strings.HasSuffix(f.Name, ".raw") {
			raw = &in.Files[i]
			break
		}
	}
	if raw == nil {
		return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: no .raw artifact to import into AWS; the image pipeline must report one", in.Flavour.Name()), ErrTypePublishFailed, nil)
	}
	bucket := cfg.Bucket
	if bucket == "" {
		bucket = in.Plan.Storage.ReleaseBucket
	}
	// A fresh key for each run of this child: a publish that failed and
	// was compensated starts over with new client tokens when an operator
	// retries it (the round) or the build runs again (the start time),
	// rather than getting its deleted snapshot back.
	key := fmt.Sprintf("%s/%d", roundKey(in.BuildID+"/publish/"+in.Flavour.Name(), in.Round), workflow.GetInfo(ctx).WorkflowStartTime.Unix())
	prefix := cfg.NamePrefix
	if prefix == "" {
		prefix = "gardenlinux"
	}
	// glci's image name: the prefix and the base name.
	base := in.Base
	if base == "" {
		commit := in.Request.Commit
		if len(commit) > 8 {
			commit = commit[:8]
		}
		base = fmt.Sprintf("%s-%s-%s", in.Flavour.Name(), in.Request.Version, commit)
	}
	name := prefix + "-" + base
	desc := fmt.Sprintf("%s %s %s (%s)", prefix, in.Flavour.Name(), in.Request.Version, in.Request.Commit)
	short := awsCtx(ctx, hb, 5*time.Minute)
	var a *publish.AWS
	step := func(s string) { res.Phase.Reason = s }

	if u := in.Undo; u != nil && u.Key != "" {
		// The failed round's undo did not finish: finish it before
		// anything is created again, so nothing of it is left behind.
		step("finishing the compensation of the failed round (key " + u.Key + ")")
		var cr publish.CleanupResult
		if err := workflow.ExecuteActivity(awsCtx(ctx, hb, 30*time.Minute), a.DeleteImages, publish.CleanupRequest{Key: u.Key, Regions: u.Regions}).Get(ctx, &cr); err != nil {
			res.Compensation = &Compensation{State: StateFailed, Error: rootMessage(err), Key: u.Key, Regions: u.Regions,
				Deregistered: cr.Deregistered, DeletedSnapshots: cr.DeletedSnapshots}
			step("the failed round's compensation failed again; nothing was published")
			return nil, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: the failed round's compensation (key %s) is not finished, so nothing was published again", in.Flavour.Name(), u.Key), ErrTypePublishFailed, nil)
		}
	}

	regions := slices.Clone(cfg.Regions)
	all := []string{cfg.Region}
	var images []publish.RegionImage
	err := func() error {
		if len(regions) == 0 {
			step("listing enabled regions")
			if err := workflow.ExecuteActivity(short, a.EnabledRegions, publish.RegionsRequest{Region: cfg.Region}).Get(ctx, &regions); err != nil {
				return err
			}
		}
		regions = slices.DeleteFunc(regions, func(r string) bool { return r == cfg.Region })
		all = append(all, regions...)

		step("importing snapshot from s3://" + bucket + "/" + raw.Key)
		var imp publish.ImportResult
		if err := workflow.ExecuteActivity(awsCtx(ctx, hb, 6*time.Hour), a.ImportSnapshot, publish.ImportRequest{
			Key: key, Region: cfg.Region, Bucket: bucket, ObjectKey: raw.Key, Description: desc, RoleName: cfg.RoleName,
		}).Get(ctx, &imp); err != nil {
			return err
		}
		step("registering " + name)
		var img publish.RegionImage
		if err := workflow.ExecuteActivity(short, a.RegisterImage, publish.RegisterRequest{
			Key: key, Region: cfg.Region, Name: name, Description: desc, SnapshotID: imp.SnapshotID,
			Arch: in.Flavour.Arch, BootMode: cfg.BootMode,
		}).Get(ctx, &img); err != nil {
			return err
		}
		images = append(images, img)
		tags := map[string]string{
			"Name": name, "kiln.dev/build": in.BuildID, "kiln.dev/flavour": in.Flavour.Name(),
			"kiln.dev/version": in.Request.Version, "kiln.dev/commit": in.Request.Commit,
		}
		for k, v := range cfg.Tags {
			tags[k] = v
		}
		step("tagging " + img.ImageID)
		if err := workflow.ExecuteActivity(short, a.CreateTags, publish.TagRequest{
			Region: cfg.Region, ResourceIDs: []string{img.ImageID, imp.SnapshotID}, Tags: tags,
		}).Get(ctx, nil); err != nil {
			return err
		}
		// A registered image is pending for a while; EC2 copies only an
		// available one.
		step("waiting for " + img.ImageID)
		if err := workflow.ExecuteActivity(awsCtx(ctx, hb, 2*time.Hour), a.AwaitImages, publish.ImagesRequest{Images: images}).Get(ctx, nil); err != nil {
			return err
		}
		step(fmt.Sprintf("copying to %d regions", len(regions)))
		copies := make([]workflow.Future, len(regions))
		for i, r := range regions {
			copies[i] = workflow.ExecuteActivity(short, a.CopyImage, publish.CopyRequest{
				Key: key, SourceRegion: cfg.Region, SourceImageID: img.ImageID, Region: r,
				Name: name, Description: desc, Tags: tags,
			})
		}
		var failed []string
		var cancelled error
		for i, f := range copies {
			var c publish.RegionImage
			if err := f.Get(ctx, &c); err != nil {
				if temporal.IsCanceledError(err) {
					cancelled = err
				}
				failed = append(failed, fmt.Sprintf("copy to %s: %s", regions[i], rootMessage(err)))
				continue
			}
			images = append(images, c)
		}
		if cancelled != nil {
			return cancelled
		}
		if len(failed) > 0 {
			return errors.New(strings.Join(failed, "; "))
		}
		step(fmt.Sprintf("waiting for %d copies", len(images)-1))
		if err := workflow.ExecuteActivity(awsCtx(ctx, hb, 2*time.Hour), a.AwaitImages, publish.ImagesRequest{Images: images[1:]}).Get(ctx, nil); err != nil {
			return err
		}
		if cfg.Public {
			step("making images public")
			if err := workflow.ExecuteActivity(short, a.MakePublic, publish.ImagesRequest{Images: images}).Get(ctx, nil); err != nil {
				return err
			}
		}
		return nil
	}()
	if err == nil {
		step(fmt.Sprintf("%d images in %d regions", len(images), len(all)))
		return publish.AWSImages(name, images), nil
	}
	// Undo from a context of its own: a cancelled build cleans up too.
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	c := &Compensation{Key: key, Regions: all}
	res.Compensation = c
	step("compensating: removing what this publish created")
	var cr publish.CleanupResult
	cerr := workflow.ExecuteActivity(awsCtx(dctx, hb, 30*time.Minute), a.DeleteImages, publish.CleanupRequest{Key: key, Regions: all}).Get(dctx, &cr)
	c.Deregistered, c.DeletedSnapshots = cr.Deregistered, cr.DeletedSnapshots
	if cerr != nil {
		c.State, c.Error = StateFailed, rootMessage(cerr)
		workflow.GetLogger(ctx).Error("AWS publish compensation failed", "key", key, "error", cerr)
	} else {
		c.State = StateSucceeded
	}
	step(fmt.Sprintf("failed; compensated: %d images deregistered, %d snapshots deleted", len(cr.Deregistered), len(cr.DeletedSnapshots)))
	return nil, err
}
