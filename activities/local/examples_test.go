package local

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// tektonModule is the pinned Tekton module whose examples are the corpus.
const tektonModule = "github.com/tektoncd/pipeline"

// tektonModuleDir returns the module cache directory of the Tekton version
// go.mod pins, downloading it if needed, so CI uses exactly that version.
func tektonModuleDir(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "mod", "download", "-json", tektonModule).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go mod download %s: %v: %s%s", tektonModule, err, ee.Stderr, out)
		}
		t.Fatalf("go mod download %s: %v", tektonModule, err)
	}
	var m struct{ Version, Dir, Error string }
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("go mod download: %v: %s", err, out)
	}
	if m.Error != "" || m.Dir == "" {
		t.Fatalf("go mod download %s: %s", tektonModule, m.Error)
	}
	if m.Version != "v1.15.1" {
		t.Fatalf("go.mod pins %s %s; the example lists below were made for v1.15.1: review them for the new version", tektonModule, m.Version)
	}
	return m.Dir
}

// examplePass lists the examples (relative to examples/v1/pipelineruns)
// that run on the local runner, with the reason every PipelineRun in the
// file must end with. Tekton's own example test (test/examples_test.go)
// expects every example to succeed, i.e. its Succeeded condition to be
// True: reason Succeeded, or Completed when a task was skipped.
var examplePass = map[string]exampleWant{
	"4808-regression.yaml":                                       {reason: succeeded},
	"6139-regression.yaml":                                       {reason: completed},
	"ignore-step-error.yaml":                                     {reason: succeeded},
	"mapping-workspaces.yaml":                                    {reason: succeeded},
	"pipeline-object-param-and-result.yaml":                      {reason: succeeded},
	"pipeline-object-results.yaml":                               {reason: succeeded},
	"pipeline-with-displayname.yaml":                             {reason: succeeded},
	"pipelinerun-array-results-substitution.yaml":                {reason: succeeded},
	"pipelinerun-param-array-indexing.yaml":                      {reason: succeeded},
	"pipelinerun-results-with-params.yaml":                       {reason: succeeded},
	"pipelinerun-results.yaml":                                   {reason: succeeded},
	"pipelinerun-task-execution-status.yaml":                     {reason: completed},
	"pipelinerun-using-different-subpaths-of-workspace.yaml":     {reason: succeeded},
	"pipelinerun-using-parameterized-subpath-of-workspace.yaml":  {reason: succeeded},
	"pipelinerun-with-extra-params.yaml":                         {reason: succeeded},
	"pipelinerun-with-final-results.yaml":                        {reason: succeeded},
	"pipelinerun-with-parallel-tasks-using-pvc.yaml":             {reason: succeeded},
	"pipelinerun-with-params.yaml":                               {reason: succeeded},
	"pipelinerun-with-pipelinespec-and-taskspec.yaml":            {reason: succeeded},
	"pipelinerun-with-pipelinespec.yaml":                         {reason: succeeded},
	"pipelinerun-with-task-timeout-override.yaml":                {reason: succeeded},
	"pipelinerun-with-when-expressions.yaml":                     {reason: completed},
	"propagating-workspaces-in-pipelines.yaml":                   {reason: succeeded},
	"propagating-workspaces.yaml":                                {reason: succeeded},
	"propagating_params_implicit_parameters.yaml":                {reason: succeeded},
	"propagating_params_in_pipeline.yaml":                        {reason: succeeded},
	"propagating_params_with_scope_precedence.yaml":              {reason: succeeded},
	"propagating_params_with_scope_precedence_default_only.yaml": {reason: succeeded},
	"propagating_results_implicit_resultref.yaml":                {reason: succeeded},
	"propagating_workspaces_with_referenced_resources.yaml":      {reason: succeeded},
	"task_results_example.yaml":                                  {reason: succeeded},
	"using_context_variables.yaml":                               {reason: succeeded},
	"workspace-from-volumeclaimtemplate.yaml":                    {reason: succeeded},
	"workspaces-projected.yaml":                                  {reason: succeeded},
	"workspaces.yaml":                                            {reason: succeeded},

	"beta/7392-regression.yaml": {reason: succeeded},
	// Step-level workspaces: only its first step mounts the Secret, at /creds.
	"beta/isolated-workspaces.yaml":       {reason: succeeded},
	"beta/pipeline-emitting-results.yaml": {reason: succeeded},
	// Its finally script tests $(context.task2.status), which is no Tekton
	// variable: the shell runs it as a command substitution and gets "".
	// busybox ash (the image's sh) and dash reject the malformed test and
	// go on; bash evaluates it and fails. So it runs with /bin/sh.
	"beta/pipeline-with-when-expressions-using-array-results.yaml": {reason: completed, shell: "/bin/sh"},

	// In alpha/, but it uses no alpha feature: results larger than a
	// termination message, which the local runner does not limit.
	"alpha/pipelinerun-large-results.yaml": {reason: succeeded},

	// Tekton's CI skips no-ci/; these run here all the same.
	"no-ci/limitrange.yaml":               {reason: succeeded},
	"no-ci/pipelinerun-taskrunspecs.yaml": {reason: succeeded},
}

const (
	succeeded = "Succeeded"
	completed = "Completed"
)

// exampleWant is what an example's PipelineRuns must end with.
type exampleWant struct {
	reason string
	// shell runs scripts without a shebang; default /bin/bash. The
	// examples' images are alpine, busybox and bash, whose /bin/sh (busybox
	// ash) accepts [[ ]] and ==; with the host's dash those checks would
	// fail, or pass without checking anything.
	shell string
}

// exampleExcluded lists the examples the local runner does not run, and
// why.
var exampleExcluded = map[string]string{
	"optional-workspaces.yaml":                           "runs node (the image's tool; not on a plain host)",
	"pipelinerun-with-final-tasks.yaml":                  "runs /ko-app/git-init from the git-clone image and clones from GitHub",
	"pipelinerun.yaml":                                   "runs git-init and kaniko from their images (kaniko's step has no command: it relies on the image's entrypoint) and pushes to a registry",
	"stepaction-params.yaml":                             "uses a StepAction (steps[].ref), not supported",
	"using-optional-workspaces-in-when-expressions.yaml": "its script's shebang is #!/usr/bin/env ash (busybox ash, not on a plain host)",

	"beta/git-resolver.yaml":                                                "remote resolution (git resolver), not supported",
	"beta/http-resolver.yaml":                                               "remote resolution (http resolver), not supported",
	"beta/http-resolver-credentials.yaml":                                   "remote resolution (http resolver), not supported",
	"beta/ignore-task-error.yaml":                                           "uses matrix, not supported",
	"beta/pipelinerun-with-matrix-and-results.yaml":                         "uses matrix, not supported",
	"beta/pipelinerun-with-matrix-and-taskrunspecs-param-substitution.yaml": "uses matrix, not supported",
	"beta/pipelinerun-with-matrix-array-references.yaml":                    "uses matrix, not supported",
	"beta/pipelinerun-with-matrix-context-variables.yaml":                   "uses matrix, not supported",
	"beta/pipelinerun-with-matrix-emitting-results.yaml":                    "uses matrix, not supported",
	"beta/pipelinerun-with-matrix-include-explicit.yaml":                    "uses matrix, not supported",
	"beta/pipelinerun-with-matrix-include.yaml":                             "uses matrix, not supported",
	"beta/pipelinerun-with-matrix.yaml":                                     "uses matrix, not supported",
	"beta/propagated-pipeline-object-param.yaml":                            "its step has args but no command or script: it relies on the bash image's entrypoint",
	"beta/using-retries-and-retry-count-variables.yaml":                     "its script's shebang is #!/usr/bin/env sh and it tests [ a == b ], which busybox sh accepts and dash (the host's sh) rejects; retries are covered by TestRetries",

	"alpha/consume-artifacts-from-task.yaml":           "alpha feature (enable-artifacts), off in a default install",
	"alpha/param-enum.yaml":                            "alpha feature (enable-param-enum), off in a default install",
	"alpha/pipelinerun-with-cel-when-expressions.yaml": "alpha feature (enable-cel-in-whenexpression), off in a default install; CEL is not supported",
	"alpha/pipelines-in-pipelines-ref-complex.yaml":    "alpha feature (pipelines in pipelines), not supported",
	"alpha/pipelines-in-pipelines-ref.yaml":            "alpha feature (pipelines in pipelines), not supported",
	"alpha/pipelines-in-pipelines.yaml":                "alpha feature (pipelines in pipelines), not supported",

	"no-ci/cluster-resolver.yaml":            "remote resolution (cluster resolver), not supported",
	"no-ci/compressed-results-pipeline.yaml": "rejected by Tekton's own validation in a default install ($(results.digest-${i}.path) is no declared result)",
	"no-ci/csi-workspace.yaml":               "csi workspace, not supported",
	"no-ci/git-resolver-custom-apiurl.yaml":  "remote resolution (git resolver), not supported",
	"no-ci/git-resolver-custom-secret.yaml":  "remote resolution (git resolver), not supported",
	"no-ci/git-resolver.yaml":                "remote resolution (git resolver), not supported",
	"no-ci/hub-resolver.yaml":                "remote resolution (hub resolver), not supported",
	"no-ci/windows-node-affinity.yaml":       "runs cmd.exe (a Windows image, scheduled to Windows nodes)",
	"no-ci/windows-node-selectors.yaml":      "runs cmd.exe (a Windows image, scheduled to Windows nodes)",
}

// exampleExplore, when set (KILN_EXAMPLES_EXPLORE=1), runs every example
// and reports outcomes instead of checking the lists.
var exampleExplore = os.Getenv("KILN_EXAMPLES_EXPLORE") != ""

var nonDNS = regexp.MustCompile(`[^a-z0-9-]+`)

func TestTektonExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("runs Tekton's examples")
	}
	base := filepath.Join(tektonModuleDir(t), "examples", "v1", "pipelineruns")
	var files []string
	err := filepath.Walk(base, func(path string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && strings.HasSuffix(path, ".yaml") {
			rel, _ := filepath.Rel(base, path)
			files = append(files, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	if !exampleExplore {
		t.Run("lists", func(t *testing.T) {
			seen := map[string]bool{}
			for _, f := range files {
				seen[f] = true
				_, pass := examplePass[f]
				_, excl := exampleExcluded[f]
				if pass == excl {
					t.Errorf("%s: must be in exactly one of examplePass and exampleExcluded", f)
				}
			}
			for f := range examplePass {
				if !seen[f] {
					t.Errorf("examplePass: %s does not exist", f)
				}
			}
			for f := range exampleExcluded {
				if !seen[f] {
					t.Errorf("exampleExcluded: %s does not exist", f)
				}
			}
		})
	}
	for _, f := range files {
		want, pass := examplePass[f]
		if !pass && !exampleExplore {
			continue
		}
		t.Run(f, func(t *testing.T) {
			t.Parallel()
			b, err := os.ReadFile(filepath.Join(base, f))
			if err != nil {
				t.Fatal(err)
			}
			shell := want.shell
			if shell == "" {
				shell = "/bin/bash"
			}
			r, objs, logs := testRunner(t, Options{MaxParallel: 4, ScriptShell: shell}, string(b))
			if len(objs.PipelineRuns) == 0 {
				t.Fatalf("no PipelineRun in %s", f)
			}
			for i := range objs.PipelineRuns {
				pr := &objs.PipelineRuns[i]
				if pr.Name == "" {
					pr.Name = strings.Trim(nonDNS.ReplaceAllString(pr.GenerateName, "-"), "-") + fmt.Sprintf("-%d", i)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
				out, err := r.Run(ctx, pr, RunOptions{})
				cancel()
				if exampleExplore {
					if err != nil {
						t.Logf("EXPLORE %s: error: %v", f, err)
						continue
					}
					t.Logf("EXPLORE %s: %s\n%s\nlogs:\n%s", f, out.Status.Reason, describe(out.Status), logs)
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v\nlogs:\n%s", pr.Name, err, logs)
				}
				if out.Status.Reason != want.reason {
					t.Errorf("%s: reason %s, want %s\n%s\nlogs:\n%s", pr.Name, out.Status.Reason, want.reason, describe(out.Status), logs)
				}
				if check := exampleChecks[f]; check != nil {
					check(t, r, out.Status)
				}
			}
		})
	}
}

// exampleChecks make some examples' outcomes more specific than their
// reason: the values their results and steps must show.
var exampleChecks = map[string]func(t *testing.T, r *Runner, s RunStatus){
	"pipelinerun-results.yaml": func(t *testing.T, r *Runner, s RunStatus) {
		wantResults(t, s, map[string]string{"sum": `"22"`, "partial-sum": `"12"`, "all-sum": `"22-12"`})
	},
	"beta/pipeline-emitting-results.yaml": func(t *testing.T, r *Runner, s RunStatus) {
		wantResults(t, s, map[string]string{
			"array-results":          `["1","2","3"]`,
			"array-indexing-results": `"2"`,
			"object-element":         `"bar"`,
			"object-results":         `{"foo":"bar","hello":"world"}`,
			"array-results-from-array-indexing-and-object-elements":  `["1","bar"]`,
			"object-results-from-array-indexing-and-object-elements": `{"key1":"2","key2":"world"}`,
		})
	},
	"6139-regression.yaml": func(t *testing.T, r *Runner, s RunStatus) {
		wantResults(t, s, map[string]string{"result-hello": `"RES1"`})
		wantStates(t, s, map[string]string{"hello": "Succeeded", "goodbye": "Skipped", "shutdown": "Skipped"})
	},
	"pipelinerun-with-final-results.yaml": func(t *testing.T, r *Runner, s RunStatus) {
		wantResults(t, s, map[string]string{"task-result": `"2"`, "finally-result": `"484"`})
	},
	"pipelinerun-task-execution-status.yaml": func(t *testing.T, r *Runner, s RunStatus) {
		wantStates(t, s, map[string]string{"task1": "Succeeded", "task2": "Skipped", "task3": "Succeeded", "task4": "Succeeded"})
	},
	"pipelinerun-with-when-expressions.yaml": func(t *testing.T, r *Runner, s RunStatus) {
		wantStates(t, s, map[string]string{
			"create-file": "Succeeded", "check-file": "Succeeded", "echo-file-exists": "Succeeded", "sample-task-with-array-values": "Succeeded",
			"task-should-be-skipped-1": "Skipped", "task-should-be-skipped-2": "Skipped", "task-should-be-skipped-3": "Skipped", "task-should-be-skipped-4": "Skipped",
			"finally-task-should-be-skipped-1": "Skipped", "finally-task-should-be-skipped-2": "Skipped", "finally-task-should-be-skipped-3": "Skipped",
			"finally-task-should-be-skipped-4": "Skipped", "finally-task-should-be-skipped-5": "Skipped", "finally-task-should-be-executed": "Succeeded",
		})
	},
	"beta/pipeline-with-when-expressions-using-array-results.yaml": func(t *testing.T, r *Runner, s RunStatus) {
		wantStates(t, s, map[string]string{"task1": "Succeeded", "task2": "Succeeded", "task3": "Succeeded", "task4": "Succeeded", "task5": "Skipped"})
	},
	"using_context_variables.yaml": func(t *testing.T, r *Runner, s RunStatus) {
		names := readFile(t, r.LogFile(s.Name, "task1", "print-names"))
		for _, want := range []string{
			"TaskRun name: " + s.Name + "-task1\n",
			"Pipeline name from params: " + s.Name + "\n",
			"PipelineRun name from params: " + s.Name + "\n",
			"PipelineRun name from pipeline defaults: pipelinerun: " + s.Name + "\n",
			"PipelineRun namespace from params: default\n",
		} {
			if !strings.Contains(names, want) {
				t.Errorf("print-names log lacks %q:\n%s", want, names)
			}
		}
		retries := readFile(t, r.LogFile(s.Name, "task1", "print-retries"))
		if !strings.Contains(retries, "retries from params: 7\n") || !strings.Contains(retries, "current retry count: 0\n") {
			t.Errorf("print-retries log:\n%s", retries)
		}
		uid := readFile(t, r.LogFile(s.Name, "task1", "print-uid"))
		if !strings.Contains(uid, "PipelineRun UID from params: "+s.UID+"\n") {
			t.Errorf("print-uid log lacks the run's UID %s:\n%s", s.UID, uid)
		}
	},
	"pipelinerun-with-parallel-tasks-using-pvc.yaml": func(t *testing.T, r *Runner, s RunStatus) {
		if got := readFile(t, r.LogFile(s.Name, "reporter", "report-result")); got != "HELLO TEKTON\n" {
			t.Errorf("reporter printed %q", got)
		}
	},
	"4808-regression.yaml": func(t *testing.T, r *Runner, s RunStatus) {
		if got := readFile(t, r.LogFile(s.Name, "print-result", "print-result")); got != strings.Repeat(".", 3000)+"\n" {
			t.Errorf("print-result printed %d bytes", len(got))
		}
	},
}

func wantResults(t *testing.T, s RunStatus, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, r := range s.Results {
		b, err := json.Marshal(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		got[r.Name] = string(b)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("pipeline results:\n got %v\nwant %v", got, want)
	}
}

func wantStates(t *testing.T, s RunStatus, want map[string]string) {
	t.Helper()
	for name, state := range want {
		if got := task(t, s, name); got.State != state {
			t.Errorf("task %s: %s (%s), want %s", name, got.State, got.Reason, state)
		}
	}
}

// TestReadmeCorpusCounts: the README's count of the Tekton examples that
// pass is the lists' own, so it cannot drift from what the test runs.
func TestReadmeCorpusCounts(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(strings.Fields(string(b)), " ")
	m := regexp.MustCompile(`expected outcome — (\d+) of its (\d+) files pass .*?; the (\d+) others are listed there`).FindStringSubmatch(text)
	if m == nil {
		t.Fatal("README: the sentence \"… expected outcome — N of its M files pass …; the K others are listed there\" is gone")
	}
	want := []string{fmt.Sprint(len(examplePass)), fmt.Sprint(len(examplePass) + len(exampleExcluded)), fmt.Sprint(len(exampleExcluded))}
	if m[1] != want[0] || m[2] != want[1] || m[3] != want[2] {
		t.Errorf("README says %s of %s pass and %s others; the lists have %s of %s and %s", m[1], m[2], m[3], want[0], want[1], want[2])
	}
}
