package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// procInfo is what /proc/<pid>/stat says of a process.
type procInfo struct {
	pid   int
	state byte
	pgrp  int
}

// processes lists the live processes (zombies, which run no code and only
// wait to be reaped, are left out).
func processes(t testing.TB) []procInfo {
	t.Helper()
	var out []procInfo
	for _, dir := range mustGlob(t, "/proc/[0-9]*") {
		b, err := os.ReadFile(filepath.Join(dir, "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may contain spaces.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 3 {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(dir))
		pgrp, _ := strconv.Atoi(f[2])
		if f[0][0] == 'Z' {
			continue
		}
		out = append(out, procInfo{pid: pid, state: f[0][0], pgrp: pgrp})
	}
	return out
}

func groupMembers(t testing.TB, pgid int) []int {
	var pids []int
	for _, p := range processes(t) {
		if p.pgrp == pgid {
			pids = append(pids, p.pid)
		}
	}
	return pids
}

func alive(t testing.TB, pid int) bool {
	for _, p := range processes(t) {
		if p.pid == pid {
			return true
		}
	}
	return false
}

// readPIDs waits until the step has written "<its pid> <background pid>".
func readPIDs(t *testing.T, file string) (shell, child int) {
	t.Helper()
	waitFor(t, "the step's pid file", time.Minute, func() bool {
		b, err := os.ReadFile(file)
		return err == nil && strings.HasSuffix(string(b), "\n")
	})
	f := strings.Fields(readFile(t, file))
	shell, _ = strconv.Atoi(f[0])
	child, _ = strconv.Atoi(f[1])
	if shell == 0 || child == 0 {
		t.Fatalf("pid file: %q", f)
	}
	return shell, child
}

func TestCancelKillsProcessGroups(t *testing.T) {
	d := t.TempDir()
	r, objs, logs := testRunner(t, Options{Isolation: IsolationNone /* the test watches its steps through host paths */}, `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: cancel}
spec:
  pipelineSpec:
    tasks:
    - name: long
      taskSpec:
        steps:
        - name: spawn
          image: x
          script: |
            sleep 1000 &
            ( sleep 1000 ) &
            echo "$$ $!" > `+d+`/pids.tmp && mv `+d+`/pids.tmp `+d+`/pids
            wait
    - name: after
      runAfter: [long]
      taskSpec: {steps: [{name: s, image: x, script: "touch `+d+`/after"}]}
    finally:
    - name: cleanup
      taskSpec: {steps: [{name: s, image: x, script: "touch `+d+`/finally"}]}
`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		out *Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := r.Run(ctx, &objs.PipelineRuns[0], RunOptions{})
		done <- result{out, err}
	}()
	pgid, child := readPIDs(t, filepath.Join(d, "pids"))
	if got := groupMembers(t, pgid); len(got) < 3 {
		t.Fatalf("before cancel the step's group has %v, want the shell and its two background children", got)
	}
	cancel()
	res := <-done
	if !errors.Is(res.err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", res.err)
	}
	s := res.out.Status
	if s.Reason != "Cancelled" || s.State != StateDone {
		t.Errorf("%s\n%s", describe(s), logs)
	}
	if long := task(t, s, "long"); long.Reason != "TaskRunCancelled" {
		t.Errorf("long: %s/%s", long.State, long.Reason)
	}
	// Run returns after the kill; the kernel may take a moment to tear the
	// processes down.
	waitFor(t, "the step's process group to be gone", 10*time.Second, func() bool {
		return len(groupMembers(t, pgid)) == 0
	})
	if alive(t, child) {
		t.Errorf("background grandchild %d survived", child)
	}
	for _, f := range []string{"after", "finally"} {
		if _, err := os.Stat(filepath.Join(d, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s ran after cancellation", f)
		}
	}
	// The recorded run is the cancelled one.
	rec, err := readStatus(r.RunDir("cancel"))
	if err != nil || rec.Reason != "Cancelled" {
		t.Errorf("status.json: %v %+v", err, rec)
	}
}

func TestStepEndKillsLeftovers(t *testing.T) {
	d := t.TempDir()
	s, _, logs := runYAML(t, Options{Isolation: IsolationNone /* the test watches its steps through host paths */}, `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: leftovers}
spec:
  pipelineSpec:
    tasks:
    - name: t
      taskSpec:
        steps:
        - name: spawn
          image: x
          script: |
            sleep 1000 &
            echo "$$ $!" > `+d+`/pids
`)
	if s.Reason != "Succeeded" {
		t.Fatalf("%s\n%s", describe(s), logs)
	}
	pgid, child := readPIDs(t, filepath.Join(d, "pids"))
	waitFor(t, "the step's leftovers to be gone", 10*time.Second, func() bool {
		return len(groupMembers(t, pgid)) == 0 && !alive(t, child)
	})
}

func TestCancelModes(t *testing.T) {
	tests := []struct {
		mode        string
		wantLong    string // reason of the running DAG task
		wantPending string // state of the DAG task that had not started
		wantFinally string
	}{
		{"CancelledRunFinally", "TaskRunCancelled", "Skipped", "Succeeded"},
		{"StoppedRunFinally", "Succeeded", "Skipped", "Succeeded"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			d := t.TempDir()
			r, objs, logs := testRunner(t, Options{Isolation: IsolationNone /* the test watches its steps through host paths */}, `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: modes}
spec:
  pipelineSpec:
    tasks:
    - name: long
      taskSpec:
        steps:
        - name: wait
          image: x
          script: |
            touch `+d+`/started
            i=0; until [ -e `+d+`/go ] || [ $i -ge 3000 ]; do sleep 0.02; i=$((i+1)); done
    - name: next
      runAfter: [long]
      taskSpec: {steps: [{name: s, image: x, script: "true"}]}
    finally:
    - name: cleanup
      taskSpec: {steps: [{name: s, image: x, script: "true"}]}
`)
			done := make(chan *Outcome, 1)
			go func() {
				out, err := r.Run(context.Background(), &objs.PipelineRuns[0], RunOptions{})
				if err != nil {
					t.Error(err)
				}
				done <- out
			}()
			waitFor(t, "long to start", time.Minute, func() bool {
				_, err := os.Stat(filepath.Join(d, "started"))
				return err == nil
			})
			if !r.Cancel("modes", pipelinev1Status(tt.mode)) {
				t.Fatal("Cancel found no run")
			}
			// A stopped run lets the running task finish: release it.
			waitFor(t, "the request to be seen", 10*time.Second, func() bool {
				s, _ := r.Status("modes")
				return task(t, s, "next").State == "Skipped" || task(t, s, "long").State != "Running"
			})
			if err := os.WriteFile(filepath.Join(d, "go"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			s := (<-done).Status
			if s.Reason != "Cancelled" {
				t.Errorf("%s\n%s", describe(s), logs)
			}
			if got := task(t, s, "long").Reason; got != tt.wantLong {
				t.Errorf("long: %s, want %s", got, tt.wantLong)
			}
			if got := task(t, s, "next").State; got != tt.wantPending {
				t.Errorf("next: %s, want %s", got, tt.wantPending)
			}
			if got := task(t, s, "cleanup").State; got != tt.wantFinally {
				t.Errorf("cleanup: %s, want %s", got, tt.wantFinally)
			}
		})
	}
}

func pipelinev1Status(s string) pipelinev1.PipelineRunSpecStatus {
	return pipelinev1.PipelineRunSpecStatus(s)
}
