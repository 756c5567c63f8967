//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunChecksThePackagesVersion runs `kiln run --packages-version` as an
// operator would, against a local-executor worker whose packages.check
// reads an apt repository serving Garden Linux's real InRelease of
// 1877.14: a version the repository lacks is refused before any step
// starts, naming the version and what answered; one it has builds, with
// kiln status saying what was checked.
func TestRunChecksThePackagesVersion(t *testing.T) {
	inRelease, err := os.ReadFile("../../activities/packages/testdata/gardenlinux-1877.14.InRelease")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /gardenlinux/dists/1877.14/InRelease", func(w http.ResponseWriter, r *http.Request) { w.Write(inRelease) })
	repo := httptest.NewServer(mux)
	defer repo.Close()

	dir := t.TempDir()
	write := func(name, s string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("flavours.yaml", `flavour_sets:
  - name: one
    flavour_combinations:
      - architectures: [amd64]
        platforms: [kvm]
        modifiers: [[_prod]]
`)
	write("image.yaml", `apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: image}
spec:
  params: [{name: packages, type: string}]
  tasks:
  - name: build
    params: [{name: packages, value: $(params.packages)}]
    taskSpec:
      params: [{name: packages, type: string}]
      steps:
      - name: build
        image: busybox
        script: |
          #!/bin/sh
          echo "building with packages $(params.packages)"
`)
	queue := fmt.Sprintf("packages-%x", rand.Uint32())
	cfg := write("kiln.yaml", `executor: local
local: {dir: local, isolation: none}
flavours: flavours.yaml
packages:
  check:
    url: "`+repo.URL+`/gardenlinux/dists/{{.PackagesVersion}}/InRelease"
phases:
  image:
    pipelineFile: image.yaml
    params: {packages: "{{.PackagesVersion}}"}
`)
	runWorker(t, cfg, queue)
	branch := fmt.Sprintf("pkg-%x", rand.Uint32())
	run := func(version, packages string) (string, error) {
		return runKiln(t, "run", "--task-queue", queue, "--repo", "https://github.com/gardenlinux/gardenlinux", "--branch", branch,
			"--commit", "75df9f401a842914563f312899ec3ce34b24515c", "--version", version, "--flavour-set", "one",
			"--packages-version", packages, "--wait", "--poll", "200ms")
	}

	out, err := run("1877.99", "1877.99")
	want := "packages 1877.99 not found: GET " + repo.URL + "/gardenlinux/dists/1877.99/InRelease answered 404"
	if err == nil || !strings.Contains(out, want) {
		t.Fatalf("kiln run --packages-version 1877.99: %v, want a failure saying %q:\n%s", err, want, out)
	}
	if runs, _ := filepath.Glob(filepath.Join(dir, "local", "runs", "*")); len(runs) != 0 {
		t.Errorf("runs started for a missing packages version: %v", runs)
	}
	// kiln run's own check refused it: no Build was started at all.
	if _, err := env.client.DescribeWorkflowExecution(context.Background(), "build/"+branch+"/1877.99", ""); err == nil {
		t.Error("a Build was started for a missing packages version; kiln run's check should refuse it first")
	}

	if out, err := run("1877.14", "1877.14"); err != nil {
		t.Fatalf("kiln run --packages-version 1877.14: %v\n%s", err, out)
	}
	status := kilnCLI(t, "status", "build/"+branch+"/1877.14")
	want = "packages 1877.14 exist: GET " + repo.URL + "/gardenlinux/dists/1877.14/InRelease answered 200, Codename 1877.14"
	if !strings.Contains(status, want) {
		t.Errorf("kiln status lacks %q:\n%s", want, status)
	}
	logs := kilnCLI(t, "logs", "--config", cfg, "build/"+branch+"/1877.14")
	if !strings.Contains(logs, "building with packages 1877.14") {
		t.Errorf("the image pipeline did not get {{.PackagesVersion}}:\n%s", logs)
	}
}
