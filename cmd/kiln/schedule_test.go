package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

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
