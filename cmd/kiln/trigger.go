package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/activities/git"
	"github.com/kiln-build/kiln/worker/webhook"
	"github.com/kiln-build/kiln/workflows"
)

func newTriggerCommand(logger *slog.Logger) *cobra.Command {
	var (
		in          workflows.BuildRequest
		targets     []string
		taskQueue   string
		concurrency int
		timeout     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "trigger",
		Short: "Queue a manual build on its branch's queue",
		Long: `Queue a build on the branch's manual-run queue, the long-lived workflow
queue/<branch>, starting the queue if needed (SignalWithStart). The queue
runs builds one at a time (or --concurrency at once), in arrival order.

It prints what happened, which follows "How a build flows" in the README:
  queued build/main/<commit> at position N    added; N-1 pending builds go first
  coalesced with the pending build X          the same build waits already
  coalesced with the running build X          the same build runs now
  build X already succeeded                   nothing queued; it is not rebuilt
A build that failed, was cancelled or timed out is queued and runs again.
Like kiln run, it first asks a worker to check the request (an unknown
flavour set is refused, naming the sets that exist).
The queue answers through a Temporal update, so a worker must be running
(--timeout bounds the wait). Without --commit, the branch head is resolved
from --repo now.

This replaces Tekton Triggers' EventListener, TriggerBinding and
TriggerTemplate chain.` + temporalEnvHelp,
		Example: `  kiln trigger --repo https://github.com/gardenlinux/gardenlinux --branch main
  kiln trigger --repo https://github.com/gardenlinux/gardenlinux --branch main --commit 4f1c2e9d8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e --target build --target tests`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in.Targets = targetsOf(targets)
			if in.Commit == "" && in.Repo != "" && in.Branch != "" {
				head, err := git.Activities{}.ResolveHead(cmd.Context(), git.HeadRequest{Repo: in.Repo, Branch: in.Branch})
				if err != nil {
					return fmt.Errorf("resolve the head of %s: %w", in.Branch, err)
				}
				in.Commit = head
			}
			if err := in.Validate(); err != nil {
				return fmt.Errorf("invalid build request:\n%w", err)
			}
			c, err := dialTemporal(logger)
			if err != nil {
				return err
			}
			defer c.Close()
			if _, err := checkBuild(cmd.Context(), c, in, taskQueue, timeout); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			res, err := webhook.QueueStarter{Client: c, TaskQueue: taskQueue, Concurrency: concurrency}.Enqueue(ctx, in)
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("queue %s did not answer within %v: is a worker running on task queue %s? (kiln worker)", workflows.QueueID(in.Branch), timeout, taskQueue)
			}
			if err != nil {
				return fmt.Errorf("queue on %s: %w", workflows.QueueID(in.Branch), err)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s on %s\n", res, workflows.QueueID(in.Branch))
			if res.Outcome != workflows.EnqueueSucceeded {
				fmt.Fprintf(out, "follow it with: kiln status %s\n", res.BuildID)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&in.Repo, "repo", "", "git URL of the sources (required)")
	f.StringVar(&in.Branch, "branch", "", "branch (required)")
	f.StringVar(&in.Commit, "commit", "", "commit (default: the branch head on --repo)")
	f.StringVar(&in.Version, "version", "", "version")
	f.StringVar(&in.FlavourSet, "flavour-set", "all", "flavour set from the worker's flavours file")
	f.StringArrayVar(&targets, "target", nil, "build target, repeatable (default build)")
	f.StringVar(&taskQueue, "task-queue", workflows.TaskQueue, "task queue of the workers")
	f.IntVar(&concurrency, "concurrency", 1, "builds the queue runs at once, when this starts it")
	f.DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for the queue's answer")
	return cmd
}
