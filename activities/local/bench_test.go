package local

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkStepOverhead measures what the runner adds to each step: a
// task of benchSteps steps, each running the same small script, against
// running that script benchSteps times directly (/bin/sh on a script file,
// output to a file). It reports the runner's time per step, the direct
// time per step, and their difference as ms/step-overhead.
func BenchmarkStepOverhead(b *testing.B) {
	for _, isolation := range []string{IsolationNamespaces, IsolationNone} {
		b.Run(isolation, func(b *testing.B) { benchmarkStepOverhead(b, isolation) })
	}
}

func benchmarkStepOverhead(b *testing.B, isolation string) {
	const benchSteps = 50
	const script = "echo step output\n"
	dir := b.TempDir()
	file := filepath.Join(dir, "script")
	if err := os.WriteFile(file, []byte("#!/bin/sh\nset -e\n"+script), 0o755); err != nil {
		b.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, "out"))
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()

	r, err := NewRunner(Options{Root: filepath.Join(dir, "root"), Isolation: isolation, Log: io.Discard, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	steps := make([]pipelinev1.Step, benchSteps)
	for i := range steps {
		steps[i] = pipelinev1.Step{Name: fmt.Sprintf("s%d", i), Image: "busybox", Script: script}
	}
	spec := &pipelinev1.PipelineSpec{Tasks: []pipelinev1.PipelineTask{{
		Name: "t", TaskSpec: &pipelinev1.EmbeddedTask{TaskSpec: pipelinev1.TaskSpec{Steps: steps}},
	}}}

	var direct, runner, directCPU, runnerCPU time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cpu0 := cpuTime(b)
		start := time.Now()
		for range benchSteps {
			cmd := exec.Command("/bin/sh", file)
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Run(); err != nil {
				b.Fatal(err)
			}
		}
		direct += time.Since(start)
		cpu1 := cpuTime(b)
		directCPU += cpu1 - cpu0

		pr := &pipelinev1.PipelineRun{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%d", i)},
			Spec:       pipelinev1.PipelineRunSpec{PipelineSpec: spec},
		}
		start = time.Now()
		o, err := r.Run(context.Background(), pr, RunOptions{})
		runner += time.Since(start)
		runnerCPU += cpuTime(b) - cpu1
		if err != nil || o.Status.Reason != "Succeeded" {
			b.Fatalf("run: %v %s", err, describe(o.Status))
		}
		if got := readFile(b, r.LogFile(pr.Name, "t", "s49")); !strings.HasPrefix(got, "step output") {
			b.Fatalf("last step printed %q", got)
		}
	}
	b.StopTimer()
	perStep := func(d time.Duration) float64 { return float64(d) / float64(b.N*benchSteps) / float64(time.Millisecond) }
	b.ReportMetric(perStep(runner), "ms/step-runner")
	b.ReportMetric(perStep(direct), "ms/step-direct")
	b.ReportMetric(perStep(runner-direct), "ms/step-overhead")
	// CPU time (this process and its reaped children) is less sensitive to
	// other load on the machine than wall time.
	b.ReportMetric(perStep(runnerCPU-directCPU), "cpu-ms/step-overhead")
}

// cpuTime is the user and system time of this process and its reaped
// children so far.
func cpuTime(b *testing.B) time.Duration {
	var self, children syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &self); err != nil {
		b.Fatal(err)
	}
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children); err != nil {
		b.Fatal(err)
	}
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(children.Utime) + tv(children.Stime)
}
