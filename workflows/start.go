package workflows

import (
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/workflow"
)

// How a build starts. This is the one place that decides it; kiln run,
// kiln trigger and the webhook (through the Queue), and the nightly
// (Scheduled) all start builds with these options:
//
//   - A build's workflow ID is BuildID: build/<branch>/<version>, or
//     build/<branch>/<commit> without a version.
//   - While a build of that ID runs, a start joins it (kiln run) or is
//     coalesced with it (the queue, the nightly): never a second run.
//   - A build of that ID that succeeded is not started again: kiln run and
//     kiln trigger say so and name it; the nightly skips it.
//   - A build of that ID that failed, was cancelled, terminated or timed
//     out is started again, under the same ID, as a new run.
//
// The one exception is a schedule with onlyIfChanged: false, which asks to
// build its commit every night whatever happened before (Rebuild).
const buildIDReusePolicy = enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY

// BuildMemo is the memo every build starts with, which kiln list shows.
func BuildMemo(in BuildRequest) map[string]any {
	return map[string]any{
		MemoBranch: in.Branch, MemoCommit: in.Commit, MemoVersion: in.Version, MemoFlavourSet: in.FlavourSet,
	}
}

// BuildStartOptions are the client's options for starting in's build on
// taskQueue (kiln run, and tests that start builds directly).
func BuildStartOptions(in BuildRequest, taskQueue string) client.StartWorkflowOptions {
	return client.StartWorkflowOptions{
		ID:                       BuildID(in),
		TaskQueue:                taskQueue,
		WorkflowIDReusePolicy:    buildIDReusePolicy,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
		Memo:                     BuildMemo(in),
	}
}

// BuildChildOptions are a parent workflow's options for running in's build
// as a child (the Queue, Scheduled). rebuild allows a build that succeeded
// to run again (a schedule's onlyIfChanged: false). A child cannot join a
// running build: its start then fails with
// temporal.ChildWorkflowExecutionAlreadyStartedError, which the parent
// reports as coalesced.
func BuildChildOptions(in BuildRequest, rebuild bool) workflow.ChildWorkflowOptions {
	policy := buildIDReusePolicy
	if rebuild {
		policy = enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE
	}
	return workflow.ChildWorkflowOptions{
		WorkflowID:            BuildID(in),
		WorkflowIDReusePolicy: policy,
		Memo:                  BuildMemo(in),
	}
}
