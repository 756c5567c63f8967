package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"golang.org/x/term"
	"sigs.k8s.io/yaml"

	"github.com/kiln-build/kiln/workflows"
)

func newRunCommand(logger *slog.Logger) *cobra.Command {
	var (
		in           workflows.BuildRequest
		targets      []string
		params       []string
		taskQueue    string
		wait         bool
		pollPeriod   time.Duration
		checkTimeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Start a build",
		Long: `Start a Build workflow. Its ID is build/<branch>/<version> (or
build/<branch>/<commit> without --version): starting an identical build
while one runs attaches to it, and a build that succeeded is not started
again. A build that failed can be started again under the same ID.

The worker expands --flavour-set from its flavours file. Targets follow
Garden Linux: build; manifest (needs build); tests (needs build); publish
and freeze-version (need build, manifest); release (needs build, manifest,
freeze-version). A missing prerequisite is rejected before anything runs.

--packages-version V skips the packages phase and builds with the packages
of V, which pipelines see as {{.PackagesVersion}}. Before anything runs,
the worker checks that V exists as its config's packages.check says (the
apt repository's Release file for V, or an S3 key) and fails the build,
naming V and what it checked, when it does not. Without packages.check, V
is taken on trust, and kiln status says it was not checked.

With --wait, kiln prints each phase's and flavour's progress as it changes
and exits non-zero if the build fails.

Before it starts anything, kiln run asks a worker to plan the request
exactly as the build would (the CheckBuild workflow) and refuses it, naming
every problem, when the flavour set is unknown (listing the sets that
exist), a --param is used by no pipeline template (listing the ones that
are; --allow-unused-params passes it anyway), or a target has nothing to
serve it. --check-timeout bounds that wait; 0 skips the check.` + temporalEnvHelp,
		Example: `  kiln run --repo https://github.com/gardenlinux/gardenlinux --branch main \
      --commit 4f1c2e9d8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e --version 1443.3 --flavour-set all --target build --target tests --wait
  kiln run --repo https://github.com/gardenlinux/gardenlinux --branch main --commit 4f1c2e9d8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e \
      --packages-version 1443.0 --param registry=ghcr.io/me`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in.Targets = targetsOf(targets)
			for _, p := range params {
				k, v, ok := strings.Cut(p, "=")
				if !ok || k == "" {
					return fmt.Errorf("--param %q: want name=value", p)
				}
				if in.Params == nil {
					in.Params = map[string]string{}
				}
				in.Params[k] = v
			}
			if err := errors.Join(in.Validate(), checkCommit(in.Commit)); err != nil {
				return fmt.Errorf("invalid build request:\n%w", err)
			}
			c, err := dialTemporal(logger)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			if _, err := checkBuild(ctx, c, in, taskQueue, checkTimeout); err != nil {
				return err
			}
			run, err := startBuild(ctx, c, in, taskQueue)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "build %s (run %s)\n", run.GetID(), run.GetRunID())
			if !wait {
				fmt.Fprintf(out, "follow it with: kiln status %s\n", run.GetID())
				return nil
			}
			return follow(ctx, out, c, run, pollPeriod)
		},
	}
	f := cmd.Flags()
	f.StringVar(&in.Repo, "repo", "", "git URL of the sources")
	f.StringVar(&in.Branch, "branch", "", "branch to build (required)")
	f.StringVar(&in.Commit, "commit", "", "commit to build (required)")
	f.StringVar(&in.Version, "version", "", "version to build, e.g. 1443.3")
	f.StringVar(&in.FlavourSet, "flavour-set", "all", "flavour set from the worker's flavours file")
	f.StringArrayVar(&targets, "target", nil, "build target, repeatable: build, manifest, tests, publish, freeze-version, release (default build)")
	f.StringVar(&in.PackagesVersion, "packages-version", "", "skip the packages phase and use this existing package version, which the worker checks first (config: packages.check)")
	f.StringArrayVar(&in.Recipients.Only, "only", nil, "notify only this address, repeatable")
	f.StringArrayVar(&in.Recipients.Additional, "additional", nil, "also notify this address, repeatable")
	f.StringArrayVar(&params, "param", nil, "name=value for the pipelines' {{.Params.name}}, repeatable")
	f.BoolVar(&in.AllowUnusedParams, "allow-unused-params", false, "pass a --param that no pipeline template uses (refused by default: it is most often a typo)")
	f.DurationVar(&checkTimeout, "check-timeout", 30*time.Second, "how long to wait for a worker to check the request before anything starts; 0 skips the check")
	f.StringVar(&in.OnFailure, "on-failure", "", "fail, or wait for an operator (kiln retry) when a phase or flavour has used its attempts, the manifest set failed or publishing failed (default: the worker's config)")
	f.StringVar(&taskQueue, "task-queue", workflows.TaskQueue, "task queue of the workers")
	f.BoolVarP(&wait, "wait", "w", false, "follow the build's progress and exit non-zero if it fails")
	f.DurationVar(&pollPeriod, "poll", time.Second, "how often --wait asks for progress")
	return cmd
}

// checkCommit refuses a commit that is not a hash of at least 8 hex
// digits: Garden Linux's base names carry its first 8, and a release
// manifest its full hash.
func checkCommit(commit string) error {
	if commit == "" {
		return nil // Validate says it is required
	}
	if len(commit) < 8 || len(commit) > 40 || strings.Trim(strings.ToLower(commit), "0123456789abcdef") != "" {
		return fmt.Errorf("--commit %q: want the commit's hash, at least 8 hex digits (the full 40 is best: git rev-parse HEAD)", commit)
	}
	return nil
}

// checkBuild asks a worker on taskQueue to plan and check in (the
// CheckBuild workflow), so a bad request is refused before a Build starts.
// timeout 0 skips the check.
func checkBuild(ctx context.Context, c client.Client, in workflows.BuildRequest, taskQueue string, timeout time.Duration) (workflows.CheckResult, error) {
	var res workflows.CheckResult
	if timeout <= 0 {
		return res, nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		TaskQueue: taskQueue, WorkflowExecutionTimeout: timeout,
	}, "CheckBuild", in)
	if err == nil {
		err = run.Get(ctx, &res)
	}
	var app *temporal.ApplicationError
	var timedOut *temporal.TimeoutError
	switch {
	case err == nil:
		return res, nil
	case errors.As(err, &app) && app.Type() == workflows.ErrTypeInvalidRequest:
		return res, errors.New(app.Message())
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &timedOut):
		return res, fmt.Errorf("no worker checked the request within %v on task queue %s: is a worker running? (kiln worker; --check-timeout 0 starts the build unchecked)", timeout, taskQueue)
	}
	return res, fmt.Errorf("check the request: %w", err)
}

// startBuild starts the Build workflow for in with the one start policy
// (workflows/start.go): a build of the same ID that runs is joined, one
// that failed is started again, one that succeeded is refused.
func startBuild(ctx context.Context, c client.Client, in workflows.BuildRequest, taskQueue string) (client.WorkflowRun, error) {
	id := workflows.BuildID(in)
	run, err := c.ExecuteWorkflow(ctx, workflows.BuildStartOptions(in, taskQueue), "Build", in)
	var started *serviceerror.WorkflowExecutionAlreadyStarted
	if errors.As(err, &started) {
		return nil, fmt.Errorf("build %s already succeeded (run %s); nothing to do (use another --version or --commit to build again)", id, started.RunId)
	}
	if err != nil {
		return nil, fmt.Errorf("start build %s: %w", id, err)
	}
	return run, nil
}

// targetsOf turns --target flags into build targets.
func targetsOf(names []string) []workflows.Target {
	var out []workflows.Target
	for _, n := range names {
		out = append(out, workflows.Target(n))
	}
	return out
}

// follow prints the build's progress as it changes until it ends.
func follow(ctx context.Context, out io.Writer, c client.Client, run client.WorkflowRun, period time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- run.Get(ctx, nil) }()
	last := map[string]string{}
	tick := time.NewTicker(period)
	defer tick.Stop()
	bar := isTerminal(out)
	show := func(p workflows.Progress) {
		if bar {
			fmt.Fprint(out, "\r\033[K") // clear the bar; changes print above it
		}
		printChanges(out, p, last)
		if bar {
			fmt.Fprint(out, progressBar(p, 30))
		}
	}
	for {
		if p, err := queryProgress(ctx, c, run.GetID(), run.GetRunID()); err == nil {
			show(p)
		}
		select {
		case err := <-done:
			if p, qerr := queryProgress(ctx, c, run.GetID(), run.GetRunID()); qerr == nil {
				show(p)
			}
			if bar {
				fmt.Fprintln(out)
			}
			if err != nil {
				return fmt.Errorf("build %s failed: %w", run.GetID(), err)
			}
			fmt.Fprintf(out, "build %s succeeded\n", run.GetID())
			return nil
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func printChanges(out io.Writer, p workflows.Progress, last map[string]string) {
	line := func(key, s string) {
		if last[key] != s {
			last[key] = s
			fmt.Fprintf(out, "%s  %-40s %s\n", time.Now().Format("15:04:05"), key, s)
		}
	}
	for _, ph := range p.Phases {
		line("phase "+ph.Name, phaseSummary(ph))
	}
	if r := p.Resume; r != nil && r.Waiting {
		line("resume", fmt.Sprintf("waiting until %s: %s", r.Deadline.Local().Format(time.DateTime), resumeWaiting(r)))
	}
	if n := p.Notification; n != nil {
		line("notification", notificationLine(n))
	}
	if a := p.Approval; a != nil {
		s := a.State
		if a.State == workflows.ApprovalWaiting {
			s += " until " + a.Deadline.Local().Format(time.DateTime) + "  (kiln approve|reject)"
		} else if a.By != "" {
			s += " by " + a.By
		}
		line("approval", s)
	}
	for _, f := range p.Flavours {
		s := f.State
		for _, ph := range f.Phases {
			if ph.State != "" {
				s += "  " + ph.Name + ":" + ph.State
			}
		}
		if f.Error != "" {
			s += "  (" + f.Error + ")"
		}
		line("flavour "+f.Name, s)
	}
}

func phaseSummary(ph workflows.PhaseState) string {
	s := ph.State
	if s == "" {
		s = workflows.StatePending
	}
	if ph.PipelineRun != "" {
		s += "  pipelinerun " + ph.PipelineRun
	}
	if ph.Attempt > 1 {
		s += fmt.Sprintf("  attempt %d", ph.Attempt)
	}
	if ph.Restarts > 0 {
		s += fmt.Sprintf("  restarted %d×", ph.Restarts)
	}
	if ph.Reason != "" {
		s += "  (" + ph.Reason + ")"
	}
	if ph.Error != "" {
		s += "  error: " + ph.Error
	}
	if ph.LogsError != "" {
		s += "  logs not archived: " + ph.LogsError
	}
	return s
}

func queryProgress(ctx context.Context, c client.Client, id, runID string) (workflows.Progress, error) {
	var p workflows.Progress
	v, err := c.QueryWorkflow(ctx, id, runID, workflows.QueryProgress)
	if err != nil {
		return p, err
	}
	return p, v.Get(&p)
}

func newStatusCommand(logger *slog.Logger) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status BUILD-ID",
		Short: "Show a build's phases and flavours",
		Long: `Show a build's progress: every phase and flavour with its state,
PipelineRun, attempt, times and error. A build that waits for an operator
(onFailure: wait) says which phase failed (base, packages, image, manifest
or publish), for which flavours or platforms, and how to decide with kiln
retry; its decisions follow. It asks the build's workflow, so a worker must
be running.` + temporalEnvHelp,
		Example: `  kiln status build/main/1443.3
  kiln status build/main/1443.3 -o json | jq '.flavours[] | select(.state != "Succeeded")'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !slices.Contains([]string{"table", "json", "yaml"}, output) {
				return fmt.Errorf("--output %q: want table, json or yaml", output)
			}
			c, err := dialTemporal(logger)
			if err != nil {
				return err
			}
			defer c.Close()
			p, err := queryProgress(cmd.Context(), c, args[0], "")
			if err != nil {
				return fmt.Errorf("build %s: %w", args[0], err)
			}
			// The same vocabulary as kiln list: a build terminated or timed
			// out from outside its code says so, not what it last recorded.
			if d, err := c.DescribeWorkflowExecution(cmd.Context(), args[0], ""); err == nil {
				p.State, _ = workflows.ExecutionState(d.GetWorkflowExecutionInfo().GetStatus(), p.State)
			}
			return printProgress(cmd.OutOrStdout(), p, output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table, json or yaml")
	return cmd
}

func printProgress(out io.Writer, p workflows.Progress, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(p)
	case "yaml":
		b, err := yaml.Marshal(p)
		if err != nil {
			return err
		}
		_, err = out.Write(b)
		return err
	}
	fmt.Fprintf(out, "state: %s\n", p.State)
	if p.Error != "" {
		fmt.Fprintf(out, "error: %s\n", p.Error)
	}
	if r := p.Resume; r != nil {
		if r.Waiting {
			fmt.Fprintf(out, "waiting for an operator until %s: %s\n", r.Deadline.Local().Format(time.DateTime), resumeWaiting(r))
		}
		for _, d := range r.Decisions {
			fmt.Fprintf(out, "decision: %s %s by %s at %s %s\n", d.Action, strings.TrimSpace(d.Phase+" "+d.Flavour+d.Platform), orDash(d.By), d.At.Local().Format(time.DateTime), d.Reason)
		}
	}
	if n := p.Notification; n != nil {
		fmt.Fprintln(out, "notification: "+notificationLine(n))
	}
	if p.ManifestSet != "" {
		fmt.Fprintf(out, "manifest set: %s\n", p.ManifestSet)
	}
	var unarchived []string
	for _, ph := range p.Phases {
		if ph.LogsError != "" {
			unarchived = append(unarchived, ph.Name)
		}
	}
	for _, f := range p.Flavours {
		for _, ph := range f.Phases {
			if ph.LogsError != "" {
				unarchived = append(unarchived, f.Name+"/"+ph.Name)
			}
		}
	}
	if len(unarchived) > 0 {
		fmt.Fprintf(out, "logs not archived: %s (DETAIL below says why; kiln logs reads what is left)\n", strings.Join(unarchived, ", "))
	}
	if a := p.Approval; a != nil {
		switch a.State {
		case workflows.ApprovalWaiting:
			fmt.Fprintf(out, "approval: waiting since %s, until %s (kiln approve|reject)\n", a.Since.Local().Format(time.DateTime), a.Deadline.Local().Format(time.DateTime))
		default:
			fmt.Fprintf(out, "approval: %s by %s at %s %s\n", strings.ToLower(a.State), orDash(a.By), a.At.Local().Format(time.DateTime), a.Comment)
		}
	}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nKIND\tNAME\tSTATE\tPIPELINERUN\tATTEMPT\tDURATION\tDETAIL")
	row := func(kind, name string, ph workflows.PhaseState) {
		detail := ph.Reason
		if ph.Error != "" {
			detail = ph.Error
		}
		if ph.LogsError != "" {
			detail = strings.TrimPrefix(detail+"; logs not archived: "+ph.LogsError, "; ")
		}
		if ph.Restarts > 0 {
			detail = strings.TrimPrefix(fmt.Sprintf("%s; restarted %d× (the earlier attempts are kept)", detail, ph.Restarts), "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", kind, name, orDash(ph.State), orDash(ph.PipelineRun), attempt(ph.Attempt), duration(ph.Start, ph.End), detail)
	}
	for _, ph := range p.Phases {
		row("phase", ph.Name, ph)
	}
	for _, f := range p.Flavours {
		detail := f.Error
		switch {
		case detail == "" && f.Reason != "":
			detail = f.Reason
		case detail == "" && f.Base != "":
			detail = "built as " + f.Base
		}
		fmt.Fprintf(tw, "flavour\t%s\t%s\t\t\t%s\t%s\n", f.Name, f.State, duration(f.Start, f.End), detail)
		for _, ph := range f.Phases {
			row("", "  "+ph.Name, ph)
		}
	}
	return tw.Flush()
}

// notificationLine says what became of the build's notification: the event,
// its state, and the error or the recipients.
func notificationLine(n *workflows.NotificationState) string {
	line := n.Event + " " + strings.ToLower(n.State)
	switch {
	case n.Error != "":
		line += ": " + n.Error
	case len(n.To) > 0:
		line += " to " + strings.Join(n.To, ", ")
	}
	if n.Chat != "" && n.Chat != "Sent" {
		line += "; chat: " + n.Chat
	}
	return line
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func attempt(n int) string {
	if n == 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

func duration(start, end time.Time) string {
	if start.IsZero() {
		return "-"
	}
	if end.IsZero() {
		end = time.Now()
	}
	return end.Sub(start).Round(time.Second).String()
}

func newListCommand(logger *slog.Logger) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List recent builds and scheduled runs",
		Long: `List recent builds and scheduled runs, newest first, with their state,
branch, commit and version. A scheduled run with onlyIfChanged says what it
decided and why: "Skipped: build/main/<commit> succeeded on <date>", or its
state and "(rebuilt: build/main/<commit> failed on <date>)".` + temporalEnvHelp,
		Example: `  kiln list
  kiln list --limit 100`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := dialTemporal(logger)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.ListWorkflow(cmd.Context(), &workflowservice.ListWorkflowExecutionsRequest{
				Query: "WorkflowType = 'Build' OR WorkflowType = 'Scheduled'", PageSize: int32(limit),
			})
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "BUILD\tSTATE\tBRANCH\tCOMMIT\tVERSION\tSTARTED")
			dc := converter.GetDefaultDataConverter()
			for i, e := range resp.Executions {
				if i >= limit {
					break
				}
				memo := func(k string) string {
					var s string
					if p, ok := e.GetMemo().GetFields()[k]; ok {
						_ = dc.FromPayload(p, &s)
					}
					return orDash(s)
				}
				own := memo(workflows.MemoState)
				if own == "-" {
					own = ""
				}
				state, notifying := workflows.ExecutionState(e.GetStatus(), own)
				if notifying {
					state += " (notifying)"
				}
				if skipped := memo(workflows.MemoSkipped); skipped != "-" {
					state = "Skipped: " + skipped
				} else if why := memo(workflows.MemoReason); why != "-" {
					state += " (" + why + ")"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.GetExecution().GetWorkflowId(), state,
					memo(workflows.MemoBranch), memo(workflows.MemoCommit), memo(workflows.MemoVersion),
					e.GetStartTime().AsTime().Local().Format(time.DateTime))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 20, "how many builds to show")
	return cmd
}

func newCancelCommand(logger *slog.Logger) *cobra.Command {
	return &cobra.Command{
		Use:   "cancel BUILD-ID",
		Short: "Cancel a build and every PipelineRun it has running",
		Long: `Cancel a build. Every running phase patches its PipelineRun's
spec.status (Cancelled, or the worker's cancelMode), so nothing is left
running in the cluster; the build ends as Cancelled.` + temporalEnvHelp,
		Example: `  kiln cancel build/main/1443.3`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := dialTemporal(logger)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.CancelWorkflow(cmd.Context(), args[0], ""); err != nil {
				return fmt.Errorf("cancel %s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cancelling %s\n", args[0])
			return nil
		},
	}
}

// isTerminal reports whether w is a terminal, where --wait draws a bar.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressBar renders one line: the share of flavours finished and the
// phase running.
func progressBar(p workflows.Progress, width int) string {
	done := 0
	for _, f := range p.Flavours {
		switch f.State {
		case workflows.StateSucceeded, workflows.StateFailed, workflows.StateTestFailed, workflows.StateSkipped, workflows.StateCancelled:
			done++
		}
	}
	filled := 0
	if n := len(p.Flavours); n > 0 {
		filled = done * width / n
	}
	phase := "-"
	for _, ph := range p.Phases {
		if ph.State == workflows.StateRunning || ph.State == workflows.StateRetrying {
			phase = ph.Name
		}
	}
	return fmt.Sprintf("[%s%s] %d/%d flavours  phase %s  %s",
		strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, len(p.Flavours), phase, p.State)
}
