package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The runners here watch their steps through host paths, and the leftover
// groups matter with isolation none (in namespaces the kernel kills a
// step's whole namespace with it): they run with IsolationNone.

// A run recorded as finished without success is run again with Replace,
// and adopted without it; a run that succeeded is adopted either way. The
// step fails until a marker file appears in its persistentVolumeClaim
// workspace, which outlives runs.

func TestRunReplacesAFailedRun(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string // runs when the marker is absent
		reason string // the first run's
	}{
		{"failed", "exit 1", "Failed"},
		{"cancelled", "touch $(workspaces.data.path)/started; sleep 1000", "Cancelled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, objs, logs := testRunner(t, Options{Isolation: IsolationNone}, `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: replace-`+tc.name+`}
spec:
  workspaces: [{name: data, persistentVolumeClaim: {claimName: data}}]
  pipelineSpec:
    workspaces: [{name: data}]
    tasks:
    - name: t
      workspaces: [{name: data, workspace: data}]
      taskSpec:
        workspaces: [{name: data}]
        steps:
        - name: s
          image: x
          script: |
            echo ran >> $(workspaces.data.path)/count
            [ -e $(workspaces.data.path)/marker ] && exit 0
            `+tc.script+`
`)
			pr := &objs.PipelineRuns[0]
			vol := filepath.Join(r.root, "volumes", "data")
			ran := func() int {
				b, _ := os.ReadFile(filepath.Join(vol, "count"))
				return strings.Count(string(b), "ran")
			}
			run := func(ctx context.Context, replace bool) *Outcome {
				t.Helper()
				out, err := r.Run(ctx, pr, RunOptions{Replace: replace})
				if err != nil && ctx.Err() == nil {
					t.Fatalf("Run: %v\n%s", err, logs)
				}
				return out
			}

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.name == "cancelled" {
				go func() {
					for {
						if _, err := os.Stat(filepath.Join(vol, "started")); err == nil {
							cancel()
							return
						}
						time.Sleep(10 * time.Millisecond)
					}
				}()
			}
			first := run(ctx, false)
			if first.Status.Reason != tc.reason {
				t.Fatalf("first run: %s", describe(first.Status))
			}

			// Without Replace, a retry adopts the recorded outcome.
			if out := run(context.Background(), false); !out.Adopted || out.Status.Reason != tc.reason || out.Status.UID != first.Status.UID || ran() != 1 {
				t.Errorf("without Replace: adopted %v, %s, ran %d times, want the first run adopted", out.Adopted, out.Status.Reason, ran())
			}

			// With Replace, the run runs again, and can succeed.
			if err := os.WriteFile(filepath.Join(vol, "marker"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			again := run(context.Background(), true)
			if again.Adopted || again.Status.Reason != "Succeeded" || again.Status.UID == first.Status.UID || ran() != 2 {
				t.Errorf("with Replace: adopted %v, ran %d times, %s", again.Adopted, ran(), describe(again.Status))
			}

			// A run that succeeded is adopted, Replace or not.
			if out := run(context.Background(), true); !out.Adopted || out.Status.UID != again.Status.UID || ran() != 2 {
				t.Errorf("succeeded, with Replace: adopted %v, ran %d times, want it adopted", out.Adopted, ran())
			}
		})
	}
}

// Replace does not override a conflict: a run of another spec is refused.
func TestReplaceKeepsConflicts(t *testing.T) {
	doc := func(word string) string {
		return `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: conflict}
spec:
  pipelineSpec:
    tasks:
    - name: t
      taskSpec: {steps: [{name: s, image: x, script: "echo ` + word + `; exit 1"}]}
`
	}
	r, objs, logs := testRunner(t, Options{Isolation: IsolationNone}, doc("first"))
	if s := runOne(t, r, &objs.PipelineRuns[0], logs); s.Reason != "Failed" {
		t.Fatalf("%s", describe(s))
	}
	other, err := Decode(strings.NewReader(doc("second")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(context.Background(), &other.PipelineRuns[0], RunOptions{Replace: true}); !errors.Is(err, ErrConflict) {
		t.Errorf("other spec, same name, Replace: %v, want ErrConflict", err)
	}
}

// RunPipeline replaces, on an activity's first attempt, the failed run a
// previous workflow execution left under the same key.
func TestRunPipelineReplacesAFailedRun(t *testing.T) {
	a, logs := newActivities(t, Options{Isolation: IsolationNone})
	d := t.TempDir()
	in := request("rerun", embedded("build", "[ -e "+d+"/marker ] || exit 1; printf img > $(results.out.path)"))
	first := wait(t, execute(a, in, nil))
	wantAppError(t, first.err, "Failed", "exited with code 1")
	if err := os.WriteFile(filepath.Join(d, "marker"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	again := wait(t, execute(a, in, nil))
	if again.err != nil || again.res.Adopted {
		t.Fatalf("re-run: %v, adopted %v\n%s", again.err, again.res.Adopted, logs)
	}
	if v, _ := again.res.Result("image"); v != "img" {
		t.Errorf("re-run result %+v", again.res)
	}
}

// Every replaced attempt is kept, and its status and logs are read back
// through the exported API, with or without a Runner.
func TestKeptAttemptsReadable(t *testing.T) {
	d := t.TempDir()
	r, objs, logs := testRunner(t, Options{Isolation: IsolationNone}, `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: kept}
spec:
  pipelineSpec:
    tasks:
    - name: t
      taskSpec:
        steps:
        - name: s
          image: x
          script: |
            echo ran >> `+d+`/count
            echo "attempt $(wc -l < `+d+`/count)"
            [ -e `+d+`/marker ]
`)
	pr := &objs.PipelineRuns[0]
	run := func() RunStatus {
		t.Helper()
		out, err := r.Run(context.Background(), pr, RunOptions{Replace: true})
		if err != nil {
			t.Fatalf("Run: %v\n%s", err, logs)
		}
		return out.Status
	}
	if s := run(); s.Reason != "Failed" || s.Attempt != 1 || len(s.Restarts) != 0 {
		t.Fatalf("first: attempt %d, restarts %+v, %s", s.Attempt, s.Restarts, describe(s))
	}
	if s := run(); s.Reason != "Failed" || s.Attempt != 2 {
		t.Fatalf("second: attempt %d, %s", s.Attempt, describe(s))
	}
	if err := os.WriteFile(filepath.Join(d, "marker"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s := run()
	if s.Reason != "Succeeded" || s.Attempt != 3 || len(s.Restarts) != 2 {
		t.Fatalf("third: attempt %d, restarts %+v, %s", s.Attempt, s.Restarts, describe(s))
	}
	for i, rs := range s.Restarts {
		if rs.Attempt != i+1 || rs.Reason != RestartReplaced+"Failed" || rs.PreviousState != StateDone {
			t.Errorf("restart %d: %+v", i, rs)
		}
	}
	if got := readFile(t, r.LogFile("kept", "t", "s")); got != "attempt 3\n" {
		t.Errorf("current log %q", got)
	}
	if rec, err := ReadStatus(r.root, "kept"); err != nil || rec.Attempt != 3 || len(rec.Restarts) != 2 {
		t.Errorf("ReadStatus: %v, attempt %d, restarts %+v", err, rec.Attempt, rec.Restarts)
	}

	atts, err := r.Attempts("kept")
	if err != nil || len(atts) != 2 {
		t.Fatalf("Attempts: %v, %d attempts, want 2", err, len(atts))
	}
	viaRoot, err := ReadAttempts(r.root, "kept")
	if err != nil || len(viaRoot) != 2 || viaRoot[1].UID != atts[1].UID {
		t.Errorf("ReadAttempts: %v %+v", err, viaRoot)
	}
	for i, a := range atts {
		n := i + 1
		if a.Attempt != n || a.Reason != "Failed" || a.UID == s.UID {
			t.Errorf("attempt %d: %d %s uid %s", n, a.Attempt, a.Reason, a.UID)
		}
		if got := readFile(t, filepath.Join(r.AttemptDir("kept", n), a.Tasks[0].Steps[0].Log)); got != "attempt "+strconv.Itoa(n)+"\n" {
			t.Errorf("attempt %d's log file: %q", n, got)
		}
		rc, err := OpenAttemptTaskLog(r.root, "kept", n, a.Tasks[0])
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if want := "==> step-s <==\nattempt " + strconv.Itoa(n) + "\n"; err != nil || string(b) != want {
			t.Errorf("OpenAttemptTaskLog %d: %v %q, want %q", n, err, b, want)
		}
	}
	if atts, err := r.Attempts("unknown"); err != nil || len(atts) != 0 {
		t.Errorf("Attempts of an unknown run: %v %+v", err, atts)
	}
}

// helperEnv names the environment variables of TestHelperProcess.
const (
	helperRoot = "KILN_TEST_HELPER_ROOT"
	helperYAML = "KILN_TEST_HELPER_YAML"
)

// TestHelperProcess is not a test: run by TestRestartKillsLeftoverProcessGroups
// in a child process, it plays a worker that runs a PipelineRun (helperYAML)
// on a shared root (helperRoot) until it is SIGKILLed.
func TestHelperProcess(t *testing.T) {
	root := os.Getenv(helperRoot)
	if root == "" {
		t.Skip("a helper for other tests")
	}
	r, objs, logs := testRunner(t, Options{Isolation: IsolationNone, Root: root, Log: os.Stderr}, os.Getenv(helperYAML))
	out, err := r.Run(context.Background(), &objs.PipelineRuns[0], RunOptions{})
	t.Fatalf("the helper's run ended, but it should have been killed: %v %+v\n%s", err, out, logs)
}

// A worker SIGKILLed mid-step leaves the step's background processes
// running with PPID 1. The successor kills their process group before it
// starts the run again, keeps the killed attempt's directory, and records
// the restart.
func TestRestartKillsLeftoverProcessGroups(t *testing.T) {
	root, d := t.TempDir(), t.TempDir()
	doc := `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: crash}
spec:
  pipelineSpec:
    tasks:
    - name: t
      taskSpec:
        steps:
        - name: s
          image: x
          script: |
            if [ -e ` + d + `/pids ]; then
              # The successor: no process of the killed attempt may be left.
              read shell bg < ` + d + `/pids
              state=$(cut -d' ' -f3 /proc/$bg/stat 2>/dev/null || true)
              if [ -n "$state" ] && [ "$state" != Z ]; then echo "leftover $bg is alive ($state)"; exit 1; fi
              [ ! -e tick ] || { echo "tick in the new attempt's directory"; exit 1; }
              echo second
              exit 0
            fi
            echo first
            sleep 1000 &
            bg=$!
            tick="$PWD/tick" # by its path, as a build tool would write
            ( while :; do date >> "$tick"; sleep 0.02; done ) &
            echo "$$ $bg" > ` + d + `/pids.tmp && mv ` + d + `/pids.tmp ` + d + `/pids
            wait
`
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), helperRoot+"="+root, helperYAML+"="+doc)
	var helperOut syncBuffer
	cmd.Stdout, cmd.Stderr = &helperOut, &helperOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	waitFor(t, "the helper's step to start its background processes and log", time.Minute, func() bool {
		b, err := os.ReadFile(filepath.Join(d, "pids"))
		l, _ := os.ReadFile(filepath.Join(root, "runs", "crash", "logs", "t", "s.log"))
		return err == nil && strings.HasSuffix(string(b), "\n") && string(l) == "first\n"
	})
	pgid, bg := readPIDs(t, filepath.Join(d, "pids"))
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	killed = true
	// The step itself dies with the worker (Pdeathsig); its children do not.
	waitFor(t, "the step's shell to die with the worker", 10*time.Second, func() bool { return !alive(t, pgid) })
	if !alive(t, bg) {
		t.Fatalf("the background sleep %d died with the worker: the test shows nothing\n%s", bg, &helperOut)
	}
	t.Cleanup(func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })

	r, objs, logs := testRunner(t, Options{Isolation: IsolationNone, Root: root}, doc)
	s := runOne(t, r, &objs.PipelineRuns[0], logs)
	if s.Reason != "Succeeded" {
		t.Fatalf("the successor: %s\n%s", describe(s), logs)
	}
	if got := groupMembers(t, pgid); len(got) > 0 {
		t.Errorf("processes %v of the killed attempt's group %d survive", got, pgid)
	}
	if s.Attempt != 2 || len(s.Restarts) != 1 || s.Restarts[0].Attempt != 1 || s.Restarts[0].Reason != RestartWorkerGone ||
		s.Restarts[0].PreviousState != StateRunning || s.Restarts[0].At.IsZero() {
		t.Errorf("attempt %d, restarts %+v, want attempt 2 after attempt 1, %q while %s", s.Attempt, s.Restarts, RestartWorkerGone, StateRunning)
	}
	if got := readFile(t, r.LogFile("crash", "t", "s")); got != "second\n" {
		t.Errorf("the new attempt's log: %q", got)
	}

	// The killed attempt's directory is kept, with its log, its status and
	// what its background processes wrote until they were killed.
	old := r.AttemptDir("crash", 1)
	if got := readFile(t, filepath.Join(old, "logs", "t", "s.log")); got != "first\n" {
		t.Errorf("the kept attempt's log: %q", got)
	}
	if _, err := os.Stat(filepath.Join(old, "work", "crash-t", "tick")); err != nil {
		t.Errorf("the kept attempt lacks what its processes wrote: %v", err)
	}
	atts, err := r.Attempts("crash")
	if err != nil || len(atts) != 1 || atts[0].Attempt != 1 || atts[0].State != StateRunning {
		t.Errorf("Attempts: %v %+v", err, atts)
	}
}

// killLeftovers kills a recorded group that is still open, and leaves
// alone one recorded as ended and one whose ID now belongs to another
// leader (a reused ID).
func TestKillLeftoversChecksTheGroup(t *testing.T) {
	start := func() (*exec.Cmd, procStat) {
		t.Helper()
		cmd := exec.Command("sleep", "1000")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		st, err := readProcStat(cmd.Process.Pid)
		if err != nil || st.pgrp != cmd.Process.Pid {
			t.Fatalf("stat: %v %+v", err, st)
		}
		return cmd, st
	}
	ended, endedSt := start()
	reused, reusedSt := start()
	open, openSt := start()
	dir := t.TempDir()
	records := fmt.Sprintf("start %d %d\nstart %d %d\nend %d %d\nstart %d %d\nstart 7",
		endedSt.pgrp, endedSt.start, reusedSt.pgrp, reusedSt.start+1, endedSt.pgrp, endedSt.start, openSt.pgrp, openSt.start)
	if err := os.WriteFile(filepath.Join(dir, pgroupsFile), []byte(records), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := killLeftovers(dir); err != nil {
		t.Fatal(err)
	}
	if err := open.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("the open group's leader: %v, want it killed", err)
	}
	for _, c := range []*exec.Cmd{ended, reused} {
		if !alive(t, c.Process.Pid) {
			t.Errorf("%d was killed", c.Process.Pid)
		}
	}
}

func TestParseProcStat(t *testing.T) {
	line := "4242 (a) (b c) S 1 4240 4240 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1 2 3\n"
	st, ok := parseProcStat(line)
	if !ok || st != (procStat{pid: 4242, state: 'S', pgrp: 4240, start: 987654}) {
		t.Errorf("parseProcStat: %v %+v", ok, st)
	}
	if _, ok := parseProcStat("4242 (short) S 1 2"); ok {
		t.Error("a short line parsed")
	}
}

// A Run right after another of the same name returned finds the run
// finished, not in progress: with Replace, a failed run runs again rather
// than being joined as it ends.
func TestReplaceRightAfterTheRunEnded(t *testing.T) {
	r, objs, logs := testRunner(t, Options{Isolation: IsolationNone}, `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: again}
spec:
  pipelineSpec:
    tasks:
    - name: t
      taskSpec: {steps: [{name: s, image: x, script: "exit 1"}]}
`)
	for i := 1; i <= 30; i++ {
		out, err := r.Run(context.Background(), &objs.PipelineRuns[0], RunOptions{Replace: true})
		if err != nil {
			t.Fatalf("Run %d: %v\n%s", i, err, logs)
		}
		if out.Adopted || out.Status.Attempt != i {
			t.Fatalf("Run %d: adopted %v, attempt %d", i, out.Adopted, out.Status.Attempt)
		}
	}
}
