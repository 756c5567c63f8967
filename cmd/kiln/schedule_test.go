package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"google.golang.org/grpc"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kiln-build/kiln/test/kubestack"
	"github.com/kiln-build/kiln/test/temporaltest"
	"github.com/kiln-build/kiln/workflows"
)

func writeFile(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "schedules.yaml")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExampleSchedulesAreValid(t *testing.T) {
	f, err := loadSchedules("../../deploy/schedules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range f.Schedules {
		opts, err := e.options()
		if err != nil {
			t.Fatalf("%s: %v", e.ID, err)
		}
		if opts.ID != e.ID || opts.Action == nil {
			t.Errorf("%s: options %+v", e.ID, opts)
		}
	}
}

func TestBadSchedulesAreRejectedNamingEntryAndField(t *testing.T) {
	_, err := loadSchedules(writeFile(t, `
schedules:
- id: nightly
  cron: ["0 25 * * *"]
  timeZone: Mars/Olympus
  overlap: sometimes
  onFailure: later
  build: {repo: r, branch: main, flavourSet: all, onFailure: wait}
- id: nightly
  calendars: [{hour: "2-30"}]
  build: {repo: r, branch: main, flavourSet: all, targets: [release]}
- cron: ["@daily"]
  build: {branch: main}
`))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`schedules[0] (nightly).cron[0]: "0 25 * * *"`,
		`schedules[0] (nightly).timeZone: "Mars/Olympus" is not a known time zone`,
		`schedules[0] (nightly).overlap: "sometimes": want one of allow-all, buffer-all, buffer-one, cancel-other, skip, terminate-other`,
		`schedules[0] (nightly).onFailure: "later": want fail or wait`,
		`schedules[0] (nightly).build.onFailure: set onFailure on the schedule entry (fail or wait), not in its build`,
		`schedules[1] (nightly).id: "nightly" is used twice`,
		`schedules[1] (nightly).calendars[0]: hour: "2-30" is outside 0-23`,
		`schedules[1] (nightly).build: targets: release requires manifest`,
		`schedules[2].id: required`,
		`schedules[2].build: repo: required`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors do not say %q:\n%v", want, err)
		}
	}
}

func TestScheduleOptions(t *testing.T) {
	f, err := loadSchedules(writeFile(t, `
schedules:
- id: weekdays
  calendars: [{minute: "0,30", hour: "2", dayOfWeek: "1-5"}]
  timeZone: Europe/Berlin
  jitter: 10m
  overlap: buffer-one
  catchupWindow: 2h
  pauseOnFailure: true
  onlyIfChanged: true
  build: {repo: r, branch: main, flavourSet: all}
`))
	if err != nil {
		t.Fatal(err)
	}
	e := f.Schedules[0]
	o, err := e.options()
	if err != nil {
		t.Fatal(err)
	}
	cal := o.Spec.Calendars[0]
	if len(cal.Minute) != 2 || cal.Minute[1].Start != 30 || cal.Hour[0].Start != 2 || cal.DayOfWeek[0].End != 5 || cal.Month[0].End != 12 {
		t.Errorf("calendar = %+v", cal)
	}
	if o.Overlap != enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ONE || o.CatchupWindow.Hours() != 2 || !o.PauseOnFailure || o.Spec.Jitter.Minutes() != 10 {
		t.Errorf("options = %+v", o)
	}
	if r := o.Action.(*client.ScheduleWorkflowAction).Args[0].(workflows.ScheduledRequest); r.OnFailure != workflows.OnFailureFail || !r.OnlyIfChanged {
		t.Errorf("scheduled request = %+v, want onFailure fail (the default, whatever the workers say)", r)
	}
	if e.hash() == (scheduleEntry{ID: "weekdays"}).hash() {
		t.Error("hash ignores the content")
	}
}

// devTemporal starts a real Temporal dev server and returns a client of
// its default namespace whose DescribeSchedule calls are counted.
func devTemporal(t *testing.T) (*testsuite.DevServer, client.Client, *atomic.Int64) {
	t.Helper()
	srv, err := temporaltest.Start(context.Background(), t.TempDir())
	kubestack.SkipWithoutTools(t, err)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Stop() })
	var describes atomic.Int64
	count := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if strings.HasSuffix(method, "/DescribeSchedule") {
			describes.Add(1)
		}
		return invoke(ctx, method, req, reply, cc, opts...)
	}
	c, err := client.Dial(client.Options{
		HostPort: srv.FrontendHostPort(), Namespace: client.DefaultNamespace, Logger: temporaltest.Logger(io.Discard),
		ConnectionOptions: client.ConnectionOptions{DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(count)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return srv, c, &describes
}

// applyFile runs kiln schedule apply's work for a schedules file and
// returns what it printed and hinted.
func applyFile(t *testing.T, c client.Client, yaml string) (out, hints string) {
	t.Helper()
	f, err := loadSchedules(writeFile(t, yaml))
	if err != nil {
		t.Fatal(err)
	}
	var o, e bytes.Buffer
	if err := applySchedules(context.Background(), c, client.DefaultNamespace, f, &o, &e, false); err != nil {
		t.Fatalf("apply: %v\n%s", err, o.String())
	}
	return o.String(), e.String()
}

// waitListed waits until List shows schedule id as ok says (List is
// eventually consistent: a schedule's changes reach it shortly after).
func waitListed(t *testing.T, c client.Client, id string, ok func(*client.ScheduleListEntry) bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		it, err := c.ScheduleClient().List(ctx, client.ScheduleListOptions{})
		if err != nil {
			return false, nil
		}
		for it.HasNext() {
			s, err := it.Next()
			if err != nil {
				return false, nil
			}
			if s.ID == id {
				return ok(s), nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("schedule %s is never listed as expected: %v", id, err)
	}
}

func listedPaused(paused bool) func(*client.ScheduleListEntry) bool {
	return func(s *client.ScheduleListEntry) bool { return s.Paused == paused }
}

func nightlyFile(paused bool, note string) string {
	return fmt.Sprintf(`
schedules:
- id: nightly
  note: %s
  cron: ["0 2 * * *"]
  paused: %v
  onlyIfChanged: true
  build: {repo: https://github.com/gardenlinux/gardenlinux, branch: main, flavourSet: all}
`, note, paused)
}

// TestScheduleApplyPausesAndUnpauses applies a schedules file to a real
// Temporal dev server whose namespace lacks the hash search attribute (the
// Describe path): paused: true in the file pauses the existing schedule,
// paused: false unpauses it, and a schedule paused by hand is unpaused by
// the next apply of a file that does not say paused; the note stays the
// file's.
func TestScheduleApplyPausesAndUnpauses(t *testing.T) {
	_, c, _ := devTemporal(t)
	h := c.ScheduleClient().GetHandle(context.Background(), "nightly")
	state := func() *client.ScheduleState {
		t.Helper()
		d, err := h.Describe(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return d.Schedule.State
	}
	out, hints := applyFile(t, c, nightlyFile(false, "the nightly"))
	if !strings.Contains(out, "+ create nightly") || state().Paused {
		t.Fatalf("create:\n%s\npaused %v", out, state().Paused)
	}
	waitListed(t, c, "nightly", listedPaused(false))
	if !strings.Contains(hints, "namespace default has no search attribute KilnScheduleHash, so every schedule is described") ||
		!strings.Contains(hints, "temporal operator search-attribute create --namespace default --name KilnScheduleHash --type Keyword") {
		t.Errorf("hints do not say how to avoid the describes:\n%s", hints)
	}

	out, _ = applyFile(t, c, nightlyFile(true, "the nightly"))
	if s := state(); !strings.Contains(out, "~ update nightly") || !s.Paused || s.Note != "the nightly" {
		t.Fatalf("paused: true applied:\n%s\nstate %+v; want paused, the file's note", out, s)
	}
	out, _ = applyFile(t, c, nightlyFile(false, "the nightly"))
	if s := state(); !strings.Contains(out, "~ update nightly") || s.Paused {
		t.Fatalf("paused: false applied:\n%s\nstate %+v; want unpaused", out, s)
	}

	if err := h.Pause(context.Background(), client.SchedulePauseOptions{Note: "paused by hand"}); err != nil {
		t.Fatal(err)
	}
	out, _ = applyFile(t, c, nightlyFile(false, "the nightly"))
	if s := state(); !strings.Contains(out, "~ unpause nightly (paused on the server, paused: false in the file)") || s.Paused || s.Note != "the nightly" {
		t.Fatalf("apply after a pause by hand:\n%s\nstate %+v; want unpaused, with the file's note", out, s)
	}
	out, _ = applyFile(t, c, nightlyFile(false, "the nightly"))
	if !strings.Contains(out, "= unchanged nightly") || !strings.Contains(out, "0 changes") {
		t.Errorf("a second apply is not a no-op:\n%s", out)
	}
}

// TestScheduleApplyOfAnUnchangedFileDescribesNothing: once the namespace
// has the KilnScheduleHash search attribute, apply learns each schedule's
// hash and paused state from List alone: an unchanged file issues no
// DescribeSchedule (counted on the wire), also after an update and after a
// pause by hand, which it undoes. A schedule created before the attribute
// was registered gets its hash recorded once.
func TestScheduleApplyOfAnUnchangedFileDescribesNothing(t *testing.T) {
	_, c, describes := devTemporal(t)
	ctx := context.Background()
	applyFile(t, c, nightlyFile(false, "first"))
	waitListed(t, c, "nightly", listedPaused(false))

	if _, err := c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace: client.DefaultNamespace, SearchAttributes: map[string]enumspb.IndexedValueType{saHash: enumspb.INDEXED_VALUE_TYPE_KEYWORD},
	}); err != nil {
		t.Fatal(err)
	}
	out, hints := applyFile(t, c, nightlyFile(false, "first"))
	if !strings.Contains(out, "~ update nightly (records its hash in KilnScheduleHash)") || hints != "" {
		t.Fatalf("first apply with the attribute:\n%s\nhints: %s", out, hints)
	}
	hashListed := func(yaml string) func(*client.ScheduleListEntry) bool {
		f, err := loadSchedules(writeFile(t, yaml))
		if err != nil {
			t.Fatal(err)
		}
		want := f.Schedules[0].hash()
		return func(s *client.ScheduleListEntry) bool {
			var got string
			if p, ok := s.SearchAttributes.GetIndexedFields()[saHash]; ok {
				_ = converter.GetDefaultDataConverter().FromPayload(p, &got)
			}
			return got == want
		}
	}
	unchanged := func(yaml, after string) {
		t.Helper()
		describes.Store(0)
		out, _ := applyFile(t, c, yaml)
		if !strings.Contains(out, "= unchanged nightly") || !strings.Contains(out, "0 changes") || describes.Load() != 0 {
			t.Errorf("apply of an unchanged file %s: %d DescribeSchedule calls, output:\n%s", after, describes.Load(), out)
		}
	}
	waitListed(t, c, "nightly", hashListed(nightlyFile(false, "first")))
	unchanged(nightlyFile(false, "first"), "after the hash was recorded")

	out, _ = applyFile(t, c, nightlyFile(false, "second"))
	if !strings.Contains(out, "~ update nightly") {
		t.Fatalf("a changed note is not an update:\n%s", out)
	}
	waitListed(t, c, "nightly", hashListed(nightlyFile(false, "second")))
	unchanged(nightlyFile(false, "second"), "after an update")

	if err := c.ScheduleClient().GetHandle(ctx, "nightly").Pause(ctx, client.SchedulePauseOptions{Note: "by hand"}); err != nil {
		t.Fatal(err)
	}
	waitListed(t, c, "nightly", listedPaused(true))
	describes.Store(0)
	out, _ = applyFile(t, c, nightlyFile(false, "second"))
	if !strings.Contains(out, "~ unpause nightly") || describes.Load() != 0 {
		t.Errorf("apply after a pause by hand: %d DescribeSchedule calls, output:\n%s", describes.Load(), out)
	}
	waitListed(t, c, "nightly", listedPaused(false))
	unchanged(nightlyFile(false, "second"), "after the unpause")
}

// TestListShowsWhyANightlySkippedOrBuilt: kiln list, against a real
// Temporal dev server, shows a scheduled run's decision from its memo: the
// skip, or the state and why it built again.
func TestListShowsWhyANightlySkippedOrBuilt(t *testing.T) {
	srv, c, _ := devTemporal(t)
	ctx := context.Background()
	for id, memo := range map[string]map[string]any{
		"scheduled/a": {workflows.MemoSkipped: "build/main/75df9f40 succeeded on 2026-11-02 02:13 UTC"},
		"scheduled/b": {workflows.MemoReason: "rebuilt: build/main/0123abcd failed on 2026-11-02 02:13 UTC"},
	} {
		// No worker polls the queue: the runs stay Running, with their memo.
		if _, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "nobody", Memo: memo}, "Scheduled"); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("TEMPORAL_ADDRESS", srv.FrontendHostPort())
	var out string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		cmd := newRootCommand()
		var b bytes.Buffer
		cmd.SetOut(&b)
		cmd.SetErr(io.Discard)
		cmd.SetArgs([]string{"list"})
		if err := cmd.Execute(); err != nil {
			return false, err
		}
		out = b.String()
		return strings.Contains(out, "scheduled/a") && strings.Contains(out, "scheduled/b"), nil
	})
	if err != nil {
		t.Fatalf("kiln list: %v\n%s", err, out)
	}
	for _, want := range []string{
		"Skipped: build/main/75df9f40 succeeded on 2026-11-02 02:13 UTC",
		"(rebuilt: build/main/0123abcd failed on 2026-11-02 02:13 UTC)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("kiln list does not say %q:\n%s", want, out)
		}
	}
}

// TestScheduleFileMistakesNameLineAndPath: the schedule file is decoded as
// strictly as the worker config: every mistake at once, with its line, its
// path and the nearest field.
func TestScheduleFileMistakesNameLineAndPath(t *testing.T) {
	_, err := loadSchedules(writeFile(t, `schedules:
- id: nightly
  cron: ["0 2 * * *"]
  onlyIfChanged: true
  jitter: 5 minutes
  overlapp: skip
  build:
    repo: https://github.com/gardenlinux/gardenlinux
    branch: main
    flavourset: all
`))
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{
		`:5:11: schedules[0].jitter: want a duration`,
		`:6:3: schedules[0].overlapp: unknown field, did you mean "overlap"?`,
		`:10:5: schedules[0].build.flavourset: unknown field, did you mean "flavourSet"? (names are case-sensitive)`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
