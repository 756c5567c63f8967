package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// A step that writes /workspace/x writes into its task run's directory,
// not into the host's /workspace; $(results.R.path), $(workspaces.W.path)
// and HOME are the pod's paths, as Tekton substitutes them.
func TestNamespacesPodPaths(t *testing.T) {
	hostMarker := "/workspace/kiln-probe-" + strings.ReplaceAll(t.Name(), "/", "-")
	os.Remove(hostMarker)
	t.Cleanup(func() { os.Remove(hostMarker) })
	s, r, logs := runYAML(t, Options{}, `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: podpaths}
spec:
  workspaces:
  - {name: src, emptyDir: {}}
  - {name: cache, persistentVolumeClaim: {claimName: cache}}
  pipelineSpec:
    workspaces: [{name: src}, {name: cache}]
    results: [{name: where, value: $(tasks.t.results.where)}]
    tasks:
    - name: t
      workspaces: [{name: src, workspace: src}, {name: cache, workspace: cache}]
      taskSpec:
        workspaces: [{name: src}, {name: cache, mountPath: /cache}]
        results: [{name: where}]
        steps:
        - name: write
          image: x
          script: |
            pwd
            echo hello > /workspace/x
            echo `+filepath.Base(hostMarker)+` > `+hostMarker+`
            echo src > $(workspaces.src.path)/f
            echo cache > /cache/f
            echo "$HOME" > $HOME/home
            printf '%s %s %s' "$(results.where.path)" "$(workspaces.src.path)" "$(workspaces.cache.path)" > $(results.where.path)
        - name: read
          image: x
          script: cat /workspace/x /workspace/src/f /cache/f /tekton/home/home
`)
	if s.Reason != "Succeeded" {
		t.Fatalf("%s\n%s", describe(s), logs)
	}
	if got := readFile(t, r.LogFile("podpaths", "t", "write")); got != "/workspace\n" {
		t.Errorf("working directory %q, want /workspace", got)
	}
	if got := readFile(t, r.LogFile("podpaths", "t", "read")); got != "hello\nsrc\ncache\n/tekton/home\n" {
		t.Errorf("read printed %q", got)
	}
	if got := readFile(t, filepath.Join(r.RunDir("podpaths"), "work", "podpaths-t", "x")); got != "hello\n" {
		t.Errorf("the task run's /workspace holds %q", got)
	}
	if got := readFile(t, filepath.Join(r.root, "volumes", "cache", "f")); got != "cache\n" {
		t.Errorf("the claim holds %q", got)
	}
	if _, err := os.Stat(hostMarker); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the step wrote the host's %s: %v", hostMarker, err)
	}
	if len(s.Results) != 1 || s.Results[0].Value.StringVal != "/tekton/results/where /workspace/src /cache" {
		t.Errorf("results %+v", s.Results)
	}
}

// Two runs at once that write the same /workspace path each get their own.
func TestNamespacesConcurrentRunsDoNotCollide(t *testing.T) {
	doc := func(name, word string) string {
		return `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: ` + name + `}
spec:
  pipelineSpec:
    results: [{name: got, value: $(tasks.t.results.got)}]
    tasks:
    - name: t
      taskSpec:
        results: [{name: got}]
        steps:
        - name: s
          image: x
          script: |
            echo ` + word + ` > /workspace/same
            sleep 0.3
            cat /workspace/same > $(results.got.path)
`
	}
	r, objs, logs := testRunner(t, Options{MaxParallel: 2}, doc("one", "first"), doc("two", "second"))
	var wg sync.WaitGroup
	got := make([]RunStatus, 2)
	for i := range objs.PipelineRuns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := r.Run(context.Background(), &objs.PipelineRuns[i], RunOptions{})
			if err != nil {
				t.Errorf("Run: %v", err)
				return
			}
			got[i] = out.Status
		}()
	}
	wg.Wait()
	for i, want := range []string{"first\n", "second\n"} {
		s := got[i]
		if s.Reason != "Succeeded" || len(s.Results) != 1 || s.Results[0].Value.StringVal != want {
			t.Errorf("run %d: %s results %+v, want %q\n%s", i, describe(s), s.Results, want, logs)
		}
	}
}

// What a step writes outside its mounts never reaches the host, nor the
// next step: the host's directories are overlays that die with the step,
// as a container's root file system does, and /tmp is its own.
func TestNamespacesHostUntouched(t *testing.T) {
	s, r, logs := runYAML(t, Options{}, `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: host}
spec:
  pipelineSpec:
    tasks:
    - name: t
      taskSpec:
        steps:
        - name: s
          image: x
          onError: continue
          script: |
            for f in /etc/kiln-probe /usr/kiln-probe /tmp/kiln-probe /kiln-probe-dir/f; do
              mkdir -p $(dirname $f) && echo x > $f && echo "wrote $f"
            done
        - name: next
          image: x
          script: |
            ls /tmp
            for f in /etc/kiln-probe /usr/kiln-probe /kiln-probe-dir; do
              test ! -e $f || echo "sees $f"
            done
            test -e /etc/passwd && echo "fresh root"
`)
	if s.Reason != "Succeeded" {
		t.Fatalf("%s\n%s", describe(s), logs)
	}
	for _, f := range []string{"/etc/kiln-probe", "/usr/kiln-probe", "/tmp/kiln-probe", "/kiln-probe-dir"} {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			os.RemoveAll(f)
			t.Errorf("the step wrote the host's %s", f)
		}
	}
	out := readFile(t, r.LogFile("host", "t", "s"))
	if strings.Count(out, "wrote ") != 4 {
		t.Errorf("step s printed:\n%s", out)
	}
	if got := readFile(t, r.LogFile("host", "t", "next")); got != "fresh root\n" {
		t.Errorf("step next printed %q: a step sees an earlier step's /tmp or root", got)
	}
}

// A readOnly workspace, and a ConfigMap's, refuse writes.
func TestNamespacesReadOnlyWorkspace(t *testing.T) {
	r, objs, logs := testRunner(t, Options{}, `
apiVersion: v1
kind: ConfigMap
metadata: {name: conf}
data: {key: value}
---
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: ro}
spec:
  workspaces:
  - {name: data, persistentVolumeClaim: {claimName: data}}
  - {name: conf, configMap: {name: conf}}
  pipelineSpec:
    workspaces: [{name: data}, {name: conf}]
    tasks:
    - name: t
      workspaces: [{name: data, workspace: data}, {name: conf, workspace: conf}]
      taskSpec:
        workspaces: [{name: data, readOnly: true}, {name: conf}]
        steps:
        - name: s
          image: x
          script: |
            cat $(workspaces.data.path)/in $(workspaces.conf.path)/key; echo
            if echo x > $(workspaces.data.path)/out; then echo "wrote data"; fi
            if echo x > $(workspaces.conf.path)/out; then echo "wrote conf"; fi
`)
	claim := filepath.Join(r.root, "volumes", "data")
	if err := os.MkdirAll(claim, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(claim, "in"), []byte("input "), 0o644); err != nil {
		t.Fatal(err)
	}
	s := runOne(t, r, &objs.PipelineRuns[0], logs)
	if s.Reason != "Succeeded" {
		t.Fatalf("%s\n%s", describe(s), logs)
	}
	out := readFile(t, r.LogFile("ro", "t", "s"))
	if !strings.HasPrefix(out, "input value\n") || strings.Contains(out, "wrote") || strings.Count(out, "Read-only file system") != 2 {
		t.Errorf("step printed:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(claim, "out")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the read-only workspace was written: %v", err)
	}
}

// Without user namespaces, NewRunner refuses and says how to enable them
// or how to run without.
func TestNamespacesUnavailable(t *testing.T) {
	saved := probeNamespaces
	t.Cleanup(func() { probeNamespaces = saved })
	probeNamespaces = func(string) error { return &os.SyscallError{Syscall: "clone", Err: syscall.EPERM} }
	_, err := NewRunner(Options{Root: t.TempDir()})
	if err == nil {
		t.Fatal("NewRunner succeeded")
	}
	for _, want := range []string{`isolation "namespaces"`, "user namespace", "operation not permitted", "kernel.unprivileged_userns_clone=1", "user.max_user_namespaces", `isolation "none"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q\nlacks %q", err, want)
		}
	}
	if _, err := NewRunner(Options{Root: t.TempDir(), Isolation: IsolationNone}); err != nil {
		t.Errorf("with isolation none: %v", err)
	}
}

// With IsolationNone, steps run on the host as before: in the run's
// directories, with host paths in their variables, writing where the
// worker's user may.
func TestIsolationNoneRunsOnTheHost(t *testing.T) {
	d := t.TempDir()
	s, r, logs := runYAML(t, Options{Isolation: IsolationNone}, `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: onhost}
spec:
  workspaces: [{name: w, emptyDir: {}}]
  pipelineSpec:
    workspaces: [{name: w}]
    tasks:
    - name: t
      workspaces: [{name: w, workspace: w}]
      taskSpec:
        workspaces: [{name: w, mountPath: /ignored}]
        results: [{name: r}]
        steps:
        - name: s
          image: x
          script: |
            pwd
            echo "$(workspaces.w.path) $(results.r.path)"
            echo x > `+d+`/host
            printf ok > $(results.r.path)
`)
	if s.Reason != "Succeeded" {
		t.Fatalf("%s\n%s", describe(s), logs)
	}
	dir := r.RunDir("onhost")
	want := filepath.Join(dir, "work", "onhost-t") + "\n" +
		filepath.Join(dir, "workspaces", "onhost-t", "w") + " " + filepath.Join(dir, "results", "onhost-t", "r") + "\n"
	if got := readFile(t, r.LogFile("onhost", "t", "s")); got != want {
		t.Errorf("step printed\n%s\nwant\n%s", got, want)
	}
	if got := readFile(t, filepath.Join(d, "host")); got != "x\n" {
		t.Errorf("the host file holds %q", got)
	}
}

// Volumes appear at their volumeMounts: a ConfigMap's keys, read-only;
// an emptyDir shared by the steps that mount it; a step workspace only
// in the step that lists it, at its own path.
func TestNamespacesVolumes(t *testing.T) {
	s, r, logs := runYAML(t, Options{}, `
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {colour: blue, size: large}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {token: s3cret}
---
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: vols}
spec:
  params: [{name: cm, value: settings}]
  workspaces: [{name: creds, secret: {secretName: creds}}]
  pipelineSpec:
    params: [{name: cm}]
    workspaces: [{name: creds}]
    tasks:
    - name: t
      params: [{name: cm, value: $(params.cm)}]
      workspaces: [{name: creds, workspace: creds}]
      taskSpec:
        params: [{name: cm}]
        workspaces: [{name: creds}]
        volumes:
        - {name: conf, configMap: {name: $(params.cm), items: [{key: colour, path: c/colour}]}}
        - {name: scratch, emptyDir: {}}
        steps:
        - name: write
          image: x
          volumeMounts: [{name: conf, mountPath: /etc/kiln-conf}, {name: scratch, mountPath: /scratch}]
          workspaces: [{name: creds, mountPath: /creds}]
          script: |
            cat /etc/kiln-conf/c/colour; echo
            test -e /etc/kiln-conf/size || echo "no size"
            if echo x > /etc/kiln-conf/new; then echo "wrote conf"; fi
            cat $(workspaces.creds.path)/token; echo
            echo shared > /scratch/f
        - name: read
          image: x
          volumeMounts: [{name: scratch, mountPath: /elsewhere, readOnly: true}]
          script: |
            cat /elsewhere/f
            if echo x > /elsewhere/g; then echo "wrote scratch"; fi
            test -e /creds || test -e /workspace/creds || echo "no creds"
`)
	if s.Reason != "Succeeded" {
		t.Fatalf("%s\n%s", describe(s), logs)
	}
	if got := readFile(t, r.LogFile("vols", "t", "write")); !strings.HasPrefix(got, "blue\nno size\n") || strings.Contains(got, "wrote") || !strings.HasSuffix(got, "s3cret\n") {
		t.Errorf("step write printed:\n%s", got)
	}
	if got := readFile(t, r.LogFile("vols", "t", "read")); !strings.HasPrefix(got, "shared\n") || strings.Contains(got, "wrote") || !strings.HasSuffix(got, "no creds\n") {
		t.Errorf("step read printed:\n%s", got)
	}
	if _, err := os.Stat("/etc/kiln-conf"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the host has /etc/kiln-conf: %v", err)
	}
}

// A sidecar with a script runs beside the steps, sharing /workspace, and
// is stopped, with what it started, when they end.
func TestNamespacesSidecar(t *testing.T) {
	token := "97" + strconv.Itoa(os.Getpid()%10000) // sleep's argument, to find it on the host
	s, r, logs := runYAML(t, Options{}, `
apiVersion: tekton.dev/v1
kind: PipelineRun
metadata: {name: side}
spec:
  pipelineSpec:
    tasks:
    - name: t
      taskSpec:
        sidecars:
        - name: beat
          image: x
          script: |
            sleep `+token+` &
            while :; do echo beat > /workspace/beat; sleep 0.02; done
        steps:
        - name: wait
          image: x
          script: |
            for i in $(seq 500); do test -e /workspace/beat && break; sleep 0.02; done
            cat /workspace/beat
`)
	if s.Reason != "Succeeded" {
		t.Fatalf("%s\n%s", describe(s), logs)
	}
	if got := readFile(t, r.LogFile("side", "t", "wait")); got != "beat\n" {
		t.Errorf("step printed %q", got)
	}
	if _, err := os.Stat(filepath.Join(r.RunDir("side"), "logs", "t", "sidecar-beat.log")); err != nil {
		t.Errorf("sidecar log: %v", err)
	}
	if pids := processesWithArg(t, "sleep", token); len(pids) > 0 {
		t.Errorf("the sidecar's sleep %s survived the steps: pids %v", token, pids)
	}
}

// processesWithArg lists the host's processes running name with arg.
func processesWithArg(t *testing.T, name, arg string) []string {
	t.Helper()
	cmdlines, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, f := range cmdlines {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) == 2 && filepath.Base(args[0]) == name && args[1] == arg {
			pids = append(pids, filepath.Base(filepath.Dir(f)))
		}
	}
	return pids
}
