package notify

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/workflows"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func failedBuild() Message {
	t0 := time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)
	return Message{
		Event: EventFailed, State: workflows.StateFailed, Error: "image: 1 of 3 flavours failed: gcp-gardener_prod-amd64",
		BuildID: "build/main/1443.3", Repo: "https://github.com/gardenlinux/gardenlinux", Branch: "main",
		Commit: "4f1c2e9d8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e", Version: "1443.3",
		Phases: []workflows.PhaseState{
			{Name: "base", State: workflows.StateSucceeded, PipelineRun: "build-main-1443-3-base-a1-1a2b3c4d", Dashboard: "https://tekton.example.com/#/namespaces/builds/pipelineruns/build-main-1443-3-base-a1-1a2b3c4d", Start: t0, End: t0.Add(3 * time.Minute)},
			{Name: "packages", State: workflows.StateSkipped, Reason: "packages 1443.0 exist"},
			{Name: "image", State: workflows.StateFailed, Error: "1 of 3 flavours failed: gcp-gardener_prod-amd64"},
			{Name: "publish", State: workflows.StateSkipped, Reason: "target publish not requested"},
		},
		Flavours: []workflows.FlavourState{
			{Name: "aws-gardener_prod-amd64", State: workflows.StateSucceeded},
			{Name: "gcp-gardener_prod-amd64", State: workflows.StateFailed, Error: "pipelinerun builds/x Failed: Tasks Completed: 1 (Failed: 1); failed tasks: build-image (step build exited 1)"},
			{Name: "kvm-gardener_prod-amd64", State: workflows.StateTestFailed, Error: "test: unit failed"},
		},
		Links:      []Link{{"Temporal UI", "https://temporal.example.com/namespaces/default/workflows/build%2Fmain%2F1443.3"}, {"Tekton base", "https://tekton.example.com/#/namespaces/builds/pipelineruns/build-main-1443-3-base-a1-1a2b3c4d"}},
		Duration:   42 * time.Minute,
		Unresolved: []string{"@ghost"},
	}
}

func TestGolden(t *testing.T) {
	tpl, err := LoadTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	subject, text, html, err := tpl.Render(failedBuild())
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]string{"failed.subject": subject + "\n", "failed.txt": text, "failed.html": html} {
		path := filepath.Join("testdata", "golden", name)
		if *update {
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test -update once)", err)
		}
		if got != string(want) {
			t.Errorf("%s differs from %s; run go test -update and review the diff:\n%s", name, path, got)
		}
	}
}

func TestHTMLIsEscaped(t *testing.T) {
	tpl, _ := LoadTemplates("")
	m := failedBuild()
	m.Error = `<script>alert("x")</script>`
	_, _, html, err := tpl.Render(m)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(html, "<script>") {
		t.Error("error text reached the HTML unescaped")
	}
}

func TestTemplatesOverride(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "subject.tmpl"), []byte("Build {{.BuildID}}: {{.State}}"), 0o644); err != nil {
		t.Fatal(err)
	}
	tpl, err := LoadTemplates(dir)
	if err != nil {
		t.Fatal(err)
	}
	subject, text, _, err := tpl.Render(failedBuild())
	if err != nil || subject != "Build build/main/1443.3: Failed" || !strings.Contains(text, "Phases:") {
		t.Errorf("subject %q, err %v", subject, err)
	}
}
