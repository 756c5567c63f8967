package local

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testRunner returns a Runner over a fresh root for the objects in yamlDocs,
// with its live log and messages kept for failure reports.
func testRunner(t testing.TB, opts Options, yamlDocs ...string) (*Runner, Objects, *syncBuffer) {
	t.Helper()
	var objs Objects
	for _, y := range yamlDocs {
		o, err := Decode(strings.NewReader(y))
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		objs.PipelineRuns = append(objs.PipelineRuns, o.PipelineRuns...)
		objs.Pipelines = append(objs.Pipelines, o.Pipelines...)
		objs.Tasks = append(objs.Tasks, o.Tasks...)
		objs.ConfigMaps = append(objs.ConfigMaps, o.ConfigMaps...)
		objs.Secrets = append(objs.Secrets, o.Secrets...)
	}
	if opts.Root == "" {
		opts.Root = t.TempDir()
	}
	logs := &syncBuffer{}
	if opts.Log == nil {
		opts.Log = logs
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	r, err := NewRunner(objs.Options(opts))
	if err != nil {
		t.Fatalf("NewRunner: %v", err)
	}
	return r, objs, logs
}

// runOne runs pr and fails the test on a runner error.
func runOne(t testing.TB, r *Runner, pr *pipelinev1.PipelineRun, logs *syncBuffer) RunStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := r.Run(ctx, pr, RunOptions{})
	if err != nil {
		t.Fatalf("Run %s: %v\nlogs:\n%s", pr.Name, err, logs)
	}
	return out.Status
}

// task returns the status of the named task.
func task(t testing.TB, s RunStatus, name string) TaskStatus {
	t.Helper()
	for _, ts := range s.Tasks {
		if ts.Name == name {
			return ts
		}
	}
	t.Fatalf("no task %q in %+v", name, s.Tasks)
	return TaskStatus{}
}

// describe formats a status for failure messages.
func describe(s RunStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "run %s: %s %s: %s\n", s.Name, s.State, s.Reason, s.Message)
	for _, t := range s.Tasks {
		fmt.Fprintf(&b, "  task %s: %s %s: %s\n", t.Name, t.State, t.Reason, t.Message)
		for _, st := range t.Steps {
			code := "-"
			if st.ExitCode != nil {
				code = strconv.Itoa(*st.ExitCode)
			}
			fmt.Fprintf(&b, "    step %s: %s exit=%s %s\n", st.Name, st.State, code, st.Message)
		}
	}
	return b.String()
}

// readFile returns a file's content.
func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(b)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustGlob(t testing.TB, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
