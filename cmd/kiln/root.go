package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/workflows"
)

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "kiln",
		Short: "Durable Linux image builds: Temporal workflows that run Tekton pipelines",
		Long: `kiln sequences the phases of a Linux image build (base images, packages
and kernel, VM images per flavour, upload and publishing, notifications) as
durable Temporal workflows. Each phase's work is a Tekton PipelineRun that
kiln creates, awaits through a shared watch, and cancels when the build is
cancelled.

kiln replaces the glue around Tekton: Triggers and CronJobs that curl an
EventListener, and scripts that poll tkn. See README.md.`,
		Example: `  kiln worker --config deploy/kiln.yaml
  kiln run --repo https://github.com/gardenlinux/gardenlinux --branch main --commit 4f1c2e9d8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e --wait
  kiln status build/main/4f1c2e9d8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	root.AddCommand(
		newWorkerCommand(logger),
		newRunCommand(quiet()),
		newStatusCommand(quiet()),
		newListCommand(quiet()),
		newCancelCommand(quiet()),
		newFlavoursCommand(),
		newConfigCommand(),
		newScheduleCommand(quiet()),
		newTriggerCommand(quiet()),
		newWebhookCommand(quiet()),
		newDecisionCommand(quiet(), workflows.UpdateApprove),
		newDecisionCommand(quiet(), workflows.UpdateReject),
		newRetryCommand(quiet()),
		newDevCommand(),
		newLogsCommand(quiet()),
		newStageCommand(),
		newVersionCommand(),
	)
	return root
}

// quiet keeps the SDK's informational logs out of the client commands.
func quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print kiln's version and the versions it was built with",
		Example: "  kiln version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bi, ok := debug.ReadBuildInfo()
			if !ok {
				return fmt.Errorf("no build information in this binary")
			}
			fmt.Fprintf(cmd.OutOrStdout(), "kiln %s (%s)\n", bi.Main.Version, bi.GoVersion)
			for _, d := range bi.Deps {
				switch d.Path {
				case "go.temporal.io/sdk", "github.com/tektoncd/pipeline", "k8s.io/client-go":
					fmt.Fprintf(cmd.OutOrStdout(), "  %s %s\n", d.Path, d.Version)
				}
			}
			return nil
		},
	}
}
