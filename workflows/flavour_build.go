package workflows

import (
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/workflows/flavour"
)

// FlavourInput is the input of FlavourBuild.
type FlavourInput struct {
	BuildID string                       `json:"buildID"`
	Request BuildRequest                 `json:"request"`
	Plan    Plan                         `json:"plan"`
	Flavour flavour.Flavour              `json:"flavour"`
	Results map[string]map[string]string `json:"results,omitempty"`
	// Round is the operator's retry round; 0 or 1 is the first run.
	Round int `json:"round,omitempty"`
}

// FlavourResult is one flavour's outcome. A test failure is recorded here,
// not returned as an error, so the parent keeps the image.
type FlavourResult struct {
	Phases     []PhaseState      `json:"phases"`
	Image      map[string]string `json:"image,omitempty"`
	TestFailed bool              `json:"testFailed,omitempty"`
	Error      string            `json:"error,omitempty"`
	// Manifest is the key of the flavour's release manifest, and Files its
	// promoted artifacts (with Plan.Storage and the manifest target).
	Manifest string         `json:"manifest,omitempty"`
	Files    []storage.File `json:"files,omitempty"`
	// Reused is set when the manifest existed before: the flavour was not
	// built again. Published is set when it also holds published images.
	Reused    bool `json:"reused,omitempty"`
	Published bool `json:"published,omitempty"`
}

// FlavourBuild builds one flavour's image and, when the build requests the
// tests target and a test pipeline is configured, tests it. It fails only
// when the image cannot be built.
func FlavourBuild(ctx workflow.Context, in FlavourInput) (FlavourResult, error) {
	var res FlavourResult
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() ([]PhaseState, error) { return res.Phases, nil }); err != nil {
		return res, err
	}
	res.Phases = []PhaseState{{Name: PhaseImage}, {Name: PhaseTest}}
	var fa *flavourArtifacts
	if in.Plan.Storage != nil && workflow.GetVersion(ctx, changeArtifacts, workflow.DefaultVersion, 1) == 1 {
		res.Phases = append(res.Phases, PhaseState{Name: PhaseArtifacts})
		fa = &flavourArtifacts{in: in, res: &res, st: &res.Phases[2]}
		reused, err := fa.findManifest(ctx)
		if err != nil {
			return res, err
		}
		if reused {
			return res, nil
		}
	}
	name := in.Flavour.Name()
	labels := func(phase string) map[string]string {
		return map[string]string{
			labelBuild: labelValue(in.BuildID), labelPhase: phase,
			labelFlavour: labelValue(name), labelPlatform: in.Flavour.Platform,
		}
	}
	data := TemplateData{
		BuildID: in.BuildID, Repo: in.Request.Repo, Branch: in.Request.Branch, Commit: in.Request.Commit,
		Version: in.Request.Version, Flavour: in.Flavour, Platform: in.Flavour.Platform,
		Params: in.Request.Params, Results: in.Results,
	}
	img, err := runPhase(ctx, &res.Phases[0], phaseRun{
		cfg: *in.Plan.Image, namespace: in.Plan.Namespace,
		key: roundKey(in.BuildID+"/"+PhaseImage+"/"+name, in.Round), labels: labels(PhaseImage), data: data,
		plan: &in.Plan,
	})
	if err != nil {
		res.Phases[1].State = StateSkipped
		if temporal.IsCanceledError(err) {
			return res, err
		}
		// The result is lost when a workflow fails: carry the phases in
		// the error's details for the parent's progress.
		return res, temporal.NewNonRetryableApplicationError(res.Phases[0].Error, ErrTypePhaseFailed, err, res)
	}
	res.Image = resultMap(img)
	built := workflow.Now(ctx)
	if fa != nil {
		if err := fa.verify(ctx); err != nil {
			res.Phases[1].State = StateSkipped
			if temporal.IsCanceledError(err) {
				return res, err
			}
			return res, temporal.NewNonRetryableApplicationError(fa.st.Error, ErrTypePhaseFailed, err, res)
		}
	}

	test := &res.Phases[1]
	switch {
	case !in.Request.Has(TargetTests):
		test.State, test.Reason = StateSkipped, "target tests not requested"
	case in.Plan.Test == nil:
		test.State, test.Reason = StateSkipped, "not configured"
	case !in.Flavour.Test:
		test.State, test.Reason = StateSkipped, "flavour not tested"
	default:
		results := map[string]map[string]string{PhaseImage: res.Image}
		for k, v := range in.Results {
			results[k] = v
		}
		data.Results = results
		if _, err := runPhase(ctx, test, phaseRun{
			cfg: *in.Plan.Test, namespace: in.Plan.Namespace,
			key: roundKey(in.BuildID+"/"+PhaseTest+"/"+name, in.Round), labels: labels(PhaseTest), data: data,
			plan: &in.Plan,
		}); err != nil {
			if temporal.IsCanceledError(err) {
				return res, err
			}
			res.TestFailed, res.Error = true, test.Error
		}
	}
	if fa != nil {
		if !in.Request.Has(TargetManifest) {
			fa.st.State, fa.st.End, fa.st.Reason = StateSucceeded, workflow.Now(ctx), "verified; target manifest not requested"
			return res, nil
		}
		if err := fa.manifest(ctx, built); err != nil {
			if temporal.IsCanceledError(err) {
				return res, err
			}
			return res, temporal.NewNonRetryableApplicationError(fa.st.Error, ErrTypePhaseFailed, err, res)
		}
	}
	return res, nil
}
