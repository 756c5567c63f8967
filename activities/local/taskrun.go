package local

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/kiln-build/kiln/activities/tekton"
)

// Causes with which the scheduler stops a task run's context.
var (
	errRunCancelled    = errors.New("the PipelineRun was cancelled")
	errPipelineTimeout = errors.New("the PipelineRun timed out")
	errTasksTimeout    = errors.New("the PipelineRun's tasks timed out")
	errFinallyTimeout  = errors.New("the PipelineRun's finally tasks timed out")
	errAborted         = errors.New("the worker is stopping")
	errTaskRunTimeout  = errors.New("task run timeout")
	errStepTimeout     = errors.New("step timeout")
)

// taskRun executes one pipeline task: its attempts (1 + retries), each
// running the steps in order as Tekton's entrypoint does.
type taskRun struct {
	x        *execution
	t        *taskState
	name     string
	uid      string
	spec     *pipelinev1.TaskSpec
	params   pipelinev1.Params
	timeout  time.Duration // 0: none
	retries  int
	bindings []taskBinding
}

// taskOutcome is how a task run ended.
type taskOutcome struct {
	ok      bool
	reason  string
	message string
	// cause is the scheduler's reason for stopping the run early, if any.
	cause      error
	results    []pipelinev1.TaskRunResult
	steps      []StepStatus
	retryCount int
	start      time.Time
	end        time.Time
}

// run runs the attempts and reports the outcome; it never returns early
// without one.
func (tr *taskRun) run(ctx context.Context) taskOutcome {
	if err := checkParamTypes(tr.spec.Params, tr.params); err != nil {
		now := time.Now()
		return taskOutcome{reason: string(pipelinev1.TaskRunReasonFailedValidation), message: err.Error(), start: now, end: now}
	}
	select {
	case tr.x.r.slots <- struct{}{}:
	case <-ctx.Done():
		now := time.Now()
		return tr.stopped(taskOutcome{start: now, end: now}, context.Cause(ctx))
	}
	defer func() { <-tr.x.r.slots }()
	// The task's params go into its workspace bindings, as the TaskRun
	// reconciler's ApplyParametersToWorkspaceBindings does.
	taskParams := taskParamRepl(tr.spec.Params, tr.params).str
	bindings := make([]taskBinding, len(tr.bindings))
	for i, b := range tr.bindings {
		bindings[i] = taskBinding{WorkspaceBinding: *b.DeepCopy(), pipelineWorkspace: b.pipelineWorkspace}
		applyBindingStrings(&bindings[i].WorkspaceBinding, taskParams)
	}
	tr.bindings = bindings
	start := time.Now()
	tr.x.send(taskEvent{t: tr.t, kind: eventStarted, at: start})
	for attempt := 0; ; attempt++ {
		out := tr.attempt(ctx, attempt)
		out.start, out.retryCount = start, attempt
		if out.ok || out.cause != nil || attempt >= tr.retries {
			return out
		}
		tr.x.r.logger.Info("retrying task run", "pipelinerun", tr.x.plan.pr.Name, "taskrun", tr.name, "retry", attempt+1, "reason", out.reason, "message", out.message)
	}
}

// stopped fills out the outcome of a run the scheduler stopped.
func (tr *taskRun) stopped(out taskOutcome, cause error) taskOutcome {
	out.cause, out.reason = cause, string(pipelinev1.TaskRunReasonCancelled)
	switch {
	case errors.Is(cause, errRunCancelled):
		out.message = fmt.Sprintf("TaskRun %q was cancelled. %s", tr.name, pipelinev1.TaskRunCancelledByPipelineMsg)
	case errors.Is(cause, errAborted):
		out.message = fmt.Sprintf("TaskRun %q was cancelled: %v", tr.name, cause)
	default:
		out.message = fmt.Sprintf("TaskRun %q was cancelled. %s", tr.name, pipelinev1.TaskRunCancelledByPipelineTimeoutMsg)
	}
	return out
}

// dirs of one task run inside the run directory.
func (tr *taskRun) dir(kind string) string { return filepath.Join(tr.x.dir, kind, tr.name) }

func (tr *taskRun) attempt(ctx context.Context, attempt int) taskOutcome {
	actx := ctx
	if tr.timeout > 0 {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeoutCause(ctx, tr.timeout, errTaskRunTimeout)
		defer cancel()
	}
	out := taskOutcome{}
	fail := func(reason, format string, args ...any) taskOutcome {
		out.reason, out.message, out.end = reason, fmt.Sprintf(format, args...), time.Now()
		return out
	}
	ns := tr.x.r.namespaces
	resultsDir, stepsDir, workDir, scriptsDir := tr.dir("results"), tr.dir("steps"), tr.dir("work"), tr.dir("scripts")
	fresh := []string{resultsDir, stepsDir, workDir, scriptsDir}
	if ns {
		fresh = append(fresh, tr.dir("home"), tr.dir("volumes"))
	}
	for _, d := range fresh {
		if err := freshDir(d); err != nil {
			return fail(string(pipelinev1.TaskRunReasonFailed), "prepare task run: %v", err)
		}
	}
	wsPaths, err := tr.workspaces()
	if err != nil {
		return fail(string(pipelinev1.TaskRunReasonFailed), "prepare workspaces: %v", err)
	}
	// The paths steps see: the pod's in namespaces, else the host's.
	resultsPath, stepsPath := resultsDir, stepsDir
	if ns {
		resultsPath, stepsPath = podResults, podSteps
	}

	// TaskRun-level substitution, in the TaskRun reconciler's order:
	// params, then context, results, step exit codes and workspaces.
	spec := applyTaskSpec(tr.spec, taskParamRepl(tr.spec.Params, tr.params))
	var pod *podFS
	if ns {
		if pod, err = tr.podFS(spec, wsPaths); err != nil {
			return fail(string(pipelinev1.TaskRunReasonFailed), "prepare volumes: %v", err)
		}
		spec = isolatedWorkspacePaths(spec)
	}
	m := map[string]string{
		"context.taskRun.name":      tr.name,
		"context.task.name":         tr.t.p.taskName,
		"context.taskRun.namespace": tr.x.plan.pr.Namespace,
		"context.taskRun.uid":       tr.uid,
		"context.task.retry-count":  strconv.Itoa(attempt),
	}
	for _, res := range spec.Results {
		p := filepath.Join(resultsPath, res.Name)
		for _, pattern := range []string{"results.%s.path", "results[%q].path", "results['%s'].path"} {
			m[fmt.Sprintf(pattern, res.Name)] = p
		}
	}
	// Exit code files are written only when a step refers to one: creating
	// files is most of a step's cost on a busy disk.
	exitCodes := refersToExitCodes(spec)
	for i, s := range spec.Steps {
		n := stepName(s.Name, i)
		m["steps.step-"+n+".exitCode.path"] = filepath.Join(stepsPath, "step-"+n, "exitCode")
	}
	decls := slices.Clone(spec.Workspaces)
	for _, b := range tr.bindings {
		if !slices.ContainsFunc(decls, func(d pipelinev1.WorkspaceDeclaration) bool { return d.Name == b.Name }) {
			decls = append(decls, pipelinev1.WorkspaceDeclaration{Name: b.Name})
		}
	}
	for _, d := range decls {
		prefix := "workspaces." + d.Name + "."
		path, ok := wsPaths[d.Name]
		if ok && ns {
			path = d.GetMountPath()
		}
		m[prefix+"bound"], m[prefix+"path"] = strconv.FormatBool(ok), path
		m[prefix+"volume"], m[prefix+"claim"] = "", ""
		if ok {
			m[prefix+"volume"] = "ws-" + d.Name
		}
	}
	for _, b := range tr.bindings {
		if b.PersistentVolumeClaim != nil {
			m["workspaces."+b.Name+".claim"] = b.PersistentVolumeClaim.ClaimName
		}
	}
	spec = applyTaskSpec(spec, strRepl(m))
	steps, err := pipelinev1.MergeStepsWithStepTemplate(spec.StepTemplate, spec.Steps)
	if err != nil {
		return fail(string(pipelinev1.TaskRunReasonFailedValidation), "merge step template: %v", err)
	}

	out.steps = make([]StepStatus, len(steps))
	for i, s := range steps {
		n := stepName(s.Name, i)
		out.steps[i] = StepStatus{Name: n, State: tekton.TaskPending, Log: filepath.Join("logs", tr.t.p.pt.Name, n+".log")}
		if exitCodes {
			if err := os.Mkdir(filepath.Join(stepsDir, "step-"+n), 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
				return fail(string(pipelinev1.TaskRunReasonFailed), "prepare task run: %v", err)
			}
		}
	}
	if err := os.MkdirAll(filepath.Join(tr.x.dir, "logs", tr.t.p.pt.Name), 0o755); err != nil {
		return fail(string(pipelinev1.TaskRunReasonFailed), "prepare task run: %v", err)
	}
	tr.x.send(taskEvent{t: tr.t, kind: eventSteps, steps: slices.Clone(out.steps), retry: attempt})

	dirs := stepDirs{scripts: scriptsDir, work: workDir, steps: stepsDir, creatable: []string{tr.x.dir}, pod: pod}
	for _, p := range wsPaths {
		dirs.creatable = append(dirs.creatable, p)
	}
	stopSidecars := tr.startSidecars(actx, spec.Sidecars, dirs)
	var failure *taskOutcome
	for i, s := range steps {
		if actx.Err() != nil {
			break
		}
		st := &out.steps[i]
		st.State = tekton.TaskRunning
		tr.x.send(taskEvent{t: tr.t, kind: eventSteps, steps: slices.Clone(out.steps), retry: attempt})
		code, timedOut, err := tr.step(actx, s, st.Name, dirs, exitCodes)
		if actx.Err() != nil {
			st.State, st.ExitCode = tekton.TaskFailed, &code
			st.Message = "stopped: " + context.Cause(actx).Error()
			break
		}
		st.ExitCode = &code
		switch {
		case code == 0 && err == nil:
			st.State = tekton.TaskSucceeded
		case s.OnError == pipelinev1.Continue:
			st.State, st.Message = tekton.TaskFailed, fmt.Sprintf("exited with code %d; ignored (onError: continue)", code)
		case timedOut:
			st.State = tekton.TaskFailed
			st.Message = fmt.Sprintf("%q exited because the step exceeded the specified timeout limit", "step-"+st.Name)
			failure = &taskOutcome{reason: string(pipelinev1.TaskRunReasonFailed), message: st.Message}
		default:
			st.State = tekton.TaskFailed
			st.Message = fmt.Sprintf("%q exited with code %d", "step-"+st.Name, code)
			if err != nil {
				st.Message += ": " + err.Error()
			}
			failure = &taskOutcome{reason: string(pipelinev1.TaskRunReasonFailed), message: st.Message}
		}
		if failure != nil {
			break
		}
	}
	stopSidecars()
	for i := range out.steps {
		if out.steps[i].State == tekton.TaskPending {
			out.steps[i].State = tekton.TaskSkipped
		}
	}
	// Results written before a failure are kept, as Tekton reports them.
	results, rerr := readResults(resultsDir, spec.Results)
	out.results, out.end = results, time.Now()
	switch {
	case actx.Err() != nil:
		cause := context.Cause(actx)
		if errors.Is(cause, errTaskRunTimeout) {
			out.reason = string(pipelinev1.TaskRunReasonTimedOut)
			out.message = fmt.Sprintf("TaskRun %q failed to finish within %q", tr.name, tr.timeout.String())
			return out
		}
		return tr.stopped(out, cause)
	case failure != nil:
		out.reason, out.message = failure.reason, failure.message
	case rerr != nil:
		out.reason, out.message = string(pipelinev1.TaskRunReasonFailedValidation), rerr.Error()
	default:
		out.ok, out.reason, out.message = true, string(pipelinev1.TaskRunReasonSuccessful), "All Steps have completed executing"
	}
	return out
}

// stepDirs are the directories of one attempt that its steps use.
type stepDirs struct {
	scripts, work, steps string
	// creatable are the directories in which a missing working directory
	// is created: the run's directory and the task's workspaces.
	creatable []string
	// pod, with IsolationNamespaces, is what the steps' namespaces mount.
	pod *podFS
}

// step runs one step and records its exit code where
// $(steps.step-<name>.exitCode.path) points.
func (tr *taskRun) step(ctx context.Context, s pipelinev1.Step, name string, dirs stepDirs, exitCodes bool) (code int, timedOut bool, err error) {
	stepsDir := dirs.steps
	x := tr.x
	x.r.firstStep.Do(func() {
		x.r.logger.Warn("the local runner ignores step images: steps run on this machine with its own tools, as the worker's user",
			"pipelinerun", x.plan.pr.Name, "taskrun", tr.name, "step", name, "image", s.Image)
	})
	sctx := ctx
	if s.Timeout != nil && s.Timeout.Duration > 0 {
		var cancel context.CancelFunc
		sctx, cancel = context.WithTimeoutCause(ctx, s.Timeout.Duration, errStepTimeout)
		defer cancel()
	}
	code, err = tr.container(sctx, s, name, dirs)
	timedOut = errors.Is(err, errStepTimeout)
	if exitCodes {
		if werr := os.WriteFile(filepath.Join(stepsDir, "step-"+name, "exitCode"), []byte(strconv.Itoa(code)), 0o644); werr != nil && err == nil {
			err = werr
		}
	}
	return code, timedOut, err
}

// container runs a step, or a sidecar as a step, with its log in
// logs/<task>/<name>.log, and returns its exit code.
func (tr *taskRun) container(ctx context.Context, s pipelinev1.Step, name string, dirs stepDirs) (code int, err error) {
	scriptsDir, workDir := dirs.scripts, dirs.work
	x := tr.x
	logPath := filepath.Join(x.dir, "logs", tr.t.p.pt.Name, name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return -1, err
	}
	defer logf.Close()
	prefix := tr.t.p.pt.Name + "/" + name
	env, vars, err := x.r.stepEnv(s)
	if err != nil {
		fmt.Fprintf(logf, "kiln: %v\n", err)
		x.r.live.writeLine(prefix, []byte("kiln: "+err.Error()))
		return 1, err
	}
	var sb *sandbox
	if dirs.pod != nil {
		if _, set := vars["HOME"]; !set {
			env = append(env, "HOME="+podHome) // the last one wins
		}
		mounts, merr := dirs.pod.mounts(s)
		if merr != nil {
			fmt.Fprintf(logf, "kiln: %v\n", merr)
			x.r.live.writeLine(prefix, []byte("kiln: "+merr.Error()))
			return 127, merr
		}
		sb = &sandbox{root: filepath.Join(x.r.root, "root"), hide: []string{x.r.root}, mounts: mounts}
	}
	args := make([]string, len(s.Args))
	for i, a := range s.Args {
		args[i] = expandK8s(a, vars)
	}
	var argv []string
	if s.Script != "" {
		script := s.Script
		if !strings.HasPrefix(strings.TrimSpace(script), "#!") {
			script = x.r.preamble + script
		}
		file := filepath.Join(scriptsDir, name)
		if err := os.WriteFile(file, []byte(script), 0o755); err != nil {
			return -1, err
		}
		if sb != nil {
			file = path.Join(podScripts, name)
		}
		argv = shebangArgv(strings.TrimSpace(script), file, args)
	} else {
		for _, c := range s.Command {
			argv = append(argv, expandK8s(c, vars))
		}
		argv = append(argv, args...)
	}
	dir := workDir
	if sb != nil {
		dir = podWorkspace
	}
	var dirErr error
	if wd := s.WorkingDir; wd != "" {
		if filepath.IsAbs(wd) {
			dir = filepath.Clean(wd)
		} else {
			dir = filepath.Join(dir, wd)
		}
		// The container runtime creates a missing working directory in the
		// container's file system (so does the namespace init); on the
		// host, only inside the run's directory and the task's workspaces.
		if sb == nil && slices.ContainsFunc(dirs.creatable, func(d string) bool { return within(dir, d) }) {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				dirErr = workingDirError(dir, err)
			}
		}
	}
	if dirErr != nil {
		code, err = 127, dirErr // as runProc reports a step it cannot start
	} else {
		g := &stepGroup{file: filepath.Join(x.dir, pgroupsFile)}
		code, err = runProc(ctx, procSpec{argv: argv, env: env, dir: dir, log: logf, live: x.r.live, prefix: prefix, onStart: g.started, sandbox: sb})
		g.ended()
	}
	if err != nil && context.Cause(ctx) != err {
		// Could not start: tell the step's log, as a container runtime would.
		fmt.Fprintf(logf, "kiln: %v\n", err)
		x.r.live.writeLine(prefix, []byte("kiln: "+err.Error()))
	}
	return code, err
}

// within reports whether path is dir or lies under it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && filepath.IsLocal(rel)
}

// workingDirError names dir as the step's working directory that could
// not be created or entered, with the cause alone.
func workingDirError(dir string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("working directory %s: %w", dir, err)
}

// refersToExitCodes reports whether any step may read a step's exit code
// file ($(steps.step-<name>.exitCode.path)).
func refersToExitCodes(spec *pipelinev1.TaskSpec) bool {
	has := func(s string) bool { return strings.Contains(s, "exitCode.path") }
	check := func(ss []string, env []corev1.EnvVar) bool {
		for _, s := range ss {
			if has(s) {
				return true
			}
		}
		for _, e := range env {
			if has(e.Value) {
				return true
			}
		}
		return false
	}
	for _, s := range spec.Steps {
		if has(s.Script) || has(s.WorkingDir) || check(append(slices.Clone(s.Command), s.Args...), s.Env) {
			return true
		}
	}
	if st := spec.StepTemplate; st != nil && (has(st.WorkingDir) || check(append(slices.Clone(st.Command), st.Args...), st.Env)) {
		return true
	}
	return false
}

// stepName is the step's name, or Tekton's "unnamed-<index>".
func stepName(name string, i int) string {
	if name == "" {
		return fmt.Sprintf("unnamed-%d", i)
	}
	return name
}

func freshDir(d string) error {
	if err := os.RemoveAll(d); err != nil {
		return err
	}
	return os.MkdirAll(d, 0o755)
}

// workspaces makes the task run's workspace directories and returns them
// by task workspace name: a fresh directory per attempt for emptyDir,
// configMap, secret and projected bindings; the run's directory for a
// volumeClaimTemplate; a directory shared by all runs for a
// persistentVolumeClaim.
func (tr *taskRun) workspaces() (map[string]string, error) {
	paths := map[string]string{}
	for _, b := range tr.bindings {
		own := filepath.Join(tr.x.dir, "workspaces", tr.name, b.Name)
		var dir string
		switch {
		case b.VolumeClaimTemplate != nil:
			dir = filepath.Join(tr.x.dir, "workspaces", b.pipelineWorkspace)
		case b.PersistentVolumeClaim != nil:
			if n := b.PersistentVolumeClaim.ClaimName; !usableClaimName(n) {
				return nil, fmt.Errorf("workspace %q: claimName %q is not a usable directory name", b.Name, n)
			}
			dir = filepath.Join(tr.x.r.root, "volumes", b.PersistentVolumeClaim.ClaimName)
		default:
			dir = own
			if err := freshDir(dir); err != nil {
				return nil, err
			}
			if err := tr.x.r.materialise(dir, b.WorkspaceBinding); err != nil {
				return nil, fmt.Errorf("workspace %q: %w", b.Name, err)
			}
		}
		if b.SubPath != "" {
			if !filepath.IsLocal(b.SubPath) {
				return nil, fmt.Errorf("workspace %q: subPath %q leaves the workspace", b.Name, b.SubPath)
			}
			dir = filepath.Join(dir, b.SubPath)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		paths[b.Name] = dir
	}
	return paths, nil
}

// materialise writes a configMap, secret or projected binding's files.
func (r *Runner) materialise(dir string, b pipelinev1.WorkspaceBinding) error {
	switch {
	case b.ConfigMap != nil:
		return r.writeConfigMap(dir, b.ConfigMap.Name, b.ConfigMap.Items, optional(b.ConfigMap.Optional))
	case b.Secret != nil:
		return r.writeSecret(dir, b.Secret.SecretName, b.Secret.Items, optional(b.Secret.Optional))
	case b.Projected != nil:
		for _, s := range b.Projected.Sources {
			var err error
			switch {
			case s.ConfigMap != nil:
				err = r.writeConfigMap(dir, s.ConfigMap.Name, s.ConfigMap.Items, optional(s.ConfigMap.Optional))
			case s.Secret != nil:
				err = r.writeSecret(dir, s.Secret.Name, s.Secret.Items, optional(s.Secret.Optional))
			}
			if err != nil {
				return err
			}
		}
	}
	return nil // emptyDir
}

func (r *Runner) writeConfigMap(dir, name string, items []corev1.KeyToPath, opt bool) error {
	cm, ok := r.configMaps[name]
	if !ok {
		if opt {
			return nil
		}
		return fmt.Errorf("ConfigMap %q not found", name)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return writeKeys(dir, data, items)
}

func (r *Runner) writeSecret(dir, name string, items []corev1.KeyToPath, opt bool) error {
	s, ok := r.secrets[name]
	if !ok {
		if opt {
			return nil
		}
		return fmt.Errorf("Secret %q not found", name)
	}
	return writeKeys(dir, secretData(s), items)
}

// secretData merges a Secret's data and stringData, as the API server does.
func secretData(s *corev1.Secret) map[string][]byte {
	data := map[string][]byte{}
	for k, v := range s.Data {
		data[k] = v
	}
	for k, v := range s.StringData {
		data[k] = []byte(v)
	}
	return data
}

func writeKeys(dir string, data map[string][]byte, items []corev1.KeyToPath) error {
	write := func(path string, b []byte, mode *int32) error {
		if !filepath.IsLocal(path) {
			return fmt.Errorf("path %q leaves the workspace", path)
		}
		p := filepath.Join(dir, path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		perm := fs.FileMode(0o644)
		if mode != nil {
			perm = fs.FileMode(*mode)
		}
		return os.WriteFile(p, b, perm)
	}
	if len(items) == 0 {
		for k, v := range data {
			if err := write(k, v, nil); err != nil {
				return err
			}
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return fmt.Errorf("key %q not found", it.Key)
		}
		if err := write(it.Path, v, it.Mode); err != nil {
			return err
		}
	}
	return nil
}

// stepEnv returns a step's environment: the worker's, overridden by the
// step's envFrom and env (with valueFrom resolved from the runner's
// ConfigMaps and Secrets and $(VAR) references expanded as the kubelet
// does), and the step's own variables for expanding command and args.
func (r *Runner) stepEnv(s pipelinev1.Step) ([]string, map[string]string, error) {
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, f := range s.EnvFrom {
		var data map[string][]byte
		switch {
		case f.ConfigMapRef != nil:
			cm, ok := r.configMaps[f.ConfigMapRef.Name]
			if !ok {
				if optional(f.ConfigMapRef.Optional) {
					continue
				}
				return nil, nil, fmt.Errorf("envFrom: ConfigMap %q not found", f.ConfigMapRef.Name)
			}
			data = map[string][]byte{}
			for k, v := range cm.Data {
				data[k] = []byte(v)
			}
		case f.SecretRef != nil:
			sec, ok := r.secrets[f.SecretRef.Name]
			if !ok {
				if optional(f.SecretRef.Optional) {
					continue
				}
				return nil, nil, fmt.Errorf("envFrom: Secret %q not found", f.SecretRef.Name)
			}
			data = secretData(sec)
		}
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			set(f.Prefix+k, string(data[k]))
		}
	}
	for _, e := range s.Env {
		if vf := e.ValueFrom; vf != nil {
			switch {
			case vf.ConfigMapKeyRef != nil:
				ref := vf.ConfigMapKeyRef
				cm, ok := r.configMaps[ref.Name]
				v, has := "", false
				if ok {
					v, has = cm.Data[ref.Key]
				}
				if !has {
					if optional(ref.Optional) {
						continue
					}
					return nil, nil, fmt.Errorf("env %s: key %q of ConfigMap %q not found", e.Name, ref.Key, ref.Name)
				}
				set(e.Name, v)
			case vf.SecretKeyRef != nil:
				ref := vf.SecretKeyRef
				sec, ok := r.secrets[ref.Name]
				var v []byte
				has := false
				if ok {
					v, has = secretData(sec)[ref.Key]
				}
				if !has {
					if optional(ref.Optional) {
						continue
					}
					return nil, nil, fmt.Errorf("env %s: key %q of Secret %q not found", e.Name, ref.Key, ref.Name)
				}
				set(e.Name, string(v))
			}
			continue
		}
		set(e.Name, expandK8s(e.Value, vars))
	}
	env := make([]string, 0, len(r.environ)+len(order))
	for _, kv := range r.environ {
		k, _, _ := strings.Cut(kv, "=")
		if _, override := vars[k]; !override {
			env = append(env, kv)
		}
	}
	for _, k := range order {
		env = append(env, k+"="+vars[k])
	}
	return env, vars, nil
}

// readResults reads the declared results the steps wrote, as the
// entrypoint and the TaskRun reconciler do: a string result is the file's
// content as it is; an array or object result is parsed as JSON and must
// match its declared type.
func readResults(dir string, decls []pipelinev1.TaskResult) ([]pipelinev1.TaskRunResult, error) {
	var out []pipelinev1.TaskRunResult
	var problems []string
	for _, d := range decls {
		b, err := os.ReadFile(filepath.Join(dir, d.Name))
		if err != nil {
			continue // not written
		}
		if d.Type == "" || d.Type == pipelinev1.ResultsTypeString {
			out = append(out, pipelinev1.TaskRunResult{Name: d.Name, Type: pipelinev1.ResultsTypeString, Value: *pipelinev1.NewStructuredValues(string(b))})
			continue
		}
		var v pipelinev1.ResultValue
		if err := v.UnmarshalJSON(b); err != nil || pipelinev1.ResultsType(v.Type) != d.Type {
			problems = append(problems, fmt.Sprintf("result %q is declared %s but its value is not a JSON %s: %.80q", d.Name, d.Type, d.Type, string(b)))
			continue
		}
		out = append(out, pipelinev1.TaskRunResult{Name: d.Name, Type: d.Type, Value: v})
	}
	if len(problems) > 0 {
		return out, errors.New(strings.Join(problems, "; "))
	}
	return out, nil
}

// checkParamTypes reports params whose value's type differs from the
// Task's declaration, once references are resolved.
func checkParamTypes(specs pipelinev1.ParamSpecs, params pipelinev1.Params) error {
	var bad []string
	for _, p := range params {
		for _, s := range specs {
			if s.Name == p.Name && s.Type != "" && p.Value.Type != "" && s.Type != p.Value.Type {
				bad = append(bad, fmt.Sprintf("%s (declared %s, got %s)", p.Name, s.Type, p.Value.Type))
			}
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("param types don't match the user-specified type: %s", strings.Join(bad, ", "))
	}
	return nil
}
