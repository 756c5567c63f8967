// Package builds holds the EarlierBuild activity: what became of an
// earlier build of a commit, from Temporal while it keeps the build's
// history and from the release manifests after that, so that a nightly
// with onlyIfChanged skips only a commit that was built and rebuilds one
// whose build failed.
package builds

import (
	"context"
	"errors"
	"fmt"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"

	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/workflows"
)

// Describer is the part of the Temporal client that EarlierBuild uses;
// client.Client is one.
type Describer interface {
	DescribeWorkflowExecution(ctx context.Context, workflowID, runID string) (*workflowservice.DescribeWorkflowExecutionResponse, error)
}

// ManifestFinder finds a flavour's release manifest; *storage.Activities
// is one.
type ManifestFinder interface {
	FindManifest(ctx context.Context, in storage.FindManifestRequest) (storage.Found, error)
}

// Planner expands a build's flavours as the Build's Plan activity does;
// (*plan.Activities).Plan is one.
type Planner func(ctx context.Context, in workflows.PlanRequest) (workflows.Plan, error)

// Activities hold the clients EarlierBuild reads.
type Activities struct {
	temporal  Describer
	manifests ManifestFinder
	plan      Planner
}

// New returns the activities. manifests is nil when the workers have no
// storage: EarlierBuild then cannot look past Temporal's retention.
func New(temporal Describer, manifests ManifestFinder, plan Planner) *Activities {
	return &Activities{temporal: temporal, manifests: manifests, plan: plan}
}

// EarlierBuild says what became of the latest run of the build in.BuildID:
// its status and when it closed. When Temporal has no such build (none was
// started, or it is past the namespace's retention) and the workers have
// storage, it looks for the release manifest of each of the build's
// flavours at its commit and version, as the Build itself does before it
// builds a flavour (FindManifest), and names the flavours without one.
//
// It only reads, so any attempt may be retried; it heartbeats once per
// flavour. Temporal's and S3's errors are returned as they are classified
// (S3's permanent ones are non-retryable); an unknown flavour set is the
// Plan's non-retryable error.
func (a *Activities) EarlierBuild(ctx context.Context, in workflows.EarlierBuildRequest) (workflows.EarlierBuild, error) {
	var out workflows.EarlierBuild
	d, err := a.temporal.DescribeWorkflowExecution(ctx, in.BuildID, "")
	var nf *serviceerror.NotFound
	switch {
	case errors.As(err, &nf):
	case err != nil:
		return out, fmt.Errorf("describe %s: %w", in.BuildID, err)
	default:
		info := d.GetWorkflowExecutionInfo()
		out.Status = info.GetStatus().String()
		if t := info.GetCloseTime(); t != nil {
			out.Closed = t.AsTime()
		}
		return out, nil
	}
	if a.manifests == nil {
		return out, nil
	}
	p, err := a.plan(ctx, workflows.PlanRequest{FlavourSet: in.FlavourSet, Flavours: in.Flavours})
	if err != nil {
		return out, err
	}
	out.ManifestsChecked, out.Flavours = true, len(p.Flavours)
	for _, f := range p.Flavours {
		activity.RecordHeartbeat(ctx, f.Name())
		found, err := a.manifests.FindManifest(ctx, storage.FindManifestRequest{
			Flavour: f.Name(), Platform: f.Platform, Arch: f.Arch, Features: f.Features,
			Version: in.Version, Commit: in.Commit,
		})
		if err != nil {
			// As classified (wrapping would make a non-retryable error
			// retryable); the message names the key.
			return out, err
		}
		if !found.Found {
			out.Missing = append(out.Missing, f.Name())
		}
	}
	return out, nil
}
