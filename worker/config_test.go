package worker

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigIsValid(t *testing.T) {
	c, err := LoadConfig("../deploy/kiln.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	p, flavours, err := c.Plan()
	if err != nil {
		t.Fatalf("deploy/kiln.yaml: %v", err)
	}
	if p.Image == nil || p.Image.PipelineSpec == nil || len(p.Image.PipelineSpec.Tasks) == 0 {
		t.Errorf("image pipeline not inlined: %+v", p.Image)
	}
	if p.Base.Timeout != time.Hour || p.Base.Attempts != 2 || p.Base.Backoff != time.Minute {
		t.Errorf("base = %+v", p.Base)
	}
	all, err := flavours.Set("all")
	if err != nil || len(all) != 11 {
		t.Errorf("flavours all: %d, %v", len(all), err)
	}
	if len(p.Publish) != 2 {
		t.Errorf("publish platforms = %v", p.Publish)
	}
}

func TestEnvOverrides(t *testing.T) {
	env := map[string]string{"KILN_NAMESPACE": "nightly", "KILN_PARALLELISM": "9", "KILN_TASK_QUEUE": "q"}
	c, err := LoadConfig("../deploy/kiln.yaml", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Namespace != "nightly" || c.Parallelism != 9 || c.TaskQueueName() != "q" {
		t.Errorf("config = %+v", c)
	}
	env["KILN_PARALLELISM"] = "many"
	if _, err := LoadConfig("../deploy/kiln.yaml", func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "KILN_PARALLELISM") {
		t.Errorf("error = %v, want one naming KILN_PARALLELISM", err)
	}
}

func TestValidateReportsEveryProblemWithItsPath(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("bad-pipeline.yaml", "apiVersion: tekton.dev/v1\nkind: Task\n")
	write("flavours.yaml", "flavour_sets:\n  - name: all\n    flavour_combinations:\n      - architectures: [amd64]\n        platform: [aws]\n")
	write("kiln.yaml", `
parallelism: -1
cancelMode: Stop
flavours: flavours.yaml
phases:
  base: {pipelineRef: base, pipelineFile: bad-pipeline.yaml}
  packages: {pipelineFile: bad-pipeline.yaml}
  test: {pipelineRef: t, params: {x: "{{.Nope"}, attempts: -2}
  publish:
    aws: {}
`)
	c, err := LoadConfig(filepath.Join(dir, "kiln.yaml"), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	err = c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		"namespace: required",
		"parallelism: -1",
		`cancelMode: "Stop"`,
		"phases.base: pipelineRef and pipelineFile are both set",
		"phases.packages.pipelineFile: ",
		"kind Task",
		"phases.test.params.x",
		"phases.test.attempts",
		"phases.image: required",
		"phases.publish.aws: exactly one of pipelineRef and pipelineFile",
		"flavours: flavours.yaml: line 5: field platform not found",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors do not say %q:\n%v", want, err)
		}
	}
}

func TestUnknownFieldIsNamed(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "kiln.yaml")
	if err := os.WriteFile(p, []byte("namespace: b\nparalelism: 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(p, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "paralelism") {
		t.Errorf("error = %v, want one naming the unknown field", err)
	}
}
