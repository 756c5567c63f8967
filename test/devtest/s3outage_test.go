//go:build e2e

package devtest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kiln-build/kiln/workflows"
)

// TestDrillS3OutageDuringStageAndArchive is issue 12's drill of S3 stopped
// for 60 s while a build runs: test runs end during the outage (so their
// logs are archived while S3 is away), one flavour's image step (slower
// than the others) starts its `kiln stage` upload during the outage, and
// a `kiln stage` started by hand during the outage completes once S3 is
// back, reporting its waits. The build completes and every log is
// archived. Before, kiln stage gave up after the AWS SDK's three
// attempts, and log archiving had about 30 s of retries.
func TestDrillS3OutageDuringStageAndArchive(t *testing.T) {
	const outage = 60 * time.Second
	s := startDrillStack(t)
	// The test phase sleeps testDelay; the arm64 flavour's image sleeps
	// slow: still building when the others' tests run. All six flavours
	// at once.
	test := `apiVersion: tekton.dev/v1
kind: Pipeline
metadata:
  name: kiln-drill-test
spec:
  params:
  - {name: flavour, type: string}
  - {name: artifacts, type: string}
  - {name: delay, type: string, default: "0"}
  tasks:
  - name: smoke
    taskSpec:
      steps:
      - name: test
        image: ghcr.io/gardenlinux/builder:latest
        script: |
          #!/bin/sh
          set -eu
          echo "testing $(params.flavour)"
          sleep $(params.delay)
          echo "tested $(params.flavour)"
`
	if err := os.WriteFile(filepath.Join(s.demo, "tekton", "drill-test.yaml"), []byte(test), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := s.workerConfig("worker", func(cfg map[string]any) {
		cfg["parallelism"] = 6
		cfg["local"].(map[string]any)["maxParallel"] = 8
		phases := cfg["phases"].(map[string]any)
		phases["image"].(map[string]any)["params"].(map[string]any)["delay"] = `{{if eq .Flavour.Arch "arm64"}}{{or (index .Params "slow") "0"}}{{else}}0{{end}}`
		phases["test"] = map[string]any{
			"pipelineFile": "tekton/drill-test.yaml",
			"params": map[string]any{
				"flavour": "{{.Flavour.Name}}", "artifacts": "{{.Results.image.artifacts}}",
				"delay": `{{or (index .Params "testDelay") "0"}}`,
			},
		}
	})
	s.startWorker("worker", cfg)
	s.waitPollers(1)

	type result struct {
		out string
		err error
	}
	build := make(chan result, 1)
	id := "build/drill/s3.1"
	go func() {
		_, out, err := s.run("s3.1", "--target", "build", "--target", "manifest", "--target", "tests",
			"--param", "slow=30", "--param", "testDelay=6")
		build <- result{out, err}
	}()
	const slow = "kvm-gardener_prod-arm64"
	var stopped time.Time
	waitUntil(t, 2*time.Minute, "a test run in progress", func() bool {
		select {
		case r := <-build:
			t.Fatalf("the build ended before the outage: %v\n%s", r.err, r.out)
		default:
		}
		for _, f := range s.flavourPhases(id) {
			if phaseOf(f, workflows.PhaseTest).State == workflows.StateRunning {
				s.s3.Stop()
				stopped = time.Now()
				return true
			}
		}
		return false
	})
	t.Logf("S3 stopped while a test run is in progress")
	for _, f := range s.flavourPhases(id) {
		if f.Name == slow && phaseOf(f, workflows.PhaseImage).State != workflows.StateRunning {
			t.Fatalf("%s's image is %q at the outage, want it still building", slow, phaseOf(f, workflows.PhaseImage).State)
		}
	}

	// kiln stage by hand, started while S3 is down.
	file := filepath.Join(t.TempDir(), "image.tar.gz")
	content := bytes.Repeat([]byte("kiln drill\n"), 1000)
	if err := os.WriteFile(file, content, 0o644); err != nil {
		t.Fatal(err)
	}
	var stageOut, stageErr bytes.Buffer
	stage := exec.Command(s.bin, "stage", "--bucket", "staging", "--prefix", "drill/", file)
	stage.Env = s.env()
	stage.Stdout, stage.Stderr = &stageOut, &stageErr
	stage.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := stage.Start(); err != nil {
		t.Fatal(err)
	}
	stageDone := make(chan error, 1)
	go func() { stageDone <- stage.Wait() }()

	time.Sleep(time.Until(stopped.Add(outage)))
	var stageErrc error
	stageEarly := false
	select {
	case stageErrc = <-stageDone:
		stageEarly = true
		t.Errorf("kiln stage ended while S3 was down: %v\n%s", stageErrc, stageErr.String())
	default:
	}
	if err := s.s3.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	t.Logf("S3 restarted after %v", restarted.Sub(stopped).Round(time.Second))

	if !stageEarly {
		select {
		case stageErrc = <-stageDone:
		case <-time.After(2 * time.Minute):
			stage.Process.Kill()
			t.Fatalf("kiln stage did not finish within 2m of S3's return:\n%s", stageErr.String())
		}
		if stageErrc != nil {
			t.Errorf("kiln stage started during the outage: %v\n%s", stageErrc, stageErr.String())
		}
		if n := strings.Count(stageErr.String(), "s3 unreachable: "); n < 3 || !strings.Contains(stageErr.String(), "retrying image.tar.gz in ") ||
			!strings.Contains(stageErr.String(), "staged "+file+" as s3://staging/drill/image.tar.gz") {
			t.Errorf("kiln stage's stderr does not report its waits (%d) and the upload:\n%s", n, stageErr.String())
		}
		obj, err := s.s3.Client().GetObject(context.Background(), &s3.GetObjectInput{Bucket: aws.String("staging"), Key: aws.String("drill/image.tar.gz")})
		if err != nil {
			t.Fatalf("the staged object: %v", err)
		}
		var got bytes.Buffer
		got.ReadFrom(obj.Body)
		obj.Body.Close()
		if !bytes.Equal(got.Bytes(), content) {
			t.Errorf("the staged object has %d bytes, want the file's %d", got.Len(), len(content))
		}
	}

	var r result
	select {
	case r = <-build:
	case <-time.After(5 * time.Minute):
		t.Fatal("the build did not end within 5m of S3's return")
	}
	if r.err != nil {
		t.Fatalf("kiln run: %v\n%s", r.err, r.out)
	}
	t.Logf("the build ended %v after S3's return", time.Since(restarted).Round(time.Second))
	p := s.progress(id)
	if p.State != workflows.StateSucceeded {
		t.Fatalf("build %s: %s %s", id, p.State, p.Error)
	}
	runs := checkArchived(t, p)
	// The drill did what it says: runs ended while S3 was down, so their
	// logs were archived through the outage.
	during := 0
	for _, r := range runs {
		if r.End.After(stopped) && r.End.Before(restarted) {
			during++
		}
		if r.Attempt > 1 {
			t.Errorf("%s %s: attempt %d, want the outage ridden out by the first", r.title, r.PipelineRun, r.Attempt)
		}
	}
	if during == 0 {
		t.Errorf("no run ended during the outage (%v to %v): no archive met it", stopped.Format(time.TimeOnly), restarted.Format(time.TimeOnly))
	}
	t.Logf("%d of %d runs ended during the outage", during, len(runs))
	// The slow flavour's upload step waited for S3, and said so.
	logs, notes, err := s.kiln("logs", id, "--config", cfg, "--task", "build-image")
	if err != nil {
		t.Fatalf("kiln logs: %v\n%s", err, notes)
	}
	section := logs[strings.Index(logs, "=== image/"+slow+" "):]
	if i := strings.Index(section[1:], "\n=== "); i >= 0 {
		section = section[:i+1]
	}
	if !strings.Contains(section, "s3 unreachable: ") || !strings.Contains(section, "staged ") {
		t.Errorf("%s's upload step does not report waiting for S3:\n%s", slow, section)
	}
}

// flavourPhases asks the build's flavour workflows for their phases: the
// build's own progress has them only once a flavour is done.
func (s *drillStack) flavourPhases(id string) []workflows.FlavourState {
	var out []workflows.FlavourState
	v, err := s.client.QueryWorkflow(context.Background(), id, "", workflows.QueryProgress)
	var p workflows.Progress
	if err != nil || v.Get(&p) != nil {
		return nil
	}
	for _, f := range p.Flavours {
		if f.Workflow == "" {
			continue
		}
		v, err := s.client.QueryWorkflow(context.Background(), f.Workflow, "", workflows.QueryProgress)
		if err != nil || v.Get(&f.Phases) != nil {
			continue
		}
		out = append(out, f)
	}
	return out
}
