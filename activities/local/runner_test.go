package local

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
)

// runYAML decodes docs (Tasks, Pipelines and exactly one PipelineRun),
// runs the PipelineRun and returns its status.
func runYAML(t *testing.T, opts Options, docs ...string) (RunStatus, *Runner, *syncBuffer) {
	t.Helper()
	r, objs, logs := testRunner(t, opts, docs...)
	if len(objs.PipelineRuns) != 1 {
		t.Fatalf("want one PipelineRun, got %d", len(objs.PipelineRuns))
	}
	return runOne(t, r, &objs.PipelineRuns[0], logs), r, logs
}

func TestDAGOrderAndParallelism(t *testing.T) {
	// Four independent tasks with room for two at a time, then "join"
	// after all four, then "last" on join's result. Each task keeps a
	// marker in active/ while it runs and records how many were active
	// when it started; the first to start waits until another is active or
	// done, which can only happen if two run at once.
	d := t.TempDir()
	for _, sub := range []string{"active", "done", "seen"} {
		if err := os.Mkdir(filepath.Join(d, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s, _, logs := runYAML(t, Options{MaxParallel: 2, Isolation: IsolationNone /* the test watches its steps through host paths */}, `
apiVersion: tekton.dev/v1
kind: Task
metadata: {name: worker}
spec:
  params: [{name: dir}]
  steps:
  - name: work
    image: busybox
    script: |
      D=$(params.dir)
      me=$(context.taskRun.name)
      touch $D/active/$me
      ls $D/active | wc -l > $D/seen/$me
      end=$(( $(date +%s) + 30 ))
      until [ $(( $(ls $D/active | wc -l) + $(ls $D/done | wc -l) )) -ge 2 ]; do
        [ $(date +%s) -lt $end ] || { echo "alone: no other task ran beside me"; exit 1; }
        sleep 0.01
      done
      rm $D/active/$me
      touch $D/done/$me
---
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: order}
spec:
  params: [{name: dir, value: `+d+`}]
  pipelineSpec:
    params: [{name: dir}]
    tasks:
    - {name: a, taskRef: {name: worker}, params: [{name: dir, value: $(params.dir)}]}
    - {name: b, taskRef: {name: worker}, params: [{name: dir, value: $(params.dir)}]}
    - {name: c, taskRef: {name: worker}, params: [{name: dir, value: $(params.dir)}]}
    - {name: d, taskRef: {name: worker}, params: [{name: dir, value: $(params.dir)}]}
    - name: join
      runAfter: [a, b, c, d]
      taskSpec:
        results: [{name: seen}]
        steps:
        - name: check
          image: busybox
          script: |
            for t in a b c d; do test -e $(params.dir)/done/order-$t || { echo "$t not done"; exit 1; }; done
            printf 'all four' > $(results.seen.path)
    - name: last
      params: [{name: seen, value: $(tasks.join.results.seen)}]
      taskSpec:
        params: [{name: seen}]
        steps:
        - name: check
          image: busybox
          script: test "$(params.seen)" = "all four"
`)
	if s.Reason != "Succeeded" {
		t.Fatalf("%s\n%s", describe(s), logs)
	}
	maxSeen := 0
	for _, f := range mustGlob(t, filepath.Join(d, "seen", "*")) {
		n, err := strconv.Atoi(strings.TrimSpace(readFile(t, f)))
		if err != nil {
			t.Fatal(err)
		}
		maxSeen = max(maxSeen, n)
	}
	if maxSeen != 2 {
		t.Errorf("at most %d tasks ran at once, want exactly MaxParallel=2", maxSeen)
	}
	// The runner's own timestamps agree with the dependencies.
	join := task(t, s, "join")
	for _, n := range []string{"a", "b", "c", "d"} {
		if tn := task(t, s, n); join.StartTime.Before(*tn.CompletionTime) {
			t.Errorf("join started at %v, before %s completed at %v", join.StartTime, n, tn.CompletionTime)
		}
	}
	if last := task(t, s, "last"); last.StartTime.Before(*join.CompletionTime) {
		t.Errorf("last started before join completed")
	}
}

func TestWhen(t *testing.T) {
	s, _, logs := runYAML(t, Options{}, `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: when}
spec:
  params:
  - {name: branch, value: main}
  - {name: branches, value: [main, dev]}
  pipelineSpec:
    params:
    - {name: branch}
    - {name: branches, type: array}
    tasks:
    - name: produce
      taskSpec:
        results: [{name: answer}, {name: list, type: array}]
        steps:
        - {name: p, image: x, script: "printf yes > $(results.answer.path); printf '[\"x\",\"y\"]' > $(results.list.path)"}
    - name: on-param
      when: [{input: $(params.branch), operator: in, values: [main]}]
      taskSpec: {steps: [{name: s, image: x, script: "true"}]}
    - name: off-param
      when: [{input: $(params.branch), operator: notin, values: ["$(params.branches[*])"]}]
      taskSpec: {steps: [{name: s, image: x, script: "exit 1"}]}
    - name: on-result
      when: [{input: $(tasks.produce.results.answer), operator: in, values: ["yes"]}]
      taskSpec: {steps: [{name: s, image: x, script: "true"}]}
    - name: on-array-result
      when: [{input: "y", operator: in, values: ["$(tasks.produce.results.list[*])"]}]
      taskSpec: {steps: [{name: s, image: x, script: "true"}]}
    - name: off-result
      when: [{input: "$(tasks.produce.results.list[0])", operator: in, values: ["y"]}]
      taskSpec:
        results: [{name: r}]
        steps: [{name: s, image: x, script: "exit 1"}]
    - name: after-off
      runAfter: [off-param]
      taskSpec: {steps: [{name: s, image: x, script: "true"}]}
    - name: needs-off-result
      params: [{name: v, value: $(tasks.off-result.results.r)}]
      taskSpec:
        params: [{name: v}]
        steps: [{name: s, image: x, script: "exit 1"}]
`)
	if s.Reason != "Completed" {
		t.Fatalf("%s\n%s", describe(s), logs)
	}
	for name, want := range map[string][2]string{
		"produce":          {"Succeeded", "Succeeded"},
		"on-param":         {"Succeeded", "Succeeded"},
		"off-param":        {"Skipped", string(pipelinev1.WhenExpressionsSkip)},
		"on-result":        {"Succeeded", "Succeeded"},
		"on-array-result":  {"Succeeded", "Succeeded"},
		"off-result":       {"Skipped", string(pipelinev1.WhenExpressionsSkip)},
		"after-off":        {"Succeeded", "Succeeded"}, // when is scoped to its task
		"needs-off-result": {"Skipped", string(pipelinev1.MissingResultsSkip)},
	} {
		if got := task(t, s, name); got.State != want[0] || got.Reason != want[1] {
			t.Errorf("task %s: %s/%s, want %s/%s", name, got.State, got.Reason, want[0], want[1])
		}
	}
}

func TestFinally(t *testing.T) {
	s, r, logs := runYAML(t, Options{}, `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: fin}
spec:
  pipelineSpec:
    tasks:
    - name: ok
      taskSpec:
        results: [{name: r}]
        steps: [{name: s, image: x, script: "printf fine > $(results.r.path)"}]
    - name: broken
      runAfter: [ok]
      taskSpec: {steps: [{name: build, image: x, script: "echo building; exit 3"}]}
    - name: never
      runAfter: [broken]
      taskSpec: {steps: [{name: s, image: x, script: "true"}]}
    - name: skipped
      when: [{input: a, operator: in, values: [b]}]
      taskSpec: {steps: [{name: s, image: x, script: "true"}]}
    finally:
    - name: report
      params:
      - {name: ok, value: $(tasks.ok.status)}
      - {name: broken, value: $(tasks.broken.status)}
      - {name: broken-reason, value: $(tasks.broken.reason)}
      - {name: never, value: $(tasks.never.status)}
      - {name: all, value: $(tasks.status)}
      - {name: okr, value: $(tasks.ok.results.r)}
      taskSpec:
        params: [{name: ok}, {name: broken}, {name: broken-reason}, {name: never}, {name: all}, {name: okr}]
        steps:
        - name: print
          image: x
          script: echo "$(params.ok) $(params.broken) $(params.broken-reason) $(params.never) $(params.all) $(params.okr)"
    - name: only-on-failure
      when: [{input: $(tasks.status), operator: in, values: [Failed]}]
      taskSpec: {steps: [{name: s, image: x, script: "true"}]}
    - name: only-on-success
      when: [{input: $(tasks.status), operator: in, values: [Succeeded]}]
      taskSpec: {steps: [{name: s, image: x, script: "true"}]}
    - name: needs-broken-result
      params: [{name: v, value: $(tasks.broken.results.nope)}]
      taskSpec:
        params: [{name: v}]
        steps: [{name: s, image: x, script: "true"}]
`)
	if s.Reason != "Failed" {
		t.Fatalf("%s\n%s", describe(s), logs)
	}
	if got := readFile(t, r.LogFile("fin", "report", "print")); got != "Succeeded Failed Failed None Failed fine\n" {
		t.Errorf("report printed %q", got)
	}
	wantStates(t, s, map[string]string{
		"ok": "Succeeded", "broken": "Failed", "never": "Skipped", "skipped": "Skipped",
		"report": "Succeeded", "only-on-failure": "Succeeded", "only-on-success": "Skipped", "needs-broken-result": "Skipped",
	})
	if got := task(t, s, "never").Reason; got != string(pipelinev1.StoppingSkip) {
		t.Errorf("never: reason %q", got)
	}
	if got := task(t, s, "needs-broken-result").Reason; got != string(pipelinev1.MissingResultsSkip) {
		t.Errorf("needs-broken-result: reason %q", got)
	}
	if got := task(t, s, "broken").Message; got != `"step-build" exited with code 3` {
		t.Errorf("broken: message %q", got)
	}
	if !strings.Contains(s.Message, "Tasks Completed: 4 (Failed: 1, Cancelled 0), Skipped: 4") {
		t.Errorf("message %q", s.Message)
	}
}

func TestRetries(t *testing.T) {
	d := t.TempDir()
	s, r, logs := runYAML(t, Options{Isolation: IsolationNone /* the test watches its steps through host paths */}, `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: retry}
spec:
  pipelineSpec:
    tasks:
    - name: flaky
      retries: 2
      params: [{name: retries, value: $(context.pipelineTask.retries)}]
      taskSpec:
        params: [{name: retries}]
        steps:
        - name: try
          image: x
          script: |
            echo "attempt $(context.task.retry-count) of $(params.retries)"
            if [ ! -e `+d+`/failed-once ]; then touch `+d+`/failed-once; exit 1; fi
    - name: hopeless
      retries: 2
      taskSpec:
        steps: [{name: try, image: x, script: "echo try $(context.task.retry-count) >> `+d+`/hopeless; exit 7"}]
`)
	if s.Reason != "Failed" {
		t.Fatalf("%s\n%s", describe(s), logs)
	}
	flaky := task(t, s, "flaky")
	if flaky.State != "Succeeded" || flaky.RetryCount != 1 {
		t.Errorf("flaky: %s after %d retries, want Succeeded after 1", flaky.State, flaky.RetryCount)
	}
	if got := readFile(t, r.LogFile("retry", "flaky", "try")); got != "attempt 0 of 2\nattempt 1 of 2\n" {
		t.Errorf("flaky's log (both attempts): %q", got)
	}
	hopeless := task(t, s, "hopeless")
	if hopeless.State != "Failed" || hopeless.Reason != "Failed" || hopeless.RetryCount != 2 || hopeless.Message != `"step-try" exited with code 7` {
		t.Errorf("hopeless: %s/%s %q after %d retries, want Failed after 2", hopeless.State, hopeless.Reason, hopeless.Message, hopeless.RetryCount)
	}
	if got := readFile(t, filepath.Join(d, "hopeless")); got != "try 0\ntry 1\ntry 2\n" {
		t.Errorf("hopeless attempts: %q", got)
	}
}

func TestTimeouts(t *testing.T) {
	tests := []struct {
		name       string
		timeouts   string
		task       string // fields of the task "slow"
		step       string // fields of slow's step
		wantReason string
		wantSlow   [2]string // state, reason
		wantMsg    string    // in slow's message
		wantFinal  string    // state of the finally task
	}{
		{
			name: "step", step: "timeout: 200ms",
			wantReason: "Failed", wantSlow: [2]string{"Failed", "Failed"},
			wantMsg: `"step-sleep" exited because the step exceeded the specified timeout limit`, wantFinal: "Succeeded",
		},
		{
			name: "task", task: "timeout: 300ms",
			wantReason: "Failed", wantSlow: [2]string{"Failed", "TaskRunTimeout"},
			wantMsg: `failed to finish within "300ms"`, wantFinal: "Succeeded",
		},
		{
			name: "tasks", timeouts: "{tasks: 300ms, finally: 1m}",
			wantReason: "PipelineRunTimeout", wantSlow: [2]string{"Failed", "TaskRunCancelled"},
			wantMsg: "timed out", wantFinal: "Succeeded",
		},
		{
			name: "pipeline", timeouts: "{pipeline: 300ms}",
			wantReason: "PipelineRunTimeout", wantSlow: [2]string{"Failed", "TaskRunCancelled"},
			wantMsg: "timed out", wantFinal: "Pending",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			timeouts := ""
			if tt.timeouts != "" {
				timeouts = "timeouts: " + tt.timeouts
			}
			s, _, logs := runYAML(t, Options{}, `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: t-`+tt.name+`}
spec:
  `+timeouts+`
  pipelineSpec:
    tasks:
    - name: slow
      `+tt.task+`
      taskSpec:
        steps:
        - name: sleep
          image: x
          `+tt.step+`
          script: "sleep 60"
    finally:
    - name: cleanup
      taskSpec: {steps: [{name: s, image: x, script: "true"}]}
`)
			if s.Reason != tt.wantReason {
				t.Fatalf("reason %s, want %s\n%s\n%s", s.Reason, tt.wantReason, describe(s), logs)
			}
			slow := task(t, s, "slow")
			if slow.State != tt.wantSlow[0] || slow.Reason != tt.wantSlow[1] || !strings.Contains(slow.Message, tt.wantMsg) {
				t.Errorf("slow: %s/%s %q, want %s/%s containing %q", slow.State, slow.Reason, slow.Message, tt.wantSlow[0], tt.wantSlow[1], tt.wantMsg)
			}
			if got := task(t, s, "cleanup").State; got != tt.wantFinal {
				t.Errorf("finally task: %s, want %s", got, tt.wantFinal)
			}
			if d := s.CompletionTime.Sub(s.StartTime); d > 30*time.Second {
				t.Errorf("run took %v: the sleep was not killed", d)
			}
		})
	}
}

func TestOnErrorAndExitCodes(t *testing.T) {
	s, r, logs := runYAML(t, Options{}, `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: onerror}
spec:
  pipelineSpec:
    tasks:
    - name: t
      taskSpec:
        results: [{name: code}]
        steps:
        - {name: fails, image: x, onError: continue, script: "exit 42"}
        - name: reads
          image: x
          script: cat $(steps.step-fails.exitCode.path) > $(results.code.path)
        - name: no-set-e
          image: x
          script: |
            false
            echo "not reached: a script without shebang runs with set -e"
`)
	if s.Reason != "Failed" {
		t.Fatalf("%s\n%s", describe(s), logs)
	}
	tt := task(t, s, "t")
	if len(tt.Results) != 1 || tt.Results[0].Value.StringVal != "42" {
		t.Errorf("results %+v, want code=42", tt.Results)
	}
	if got := *tt.Steps[0].ExitCode; got != 42 || tt.Steps[0].State != "Failed" {
		t.Errorf("step fails: %s exit %d", tt.Steps[0].State, got)
	}
	if tt.Message != `"step-no-set-e" exited with code 1` {
		t.Errorf("message %q", tt.Message)
	}
	if got := readFile(t, r.LogFile("onerror", "t", "no-set-e")); got != "" {
		t.Errorf("no-set-e printed %q", got)
	}
}

func TestStepCommandsEnvAndDirs(t *testing.T) {
	s, r, logs := runYAML(t, Options{}, `
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {colour: blue}
---
apiVersion: v1
kind: Secret
metadata: {name: sec}
stringData: {token: s3cret}
---
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: steps}
spec:
  pipelineSpec:
    tasks:
    - name: t
      taskSpec:
        stepTemplate:
          env: [{name: FROM_TEMPLATE, value: tpl}]
        steps:
        - name: command
          image: x
          command: [sh, -c]
          args: ['echo "$0 $1 $GREETING $(GREETING)"', "arg0", "$(GREETING)-$$(GREETING)"]
          env: [{name: GREETING, value: hello}]
        - name: bash-shebang
          image: x
          script: |
            #!/usr/bin/env bash
            [[ -n "$BASH_VERSION" ]] && echo "bash $FROM_TEMPLATE"
        - name: env-from
          image: x
          env:
          - {name: COLOUR, valueFrom: {configMapKeyRef: {name: cfg, key: colour}}}
          - {name: TOKEN, valueFrom: {secretKeyRef: {name: sec, key: token}}}
          script: echo "$COLOUR $TOKEN"
        - name: workdir
          image: x
          workingDir: sub/dir
          script: basename "$PWD"
        - name: default-dir
          image: x
          script: |
            touch marker
            test -e marker && basename "$PWD"
`)
	if s.Reason != "Succeeded" {
		t.Fatalf("%s\n%s", describe(s), logs)
	}
	for step, want := range map[string]string{
		"command":      "arg0 hello-$(GREETING) hello hello\n",
		"bash-shebang": "bash tpl\n",
		"env-from":     "blue s3cret\n",
		"workdir":      "dir\n",
		"default-dir":  "workspace\n", // the pod's /workspace
	} {
		if got := readFile(t, r.LogFile("steps", "t", step)); got != want {
			t.Errorf("step %s printed %q, want %q", step, got, want)
		}
	}
	if !strings.Contains(logs.String(), "[t/command] arg0 hello-$(GREETING) hello hello\n") {
		t.Errorf("live log lacks the prefixed line:\n%s", logs)
	}
}

func TestIdempotentByName(t *testing.T) {
	d := t.TempDir()
	doc := func(word string) string {
		return `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: once}
spec:
  pipelineSpec:
    results: [{name: out, value: $(tasks.t.results.r)}]
    tasks:
    - name: t
      taskSpec:
        results: [{name: r}]
        steps: [{name: s, image: x, script: "echo ran >> ` + d + `/count; printf ` + word + ` > $(results.r.path)"}]
`
	}
	r, objs, logs := testRunner(t, Options{Isolation: IsolationNone /* the test watches its steps through host paths */}, doc("first"))
	first := runOne(t, r, &objs.PipelineRuns[0], logs)
	out, err := r.Run(context.Background(), &objs.PipelineRuns[0], RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !out.Adopted || out.Status.Reason != "Succeeded" || out.Status.UID != first.UID || out.Status.Results[0].Value.StringVal != "first" {
		t.Errorf("second run: adopted %v, %s, uid %s (first %s), results %+v", out.Adopted, out.Status.Reason, out.Status.UID, first.UID, out.Status.Results)
	}
	if got := readFile(t, filepath.Join(d, "count")); got != "ran\n" {
		t.Errorf("the task ran %d times", strings.Count(got, "ran"))
	}

	// Same name, other spec: a conflict, nothing runs.
	other, err := Decode(strings.NewReader(doc("second")))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Run(context.Background(), &other.PipelineRuns[0], RunOptions{}); !errors.Is(err, ErrConflict) {
		t.Errorf("other spec, same name: %v, want ErrConflict", err)
	}

	// A run recorded as running whose process is gone starts again, in a
	// fresh directory; the old one is kept as attempt 1.
	dir := r.RunDir("once")
	st, err := readStatus(dir)
	if err != nil {
		t.Fatal(err)
	}
	st.State, st.PID = StateRunning, 1
	if err := writeStatus(dir, &st); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stale"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := r.Run(context.Background(), &objs.PipelineRuns[0], RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if again.Adopted || again.Status.Reason != "Succeeded" || again.Status.UID == first.UID {
		t.Errorf("restart: adopted %v, %s, uid %s", again.Adopted, again.Status.Reason, again.Status.UID)
	}
	if _, err := os.Stat(filepath.Join(dir, "stale")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("restart kept the old directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r.AttemptDir("once", 1), "stale")); err != nil {
		t.Errorf("restart did not keep the old attempt: %v", err)
	}
	if again.Status.Attempt != 2 || len(again.Status.Restarts) != 1 || again.Status.Restarts[0].Reason != RestartWorkerGone {
		t.Errorf("restart: attempt %d, restarts %+v", again.Status.Attempt, again.Status.Restarts)
	}
	if got := readFile(t, filepath.Join(d, "count")); got != "ran\nran\n" {
		t.Errorf("after restart the task ran %d times, want 2", strings.Count(got, "ran"))
	}

	// status.json records the run.
	var rec RunStatus
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dir, "status.json"))), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.State != StateDone || rec.Reason != "Succeeded" || len(rec.Tasks) != 1 || rec.Tasks[0].Steps[0].Log != "logs/t/s.log" {
		t.Errorf("status.json: %+v", rec)
	}
}

func TestWorkspaces(t *testing.T) {
	root := t.TempDir()
	doc := func(name string) string {
		return `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: ` + name + `}
spec:
  workspaces:
  - {name: scratch, emptyDir: {}}
  - name: shared
    volumeClaimTemplate: {spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}}
  - {name: cache, persistentVolumeClaim: {claimName: cache}, subPath: sub}
  pipelineSpec:
    workspaces: [{name: scratch}, {name: shared}, {name: cache}, {name: maybe, optional: true}]
    tasks:
    - name: write
      workspaces: [{name: s, workspace: scratch}, {name: w, workspace: shared, subPath: out}, {name: c, workspace: cache}]
      taskSpec:
        workspaces: [{name: s}, {name: w}, {name: c}, {name: m, optional: true}]
        steps:
        - name: w
          image: x
          script: |
            echo hi > $(workspaces.s.path)/scratch-file
            echo hi > $(workspaces.w.path)/file
            echo run >> $(workspaces.c.path)/runs
            echo "m=$(workspaces.m.bound):$(workspaces.m.path):"
    - name: read
      runAfter: [write]
      workspaces: [{name: s, workspace: scratch}, {name: w, workspace: shared}, {name: c, workspace: cache}]
      taskSpec:
        workspaces: [{name: s}, {name: w}, {name: c}]
        steps:
        - name: r
          image: x
          script: |
            test ! -e $(workspaces.s.path)/scratch-file || { echo "emptyDir is per task run"; exit 1; }
            cat $(workspaces.w.path)/out/file
            wc -l < $(workspaces.c.path)/runs
`
	}
	r, objs, logs := testRunner(t, Options{Root: root}, doc("ws-one"))
	s := runOne(t, r, &objs.PipelineRuns[0], logs)
	if s.Reason != "Succeeded" {
		t.Fatalf("%s\n%s", describe(s), logs)
	}
	if got := readFile(t, r.LogFile("ws-one", "write", "w")); got != "m=false::\n" {
		t.Errorf("optional workspace: %q", got)
	}
	if got := readFile(t, r.LogFile("ws-one", "read", "r")); got != "hi\n1\n" {
		t.Errorf("read: %q", got)
	}
	// The persistentVolumeClaim outlives the run.
	r2, objs2, logs2 := testRunner(t, Options{Root: root}, doc("ws-two"))
	if s := runOne(t, r2, &objs2.PipelineRuns[0], logs2); s.Reason != "Succeeded" {
		t.Fatalf("%s\n%s", describe(s), logs2)
	}
	if got := readFile(t, r2.LogFile("ws-two", "read", "r")); got != "hi\n2\n" {
		t.Errorf("second run read %q, want the claim's file from both runs", got)
	}
	if got := readFile(t, filepath.Join(root, "volumes", "cache", "sub", "runs")); got != "run\nrun\n" {
		t.Errorf("claim directory: %q", got)
	}
}

func TestProgressCallback(t *testing.T) {
	r, objs, logs := testRunner(t, Options{}, `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: progress}
spec:
  pipelineSpec:
    tasks:
    - {name: a, taskSpec: {steps: [{name: s, image: x, script: "true"}]}}
    - {name: b, runAfter: [a], taskSpec: {steps: [{name: s, image: x, script: "true"}]}}
`)
	var states []string
	out, err := r.Run(context.Background(), &objs.PipelineRuns[0], RunOptions{OnProgress: func(s RunStatus) {
		states = append(states, s.Tasks[0].State+"/"+s.Tasks[1].State)
	}})
	if err != nil || out.Status.Reason != "Succeeded" {
		t.Fatalf("%v %s\n%s", err, describe(out.Status), logs)
	}
	states = slices.Compact(states)
	want := []string{"Pending/Pending", "Running/Pending", "Succeeded/Pending", "Succeeded/Running", "Succeeded/Succeeded"}
	if !slices.Equal(states, want) {
		t.Errorf("progress %v, want %v", states, want)
	}
}

func TestMissingResultFailsValidation(t *testing.T) {
	// A task that succeeds without writing a result another task needs:
	// Tekton fails the run with PipelineValidationFailed; finally still
	// runs, and tasks after the broken one are skipped.
	s, _, logs := runYAML(t, Options{}, `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: missing}
spec:
  pipelineSpec:
    tasks:
    - name: quiet
      taskSpec:
        results: [{name: r}]
        steps: [{name: s, image: x, script: "true"}]
    - name: needs
      params: [{name: v, value: $(tasks.quiet.results.r)}]
      taskSpec:
        params: [{name: v}]
        steps: [{name: s, image: x, script: "true"}]
    - name: later
      runAfter: [needs]
      taskSpec: {steps: [{name: s, image: x, script: "true"}]}
    finally:
    - name: cleanup
      taskSpec: {steps: [{name: s, image: x, script: "true"}]}
`)
	if s.Reason != "PipelineValidationFailed" || !strings.Contains(s.Message, `Task "needs" failed result validation`) {
		t.Fatalf("%s\n%s", describe(s), logs)
	}
	wantStates(t, s, map[string]string{"quiet": "Succeeded", "needs": "Failed", "later": "Skipped", "cleanup": "Succeeded"})
}

// A step's missing workingDir is created, as the container runtime does,
// when it lies in the run's directory or in one of the task's workspaces,
// persistentVolumeClaim ones included; a directory that is missing
// elsewhere, or cannot be created, is named in the step's failure.
func TestStepWorkingDirCreated(t *testing.T) {
	root := t.TempDir()
	abs := filepath.Join(root, "volumes", "cache", "abs", "dir")
	s, r, logs := runYAML(t, Options{Root: root, Isolation: IsolationNone /* the working directories the host allows */}, `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: wd}
spec:
  workspaces:
  - {name: cache, persistentVolumeClaim: {claimName: cache}}
  - {name: sub, persistentVolumeClaim: {claimName: other}, subPath: in/here}
  pipelineSpec:
    workspaces: [{name: cache}, {name: sub}]
    tasks:
    - name: t
      workspaces: [{name: c, workspace: cache}, {name: s, workspace: sub}]
      taskSpec:
        workspaces: [{name: c}, {name: s}]
        steps:
        - name: ws-path
          image: x
          workingDir: $(workspaces.c.path)/from/var
          script: pwd
        - name: ws-subpath
          image: x
          workingDir: $(workspaces.s.path)/deeper
          script: pwd
        - name: absolute
          image: x
          workingDir: `+abs+`
          command: [pwd]
        - name: relative
          image: x
          workingDir: ../../../../volumes/cache/rel
          command: [pwd]
`)
	if s.Reason != "Succeeded" {
		t.Fatalf("%s\n%s", describe(s), logs)
	}
	for step, want := range map[string]string{
		"ws-path":    filepath.Join(root, "volumes", "cache", "from", "var"),
		"ws-subpath": filepath.Join(root, "volumes", "other", "in", "here", "deeper"),
		"absolute":   abs,
		"relative":   filepath.Join(root, "volumes", "cache", "rel"),
	} {
		if got := readFile(t, r.LogFile("wd", "t", step)); got != want+"\n" {
			t.Errorf("step %s ran in %q, want %q", step, got, want)
		}
	}

	elsewhere := filepath.Join(t.TempDir(), "missing", "dir")
	s, r, logs = runYAML(t, Options{Isolation: IsolationNone}, `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: wd-bad}
spec:
  workspaces:
  - {name: cache, persistentVolumeClaim: {claimName: cache}}
  pipelineSpec:
    workspaces: [{name: cache}]
    tasks:
    - name: missing
      taskSpec:
        steps:
        - name: s
          image: x
          workingDir: `+elsewhere+`
          command: [echo, hi]
    - name: blocked
      workspaces: [{name: c, workspace: cache}]
      taskSpec:
        workspaces: [{name: c}]
        steps:
        - name: file
          image: x
          script: touch $(workspaces.c.path)/file
        - name: s
          image: x
          workingDir: $(workspaces.c.path)/file/sub
          command: [echo, hi]
`)
	if s.Reason != "Failed" {
		t.Fatalf("%s\n%s", describe(s), logs)
	}
	for taskName, dir := range map[string]string{
		"missing": elsewhere,
		"blocked": filepath.Join(r.root, "volumes", "cache", "file", "sub"),
	} {
		ts := task(t, s, taskName)
		st := ts.Steps[len(ts.Steps)-1]
		for _, msg := range []string{ts.Message, st.Message, readFile(t, r.LogFile("wd-bad", taskName, "s"))} {
			if !strings.Contains(msg, "working directory "+dir) || strings.Contains(msg, "fork/exec") {
				t.Errorf("task %s: %q does not name the working directory %s", taskName, msg, dir)
			}
		}
	}
}

// A workspace binding's ConfigMap and Secret names (and projected sources')
// may use the run's params, which are substituted before the objects are
// looked up, as Tekton's PipelineRun reconciler does; names left over are
// substituted with the task's params, as its TaskRun reconciler does.
func TestWorkspaceBindingNamesFromParams(t *testing.T) {
	s, r, logs := runYAML(t, Options{}, `
apiVersion: v1
kind: ConfigMap
metadata: {name: cm-blue}
data: {colour: blue}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cm-task}
data: {colour: green}
---
apiVersion: v1
kind: Secret
metadata: {name: sec-a}
stringData: {token: s3cret}
---
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: ws-params}
spec:
  params:
  - {name: cm, value: cm-blue}
  - {name: sec, value: sec-a}
  - {name: key, value: token}
  workspaces:
  - {name: config, configMap: {name: $(params.cm)}}
  - name: creds
    secret:
      secretName: $(params.sec)
      items: [{key: $(params.key), path: the-$(params.key)}]
  - name: both
    projected:
      sources:
      - configMap: {name: $(params.cm)}
      - secret: {name: $(params.sec)}
  - {name: per-task, configMap: {name: $(params.which)}}
  pipelineSpec:
    params: [{name: cm}, {name: sec}, {name: key}]
    workspaces: [{name: config}, {name: creds}, {name: both}, {name: per-task}]
    tasks:
    - name: read
      params: [{name: which, value: cm-task}]
      workspaces:
      - {name: config, workspace: config}
      - {name: creds, workspace: creds}
      - {name: both, workspace: both}
      - {name: per-task, workspace: per-task}
      taskSpec:
        params: [{name: which}]
        workspaces: [{name: config}, {name: creds}, {name: both}, {name: per-task}]
        steps:
        - name: r
          image: x
          script: |
            echo "$(cat $(workspaces.config.path)/colour) $(cat $(workspaces.creds.path)/the-token)"
            echo "$(cat $(workspaces.both.path)/colour) $(cat $(workspaces.both.path)/token)"
            cat $(workspaces.per-task.path)/colour
`)
	if s.Reason != "Succeeded" {
		t.Fatalf("%s\n%s", describe(s), logs)
	}
	if got, want := readFile(t, r.LogFile("ws-params", "read", "r")), "blue s3cret\nblue s3cret\ngreen"; got != want {
		t.Errorf("read %q, want %q", got, want)
	}

	// A name that is still missing after substitution is refused before
	// anything runs, under its substituted name.
	r2, objs, _ := testRunner(t, Options{}, `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: ws-params-missing}
spec:
  params: [{name: sec, value: nope}]
  workspaces:
  - {name: creds, secret: {secretName: $(params.sec)}}
  pipelineSpec:
    params: [{name: sec}]
    workspaces: [{name: creds}]
    tasks:
    - name: read
      workspaces: [{name: creds, workspace: creds}]
      taskSpec:
        workspaces: [{name: creds}]
        steps: [{name: r, image: x, script: "true"}]
`)
	_, err := r2.Run(context.Background(), &objs.PipelineRuns[0], RunOptions{})
	if !IsSpecError(err) || !strings.Contains(err.Error(), `spec.workspaces[0].secret.secretName: Secret "nope" not found`) {
		t.Errorf("Run: %v, want a SpecError naming Secret \"nope\"", err)
	}
}

// Only a taskRunTemplate the run sets is reported as ignored: Tekton's
// defaulting fills in the "default" service account of every run.
func TestTaskRunTemplateWarning(t *testing.T) {
	doc := func(name, template string) string {
		return `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: ` + name + `}
spec:
` + template + `
  pipelineSpec:
    tasks:
    - name: t
      taskSpec:
        steps: [{name: s, image: x, script: "true"}]
`
	}
	for _, tc := range []struct {
		name, template string
		warn           bool
	}{
		{"none", "", false},
		{"empty", "  taskRunTemplate: {}", false},
		{"service-account", "  taskRunTemplate: {serviceAccountName: builder}", true},
		{"pod-template", "  taskRunTemplate: {podTemplate: {nodeSelector: {disk: ssd}}}", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _, logs := runYAML(t, Options{}, doc(tc.name, tc.template))
			if s.Reason != "Succeeded" {
				t.Fatalf("%s\n%s", describe(s), logs)
			}
			if got := strings.Contains(logs.String(), "field=\"spec.taskRunTemplate: "); got != tc.warn {
				t.Errorf("warned about spec.taskRunTemplate: %v, want %v; logs:\n%s", got, tc.warn, logs)
			}
		})
	}
}
