package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/kiln-build/kiln/internal/strictyaml"
	"github.com/kiln-build/kiln/worker"
	"github.com/kiln-build/kiln/workflows"
)

// scheduleFile is the declarative, git-versioned list of schedules that
// `kiln schedule apply` converges the server to.
type scheduleFile struct {
	Schedules []scheduleEntry `json:"schedules"`
}

type scheduleEntry struct {
	// ID of the schedule. Required, unique.
	ID string `json:"id"`
	// Cron expressions (standard five fields, or @daily and friends).
	Cron []string `json:"cron,omitempty"`
	// Calendars are calendar specs: each field a list like "1-5" or "0,30"
	// or "*"; empty fields mean the first value (0) except dayOfMonth,
	// month and dayOfWeek, which mean every.
	Calendars []calendarEntry `json:"calendars,omitempty"`
	// TimeZone for the specs, an IANA name. Optional: UTC.
	TimeZone string `json:"timeZone,omitempty"`
	// Jitter delays each action by a random time up to this.
	Jitter worker.Duration `json:"jitter,omitzero"`
	// Overlap: skip (default), buffer-one, buffer-all, cancel-other,
	// terminate-other or allow-all.
	Overlap string `json:"overlap,omitempty"`
	// CatchupWindow: how late a missed action may still run. Optional: 1m.
	CatchupWindow worker.Duration `json:"catchupWindow,omitzero"`
	// PauseOnFailure pauses the schedule when a build fails.
	PauseOnFailure bool `json:"pauseOnFailure,omitempty"`
	// Paused creates the schedule paused.
	Paused bool `json:"paused,omitempty"`
	// Note is shown with the schedule.
	Note string `json:"note,omitempty"`
	// OnlyIfChanged skips a build whose commit (the branch head when the
	// schedule fires) was built before and succeeded; a failed, cancelled
	// or timed-out build of it is built again.
	OnlyIfChanged bool `json:"onlyIfChanged,omitempty"`
	// OnFailure is what the schedule's builds do when a phase or flavour
	// has used all its attempts: fail, or wait for an operator (kiln
	// retry) for the workers' resumeWindow, during which, with overlap:
	// skip, the next fires are skipped. Optional: fail. The workers'
	// onFailure never applies to scheduled builds.
	OnFailure string `json:"onFailure,omitempty"`
	// TaskQueue of the workers. Optional: kiln.
	TaskQueue string `json:"taskQueue,omitempty"`
	// Build is the build template; without a commit, the branch head is
	// resolved at fire time.
	Build workflows.BuildRequest `json:"build"`
}

type calendarEntry struct {
	Second     string `json:"second,omitempty"`
	Minute     string `json:"minute,omitempty"`
	Hour       string `json:"hour,omitempty"`
	DayOfMonth string `json:"dayOfMonth,omitempty"`
	Month      string `json:"month,omitempty"`
	DayOfWeek  string `json:"dayOfWeek,omitempty"`
	Comment    string `json:"comment,omitempty"`
}

var overlapPolicies = map[string]enumspb.ScheduleOverlapPolicy{
	"skip":            enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
	"buffer-one":      enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ONE,
	"buffer-all":      enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ALL,
	"cancel-other":    enumspb.SCHEDULE_OVERLAP_POLICY_CANCEL_OTHER,
	"terminate-other": enumspb.SCHEDULE_OVERLAP_POLICY_TERMINATE_OTHER,
	"allow-all":       enumspb.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL,
}

// memoManaged marks the schedules kiln manages; apply never touches others.
const (
	memoManaged  = "kiln-managed"
	memoSpecHash = "kiln-spec-hash"
)

func loadSchedules(path string) (scheduleFile, error) {
	var f scheduleFile
	data, err := os.ReadFile(path)
	if err != nil {
		return f, err
	}
	// Every mistake at once, with its line and path (the worker config's
	// decoder).
	if err := strictyaml.Unmarshal(path, data, &f); err != nil {
		return f, err
	}
	if err := f.validate(); err != nil {
		return f, fmt.Errorf("%s:\n%w", path, err)
	}
	return f, nil
}

// validate reports every bad entry and field before anything reaches the
// server.
func (f scheduleFile) validate() error {
	var errs []error
	seen := map[string]bool{}
	for i, e := range f.Schedules {
		at := fmt.Sprintf("schedules[%d]", i)
		if e.ID != "" {
			at += " (" + e.ID + ")"
		}
		bad := func(field, format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s.%s: %s", at, field, fmt.Sprintf(format, args...)))
		}
		switch {
		case e.ID == "":
			bad("id", "required")
		case seen[e.ID]:
			bad("id", "%q is used twice", e.ID)
		}
		seen[e.ID] = true
		if len(e.Cron) == 0 && len(e.Calendars) == 0 {
			bad("cron", "a cron expression or a calendar is required")
		}
		for j, c := range e.Cron {
			if _, err := cron.ParseStandard(c); err != nil {
				bad(fmt.Sprintf("cron[%d]", j), "%q: %v", c, err)
			}
		}
		for j, c := range e.Calendars {
			if _, err := c.spec(); err != nil {
				bad(fmt.Sprintf("calendars[%d]", j), "%v", err)
			}
		}
		if e.TimeZone != "" {
			if _, err := time.LoadLocation(e.TimeZone); err != nil {
				bad("timeZone", "%q is not a known time zone (use an IANA name such as Europe/Berlin)", e.TimeZone)
			}
		}
		if e.Overlap != "" {
			if _, ok := overlapPolicies[e.Overlap]; !ok {
				names := make([]string, 0, len(overlapPolicies))
				for k := range overlapPolicies {
					names = append(names, k)
				}
				slices.Sort(names)
				bad("overlap", "%q: want one of %s", e.Overlap, strings.Join(names, ", "))
			}
		}
		if e.OnFailure != "" && e.OnFailure != workflows.OnFailureFail && e.OnFailure != workflows.OnFailureWait {
			bad("onFailure", "%q: want fail or wait", e.OnFailure)
		}
		if e.Build.OnFailure != "" {
			bad("build.onFailure", "set onFailure on the schedule entry (fail or wait), not in its build")
		}
		b := e.Build
		b.OnFailure = ""
		if b.Commit == "" {
			b.Commit = "resolved-at-fire-time"
		}
		if err := b.Validate(); err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				bad("build", "%s", line)
			}
		}
	}
	return errors.Join(errs...)
}

// spec turns a calendar entry into Temporal's calendar spec.
func (c calendarEntry) spec() (client.ScheduleCalendarSpec, error) {
	var s client.ScheduleCalendarSpec
	var err error
	field := func(name, v string, min, max int, every bool) []client.ScheduleRange {
		if err != nil {
			return nil
		}
		var r []client.ScheduleRange
		r, err = parseRanges(name, v, min, max, every)
		return r
	}
	s.Second = field("second", c.Second, 0, 59, false)
	s.Minute = field("minute", c.Minute, 0, 59, false)
	s.Hour = field("hour", c.Hour, 0, 23, false)
	s.DayOfMonth = field("dayOfMonth", c.DayOfMonth, 1, 31, true)
	s.Month = field("month", c.Month, 1, 12, true)
	s.DayOfWeek = field("dayOfWeek", c.DayOfWeek, 0, 6, true)
	s.Comment = c.Comment
	return s, err
}

// parseRanges reads "*", "5", "1-5", "0-30/10" and lists of them.
func parseRanges(name, v string, min, max int, every bool) ([]client.ScheduleRange, error) {
	if v == "" {
		if every {
			return []client.ScheduleRange{{Start: min, End: max}}, nil
		}
		return []client.ScheduleRange{{Start: min}}, nil
	}
	var out []client.ScheduleRange
	for _, part := range strings.Split(v, ",") {
		r := client.ScheduleRange{}
		body, step, hasStep := strings.Cut(part, "/")
		if hasStep {
			n, err := strconv.Atoi(step)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("%s: step %q is not a positive number", name, step)
			}
			r.Step = n
		}
		lo, hi, isRange := strings.Cut(body, "-")
		switch {
		case body == "*":
			r.Start, r.End = min, max
		default:
			a, err := strconv.Atoi(lo)
			if err != nil {
				return nil, fmt.Errorf("%s: %q is not a number", name, lo)
			}
			r.Start, r.End = a, a
			if isRange {
				b, err := strconv.Atoi(hi)
				if err != nil {
					return nil, fmt.Errorf("%s: %q is not a number", name, hi)
				}
				r.End = b
			}
		}
		if r.Start < min || r.End > max || r.End < r.Start {
			return nil, fmt.Errorf("%s: %q is outside %d-%d", name, part, min, max)
		}
		out = append(out, r)
	}
	return out, nil
}

// options turns an entry into the schedule's options.
func (e scheduleEntry) options() (client.ScheduleOptions, error) {
	spec := client.ScheduleSpec{CronExpressions: e.Cron, TimeZoneName: e.TimeZone, Jitter: e.Jitter.Duration}
	for _, c := range e.Calendars {
		cs, err := c.spec()
		if err != nil {
			return client.ScheduleOptions{}, err
		}
		spec.Calendars = append(spec.Calendars, cs)
	}
	queue := e.TaskQueue
	if queue == "" {
		queue = workflows.TaskQueue
	}
	overlap := enumspb.SCHEDULE_OVERLAP_POLICY_SKIP
	if e.Overlap != "" {
		overlap = overlapPolicies[e.Overlap]
	}
	return client.ScheduleOptions{
		ID:   e.ID,
		Spec: spec,
		Action: &client.ScheduleWorkflowAction{
			ID:       "scheduled/" + e.ID,
			Workflow: "Scheduled",
			Args: []any{workflows.ScheduledRequest{
				Template: e.Build, OnlyIfChanged: e.OnlyIfChanged, OnFailure: cmp.Or(e.OnFailure, workflows.OnFailureFail),
			}},
			TaskQueue: queue,
			Memo:      map[string]any{memoSpecHash: e.hash()},
		},
		Overlap:        overlap,
		CatchupWindow:  e.CatchupWindow.Duration,
		PauseOnFailure: e.PauseOnFailure,
		Note:           e.Note,
		Paused:         e.Paused,
		Memo:           map[string]any{memoManaged: true},
	}, nil
}

// hash identifies an entry's content; apply updates a schedule whose hash
// differs.
func (e scheduleEntry) hash() string {
	b, _ := json.Marshal(e)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// change is one step of converging the server to the file.
type change struct {
	op    string // create, update, pause, unpause, delete, unchanged
	id    string
	entry *scheduleEntry
	why   string // printed with the op, if set
}

// saHash is the search attribute, a Keyword, that holds a kiln-managed
// schedule's spec hash: List returns a schedule's search attributes, so
// apply learns what it needs without describing each schedule. (List also
// returns the schedule's memo, but the servers kiln is tested against,
// Temporal 1.29, ignore a memo in UpdateSchedule.) Without it registered
// in the namespace, apply describes every kiln-managed schedule instead.
const saHash = "KilnScheduleHash"

var saHashKey = temporal.NewSearchAttributeKeyKeyword(saHash)

// hashRegistered reports whether the namespace has saHash as a Keyword,
// and if not, a hint saying why apply describes every schedule.
func hashRegistered(ctx context.Context, c client.Client, namespace string) (bool, string) {
	resp, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return false, fmt.Sprintf("cannot list the search attributes of namespace %s (%v), so every schedule is described", namespace, err)
	}
	switch t, ok := resp.GetCustomAttributes()[saHash]; {
	case !ok:
		return false, fmt.Sprintf("namespace %s has no search attribute %s, so every schedule is described; register it once: "+
			"temporal operator search-attribute create --namespace %s --name %s --type Keyword", namespace, saHash, namespace, saHash)
	case t != enumspb.INDEXED_VALUE_TYPE_KEYWORD:
		return false, fmt.Sprintf("search attribute %s of namespace %s is a %s, not a Keyword, so every schedule is described", saHash, namespace, t)
	}
	return true, ""
}

// serverSchedule is what apply knows of a kiln-managed schedule.
type serverSchedule struct {
	hash      string
	paused    bool
	described bool // its hash came from a Describe, not from List
}

// planSchedules compares the file with the server's kiln-managed
// schedules. A schedule's spec hash and paused state come from List when
// the hash is in its search attribute (hashed: the namespace has it), and
// from a Describe otherwise.
func planSchedules(ctx context.Context, c client.Client, f scheduleFile, hashed bool) ([]change, error) {
	existing := map[string]serverSchedule{}
	it, err := c.ScheduleClient().List(ctx, client.ScheduleListOptions{PageSize: 100})
	if err != nil {
		return nil, err
	}
	dc := converter.GetDefaultDataConverter()
	for it.HasNext() {
		s, err := it.Next()
		if err != nil {
			return nil, err
		}
		var managed bool
		if p, ok := s.Memo.GetFields()[memoManaged]; ok {
			_ = dc.FromPayload(p, &managed)
		}
		if !managed {
			continue
		}
		st := serverSchedule{paused: s.Paused}
		if p, ok := s.SearchAttributes.GetIndexedFields()[saHash]; ok {
			_ = dc.FromPayload(p, &st.hash)
		}
		if st.hash == "" {
			if st, err = describeHash(ctx, c, s.ID); err != nil {
				return nil, err
			}
		}
		existing[s.ID] = st
	}
	var out []change
	for i := range f.Schedules {
		e := &f.Schedules[i]
		st, ok := existing[e.ID]
		switch {
		case !ok:
			out = append(out, change{op: "create", id: e.ID, entry: e})
		case st.hash != e.hash():
			out = append(out, change{op: "update", id: e.ID, entry: e})
		case st.paused != e.Paused:
			op := map[bool]string{true: "pause", false: "unpause"}[e.Paused]
			why := fmt.Sprintf("paused on the server, paused: %v in the file", e.Paused)
			if !st.paused {
				why = "not paused on the server, paused: true in the file"
			}
			out = append(out, change{op: op, id: e.ID, entry: e, why: why})
		case hashed && st.described:
			out = append(out, change{op: "update", id: e.ID, entry: e, why: "records its hash in " + saHash})
		default:
			out = append(out, change{op: "unchanged", id: e.ID, entry: e})
		}
		delete(existing, e.ID)
	}
	for _, id := range slices.Sorted(maps.Keys(existing)) {
		out = append(out, change{op: "delete", id: id})
	}
	return out, nil
}

// describeHash reads a schedule's spec hash (from its action's memo)
// and paused state with a Describe.
func describeHash(ctx context.Context, c client.Client, id string) (serverSchedule, error) {
	d, err := c.ScheduleClient().GetHandle(ctx, id).Describe(ctx)
	if err != nil {
		return serverSchedule{}, fmt.Errorf("describe schedule %s: %w", id, err)
	}
	st := serverSchedule{described: true, paused: d.Schedule.State != nil && d.Schedule.State.Paused}
	if a, ok := d.Schedule.Action.(*client.ScheduleWorkflowAction); ok {
		if p, ok := a.Memo[memoSpecHash]; ok {
			switch v := p.(type) {
			case string:
				st.hash = v
			default:
				if pl, ok := p.(interface{ GetData() []byte }); ok {
					_ = json.Unmarshal(pl.GetData(), &st.hash)
				}
			}
		}
	}
	return st, nil
}

// applyChange makes one change; hashed: the namespace has saHash, which
// creates and updates then set.
func applyChange(ctx context.Context, c client.Client, ch change, hashed bool) error {
	sc := c.ScheduleClient()
	var sa *temporal.SearchAttributes
	if ch.entry != nil && hashed {
		attrs := temporal.NewSearchAttributes(saHashKey.ValueSet(ch.entry.hash()))
		sa = &attrs
	}
	switch ch.op {
	case "create":
		opts, err := ch.entry.options()
		if err != nil {
			return err
		}
		if sa != nil {
			opts.TypedSearchAttributes = *sa
		}
		_, err = sc.Create(ctx, opts)
		return err
	case "update":
		opts, err := ch.entry.options()
		if err != nil {
			return err
		}
		return sc.GetHandle(ctx, ch.id).Update(ctx, client.ScheduleUpdateOptions{
			DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
				s := in.Description.Schedule
				s.Spec = &opts.Spec
				s.Action = opts.Action
				s.Policy = &client.SchedulePolicies{Overlap: opts.Overlap, CatchupWindow: opts.CatchupWindow, PauseOnFailure: opts.PauseOnFailure}
				if s.State == nil {
					s.State = &client.ScheduleState{}
				}
				// The update replaces the whole state: paused follows
				// the file, as the note does.
				s.State.Note, s.State.Paused = opts.Note, opts.Paused
				return &client.ScheduleUpdate{Schedule: &s, TypedSearchAttributes: sa}, nil
			},
		})
	case "pause":
		// The note replaces the schedule's: keep the file's.
		return sc.GetHandle(ctx, ch.id).Pause(ctx, client.SchedulePauseOptions{Note: cmp.Or(ch.entry.Note, "paused: true in the schedules file")})
	case "unpause":
		return sc.GetHandle(ctx, ch.id).Unpause(ctx, client.ScheduleUnpauseOptions{Note: cmp.Or(ch.entry.Note, "paused: false in the schedules file")})
	case "delete":
		return sc.GetHandle(ctx, ch.id).Delete(ctx)
	}
	return nil
}

// applySchedules prints the diff between the file and the server's
// kiln-managed schedules in namespace to out and, unless dryRun, makes the
// changes. Hints go to errOut.
func applySchedules(ctx context.Context, c client.Client, namespace string, f scheduleFile, out, errOut io.Writer, dryRun bool) error {
	hashed, hint := hashRegistered(ctx, c, namespace)
	if hint != "" {
		fmt.Fprintln(errOut, "kiln: "+hint)
	}
	changes, err := planSchedules(ctx, c, f, hashed)
	if err != nil {
		return err
	}
	marks := map[string]string{"create": "+", "update": "~", "pause": "~", "unpause": "~", "delete": "-", "unchanged": "="}
	n := 0
	for _, ch := range changes {
		line := fmt.Sprintf("%s %s %s", marks[ch.op], ch.op, ch.id)
		if ch.why != "" {
			line += " (" + ch.why + ")"
		}
		fmt.Fprintln(out, line)
		if ch.op != "unchanged" {
			n++
		}
	}
	if dryRun || n == 0 {
		fmt.Fprintf(out, "%d changes%s\n", n, map[bool]string{true: " (dry run)", false: ""}[dryRun])
		return nil
	}
	for _, ch := range changes {
		if err := applyChange(ctx, c, ch, hashed); err != nil {
			return fmt.Errorf("%s %s: %w", ch.op, ch.id, err)
		}
	}
	fmt.Fprintf(out, "%d changes applied\n", n)
	return nil
}

func newScheduleCommand(logger *slog.Logger) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Nightly and periodic builds as Temporal Schedules",
		Long: `Manage the Temporal Schedules that start builds, declared in a
git-versioned YAML file. A schedule starts the Scheduled workflow, which
resolves the branch head when it fires (unless the template names a commit)
and runs the Build as build/<branch>/<commit>, with the entry's onFailure
(fail unless it says wait; the workers' onFailure never applies). With
onlyIfChanged it skips a commit whose earlier build succeeded or is running,
builds again one whose build failed, was cancelled, terminated or timed out,
and, when Temporal no longer has the earlier build, skips the commit only if
every flavour has a release manifest; kiln list shows why.` + temporalEnvHelp,
		Example: `  kiln schedule apply -f deploy/schedules.yaml --dry-run
  kiln schedule list
  kiln schedule trigger nightly-main`,
	}
	var file string
	var dryRun bool
	apply := &cobra.Command{
		Use:   "apply",
		Short: "Converge the server's schedules to a file: create, update, pause, delete",
		Long: `Converge the server's kiln-managed schedules to the file: create the new
ones, update the changed ones, delete the ones no longer in the file
(schedules kiln did not create are never touched). Paused follows the file:
a schedule the file says paused: true is paused, one it does not is
unpaused, also when it was paused by hand or by pauseOnFailure since. The
diff is printed first; with --dry-run nothing else happens. Bad entries (a
cron that does not parse, an unknown time zone, overlap policy or
onFailure, a bad build template) are rejected before anything reaches the
server. Applying the same file twice changes nothing the second time.

Each schedule's content hash is kept in the search attribute
KilnScheduleHash, which List returns, so an unchanged schedule costs no
Describe. Register it once per namespace (kiln dev does):

  temporal operator search-attribute create --name KilnScheduleHash --type Keyword

Without it, apply describes every kiln-managed schedule, and says so.`,
		Example: `  kiln schedule apply -f deploy/schedules.yaml --dry-run
  kiln schedule apply -f deploy/schedules.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := loadSchedules(file)
			if err != nil {
				return err
			}
			c, err := dialTemporal(logger)
			if err != nil {
				return err
			}
			defer c.Close()
			return applySchedules(cmd.Context(), c, temporalNamespace(), f, cmd.OutOrStdout(), cmd.ErrOrStderr(), dryRun)
		},
	}
	apply.Flags().StringVarP(&file, "file", "f", "", "schedules file (required)")
	apply.Flags().BoolVar(&dryRun, "dry-run", false, "print the diff only")
	_ = apply.MarkFlagRequired("file")

	handle := func(use, short, example string, fn func(ctx context.Context, h client.ScheduleHandle, out io.Writer) error) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Example: example, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := dialTemporal(logger)
				if err != nil {
					return err
				}
				defer c.Close()
				err = fn(cmd.Context(), c.ScheduleClient().GetHandle(cmd.Context(), args[0]), cmd.OutOrStdout())
				var nf *serviceerror.NotFound
				if errors.As(err, &nf) {
					return fmt.Errorf("no schedule %q; see kiln schedule list", args[0])
				}
				return err
			},
		}
	}
	var from, to string
	backfill := handle("backfill ID --from TIME --to TIME", "Run the actions a schedule would have taken in a past window",
		"  kiln schedule backfill nightly-main --from 2026-11-01T00:00:00Z --to 2026-11-03T00:00:00Z",
		func(ctx context.Context, h client.ScheduleHandle, out io.Writer) error {
			start, err := time.Parse(time.RFC3339, from)
			if err != nil {
				return fmt.Errorf("--from: %w (use RFC 3339, e.g. 2026-11-01T00:00:00Z)", err)
			}
			end, err := time.Parse(time.RFC3339, to)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			if !end.After(start) {
				return errors.New("--to must be after --from")
			}
			if err := h.Backfill(ctx, client.ScheduleBackfillOptions{Backfill: []client.ScheduleBackfill{{
				Start: start, End: end, Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL,
			}}}); err != nil {
				return err
			}
			fmt.Fprintf(out, "backfilling %s from %s to %s\n", h.GetID(), start, end)
			return nil
		})
	backfill.Flags().StringVar(&from, "from", "", "start of the window, RFC 3339")
	backfill.Flags().StringVar(&to, "to", "", "end of the window, RFC 3339")
	_ = backfill.MarkFlagRequired("from")
	_ = backfill.MarkFlagRequired("to")

	cmd.AddCommand(apply, newScheduleListCommand(logger),
		handle("describe ID", "Show a schedule: specs, policies, next and recent actions", "  kiln schedule describe nightly-main",
			func(ctx context.Context, h client.ScheduleHandle, out io.Writer) error {
				d, err := h.Describe(ctx)
				if err != nil {
					return err
				}
				return describeSchedule(out, h.GetID(), d)
			}),
		handle("pause ID", "Pause a schedule (until the next apply: paused follows the file)", "  kiln schedule pause nightly-main",
			func(ctx context.Context, h client.ScheduleHandle, out io.Writer) error {
				if err := h.Pause(ctx, client.SchedulePauseOptions{Note: "paused with kiln"}); err != nil {
					return err
				}
				fmt.Fprintf(out, "paused %s\n", h.GetID())
				return nil
			}),
		handle("unpause ID", "Unpause a schedule", "  kiln schedule unpause nightly-main",
			func(ctx context.Context, h client.ScheduleHandle, out io.Writer) error {
				if err := h.Unpause(ctx, client.ScheduleUnpauseOptions{Note: "unpaused with kiln"}); err != nil {
					return err
				}
				fmt.Fprintf(out, "unpaused %s\n", h.GetID())
				return nil
			}),
		handle("trigger ID", "Run a schedule's action now", "  kiln schedule trigger nightly-main",
			func(ctx context.Context, h client.ScheduleHandle, out io.Writer) error {
				if err := h.Trigger(ctx, client.ScheduleTriggerOptions{Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL}); err != nil {
					return err
				}
				fmt.Fprintf(out, "triggered %s\n", h.GetID())
				return nil
			}),
		backfill,
		handle("delete ID", "Delete a schedule (apply deletes the ones gone from the file)", "  kiln schedule delete nightly-main",
			func(ctx context.Context, h client.ScheduleHandle, out io.Writer) error {
				if err := h.Delete(ctx); err != nil {
					return err
				}
				fmt.Fprintf(out, "deleted %s\n", h.GetID())
				return nil
			}),
	)
	return cmd
}

func newScheduleListCommand(logger *slog.Logger) *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List schedules with their next run", Example: "  kiln schedule list", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := dialTemporal(logger)
			if err != nil {
				return err
			}
			defer c.Close()
			it, err := c.ScheduleClient().List(cmd.Context(), client.ScheduleListOptions{PageSize: 100})
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 2, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SCHEDULE\tPAUSED\tNEXT\tNOTE")
			for it.HasNext() {
				s, err := it.Next()
				if err != nil {
					return err
				}
				next := "-"
				if len(s.NextActionTimes) > 0 {
					next = s.NextActionTimes[0].Local().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%v\t%s\t%s\n", s.ID, s.Paused, next, s.Note)
			}
			return tw.Flush()
		},
	}
}

func describeSchedule(out io.Writer, id string, d *client.ScheduleDescription) error {
	s := d.Schedule
	fmt.Fprintf(out, "schedule %s\n", id)
	if s.Spec != nil {
		fmt.Fprintf(out, "  cron:      %v\n  calendars: %d\n  timezone:  %s\n  jitter:    %v\n", s.Spec.CronExpressions, len(s.Spec.Calendars), orDash(s.Spec.TimeZoneName), s.Spec.Jitter)
	}
	if s.Policy != nil {
		fmt.Fprintf(out, "  overlap:   %s\n  catchup:   %v\n  pause on failure: %v\n", strings.TrimPrefix(s.Policy.Overlap.String(), "SCHEDULE_OVERLAP_POLICY_"), s.Policy.CatchupWindow, s.Policy.PauseOnFailure)
	}
	if s.State != nil {
		fmt.Fprintf(out, "  paused:    %v\n  note:      %s\n", s.State.Paused, s.State.Note)
	}
	fmt.Fprintf(out, "  actions:   %d taken, %d skipped by overlap\n", d.Info.NumActions, d.Info.NumActionsSkippedOverlap)
	for _, t := range d.Info.NextActionTimes {
		fmt.Fprintf(out, "  next:      %s\n", t.Local().Format(time.DateTime))
	}
	for _, a := range d.Info.RecentActions {
		fmt.Fprintf(out, "  recent:    %s  %s\n", a.ScheduleTime.Local().Format(time.DateTime), a.StartWorkflowResult.WorkflowID)
	}
	return nil
}
