package workflows

import (
	"errors"

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
	// Base is the flavour's base name, <cname>-<arch>-<version>-<commit8>,
	// as the build reported it (its .release file or cname result): the
	// name of its objects and manifest (with Plan.Storage).
	Base string `json:"base,omitempty"`
	// Manifest is the key of the flavour's release manifest, and Files its
	// promoted artifacts (with Plan.Storage and the manifest target).
	Manifest string         `json:"manifest,omitempty"`
	Files    []storage.File `json:"files,omitempty"`
	// Reused is set when the manifest existed before: the flavour was not
	// built again. Published is set when it also holds published images.
	Reused    bool `json:"reused,omitempty"`
	Published bool `json:"published,omitempty"`
}

// phase returns the named phase of the result, nil when it has none.
func (r *FlavourResult) phase(name string) *PhaseState {
	for i := range r.Phases {
		if r.Phases[i].Name == name {
			return &r.Phases[i]
		}
	}
	return nil
}

// FlavourBuild builds one flavour's image and, when the build requests the
// tests target, runs the test and platform-test pipelines that are
// configured and that the flavour's own flags (test, test-platform) ask
// for. With storage it then verifies and promotes the artifacts and writes
// the flavour's release manifest. It fails only when the image cannot be
// built or stored.
func FlavourBuild(ctx workflow.Context, in FlavourInput) (FlavourResult, error) {
	var res FlavourResult
	if err := workflow.SetQueryHandler(ctx, QueryProgress, func() ([]PhaseState, error) { return res.Phases, nil }); err != nil {
		return res, err
	}
	bg := newBackground(ctx)
	err := flavourBuild(ctx, in, &res, bg)
	// The log archives run beside the next phases; the parent sees the
	// phases with their logs, in the result or in the error's details.
	bg.wait(ctx)
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) && appErr.Type() == ErrTypePhaseFailed && appErr.HasDetails() {
		err = temporal.NewNonRetryableApplicationError(appErr.Message(), ErrTypePhaseFailed, appErr.Unwrap(), res)
	}
	return res, err
}

func flavourBuild(ctx workflow.Context, in FlavourInput, resp *FlavourResult, bg *background) error {
	res := resp
	res.Phases = []PhaseState{{Name: PhaseImage}, {Name: PhaseTest}}
	if in.Plan.TestPlatform != nil {
		res.Phases = append(res.Phases, PhaseState{Name: PhaseTestPlatform})
	}
	var fa *flavourArtifacts
	if in.Plan.Storage != nil {
		res.Phases = append(res.Phases, PhaseState{Name: PhaseArtifacts})
		fa = &flavourArtifacts{in: in, res: res, st: res.phase(PhaseArtifacts)}
		reused, err := fa.findManifest(ctx)
		if err != nil {
			return err
		}
		if reused {
			return nil
		}
	}
	// The tests are skipped (with the reason) unless they run below.
	skipTests := func(reason string) {
		for _, name := range []string{PhaseTest, PhaseTestPlatform} {
			if st := res.phase(name); st != nil && st.State == "" {
				st.State, st.Reason = StateSkipped, reason
			}
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
		Version: in.Request.Version, PackagesVersion: in.Request.PackagesVersion, Flavour: in.Flavour, Platform: in.Flavour.Platform,
		Params: in.Request.Params, Results: in.Results,
	}
	img, err := runPhase(ctx, res.phase(PhaseImage), phaseRun{
		cfg: *in.Plan.Image, namespace: in.Plan.Namespace,
		key: roundKey(in.BuildID+"/"+PhaseImage+"/"+name, in.Round), labels: labels(PhaseImage), data: data,
		plan: &in.Plan, bg: bg,
	})
	if err != nil {
		skipTests("the image was not built")
		if temporal.IsCanceledError(err) {
			return err
		}
		// The result is lost when a workflow fails: carry the phases in
		// the error's details for the parent's progress.
		return temporal.NewNonRetryableApplicationError(res.Phases[0].Error, ErrTypePhaseFailed, err, *res)
	}
	res.Image = resultMap(img)
	built := workflow.Now(ctx)
	if fa != nil {
		if err := fa.verify(ctx); err != nil {
			skipTests("the artifacts were not verified")
			if temporal.IsCanceledError(err) {
				return err
			}
			return temporal.NewNonRetryableApplicationError(fa.st.Error, ErrTypePhaseFailed, err, *res)
		}
	}

	results := map[string]map[string]string{PhaseImage: res.Image}
	for k, v := range in.Results {
		results[k] = v
	}
	data.Results = results
	tests := []struct {
		phase string
		cfg   *PipelineConfig
		// flag is the flavour's own flag for this test, named as the
		// flavour file writes it.
		flag    bool
		flagKey string
	}{
		{PhaseTest, in.Plan.Test, in.Flavour.Test, "test"},
		{PhaseTestPlatform, in.Plan.TestPlatform, in.Flavour.TestPlatform, "test-platform"},
	}
	for _, t := range tests {
		st := res.phase(t.phase)
		switch {
		case st == nil:
			continue // not configured, and not shown
		case !in.Request.Has(TargetTests):
			st.State, st.Reason = StateSkipped, "target tests not requested"
		case t.cfg == nil:
			st.State, st.Reason = StateSkipped, "not configured"
		case !t.flag:
			st.State, st.Reason = StateSkipped, t.flagKey+": false in the flavour file"
		default:
			if _, err := runPhase(ctx, st, phaseRun{
				cfg: *t.cfg, namespace: in.Plan.Namespace,
				key: roundKey(in.BuildID+"/"+t.phase+"/"+name, in.Round), labels: labels(t.phase), data: data,
				plan: &in.Plan, bg: bg,
			}); err != nil {
				if temporal.IsCanceledError(err) {
					return err
				}
				res.TestFailed = true
				if res.Error != "" {
					res.Error += "; "
				}
				res.Error += st.Error
			}
		}
	}
	if fa != nil {
		if !in.Request.Has(TargetManifest) {
			fa.st.State, fa.st.End, fa.st.Reason = StateSucceeded, workflow.Now(ctx), "verified "+res.Base+"; target manifest not requested"
			return nil
		}
		bg.wait(ctx) // the manifest names the archived logs
		if err := fa.manifest(ctx, built); err != nil {
			if temporal.IsCanceledError(err) {
				return err
			}
			return temporal.NewNonRetryableApplicationError(fa.st.Error, ErrTypePhaseFailed, err, *res)
		}
	}
	return nil
}
