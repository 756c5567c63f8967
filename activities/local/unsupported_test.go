package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// withoutNamespaces are the cases of TestRejectedBeforeAnythingRuns
// refused with Isolation none only.
var withoutNamespaces = map[string]bool{"sidecars": true, "volumes": true, "volume mounts": true, "step workspaces": true, "referenced pipeline and task": true}

func TestRejectedBeforeAnythingRuns(t *testing.T) {
	// Every case has a first task that would leave a marker if anything
	// ran; "TASK" is replaced by the case's second task.
	const head = `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: rejected}
spec:
  pipelineSpec:
    tasks:
    - name: first
      taskSpec: {steps: [{name: s, image: x, script: "touch MARKER"}]}
`
	tests := []struct {
		name string
		doc  string // appended to head, or a whole document set if it holds "kind: PipelineRun"
		want string
	}{
		{"matrix", `
    - name: fan
      matrix: {params: [{name: p, value: [a, b]}]}
      taskSpec: {params: [{name: p}], steps: [{name: s, image: x, script: "true"}]}`,
			"spec.pipelineSpec.tasks[1].matrix: not supported by the local runner"},
		{"sidecars", `
    - name: side
      taskSpec:
        sidecars: [{name: db, image: postgres}]
        steps: [{name: s, image: x, script: "true"}]`,
			"spec.pipelineSpec.tasks[1].taskSpec.sidecars: not supported by the local runner (needs isolation namespaces)"},
		{"sidecar without command", `
    - name: side
      taskSpec:
        sidecars: [{name: db, image: postgres}]
        steps: [{name: s, image: x, script: "true"}]`,
			"spec.pipelineSpec.tasks[1].taskSpec.sidecars[0].command: required by the local runner"},
		{"hostPath volume", `
    - name: vol
      taskSpec:
        volumes: [{name: v, hostPath: {path: /var/run/docker.sock}}]
        steps: [{name: s, image: x, script: "true", volumeMounts: [{name: v, mountPath: /v}]}]`,
			"spec.pipelineSpec.tasks[1].taskSpec.volumes[0]: not supported by the local runner (only emptyDir, configMap, secret and projected volumes)"},
		{"volume mount of no volume", `
    - name: vol
      taskSpec:
        steps: [{name: s, image: x, script: "true", volumeMounts: [{name: nope, mountPath: /v}]}]`,
			`spec.pipelineSpec.tasks[1].taskSpec.steps[0].volumeMounts[0].name: no volume "nope" in the Task`},
		{"volume of a missing configmap", `
    - name: vol
      taskSpec:
        volumes: [{name: v, configMap: {name: nope}}]
        steps: [{name: s, image: x, script: "true", volumeMounts: [{name: v, mountPath: /v}]}]`,
			`spec.pipelineSpec.tasks[1].taskSpec.volumes[0].configMap.name: ConfigMap "nope" not found`},
		{"step action", `
    - name: action
      taskSpec: {steps: [{name: s, ref: {name: git-clone}}]}`,
			"spec.pipelineSpec.tasks[1].taskSpec.steps[0].ref: not supported by the local runner"},
		{"volumes", `
    - name: vol
      taskSpec:
        volumes: [{name: v, emptyDir: {}}]
        steps: [{name: s, image: x, script: "true", volumeMounts: [{name: v, mountPath: /v}]}]`,
			"spec.pipelineSpec.tasks[1].taskSpec.volumes: not supported by the local runner (needs isolation namespaces)"},
		{"volume mounts", `
    - name: vol
      taskSpec:
        volumes: [{name: v, emptyDir: {}}]
        steps: [{name: s, image: x, script: "true", volumeMounts: [{name: v, mountPath: /v}]}]`,
			"spec.pipelineSpec.tasks[1].taskSpec.steps[0].volumeMounts: not supported by the local runner (needs isolation namespaces)"},
		{"step workspaces", `
    - name: iso
      workspaces: [{name: w, workspace: ws}]
      taskSpec:
        workspaces: [{name: w}]
        steps: [{name: s, image: x, script: "true", workspaces: [{name: w, mountPath: /creds}]}]
    workspaces: [{name: ws}]
  workspaces: [{name: ws, emptyDir: {}}]`,
			"spec.pipelineSpec.tasks[1].taskSpec.steps[0].workspaces: not supported by the local runner (isolated workspaces needs isolation namespaces)"},
		{"stdoutConfig", `
    - name: out
      taskSpec: {steps: [{name: s, image: x, script: "true", stdoutConfig: {path: /tmp/x}}]}`,
			"spec.pipelineSpec.tasks[1].taskSpec.steps[0].stdoutConfig: not supported by the local runner"},
		{"resolver", `
    - name: remote
      taskRef: {resolver: git, params: [{name: url, value: https://example.com/x.git}]}`,
			"spec.pipelineSpec.tasks[1].taskRef.resolver: not supported by the local runner"},
		{"custom task", `
    - name: custom
      taskRef: {apiVersion: example.dev/v1, kind: Wait, name: w}`,
			"spec.pipelineSpec.tasks[1].taskRef.apiVersion: not supported by the local runner"},
		{"missing task", `
    - name: ref
      taskRef: {name: nope}`,
			`spec.pipelineSpec.tasks[1].taskRef.name: Task "nope" not found`},
		{"no command", `
    - name: entrypoint
      taskSpec: {steps: [{name: s, image: alpine, args: [echo, hi]}]}`,
			"spec.pipelineSpec.tasks[1].taskSpec.steps[0].command: required by the local runner"},
		{"env fieldRef", `
    - name: env
      taskSpec: {steps: [{name: s, image: x, script: "true", env: [{name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]}]}`,
			"spec.pipelineSpec.tasks[1].taskSpec.steps[0].env[0].valueFrom: not supported by the local runner"},
		{"step when", `
    - name: sw
      taskSpec: {steps: [{name: s, image: x, script: "true", when: [{input: a, operator: in, values: [a]}]}]}`,
			"spec.pipelineSpec.tasks[1].taskSpec.steps[0].when: not supported by the local runner"},
		{"windows script", `
    - name: win
      taskSpec: {steps: [{name: s, image: x, script: "#!win pwsh.exe\nWrite-Host hi"}]}`,
			"spec.pipelineSpec.tasks[1].taskSpec.steps[0].script: not supported by the local runner"},
		{"missing configmap", `
    - name: cm
      workspaces: [{name: w, workspace: conf}]
      taskSpec: {workspaces: [{name: w}], steps: [{name: s, image: x, script: "true"}]}
    workspaces: [{name: conf}]
  workspaces: [{name: conf, configMap: {name: nope}}]`,
			`spec.workspaces[0].configMap.name: ConfigMap "nope" not found`},
		{"csi workspace", `
    - name: csi
      workspaces: [{name: w, workspace: conf}]
      taskSpec: {workspaces: [{name: w}], steps: [{name: s, image: x, script: "true"}]}
    workspaces: [{name: conf}]
  workspaces: [{name: conf, csi: {driver: secrets-store.csi.k8s.io}}]`,
			"spec.workspaces[0].csi: not supported by the local runner"},
		{"pipelines in pipelines", `
    - name: child
      pipelineSpec: {tasks: [{name: c, taskSpec: {steps: [{name: s, image: x, script: "true"}]}}]}`,
			`spec.pipelineSpec.tasks[1]`},
		{"cel", `
    - name: cel
      when: [{cel: "'a' == 'a'"}]
      taskSpec: {steps: [{name: s, image: x, script: "true"}]}`,
			"spec.pipelineSpec.tasks[1].when[0]"},
		{"invalid (no steps)", `
    - name: empty
      taskSpec: {steps: []}`,
			`invalid PipelineRun "rejected"`},
		{"missing param", `
    - name: needs
      taskSpec: {params: [{name: p}], steps: [{name: s, image: x, script: "true"}]}`,
			`spec.pipelineSpec.tasks[1].params: missing parameter "p", required by the task`},
		{"missing pipeline", `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: rejected}
spec:
  pipelineRef: {name: nope}`,
			`spec.pipelineRef.name: Pipeline "nope" not found`},
		{"referenced pipeline and task", `
apiVersion: tekton.dev/v1
kind: Task
metadata: {name: with-sidecar}
spec:
  sidecars: [{name: db, image: postgres}]
  steps: [{name: s, image: x, script: "touch MARKER"}]
---
apiVersion: tekton.dev/v1
kind: Pipeline
metadata: {name: p}
spec:
  tasks:
  - {name: a, taskRef: {name: with-sidecar}}
  - {name: b, taskSpec: {steps: [{name: s, image: x, script: "true"}]}, matrix: {params: [{name: p, value: [a, b]}]}}
---
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: rejected}
spec:
  pipelineRef: {name: p}`,
			`Task "with-sidecar" spec.sidecars: not supported by the local runner (needs isolation namespaces); Pipeline "p" spec.tasks[1].matrix: not supported by the local runner`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := t.TempDir()
			marker := filepath.Join(d, "ran")
			doc := head + tt.doc
			if strings.Contains(tt.doc, "kind: PipelineRun") {
				doc = tt.doc
			}
			doc = strings.ReplaceAll(doc, "MARKER", marker)
			opts := Options{}
			if withoutNamespaces[tt.name] {
				opts.Isolation = IsolationNone
			}
			r, objs, logs := testRunner(t, opts, doc)
			_, err := r.Run(context.Background(), &objs.PipelineRuns[0], RunOptions{})
			var se *SpecError
			if !errors.As(err, &se) {
				t.Fatalf("Run: %v, want a *SpecError\n%s", err, logs)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q\nlacks %q", err, tt.want)
			}
			if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a step ran: %v", err)
			}
			if _, err := os.Stat(r.RunDir("rejected")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the run's directory was created: %v", err)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	objs, err := Decode(strings.NewReader(`
apiVersion: tekton.dev/v1
kind: Task
metadata: {name: t}
spec: {steps: [{name: s, image: x, script: "true"}]}
---
apiVersion: v1
kind: LimitRange
metadata: {name: l}
---
apiVersion: v1
kind: Secret
metadata: {name: s}
data: {password: aHVudGVyMg==}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(objs.Tasks) != 1 || len(objs.Secrets) != 1 || string(objs.Secrets[0].Data["password"]) != "hunter2" || len(objs.Other) != 1 {
		t.Errorf("decoded %+v", objs)
	}
	for _, bad := range []string{
		"apiVersion: tekton.dev/v1\nkind: Task\nmetadata: {name: t}\nspec: {stesp: []}\n",
		"apiVersion: tekton.dev/v1beta1\nkind: Task\nmetadata: {name: t}\n",
	} {
		if _, err := Decode(strings.NewReader(bad)); err == nil {
			t.Errorf("Decode(%q) succeeded", bad)
		}
	}
}
