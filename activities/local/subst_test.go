package local

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/substitution"
)

func str(s string) pipelinev1.ParamValue { return *pipelinev1.NewStructuredValues(s) }
func arr(s ...string) pipelinev1.ParamValue {
	return pipelinev1.ParamValue{Type: pipelinev1.ParamTypeArray, ArrayVal: s}
}
func obj(m map[string]string) pipelinev1.ParamValue { return *pipelinev1.NewObject(m) }

func TestPipelineParamRepl(t *testing.T) {
	specs := pipelinev1.ParamSpecs{
		{Name: "registry", Type: pipelinev1.ParamTypeString, Default: ptr(str("docker.io"))},
		{Name: "image", Type: pipelinev1.ParamTypeString, Default: ptr(str("$(params.registry)/$(params.repo):$(params.tag)"))},
		{Name: "tag", Type: pipelinev1.ParamTypeString, Default: ptr(str("v1"))},
		{Name: "repo", Type: pipelinev1.ParamTypeString},
		{Name: "args", Type: pipelinev1.ParamTypeArray, Default: ptr(arr("IMAGE=$(params.image)", "plain"))},
		{Name: "envs", Type: pipelinev1.ParamTypeArray},
		{Name: "git", Type: pipelinev1.ParamTypeObject, Default: ptr(obj(map[string]string{"url": "https://$(params.registry)"}))},
		{Name: "cfg", Type: pipelinev1.ParamTypeObject},
	}
	given := pipelinev1.Params{
		{Name: "repo", Value: str("app")},
		{Name: "envs", Value: arr("staging", "prod")},
		{Name: "cfg", Value: obj(map[string]string{"k": "v"})},
	}
	r, err := pipelineParamRepl(specs, given)
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"$(params.repo)":          "app",
		`$(params["repo"])`:       "app",
		"$(params['repo'])":       "app",
		"$(params.image)":         "docker.io/app:v1", // recursive defaults
		"$(params.envs[1])":       "prod",
		"$(params.args[0])":       "IMAGE=docker.io/app:v1",
		"$(params.git.url)":       "https://docker.io",
		"$(params.cfg.k)":         "v",
		"$(params.undeclared)":    "$(params.undeclared)",
		"$(inputs.params.repo)":   "$(inputs.params.repo)", // a Task-only form
		"x $(params.tag) y":       "x v1 y",
		"$(context.taskRun.name)": "$(context.taskRun.name)",
	} {
		if got := substitution.ApplyReplacements(in, r.str); got != want {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
	if got := substitution.ApplyArrayReplacements("$(params.envs[*])", r.str, r.arr); fmt.Sprint(got) != "[staging prod]" {
		t.Errorf("envs[*]: %v", got)
	}
	if got := r.obj["params.cfg"]; fmt.Sprint(got) != "map[k:v]" {
		t.Errorf("cfg: %v", got)
	}

	for name, specs := range map[string]pipelinev1.ParamSpecs{
		"cycle": {
			{Name: "a", Default: ptr(str("$(params.b)"))},
			{Name: "b", Default: ptr(str("$(params.a)"))},
		},
		"undefined": {{Name: "a", Default: ptr(str("$(params.nope)"))}},
	} {
		if _, err := pipelineParamRepl(specs, nil); err == nil || !strings.Contains(err.Error(), "parameter resolution failed") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestTaskParamRepl(t *testing.T) {
	specs := pipelinev1.ParamSpecs{
		{Name: "a", Type: pipelinev1.ParamTypeString, Default: ptr(str("default-a"))},
		{Name: "b", Type: pipelinev1.ParamTypeString, Default: ptr(str("b-from-$(params.a)"))},
		{Name: "list", Type: pipelinev1.ParamTypeArray, Default: ptr(arr("x", "y"))},
		{Name: "o", Type: pipelinev1.ParamTypeObject, Default: ptr(obj(map[string]string{"k1": "d1", "k2": "d2"}))},
	}
	r := taskParamRepl(specs, pipelinev1.Params{
		{Name: "a", Value: str("given-a")},
		{Name: "o", Value: obj(map[string]string{"k1": "g1"})},
	})
	for in, want := range map[string]string{
		"$(params.a)":        "given-a",
		"$(inputs.params.a)": "given-a",
		"$(params.b)":        "b-from-default-a", // defaults refer to defaults, as Tekton's do
		"$(params.list[1])":  "y",
		"$(params.o.k1)":     "g1",
		"$(params.o.k2)":     "d2",
	} {
		if got := substitution.ApplyReplacements(in, r.str); got != want {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
	if got := r.obj["params.o"]; fmt.Sprint(got) != "map[k1:g1 k2:d2]" {
		t.Errorf("o: %v", got)
	}
}

func TestPropagationScoping(t *testing.T) {
	// A pipeline task's own params override the pipeline's in its
	// embedded spec; params it does not set are the pipeline's.
	tasks := []pipelinev1.PipelineTask{{
		Name:   "t",
		Params: pipelinev1.Params{{Name: "greeting", Value: str("task says $(params.who)")}},
		TaskSpec: &pipelinev1.EmbeddedTask{TaskSpec: pipelinev1.TaskSpec{Steps: []pipelinev1.Step{{
			Name: "s", Script: "echo $(params.greeting) $(params.who) $(params.list[*])", Args: []string{"$(params.list[*])"},
		}}}},
	}}
	r, err := pipelineParamRepl(pipelinev1.ParamSpecs{
		{Name: "greeting", Type: pipelinev1.ParamTypeString},
		{Name: "who", Type: pipelinev1.ParamTypeString},
		{Name: "list", Type: pipelinev1.ParamTypeArray},
	}, pipelinev1.Params{
		{Name: "greeting", Value: str("pipeline says hi")},
		{Name: "who", Value: str("kiln")},
		{Name: "list", Value: arr("a", "b")},
	})
	if err != nil {
		t.Fatal(err)
	}
	applyPipelineTasks(tasks, r)
	step := tasks[0].TaskSpec.Steps[0]
	if step.Script != "echo task says kiln kiln $(params.list[*])" {
		t.Errorf("script %q", step.Script)
	}
	if fmt.Sprint(step.Args) != "[a b]" {
		t.Errorf("args %q", step.Args)
	}
}

func TestResultReplacements(t *testing.T) {
	r := newRepl()
	r.addResult("build", pipelinev1.TaskRunResult{Name: "digest", Type: pipelinev1.ResultsTypeString, Value: str("sha256:1")})
	r.addResult("build", pipelinev1.TaskRunResult{Name: "images", Type: pipelinev1.ResultsTypeArray, Value: arr("a", "b", "c")})
	r.addResult("build", pipelinev1.TaskRunResult{Name: "meta", Type: pipelinev1.ResultsTypeObject, Value: obj(map[string]string{"url": "u", "rev": "r"})})
	pt := &pipelinev1.PipelineTask{
		Params: pipelinev1.Params{
			{Name: "d", Value: str("$(tasks.build.results.digest)")},
			{Name: "d2", Value: str(`at $(tasks.build.results["digest"])`)},
			{Name: "all", Value: str("$(tasks.build.results.images[*])")},
			{Name: "second", Value: str("$(tasks.build.results.images[1])")},
			{Name: "whole", Value: str("$(tasks.build.results.meta[*])")},
			{Name: "url", Value: str("$(tasks.build.results.meta.url)")},
		},
		When: pipelinev1.WhenExpressions{{Input: "b", Operator: "in", Values: []string{"$(tasks.build.results.images[*])"}}},
	}
	applyResolved(pt, r)
	got := map[string]string{}
	for _, p := range pt.Params {
		b, _ := json.Marshal(p.Value)
		got[p.Name] = string(b)
	}
	want := map[string]string{
		"d": `"sha256:1"`, "d2": `"at sha256:1"`, "all": `["a","b","c"]`, "second": `"b"`,
		"whole": `{"rev":"r","url":"u"}`, "url": `"u"`,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("params\n got %v\nwant %v", got, want)
	}
	if !pt.When.AllowsExecution(nil) {
		t.Errorf("when %+v does not allow execution", pt.When)
	}
}

func TestPipelineResults(t *testing.T) {
	taskResults := map[string][]pipelinev1.TaskRunResult{
		"a": {
			{Name: "s", Type: pipelinev1.ResultsTypeString, Value: str("one")},
			{Name: "l", Type: pipelinev1.ResultsTypeArray, Value: arr("x", "y")},
			{Name: "o", Type: pipelinev1.ResultsTypeObject, Value: obj(map[string]string{"k": "v"})},
		},
		"fin": {{Name: "f", Type: pipelinev1.ResultsTypeString, Value: str("last")}},
	}
	succeeded := func(n string) bool { return n == "a" || n == "fin" }
	tests := []struct {
		name    string
		results []pipelinev1.PipelineResult
		want    string
		wantErr bool
	}{
		{"string", []pipelinev1.PipelineResult{{Name: "r", Value: str("$(tasks.a.results.s)-$(finally.fin.results.f)")}}, `[r="one-last"]`, false},
		{"array", []pipelinev1.PipelineResult{{Name: "r", Type: pipelinev1.ResultsTypeArray, Value: str("$(tasks.a.results.l[*])")}}, `[r=["x","y"]]`, false},
		{"index", []pipelinev1.PipelineResult{{Name: "r", Value: str("$(tasks.a.results.l[1])")}}, `[r="y"]`, false},
		{"object", []pipelinev1.PipelineResult{{Name: "r", Type: pipelinev1.ResultsTypeObject, Value: str("$(tasks.a.results.o[*])")}}, `[r={"k":"v"}]`, false},
		{"key", []pipelinev1.PipelineResult{{Name: "r", Value: str("$(tasks.a.results.o.k)")}}, `[r="v"]`, false},
		{"skipped task", []pipelinev1.PipelineResult{{Name: "r", Value: str("$(tasks.skipped.results.s)")}}, `[]`, false},
		{"missing result", []pipelinev1.PipelineResult{{Name: "r", Value: str("$(tasks.a.results.nope)")}}, `[]`, true},
		{"out of bounds", []pipelinev1.PipelineResult{{Name: "r", Value: str("$(tasks.a.results.l[5])")}}, `[]`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pipelineResults(tt.results, taskResults, succeeded)
			if (err != nil) != tt.wantErr {
				t.Errorf("err %v, want error %v", err, tt.wantErr)
			}
			var parts []string
			for _, r := range got {
				b, _ := json.Marshal(r.Value)
				parts = append(parts, r.Name+"="+string(b))
			}
			if s := "[" + strings.Join(parts, " ") + "]"; s != tt.want {
				t.Errorf("results %s, want %s", s, tt.want)
			}
		})
	}
}

func TestTaskRunSubstitution(t *testing.T) {
	// One step echoes every kind of variable a TaskRun resolves.
	s, r, logs := runYAML(t, Options{}, `
apiVersion: tekton.dev/v1
kind: Task
metadata: {name: show}
spec:
  params:
  - {name: s}
  - {name: a, type: array}
  - {name: o, type: object, properties: {url: {}, rev: {}}}
  - {name: d, default: "dflt"}
  results: [{name: out}]
  workspaces: [{name: src}]
  steps:
  - name: show
    image: x
    args: ["$(params.a[*])"]
    script: |
      #!/bin/sh
      echo "s=$(params.s) a1=$(params.a[1]) n=$# args=$* url=$(params.o.url) rev=$(params.o.rev) d=$(params.d)"
      echo "tr=$(context.taskRun.name) task=$(context.task.name) ns=$(context.taskRun.namespace) retry=$(context.task.retry-count)"
      echo "ws=$(workspaces.src.path) bound=$(workspaces.src.bound) claim=$(workspaces.src.claim)"
      echo "res=$(results.out.path)"
      printf done > $(results.out.path)
---
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: subst}
spec:
  params:
  - {name: list, value: [x, "y z"]}
  - {name: repo, value: {url: "https://git", rev: main}}
  workspaces: [{name: shared, persistentVolumeClaim: {claimName: c}}]
  pipelineSpec:
    params:
    - {name: list, type: array}
    - {name: repo, type: object, properties: {url: {}, rev: {}}}
    workspaces: [{name: shared}]
    tasks:
    - name: show
      taskRef: {name: show}
      workspaces: [{name: src, workspace: shared, subPath: "$(context.pipelineRun.name)"}]
      params:
      - {name: s, value: "$(context.pipelineRun.name)/$(context.pipeline.name)"}
      - {name: a, value: ["$(params.list[*])"]}
      - {name: o, value: "$(params.repo[*])"}
`)
	if s.Reason != "Succeeded" {
		t.Fatalf("%s\n%s", describe(s), logs)
	}
	want := strings.Join([]string{
		"s=subst/subst a1=y z n=2 args=x y z url=https://git rev=main d=dflt",
		"tr=subst-show task=show ns=default retry=0",
		"ws=/workspace/src bound=true claim=c", // the pod's paths
		"res=/tekton/results/out",
	}, "\n") + "\n"
	if got := readFile(t, r.LogFile("subst", "show", "show")); got != want {
		t.Errorf("step printed\n%s\nwant\n%s", got, want)
	}
	if res := task(t, s, "show").Results; len(res) != 1 || res[0].Value.StringVal != "done" {
		t.Errorf("results %+v", res)
	}
}
