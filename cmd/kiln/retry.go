package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/workflows"
)

func newRetryCommand(logger *slog.Logger) *cobra.Command {
	var (
		d           workflows.ResumeDecision
		skip, abort bool
	)
	cmd := &cobra.Command{
		Use:   "retry BUILD-ID --by NAME [--phase P] [--flavour F]",
		Short: "Resume a failed build: retry the failed phase or flavours, skip a flavour, or abort",
		Long: `Resume a build that waits for an operator. A build started with
onFailure: wait (in the request or the worker's config) does not fail when
a phase or flavour has used all its attempts: it waits (resumeWindow,
default 24h) for one of:

  kiln retry ID --by NAME                  retry what failed (all failed flavours)
  kiln retry ID --by NAME --flavour F      retry one failed flavour
  kiln retry ID --by NAME --phase P        retry the failed phase (names it, as a check)
  kiln retry ID --by NAME --skip --flavour F   skip a failed flavour (not in a release)
  kiln retry ID --by NAME --abort --reason R   fail the build

Completed phases and flavours never run again; a retried one gets fresh
PipelineRuns. The decisions are in kiln status.` + temporalEnvHelp,
		Example: `  kiln retry build/main/1443.3 --by alice --flavour aws-gardener_prod-amd64
  kiln retry build/main/1443.3 --by alice --abort --reason 'upstream mirror down'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			update := workflows.UpdateRetry
			switch {
			case skip && abort:
				return errors.New("--skip and --abort exclude each other")
			case skip:
				update = workflows.UpdateSkip
			case abort:
				update = workflows.UpdateAbort
			}
			id := args[0]
			var st workflows.ResumeState
			if err := sendUpdate(cmd.Context(), logger, id, update, d, &st); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s accepted; follow it with kiln status %s\n", id, update, id)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&d.By, "by", "", "who decides (required)")
	f.StringVar(&d.Phase, "phase", "", "the failed phase to retry")
	f.StringVar(&d.Flavour, "flavour", "", "the failed flavour to retry or skip")
	f.StringVar(&d.Reason, "reason", "", "why, with --abort")
	f.BoolVar(&skip, "skip", false, "skip the failed --flavour instead")
	f.BoolVar(&abort, "abort", false, "fail the build instead")
	_ = cmd.MarkFlagRequired("by")
	return cmd
}
