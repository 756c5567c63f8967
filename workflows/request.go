package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kiln-build/kiln/workflows/flavour"
)

// TaskQueue is the task queue kiln's workers poll by default.
const TaskQueue = "kiln"

// Target is a build target, as Garden Linux named them.
type Target string

// The build targets. Each needs its prerequisites (see Prerequisites).
const (
	TargetBuild         Target = "build"
	TargetManifest      Target = "manifest"
	TargetTests         Target = "tests"
	TargetPublish       Target = "publish"
	TargetFreezeVersion Target = "freeze-version"
	TargetRelease       Target = "release"
)

// Targets lists every target in the order a build reaches them.
var Targets = []Target{TargetBuild, TargetManifest, TargetTests, TargetPublish, TargetFreezeVersion, TargetRelease}

// Prerequisites maps each target to the targets it requires.
var Prerequisites = map[Target][]Target{
	TargetBuild:         nil,
	TargetManifest:      {TargetBuild},
	TargetTests:         {TargetBuild},
	TargetPublish:       {TargetBuild, TargetManifest},
	TargetFreezeVersion: {TargetBuild, TargetManifest},
	TargetRelease:       {TargetBuild, TargetManifest, TargetFreezeVersion},
}

// Recipients overrides who is notified about a build.
type Recipients struct {
	// Only, if set, replaces every other recipient.
	Only []string `json:"only,omitempty"`
	// Additional recipients are added to the owners.
	Additional []string `json:"additional,omitempty"`
}

// BuildRequest is the input of the Build workflow. It holds references and
// small values only, never secrets.
type BuildRequest struct {
	// Repo is the git URL of the sources. Required.
	Repo string `json:"repo"`
	// Branch is the branch built. Required.
	Branch string `json:"branch"`
	// Commit is the full commit hash built. Required.
	Commit string `json:"commit"`
	// Version is the version being built, such as "1443.3". Optional.
	Version string `json:"version"`
	// FlavourSet names the set the flavours came from (for the memo and
	// listings).
	FlavourSet string `json:"flavourSet,omitempty"`
	// Flavours are the expanded flavours to build; the starter expands the
	// flavour file, so the history records exactly what was built.
	// Required.
	Flavours []flavour.Flavour `json:"flavours"`
	// Targets to reach. Optional: default build.
	Targets []Target `json:"targets,omitempty"`
	// PackagesVersion, when set, names a package version that already
	// exists: the packages-and-kernel phase is skipped. The build first
	// checks that it exists, as the worker's packages.check says (the
	// apt repository's Release file, or an S3 key), and fails before
	// anything runs when it does not; without packages.check it is not
	// checked. Templates see it as {{.PackagesVersion}}.
	PackagesVersion string `json:"packagesVersion,omitempty"`
	// Recipients overrides who is notified.
	Recipients Recipients `json:"recipients,omitzero"`
	// OnFailure is what the build does when a phase or flavour has used all
	// its attempts: fail (at once) or wait (for an operator's retry, skip or
	// abort). Optional: the worker's config, else fail.
	OnFailure string `json:"onFailure,omitempty"`
	// Timeout is the build's own deadline: when it passes, running
	// pipelines are cancelled, the build fails with BuildTimeout and its
	// people are notified. Optional: none.
	Timeout time.Duration `json:"timeout,omitempty"`
	// ChangedPaths are the paths the build's commits changed (the webhook
	// fills them from the push); notifications go to their CODEOWNERS.
	ChangedPaths []string `json:"changedPaths,omitempty"`
	// Params are free-form values for the pipelines' param templates, as
	// {{.Params.name}}.
	Params map[string]string `json:"params,omitempty"`
	// AllowUnusedParams passes params that no pipeline template uses;
	// without it such a param is refused, since it is most often a typo.
	AllowUnusedParams bool `json:"allowUnusedParams,omitempty"`
}

// Has reports whether the request includes target t.
func (r BuildRequest) Has(t Target) bool {
	if len(r.Targets) == 0 {
		return t == TargetBuild
	}
	return slices.Contains(r.Targets, t)
}

// Validate reports every problem with the request at once, each naming its
// field and the fix.
func (r BuildRequest) Validate() error {
	var errs []error
	for _, f := range []struct{ name, v string }{{"repo", r.Repo}, {"branch", r.Branch}, {"commit", r.Commit}} {
		if strings.TrimSpace(f.v) == "" {
			errs = append(errs, fmt.Errorf("%s: required", f.name))
		}
	}
	if len(r.Flavours) == 0 && r.FlavourSet == "" {
		errs = append(errs, errors.New("flavours: name a flavourSet or list the flavours"))
	}
	seen := map[string]bool{}
	for i, f := range r.Flavours {
		if f.Platform == "" || f.Arch == "" {
			errs = append(errs, fmt.Errorf("flavours[%d]: platform and arch are required", i))
			continue
		}
		if seen[f.Name()] {
			errs = append(errs, fmt.Errorf("flavours[%d]: %s appears twice", i, f.Name()))
		}
		seen[f.Name()] = true
	}
	if r.OnFailure != "" && r.OnFailure != OnFailureFail && r.OnFailure != OnFailureWait {
		errs = append(errs, fmt.Errorf("onFailure: %q: want fail or wait", r.OnFailure))
	}
	errs = append(errs, ValidateTargets(r.Targets))
	return errors.Join(errs...)
}

// ValidateTargets checks that every target is known and that its
// prerequisites are in the set, naming the missing one.
func ValidateTargets(targets []Target) error {
	var errs []error
	for _, t := range targets {
		pre, ok := Prerequisites[t]
		if !ok {
			errs = append(errs, fmt.Errorf("targets: unknown target %q; want one of %v", t, Targets))
			continue
		}
		for _, p := range pre {
			if !slices.Contains(targets, p) {
				errs = append(errs, fmt.Errorf("targets: %s requires %s; add %s to the targets", t, p, p))
			}
		}
	}
	return errors.Join(errs...)
}
