// Package plan holds the Plan activity: it turns a build's flavour set into
// the build's Plan from the worker's configuration, so that the workflow
// history records exactly which pipelines and flavours a build ran.
package plan

import (
	"context"
	"fmt"
	"slices"

	"github.com/kiln-build/kiln/workflows"
	"github.com/kiln-build/kiln/workflows/flavour"
)

// Activities hold the worker's validated plan template and flavour file.
type Activities struct {
	plan     workflows.Plan
	flavours *flavour.File
}

// New returns the activities for a plan template (phases, namespace,
// parallelism) and a parsed flavour file (nil: requests must list their
// flavours).
func New(p workflows.Plan, f *flavour.File) *Activities {
	return &Activities{plan: p, flavours: f}
}

// Plan returns the plan for one build: the template with the request's
// flavours, or the buildable flavours of its flavour set (default "all").
// It has no side effects, so any retry gives the same answer as long as the
// worker's configuration is unchanged.
func (a *Activities) Plan(_ context.Context, in workflows.PlanRequest) (workflows.Plan, error) {
	p := a.plan
	p.Publish = clonePublish(a.plan.Publish)
	if len(in.Flavours) > 0 {
		p.Flavours = slices.Clone(in.Flavours)
		return p, nil
	}
	// A request's problem is the plan's answer, not the activity's
	// failure: the build then fails naming it, and still notifies.
	if a.flavours == nil {
		p.Problem = "flavourSet: the request names no flavours and the worker has no flavours file (config: flavours)"
		return p, nil
	}
	set, err := a.flavours.Set(in.FlavourSet)
	if err != nil {
		p.Problem = fmt.Sprintf("flavourSet: %v", err)
		return p, nil
	}
	p.Flavours = flavour.Buildable(set)
	return p, nil
}

func clonePublish(m map[string]workflows.PipelineConfig) map[string]workflows.PipelineConfig {
	if m == nil {
		return nil
	}
	out := make(map[string]workflows.PipelineConfig, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
