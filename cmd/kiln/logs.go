package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/activities/local"
	"github.com/kiln-build/kiln/worker"
	"github.com/kiln-build/kiln/workflows"
)

// defaultLocalDir is where kiln logs looks for local runs without --dir or
// --config: kiln dev's local executor directory.
const defaultLocalDir = ".kiln/local"

func newLogsCommand(logger *slog.Logger) *cobra.Command {
	return logsCommand(func(ctx context.Context, id string) (workflows.Progress, error) {
		c, err := dialTemporal(logger)
		if err != nil {
			return workflows.Progress{}, err
		}
		defer c.Close()
		return queryProgress(ctx, c, id, "")
	})
}

// progressFunc returns the progress of the build with the workflow ID id.
type progressFunc func(ctx context.Context, id string) (workflows.Progress, error)

// logsCommand is kiln logs, asking progress for builds' progress.
func logsCommand(progress progressFunc) *cobra.Command {
	var task, dir, configPath string
	cmd := &cobra.Command{
		Use:   "logs ID",
		Short: "Print the step logs of a PipelineRun, or of every PipelineRun of a build",
		Long: `Print step logs. ID is either a PipelineRun's name, run by the local
executor under --dir (<dir>/runs/<ID>), or a build's ID (build/<branch>/<version>):
kiln then asks the build's workflow for its phases and flavours and prints
the logs of each of their PipelineRuns in order: base, packages, each
flavour's image and test, then publishing.

Each pipeline task is a section headed
  === <phase>[/<flavour>] <pipelinerun> task <task> ===
holding its steps in order, each introduced by "==> step-<name> <==", as
the archived logs are. A retried task's steps show every attempt, oldest
first.

A run's logs come from the local executor's directory when they are there
(--dir; default the config's local.dir with --config, else .kiln/local).
Otherwise, if the build archived them to S3, they are downloaded with the
storage settings of the worker config given with --config. A run whose logs
are in neither place gets a line saying so, and kiln logs then exits
non-zero naming every run and task whose logs are missing. A local run that
did not finish (its worker died, or a later attempt ran on another worker)
gives way to the archived logs of the attempt that completed. Where each
run's logs come from is written to stderr, so stdout holds the logs alone.

--task prints one pipeline task only; naming a task no run has is an
error that lists the tasks there are.` + temporalEnvHelp,
		Example: `  kiln logs build/main/1443.3 --config kiln.yaml
  kiln logs build/dev/2.0 --dir .kiln/local --task build
  kiln logs build-dev-2-0-image-kvm-amd64-5b5f07ca --dir .kiln/local
  kiln logs build/main/1443.3 --config kiln.yaml --task test | less`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			p := &logPrinter{out: cmd.OutOrStdout(), note: cmd.ErrOrStderr(), dir: dir, task: task}
			if configPath != "" {
				cfg, err := worker.LoadConfig(configPath, os.Getenv)
				if err != nil {
					return err
				}
				if p.dir == "" {
					p.dir = cfg.LocalDir()
				}
				if p.s3, err = cfg.S3Client(ctx); err != nil {
					return err
				}
				p.configured = true
			}
			if p.dir == "" {
				p.dir = defaultLocalDir
			}
			id := args[0]
			if !strings.Contains(id, "/") {
				st, err := local.ReadStatus(p.dir, id)
				switch {
				case err == nil:
					return p.localRun(ctx, id, st)
				case !errors.Is(err, fs.ErrNotExist):
					return fmt.Errorf("run %s: %w", id, err)
				}
			}
			prog, err := progress(ctx, id)
			switch {
			case err != nil && strings.Contains(id, "/"):
				return fmt.Errorf("build %s: %w", id, err)
			case err != nil:
				return fmt.Errorf("no local run %s in %s (%s), and no build %s: %w", id, p.dir, p.listRuns(), id, err)
			}
			return p.build(ctx, id, prog)
		},
	}
	f := cmd.Flags()
	f.StringVar(&task, "task", "", "print this pipeline task only")
	f.StringVar(&dir, "dir", "", "the local executor's directory (default: the config's local.dir with --config, else "+defaultLocalDir+")")
	f.StringVarP(&configPath, "config", "c", "", "worker config: its local.dir, and its storage for archived logs")
	return cmd
}

// logPrinter prints runs' logs to out.
type logPrinter struct {
	out io.Writer
	// note receives where each run's logs come from (stderr), so that out
	// holds the logs alone.
	note io.Writer
	// missing lists the runs and tasks whose logs were found nowhere.
	missing []string
	// dir is the local executor's directory.
	dir string
	// s3 reads archived logs; nil without a config with storage.
	s3 *s3.Client
	// configured says a worker config was given.
	configured bool
	// task, if set, is the only pipeline task printed.
	task string
}

// localRun prints the logs of the local run named name, with status st.
func (p *logPrinter) localRun(ctx context.Context, name string, st local.RunStatus) error {
	tasks := taskNames(st)
	if p.task != "" && !slices.Contains(tasks, p.task) {
		return fmt.Errorf("run %s has no task %s; its tasks: %s", name, p.task, strings.Join(tasks, ", "))
	}
	if _, err := p.run(ctx, runRef{run: name}, st); err != nil {
		return err
	}
	return p.missingError(name)
}

// missingError names the runs and tasks whose logs were found nowhere.
func (p *logPrinter) missingError(id string) error {
	if len(p.missing) == 0 {
		return nil
	}
	return fmt.Errorf("logs of %s are missing for %d of its runs or tasks (see above): %s", id, len(p.missing), strings.Join(p.missing, ", "))
}

// runRef is one PipelineRun of a build.
type runRef struct {
	// title is the phase, "<phase>/<flavour>" for a flavour's, "" for a
	// run given by name.
	title string
	run   string
	// archived maps tasks to their archived logs' s3:// URIs.
	archived map[string]string
	// archiveError says why the run's logs were not archived.
	archiveError string
}

// buildRuns lists the build's PipelineRuns in the order they ran: the
// top-level phases, with the flavours' after the image phase.
func buildRuns(p workflows.Progress) []runRef {
	var runs []runRef
	add := func(title string, ph workflows.PhaseState) {
		if ph.PipelineRun != "" {
			runs = append(runs, runRef{title: title, run: ph.PipelineRun, archived: ph.Logs, archiveError: ph.LogsError})
		}
	}
	flavours := func() {
		for _, f := range p.Flavours {
			for _, ph := range f.Phases {
				add(ph.Name+"/"+f.Name, ph)
			}
		}
	}
	done := false
	for _, ph := range p.Phases {
		add(ph.Name, ph)
		if ph.Name == workflows.PhaseImage {
			flavours()
			done = true
		}
	}
	if !done {
		flavours()
	}
	return runs
}

// build prints the logs of the build's runs.
func (p *logPrinter) build(ctx context.Context, id string, prog workflows.Progress) error {
	refs := buildRuns(prog)
	if len(refs) == 0 {
		return fmt.Errorf("build %s has run no PipelineRun yet (state %s)", id, orDash(prog.State))
	}
	type run struct {
		ref   runRef
		st    local.RunStatus // zero if the run is not here
		tasks []string        // nil if unknown
	}
	runs := make([]run, len(refs))
	found := false
	for i, r := range refs {
		st, err := local.ReadStatus(p.dir, r.run)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("run %s: %w", r.run, err)
		}
		tasks := taskNames(st)
		if len(tasks) == 0 {
			tasks = slices.Sorted(maps.Keys(r.archived))
		}
		runs[i] = run{ref: r, st: st, tasks: tasks}
		found = found || slices.Contains(tasks, p.task)
	}
	if p.task != "" && !found {
		var known []string
		for _, r := range runs {
			tasks := "unknown (no logs here)"
			if len(r.tasks) > 0 {
				tasks = strings.Join(r.tasks, ", ")
			}
			known = append(known, fmt.Sprintf("%s %s: %s", r.ref.title, r.ref.run, tasks))
		}
		return fmt.Errorf("no run of build %s has a task %s; its runs' tasks:\n  %s", id, p.task, strings.Join(known, "\n  "))
	}
	shown := 0
	for _, r := range runs {
		if p.task != "" && len(r.tasks) > 0 && !slices.Contains(r.tasks, p.task) {
			continue
		}
		n, err := p.run(ctx, r.ref, r.st)
		if err != nil {
			return err
		}
		shown += n
	}
	if shown == 0 {
		return fmt.Errorf("found no logs of build %s (see above)", id)
	}
	return p.missingError(id)
}

// run prints r's logs: from the local run st if it is on this machine
// (st.Name set), else from the archive. It returns how many tasks' logs it
// printed; runs and tasks without logs get a line saying why.
func (p *logPrinter) run(ctx context.Context, r runRef, st local.RunStatus) (int, error) {
	name := strings.TrimSpace(r.title + " " + r.run)
	switch {
	case st.Name == "":
		return p.archivedRun(ctx, r)
	case st.State != local.StateDone && len(r.archived) > 0 && p.s3 != nil:
		// The run here did not finish (its worker died, or the build
		// moved on to another worker); the archive holds the attempt that
		// completed.
		fmt.Fprintf(p.note, "kiln: %s: archived logs; the local run in %s is %s, left by an earlier attempt\n", name, p.dir, st.State)
		return p.archivedRun(ctx, r)
	}
	fmt.Fprintf(p.note, "kiln: %s: local logs in %s (%s)\n", name, p.dir, cmp.Or(st.Reason, st.State))
	shown := 0
	for _, t := range st.Tasks {
		if p.task != "" && t.Name != p.task {
			continue
		}
		p.header(r, t.Name)
		if t.TaskRun == "" {
			why := t.State
			if t.Reason != "" {
				why += ": " + t.Reason
			}
			fmt.Fprintf(p.out, "kiln: the task did not run (%s)\n", why)
			continue
		}
		rc, err := local.OpenTaskLog(p.dir, r.run, t)
		switch {
		case errors.Is(err, fs.ErrNotExist) && r.archived[t.Name] != "" && p.s3 != nil:
			if err := p.download(ctx, r.archived[t.Name]); err != nil {
				return shown, err
			}
		case errors.Is(err, fs.ErrNotExist):
			fmt.Fprintf(p.out, "kiln: no logs of task %s in %s%s\n", t.Name, p.dir, p.archiveHint(r, t.Name))
			p.missing = append(p.missing, name+" task "+t.Name)
			continue
		case err != nil:
			return shown, err
		default:
			_, err = io.Copy(p.out, rc)
			rc.Close()
			if err != nil {
				return shown, fmt.Errorf("logs of task %s of run %s: %w", t.Name, r.run, err)
			}
		}
		shown++
	}
	return shown, nil
}

// archivedRun prints the archived logs of a run that is not on this
// machine.
func (p *logPrinter) archivedRun(ctx context.Context, r runRef) (int, error) {
	if len(r.archived) == 0 || p.s3 == nil {
		p.header(r, "")
		fmt.Fprintf(p.out, "kiln: no local logs for run %s in %s%s\n", r.run, p.dir, p.archiveHint(r, ""))
		p.missing = append(p.missing, strings.TrimSpace(r.title+" "+r.run))
		return 0, nil
	}
	fmt.Fprintf(p.note, "kiln: %s: archived logs\n", strings.TrimSpace(r.title+" "+r.run))
	shown := 0
	for _, task := range slices.Sorted(maps.Keys(r.archived)) {
		if p.task != "" && task != p.task {
			continue
		}
		p.header(r, task)
		if err := p.download(ctx, r.archived[task]); err != nil {
			return shown, err
		}
		shown++
	}
	return shown, nil
}

// archiveHint says where else a run's (or a task's) logs might be, or why
// they are not.
func (p *logPrinter) archiveHint(r runRef, task string) string {
	has := len(r.archived) > 0
	if task != "" {
		has = r.archived[task] != ""
	}
	switch {
	case has && !p.configured:
		return "; its archived logs need --config with storage"
	case has:
		return "; its archived logs need a storage section in the config"
	case r.archiveError != "":
		return "; not archived: " + r.archiveError
	case r.title != "":
		return "; the build archived none (it has no storage, or the worker ran elsewhere)"
	}
	return ""
}

func (p *logPrinter) header(r runRef, task string) {
	title := r.run
	if r.title != "" {
		title = r.title + " " + r.run
	}
	if task != "" {
		title += " task " + task
	}
	fmt.Fprintf(p.out, "=== %s ===\n", title)
}

// download streams the object at uri (s3://bucket/key) to the output.
func (p *logPrinter) download(ctx context.Context, uri string) error {
	bucket, key, ok := strings.Cut(strings.TrimPrefix(uri, "s3://"), "/")
	if !ok || !strings.HasPrefix(uri, "s3://") || bucket == "" || key == "" {
		return fmt.Errorf("archived log %q is not an s3://bucket/key URI", uri)
	}
	obj, err := p.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return fmt.Errorf("get %s: %w", uri, err)
	}
	defer obj.Body.Close()
	if _, err := io.Copy(p.out, obj.Body); err != nil {
		return fmt.Errorf("read %s: %w", uri, err)
	}
	return nil
}

// listRuns describes the local runs in p.dir, for an error message.
func (p *logPrinter) listRuns() string {
	entries, err := os.ReadDir(filepath.Join(p.dir, "runs"))
	if err != nil {
		return "no runs there"
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	const most = 20
	switch {
	case len(names) == 0:
		return "no runs there"
	case len(names) > most:
		return fmt.Sprintf("runs there: %s, and %d more", strings.Join(names[:most], ", "), len(names)-most)
	}
	return "runs there: " + strings.Join(names, ", ")
}

// taskNames lists a local run's pipeline tasks in order.
func taskNames(st local.RunStatus) []string {
	var names []string
	for _, t := range st.Tasks {
		names = append(names, t.Name)
	}
	return names
}
