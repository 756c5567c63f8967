package workflows

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/kiln-build/kiln/workflows/flavour"
)

// ActivityResolveHead is the activity (activities/git) that returns a
// branch's head commit on a remote.
const ActivityResolveHead = "ResolveHead"

// ActivityEarlierBuild is the activity (activities/builds) that says what
// became of an earlier build of a commit: EarlierBuildRequest in,
// EarlierBuild out.
const ActivityEarlierBuild = "EarlierBuild"

// ScheduledRequest is what a schedule starts: a build template, completed
// at fire time.
type ScheduledRequest struct {
	// Template is the build. Without a commit, the branch head is resolved
	// when the schedule fires.
	Template BuildRequest `json:"template"`
	// OnlyIfChanged skips the build when its commit was built before and
	// that build succeeded (or, when Temporal no longer has it, every
	// flavour has a release manifest). A build that failed, was cancelled,
	// terminated or timed out is built again.
	OnlyIfChanged bool `json:"onlyIfChanged,omitempty"`
	// OnFailure is the build's OnFailure: fail or wait. Optional: the
	// template's, else fail. The workers' onFailure never applies to a
	// scheduled build.
	OnFailure string `json:"onFailure,omitempty"`
}

// ScheduledResult says what a scheduled run did.
type ScheduledResult struct {
	Commit  string `json:"commit"`
	BuildID string `json:"buildID"`
	// Skipped is set when OnlyIfChanged found the commit already built.
	Skipped bool `json:"skipped,omitempty"`
	// Reason says why the build was skipped ("skipped: …") or built again
	// ("rebuilt: …", "built: …"), with OnlyIfChanged.
	Reason string `json:"reason,omitempty"`
}

// Memo keys of a Scheduled run: MemoSkipped says why it skipped its build
// (without the "skipped: " of ScheduledResult.Reason); MemoReason says why
// it built, with OnlyIfChanged ("rebuilt: build/main/… failed on …").
const (
	MemoSkipped = "skipped"
	MemoReason  = "reason"
)

// EarlierBuildRequest names a build and what it builds, for
// ActivityEarlierBuild.
type EarlierBuildRequest struct {
	// BuildID is the Build's workflow ID, build/<branch>/<commit>.
	BuildID string `json:"buildID"`
	// Commit and Version are the build's, as its release manifests name
	// them.
	Commit  string `json:"commit"`
	Version string `json:"version,omitempty"`
	// FlavourSet and Flavours are the build's, expanded as the Build's
	// plan expands them.
	FlavourSet string            `json:"flavourSet,omitempty"`
	Flavours   []flavour.Flavour `json:"flavours,omitempty"`
}

// EarlierBuild is what became of an earlier build.
type EarlierBuild struct {
	// Status is the latest run's status in Temporal, as
	// enumspb.WorkflowExecutionStatus's String() names it (Running,
	// Completed, Failed, Canceled, Terminated, TimedOut); empty when
	// Temporal has no build of that ID: none was started, or it was
	// removed after the namespace's retention period.
	Status string `json:"status,omitempty"`
	// Closed is when that run closed.
	Closed time.Time `json:"closed,omitzero"`
	// ManifestsChecked is set when Status is empty and the workers have
	// storage: Flavours then counts the build's flavours and Missing names
	// those without a release manifest for the commit and version.
	ManifestsChecked bool     `json:"manifestsChecked,omitempty"`
	Flavours         int      `json:"flavours,omitempty"`
	Missing          []string `json:"missing,omitempty"`
}

// Scheduled is the workflow a schedule starts. It resolves the branch head
// (unless the template names a commit) and runs the Build as a child with
// the ID build/<branch>/<commit>, so a commit is built once whichever
// trigger starts it, with the schedule's OnFailure (default fail). With
// OnlyIfChanged, it first asks what became of an earlier build of the
// commit (ActivityEarlierBuild): one that succeeded or is running is
// skipped, one that failed, was cancelled, terminated or timed out is
// built again, and when Temporal no longer has it, the release manifests
// decide. The decision is in the result and in the memo.
func Scheduled(ctx workflow.Context, in ScheduledRequest) (ScheduledResult, error) {
	req := in.Template
	req.OnFailure = cmp.Or(in.OnFailure, req.OnFailure, OnFailureFail)
	if req.Commit == "" {
		actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			StartToCloseTimeout: time.Minute,
			RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 5 * time.Second, MaximumAttempts: 5},
		})
		if err := workflow.ExecuteActivity(actx, ActivityResolveHead, HeadRequest{Repo: req.Repo, Branch: req.Branch}).Get(ctx, &req.Commit); err != nil {
			return ScheduledResult{}, err
		}
	}
	res := ScheduledResult{Commit: req.Commit, BuildID: "build/" + req.Branch + "/" + req.Commit}
	if err := workflow.UpsertMemo(ctx, map[string]any{MemoBranch: req.Branch, MemoCommit: req.Commit}); err != nil {
		return res, err
	}
	skip := func(why string) (ScheduledResult, error) {
		res.Skipped, res.Reason = true, "skipped: "+why
		workflow.GetLogger(ctx).Info("build skipped", "build", res.BuildID, "reason", why)
		return res, workflow.UpsertMemo(ctx, map[string]any{MemoSkipped: why})
	}
	if in.OnlyIfChanged {
		actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
			StartToCloseTimeout: 10 * time.Minute,
			HeartbeatTimeout:    time.Minute,
			RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 5 * time.Second, MaximumInterval: time.Minute, MaximumAttempts: 10},
		})
		var earlier EarlierBuild
		err := workflow.ExecuteActivity(actx, ActivityEarlierBuild, EarlierBuildRequest{
			BuildID: res.BuildID, Commit: req.Commit, Version: req.Version, FlavourSet: req.FlavourSet, Flavours: req.Flavours,
		}).Get(ctx, &earlier)
		skipped, why := decideEarlier(res.BuildID, earlier, err)
		if skipped {
			return skip(why)
		}
		res.Reason = why
		if err := workflow.UpsertMemo(ctx, map[string]any{MemoReason: why}); err != nil {
			return res, err
		}
	}
	// The one start policy (start.go); with onlyIfChanged, EarlierBuild has
	// decided, and the policy guards the race with another trigger.
	opts := BuildChildOptions(req, !in.OnlyIfChanged)
	// A nightly's build is named by its commit, so a commit is built once
	// whichever night (and whichever version the template names) fires.
	opts.WorkflowID = res.BuildID
	opts.WaitForCancellation = true
	cctx := workflow.WithChildOptions(ctx, opts)
	child := workflow.ExecuteChildWorkflow(cctx, "Build", req)
	var started workflow.Execution
	if err := child.GetChildWorkflowExecution().Get(ctx, &started); err != nil {
		var exists *temporal.ChildWorkflowExecutionAlreadyStartedError
		if in.OnlyIfChanged && (errors.As(err, &exists) || isAlreadyStarted(err)) {
			// Started (or succeeded) since EarlierBuild looked.
			return skip(res.BuildID + " is running or succeeded")
		}
		return res, err
	}
	return res, child.Get(ctx, nil)
}

// decideEarlier says whether an onlyIfChanged fire skips the build of id,
// given what became of the earlier one (or the error asking), and why.
func decideEarlier(id string, e EarlierBuild, err error) (bool, string) {
	on := " on " + e.Closed.UTC().Format("2006-01-02 15:04 UTC")
	if err != nil {
		// The reuse policy still refuses a running or succeeded build.
		msg := rootMessage(err)
		var ae *temporal.ApplicationError
		if errors.As(err, &ae) {
			msg = ae.Message()
		}
		return false, fmt.Sprintf("built: what became of an earlier %s is unknown (%s)", id, msg)
	}
	switch e.Status {
	case enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED.String():
		return true, id + " succeeded" + on
	case enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING.String():
		return true, id + " is running"
	case enumspb.WORKFLOW_EXECUTION_STATUS_FAILED.String():
		return false, "rebuilt: " + id + " failed" + on
	case enumspb.WORKFLOW_EXECUTION_STATUS_CANCELED.String():
		return false, "rebuilt: " + id + " was cancelled" + on
	case enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED.String():
		return false, "rebuilt: " + id + " was terminated" + on
	case enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT.String():
		return false, "rebuilt: " + id + " timed out" + on
	case "":
	default:
		return false, fmt.Sprintf("built: %s ended %s%s", id, e.Status, on)
	}
	switch {
	case !e.ManifestsChecked:
		return false, "built: no earlier build found; the workers have no storage to check manifests"
	case e.Flavours > 0 && len(e.Missing) == 0:
		return true, fmt.Sprintf("every flavour of %s has a release manifest (%d flavours; its run is gone from Temporal)", id, e.Flavours)
	case len(e.Missing) == e.Flavours:
		return false, "built: no earlier build or release manifest found"
	}
	names := e.Missing
	if len(names) > 5 {
		names = append(names[:5:5], "…")
	}
	return false, fmt.Sprintf("built: no earlier build found, and %d of %d flavours have no release manifest (%s)",
		len(e.Missing), e.Flavours, strings.Join(names, ", "))
}

func isAlreadyStarted(err error) bool {
	var se *serviceerror.WorkflowExecutionAlreadyStarted
	return errors.As(err, &se)
}

// HeadRequest names a branch on a remote, for ActivityResolveHead.
type HeadRequest struct {
	Repo   string `json:"repo"`
	Branch string `json:"branch"`
}
