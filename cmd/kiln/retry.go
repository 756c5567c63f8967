package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/workflows"
)

func newRetryCommand(logger *slog.Logger) *cobra.Command {
	var (
		d           workflows.ResumeDecision
		skip, abort bool
	)
	cmd := &cobra.Command{
		Use:   "retry BUILD-ID --by NAME [--phase P] [--flavour F | --platform P] [--skip | --abort]",
		Short: "Resume a failed build: retry what failed, skip a flavour or platform, or abort",
		Long: `Resume a build that waits for an operator. A build started with
onFailure: wait (in the request or the worker's config) does not fail when
a phase or flavour has used all its attempts, when its manifest set cannot
be written, or when publishing fails: it waits (resumeWindow, default 24h)
for one decision. kiln status says what it waits on ("waiting for an
operator until …: publish failed for flavour aws-gardener_prod-amd64 …"):

  kiln retry ID --by NAME                  retry what failed (all failed flavours or platforms)
  kiln retry ID --by NAME --flavour F      retry one failed flavour (its build or its publishing)
  kiln retry ID --by NAME --platform P     retry one failed platform's publishing (workers
                                           without storage publish per platform)
  kiln retry ID --by NAME --phase P        retry the failed phase (names it, as a check):
                                           base, packages, image, manifest or publish
  kiln retry ID --by NAME --skip --flavour F   skip a failed flavour (or --platform P)
  kiln retry ID --by NAME --abort --reason R   fail the build

What can fail and wait:
  base, packages   the phase's pipeline; a retry runs it again
  image            the flavours' builds and tests; a retry builds the failed ones
  manifest         writing the manifest set; a retry writes it again, nothing else
  publish          a flavour's publishing (its publish pipeline, or kiln's AWS
                   publishing), or a platform's publish pipeline; a retry
                   publishes the failed ones again, the others stay published

Only a failed flavour or platform can be skipped, and never in a release
build (the release target), which must publish everything it built: retry
or abort there. Completed phases and flavours never run again; a retried
one gets fresh PipelineRuns and, for a flavour or its publishing, a fresh
child workflow (IDs and keys carry /r2, /r3, ...). A failed AWS publish has
removed what it created before the build waits, and its retry imports
afresh; if that removal itself failed, the retry finishes it before it
creates anything. The decisions are in kiln status.` + temporalEnvHelp,
		Example: `  kiln retry build/main/1443.3 --by alice --flavour aws-gardener_prod-amd64
  kiln retry build/main/1443.3 --by alice --phase publish --flavour gcp-gardener_prod-amd64
  kiln retry build/main/1443.3 --by alice --phase manifest
  kiln retry build/main/1443.3 --by alice --abort --reason 'upstream mirror down'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			update := workflows.UpdateRetry
			switch {
			case skip && abort:
				return errors.New("--skip and --abort exclude each other")
			case d.Flavour != "" && d.Platform != "":
				return errors.New("--flavour and --platform exclude each other: publishing fails per flavour with storage, per platform without; kiln status says which")
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
	f.StringVar(&d.Flavour, "flavour", "", "the failed flavour to retry or skip (its build, or its publishing)")
	f.StringVar(&d.Platform, "platform", "", "the failed platform to retry or skip (per-platform publishing)")
	f.StringVar(&d.Reason, "reason", "", "why, with --abort")
	f.BoolVar(&skip, "skip", false, "skip the failed --flavour or --platform instead (not in a release)")
	f.BoolVar(&abort, "abort", false, "fail the build instead")
	_ = cmd.MarkFlagRequired("by")
	return cmd
}

// resumeWaiting says what a waiting build waits on and how to decide, for
// kiln status and kiln run's progress.
func resumeWaiting(r *workflows.ResumeState) string {
	what, how := "", "kiln retry --by NAME, or --abort"
	if len(r.Failed) > 0 {
		kind := r.FailedKind
		if kind == "" {
			kind = workflows.KindFlavour
		}
		what = fmt.Sprintf(" for %s %s", plural(kind, len(r.Failed)), strings.Join(r.Failed, ", "))
		how = fmt.Sprintf("kiln retry --by NAME [--%s X]", kind)
		if r.CanSkip {
			how += fmt.Sprintf(", --skip --%s X", kind)
		}
		how += ", or --abort"
	}
	return fmt.Sprintf("%s failed%s (%s)", r.Phase, what, how)
}

func plural(s string, n int) string {
	if n == 1 {
		return s
	}
	return s + "s"
}
