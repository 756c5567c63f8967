package worker

import (
	"fmt"
	"github.com/kiln-build/kiln/workflows/flavour"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLocalExecutorConfig(t *testing.T) {
	c := loadYAML(t, `
executor: local
local: {dir: runs, pipelines: [tekton], maxParallel: 2}
phases: {image: {pipelineRef: kiln-image}}
`)
	if err := os.MkdirAll(filepath.Join(c.dir, "tekton"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.dir, "tekton", "image.yaml"), []byte(`apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: kiln-image}
spec:
  tasks:
  - {name: build, taskRef: {name: build}}
---
apiVersion: tekton.dev/v1
kind: Task
metadata: {name: build}
spec:
  steps: [{name: s, image: x, script: "true"}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	p, _, err := c.Plan()
	if err != nil {
		t.Fatalf("a local config needs no namespace: %v", err)
	}
	if p.Namespace == "" {
		t.Error("the plan has no namespace; runs carry one")
	}
	opts, err := c.LocalOptions(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Root != filepath.Join(c.dir, "runs") || opts.MaxParallel != 2 || len(opts.Pipelines) != 1 || len(opts.Tasks) != 1 || opts.Archive != nil {
		t.Errorf("options: root %s, parallel %d, %d pipelines, %d tasks, archive %v", opts.Root, opts.MaxParallel, len(opts.Pipelines), len(opts.Tasks), opts.Archive)
	}
}

func TestExecutorProblemsAreNamed(t *testing.T) {
	for yaml, want := range map[string]string{
		"executor: docker\nphases: {image: {pipelineRef: i}}":                          `executor: "docker": want tekton or local`,
		"namespace: b\nlocal: {dir: x}\nphases: {image: {pipelineRef: i}}":             "local: set, but executor is not local",
		"executor: local\nlocal: {maxParallel: -1}\nphases: {image: {pipelineRef: i}}": "local.maxParallel: -1 is negative",
		"phases: {image: {pipelineRef: i}}":                                            "namespace: required",
	} {
		if err := loadYAML(t, yaml).Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", yaml, err, want)
		}
	}
	c := loadYAML(t, "executor: local\nlocal: {pipelines: [missing.yaml]}\nphases: {image: {pipelineRef: i}}")
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "local.pipelines[0]") {
		t.Errorf("error = %v, want one naming local.pipelines[0]", err)
	}
}

func TestLocalExecutorRefusesWhatItCannotRun(t *testing.T) {
	c := loadYAML(t, `
executor: local
phases:
  image: {pipelineFile: image.yaml, params: {flavour: "{{.Flavour.Name}}"}}
  test: {pipelineRef: missing}
`)
	if err := os.WriteFile(filepath.Join(c.dir, "image.yaml"), []byte(`apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: image}
spec:
  params: [{name: flavour}]
  tasks:
  - name: build
    taskSpec:
      sidecars: [{name: registry, image: registry:2}]
      steps: [{name: s, image: x, script: "echo $(params.flavour)"}]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	err := c.Validate()
	for _, want := range []string{"phases.image: the local executor cannot run it", "sidecars", "phases.test: the local executor cannot run it"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error = %v, want %q", err, want)
		}
	}
}

func TestTheDevDemoConfigIsValid(t *testing.T) {
	c, err := LoadConfig("../deploy/dev/kiln.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	p, flavours, err := c.Plan()
	if err != nil {
		t.Fatalf("deploy/dev/kiln.yaml: %v", err)
	}
	set, err := flavours.Set("all")
	if set = flavour.Buildable(set); err != nil || len(set) != 6 || p.Storage == nil || !c.IsLocal() {
		t.Errorf("dev file: %d buildable flavours (%v), storage %v, local %v", len(set), err, p.Storage, c.IsLocal())
	}
}

// TestSecondWorkerOnARootIsRefused: two local workers on one local.dir
// would mix their runs, locks and task queue; the second is refused,
// naming the first's pid and the fix.
func TestSecondWorkerOnARootIsRefused(t *testing.T) {
	root := t.TempDir()
	release, err := lockRoot(root)
	if err != nil {
		t.Fatal(err)
	}
	_, err = lockRoot(root)
	want := fmt.Sprintf("is in use by another worker (pid %d); give each local worker its own directory", os.Getpid())
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("second lock: %v, want %q", err, want)
	}
	release()
	again, err := lockRoot(root)
	if err != nil {
		t.Fatalf("after the first worker released the root: %v", err)
	}
	again()
}
