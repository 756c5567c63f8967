package worker

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	sigsyaml "sigs.k8s.io/yaml"

	"github.com/kiln-build/kiln/internal/strictyaml"
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

// TestConfigErrorsNameEveryFieldAndLine loads a config with an operator's
// mistakes and wants every one reported at once, each with the file, line,
// column and field path, what is wanted, and the field meant for an
// unknown one; then fixes them as the messages say and wants it to load.
func TestConfigErrorsNameEveryFieldAndLine(t *testing.T) {
	const path = "testdata/mistakes/kiln.yaml"
	_, err := LoadConfig(path, func(string) string { return "" })
	if err == nil {
		t.Fatal("no error")
	}
	want := strings.Join([]string{
		path + `:6:3: local.maxParalel: unknown field, did you mean "maxParallel"?`,
		path + `:7:14: parallelism: want an integer, got "4"`,
		path + `:11:14: phases.base.timeout: want a duration like 90s, 10m or 1h30m (units ns, us, ms, s, m, h), got "10 seconds"`,
		path + `:13:5: phases.image.pipelinefile: unknown field, did you mean "pipelineFile"? (names are case-sensitive)`,
		path + `:14:15: phases.image.attempts: want an integer, got "two"`,
		path + `:15:14: phases.image.backoff: want a duration like 90s, 10m or 1h30m (units ns, us, ms, s, m, h), got 30: a number needs its unit`,
		path + `:18:3: notifications.onSucess: unknown field, did you mean "onSuccess"?`,
		path + `:20:3: notifications.window: set twice; first at line 19`,
	}, "\n")
	if err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fixed := strings.NewReplacer("maxParalel", "maxParallel", `"4"`, "4", "10 seconds", "10s", "pipelinefile", "pipelineFile",
		"attempts: two", "attempts: 2", "backoff: 30 ", "backoff: 30s", "onSucess", "onSuccess", "  window: 10m\n", "").Replace(string(data))
	p := filepath.Join(t.TempDir(), "kiln.yaml")
	if err := os.WriteFile(p, []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(p, func(string) string { return "" })
	if err != nil {
		t.Fatalf("the fixed config: %v", err)
	}
	if c.Local.MaxParallel != 4 || c.Parallelism != 4 || c.Phases.Base.Timeout.Duration != 10*time.Second ||
		c.Phases.Image.PipelineFile == "" || c.Phases.Image.Attempts != 2 || c.Phases.Image.Backoff.Duration != 30*time.Second ||
		!c.Notifications.OnSuccess || c.Notifications.Window.Duration != time.Hour {
		t.Errorf("the fixed config decoded as %+v", c)
	}
}

// TestJSONConfigGetsTheSameChecks loads a JSON config: it decodes as the
// YAML one does, and its mistakes are named with their lines too.
func TestJSONConfigGetsTheSameChecks(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "kiln.json")
	write := func(s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`{
	"namespace": "builds",
	"phases": {"image": {"pipelineRef": "image", "timeout": "90m"}}
}`)
	c, err := LoadConfig(p, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if c.Namespace != "builds" || c.Phases.Image.PipelineRef != "image" || c.Phases.Image.Timeout.Duration != 90*time.Minute {
		t.Errorf("config = %+v", c)
	}
	write(`{
	"namespace": "builds",
	"phases": {"image": {"pipelineref": "image", "timeout": 90}}
}`)
	_, err = LoadConfig(p, func(string) string { return "" })
	for _, want := range []string{
		p + `:3:23: phases.image.pipelineref: unknown field, did you mean "pipelineRef"?`,
		p + `:3:58: phases.image.timeout: want a duration`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error = %v, want it to say %s", err, want)
		}
	}
}

// TestReadmeConfigSnippetsDecode decodes every YAML block of the README
// that is a piece of the worker config strictly, so its field names and
// types stay those the worker reads.
func TestReadmeConfigSnippetsDecode(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for f := range reflect.TypeFor[Config]().Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			known[name] = true
		}
	}
	n := 0
	blocks := strings.Split(string(data), "```yaml\n")
	line := strings.Count(blocks[0], "\n") + 2 // the block's first line
	for _, block := range blocks[1:] {
		start := line
		line += strings.Count(block, "\n") + 1
		block, _, _ = strings.Cut(block, "```")
		if first, _, _ := strings.Cut(block, ":"); !known[first] {
			continue // a schedule file, a manifest
		}
		n++
		var c Config
		if err := strictyaml.Unmarshal(fmt.Sprintf("README.md (the block at line %d)", start), []byte(block), &c); err != nil {
			t.Error(err)
		}
	}
	if n < 5 {
		t.Errorf("%d config snippets in the README, want at least 5: is the test still finding them?", n)
	}
}

// TestConfigDecodesAsBefore decodes valid configs, the repo's and one with
// every kind of workspace binding (Kubernetes types with their own
// UnmarshalJSON, such as resource.Quantity), both strictly and as the
// worker did before (sigs.k8s.io/yaml), and wants the same Config.
func TestConfigDecodesAsBefore(t *testing.T) {
	rich := `
namespace: builds
heartbeatTimeout: 30s
publishing:
  aws: {region: eu-central-1, regions: [eu-west-1], public: true, tags: {a: b}, pollInterval: 5s}
storage: {stagingBucket: s, releaseBucket: r, archiveLogs: false, credentials: {accessKeyIdEnv: A, secretAccessKeyEnv: B}}
phases:
  image:
    pipelineRef: image
    labels: {a: "1"}
    workspaces:
    - name: scratch
      emptyDir: {medium: Memory, sizeLimit: 1Gi}
    - name: cache
      persistentVolumeClaim: {claimName: cache, readOnly: true}
    - name: claim
      volumeClaimTemplate:
        metadata: {name: x, labels: {a: b}}
        spec:
          accessModes: [ReadWriteOnce]
          resources: {requests: {storage: 10Gi}}
          storageClassName: fast
    - name: conf
      configMap: {name: cm, items: [{key: k, path: p, mode: 0644}], defaultMode: 420}
    - name: keys
      secret: {secretName: s, optional: true}
      subPath: sub
`
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rich.yaml"), []byte(rich), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"../deploy/kiln.yaml", "../deploy/dev/kiln.yaml", filepath.Join(dir, "rich.yaml")} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var strict, before Config
		if err := strictyaml.Unmarshal(path, data, &strict); err != nil {
			t.Fatal(err)
		}
		if err := sigsyaml.UnmarshalStrict(data, &before); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(strict, before) {
			t.Errorf("%s decodes to\n%+v\nwas\n%+v", path, strict, before)
		}
		if strings.HasSuffix(path, "rich.yaml") {
			ws := strict.Phases.Image.Workspaces
			if len(ws) != 5 || ws[0].EmptyDir.SizeLimit.String() != "1Gi" || *ws[3].ConfigMap.Items[0].Mode != 0o644 {
				t.Errorf("workspaces = %+v", ws)
			}
		}
	}
}
