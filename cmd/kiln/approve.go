package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/kiln-build/kiln/workflows"
)

func newDecisionCommand(logger *slog.Logger, update string) *cobra.Command {
	var d workflows.Decision
	verb, textFlag, textHelp := "Approve", "comment", "a comment for the record"
	example := "  kiln approve build/main/1443.3 --by alice --comment 'tests reviewed'"
	if update == workflows.UpdateReject {
		verb, textFlag, textHelp = "Reject", "reason", "why the release is rejected (required)"
		example = "  kiln reject build/main/1443.3 --by alice --reason 'kernel regression on aws'"
	}
	cmd := &cobra.Command{
		Use:   update + " BUILD-ID --by NAME",
		Short: verb + " a release build waiting at its approval gate",
		Long: verb + ` a release build. A build with the release target waits, after
its images and tests and before publishing, for an approve or reject. The
decision, who made it and when appear in kiln status. A build that is not
waiting (unknown, finished, not at the gate, or already decided) refuses
it with the reason.` + temporalEnvHelp,
		Example: example,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			var a workflows.Approval
			if err := sendUpdate(cmd.Context(), logger, id, update, d, &a); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s by %s at %s\n", id, strings.ToLower(a.State), a.By, a.At.Local().Format("2006-01-02 15:04:05"))
			return nil
		},
	}
	cmd.Flags().StringVar(&d.By, "by", "", "who decides (required)")
	cmd.Flags().StringVar(&d.Comment, textFlag, "", textHelp)
	_ = cmd.MarkFlagRequired("by")
	if update == workflows.UpdateReject {
		_ = cmd.MarkFlagRequired("reason")
	}
	return cmd
}

// sendUpdate sends the named update with arg to the build, waits until the
// build has handled it, and decodes its result into result. A refusal is
// explained with the build's state.
func sendUpdate(ctx context.Context, logger *slog.Logger, id, name string, arg, result any) error {
	c, err := dialTemporal(logger)
	if err != nil {
		return err
	}
	defer c.Close()
	h, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: id, UpdateName: name, Args: []any{arg}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		if err = h.Get(ctx, result); err == nil {
			return nil
		}
	}
	return explainUpdateError(ctx, c, id, err)
}

// explainUpdateError turns a failed update into a message that says what
// state the build is in.
func explainUpdateError(ctx context.Context, c client.Client, id string, err error) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		d, derr := c.DescribeWorkflowExecution(ctx, id, "")
		if derr != nil {
			return fmt.Errorf("no build %s; see kiln list", id)
		}
		state := strings.TrimPrefix(d.WorkflowExecutionInfo.Status.String(), "WORKFLOW_EXECUTION_STATUS_")
		return fmt.Errorf("build %s has finished (%s); there is nothing to decide", id, strings.ToLower(state))
	}
	return fmt.Errorf("%s: %w", id, err)
}
