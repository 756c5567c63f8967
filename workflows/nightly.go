package workflows

import (
	"cmp"
	"errors"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// ActivityResolveHead is the activity (activities/git) that returns a
// branch's head commit on a remote.
const ActivityResolveHead = "ResolveHead"

// ScheduledRequest is what a schedule starts: a build template, completed
// at fire time.
type ScheduledRequest struct {
	// Template is the build. Without a commit, the branch head is resolved
	// when the schedule fires.
	Template BuildRequest `json:"template"`
	// OnlyIfChanged skips the build when its commit was built before.
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
	Skipped bool   `json:"skipped,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// Memo key of a Scheduled run that skipped its build.
const MemoSkipped = "skipped"

// Scheduled is the workflow a schedule starts. It resolves the branch head
// (unless the template names a commit) and runs the Build as a child with
// the ID build/<branch>/<commit>, so a commit is built once whichever
// trigger starts it, with the schedule's OnFailure (default fail). With OnlyIfChanged, a commit that already has a build
// is skipped, and the skip is recorded in the result and the memo.
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
	policy := enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE
	if in.OnlyIfChanged {
		policy = enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE
	}
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:            res.BuildID,
		WorkflowIDReusePolicy: policy,
		WaitForCancellation:   true,
		Memo: map[string]any{
			MemoBranch: req.Branch, MemoCommit: req.Commit, MemoVersion: req.Version, MemoFlavourSet: req.FlavourSet,
		},
	})
	child := workflow.ExecuteChildWorkflow(cctx, "Build", req)
	var started workflow.Execution
	if err := child.GetChildWorkflowExecution().Get(ctx, &started); err != nil {
		var exists *temporal.ChildWorkflowExecutionAlreadyStartedError
		if in.OnlyIfChanged && (errors.As(err, &exists) || isAlreadyStarted(err)) {
			res.Skipped, res.Reason = true, "commit "+req.Commit+" was built before"
			workflow.GetLogger(ctx).Info("build skipped: unchanged", "commit", req.Commit)
			return res, workflow.UpsertMemo(ctx, map[string]any{MemoSkipped: res.Reason})
		}
		return res, err
	}
	return res, child.Get(ctx, nil)
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
