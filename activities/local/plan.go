package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tektoncd/pipeline/pkg/apis/config"
	"github.com/tektoncd/pipeline/pkg/apis/pipeline/pod"
	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/reconciler/pipeline/dag"
	"github.com/tektoncd/pipeline/pkg/substitution"
	"github.com/tektoncd/pipeline/pkg/workspace"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"knative.dev/pkg/apis"
	"knative.dev/pkg/kmeta"
)

// SpecError reports why a PipelineRun cannot run on this machine: Tekton's
// own validation errors, references to Pipelines, Tasks, ConfigMaps or
// Secrets that were not given, and features the local runner does not
// support. Each problem names its field, such as
// "spec.pipelineSpec.tasks[2].matrix: not supported by the local runner".
// Run returns it before anything runs.
type SpecError struct {
	Problems []string
}

func (e *SpecError) Error() string {
	return strings.Join(e.Problems, "; ")
}

type checker struct {
	problems []string
	warnings []string
}

func (c *checker) add(path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	c.problems = append(c.problems, msg)
}

func (c *checker) unsupported(path, why string) {
	msg := "not supported by the local runner"
	if why != "" {
		msg += " (" + why + ")"
	}
	c.add(path, "%s", msg)
}

func (c *checker) warn(path, format string, args ...any) {
	c.warnings = append(c.warnings, path+": "+fmt.Sprintf(format, args...))
}

func (c *checker) err() error {
	if len(c.problems) == 0 {
		return nil
	}
	return &SpecError{Problems: c.problems}
}

// plan is a validated PipelineRun, ready to run: references resolved,
// pipeline-level variables substituted.
type plan struct {
	pr           *pipelinev1.PipelineRun // defaulted
	specHash     string
	uid          string
	pipelineName string
	spec         *pipelinev1.PipelineSpec // after pipeline-level substitution
	tasks        []*planTask              // spec.Tasks, then spec.Finally
	graph        *dag.Graph
	finallyGraph *dag.Graph
	// bindings are the run's workspace bindings by name, after param
	// substitution.
	bindings map[string]pipelinev1.WorkspaceBinding
	warnings []string

	pipelineTimeout time.Duration // 0: none
	tasksTimeout    time.Duration
	finallyTimeout  time.Duration
}

// planTask is one pipeline task with its resolved Task spec.
type planTask struct {
	pt    pipelinev1.PipelineTask // after pipeline-level substitution
	final bool
	path  string // for messages: "spec.pipelineSpec.tasks[2]"
	// spec is the Task's spec, defaulted; for an embedded spec it is
	// pt.TaskSpec.TaskSpec.
	spec *pipelinev1.TaskSpec
	// taskName is $(context.task.name): the Task's name, or the TaskRun's
	// for an embedded spec.
	taskName string
	taskRun  string
	// bindings are the task's workspace bindings (Tekton's
	// getTaskrunWorkspaces), with the pipeline workspace each comes from.
	bindings []taskBinding
}

type taskBinding struct {
	pipelinev1.WorkspaceBinding
	pipelineWorkspace string
}

// validationContext is the context Tekton's validation and defaulting run
// in: an object being created, under a default install's configuration
// (enable-api-fields: beta, default timeout 60 minutes).
func validationContext(ctx context.Context) context.Context {
	return apis.WithinCreate(config.ToContext(ctx, config.FromContextOrDefaults(ctx)))
}

// specHash identifies a PipelineRun's request: name, labels aside, its spec.
func specHash(pr *pipelinev1.PipelineRun) (string, error) {
	b, err := json.Marshal(pr.Spec)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8]), nil
}

// plan validates pr as Tekton's webhook and reconcilers would, resolves its
// references against the runner's objects, checks that every feature it
// uses is supported, and applies pipeline-level substitution. All problems
// are reported together in a *SpecError.
func (r *Runner) plan(ctx context.Context, in *pipelinev1.PipelineRun, uid string) (*plan, error) {
	ctx = validationContext(ctx)
	c := &checker{}
	pr := in.DeepCopy()
	if pr.Namespace == "" {
		pr.Namespace = "default"
	}
	hash, err := specHash(pr)
	if err != nil {
		return nil, fmt.Errorf("hash pipelinerun spec: %w", err)
	}
	// Before defaulting, which sets the default service account of every
	// run: only what the run itself sets is worth a warning.
	checkTaskRunTemplate(c, pr.Spec.TaskRunTemplate)
	pr.SetDefaults(ctx)
	if ferr := pr.Validate(ctx); ferr != nil {
		// Tekton's messages do not always name the field (feature gates):
		// add the local runner's own findings, which do.
		c.add("", "invalid PipelineRun %q: %v", pr.Name, ferr)
		applyRunParamsToBindings(pr)
		r.checkRunSpec(c, pr)
		if ps := pr.Spec.PipelineSpec; ps != nil {
			r.checkPipelineSpec(c, ps, "spec.pipelineSpec")
		}
		return nil, c.err()
	}
	p := &plan{pr: pr, specHash: hash, uid: uid, pipelineName: pr.Name, bindings: map[string]pipelinev1.WorkspaceBinding{}}
	// The run's params go into its workspace bindings first, as the
	// reconciler's ApplyParametersToWorkspaceBindings does, so that the
	// ConfigMaps, Secrets and claims checked are the ones named.
	applyRunParamsToBindings(pr)
	for _, b := range pr.Spec.Workspaces {
		p.bindings[b.Name] = b
	}
	r.checkRunSpec(c, pr)

	prefix := "spec.pipelineSpec"
	ps := pr.Spec.PipelineSpec
	if ref := pr.Spec.PipelineRef; ref != nil && ref.Resolver == "" {
		pl, ok := r.pipelines[ref.Name]
		if !ok {
			c.add("spec.pipelineRef.name", "Pipeline %q not found; known Pipelines: %s", ref.Name, known(r.pipelines))
			return nil, c.err()
		}
		pl = pl.DeepCopy()
		pl.SetDefaults(ctx)
		if ferr := pl.Validate(ctx); ferr != nil {
			c.add(fmt.Sprintf("Pipeline %q", ref.Name), "invalid: %v", ferr)
			r.checkPipelineSpec(c, &pl.Spec, fmt.Sprintf("Pipeline %q spec", ref.Name))
			return nil, c.err()
		}
		ps, prefix, p.pipelineName = &pl.Spec, fmt.Sprintf("Pipeline %q spec", ref.Name), ref.Name
	}
	if ps == nil {
		return nil, c.err()
	}

	r.checkPipelineBindings(c, ps, pr)
	var err2 error
	if p.graph, err2 = dag.Build(pipelinev1.PipelineTaskList(ps.Tasks), pipelinev1.PipelineTaskList(ps.Tasks).Deps()); err2 != nil {
		c.add(prefix+".tasks", "invalid graph: %v", err2)
	}
	if p.finallyGraph, err2 = dag.Build(pipelinev1.PipelineTaskList(ps.Finally), map[string][]string{}); err2 != nil {
		c.add(prefix+".finally", "invalid graph: %v", err2)
	}

	// Pipeline-level substitution, in the reconciler's order: the run's
	// params into its workspace bindings (above), then params, context and
	// workspaces.<name>.bound into the pipeline tasks.
	params, err := pipelineParamRepl(ps.Params, pr.Spec.Params)
	if err != nil {
		c.add("spec.params", "%v", err)
		return nil, c.err()
	}
	spec := ps.DeepCopy()
	contexts := strRepl(map[string]string{
		"context.pipelineRun.name":      pr.Name,
		"context.pipeline.name":         p.pipelineName,
		"context.pipelineRun.namespace": pr.Namespace,
		"context.pipelineRun.uid":       uid,
	})
	bound := map[string]string{}
	for _, w := range spec.Workspaces {
		bound["workspaces."+w.Name+".bound"] = "false"
	}
	for _, b := range pr.Spec.Workspaces {
		bound["workspaces."+b.Name+".bound"] = "true"
	}
	for _, list := range [][]pipelinev1.PipelineTask{spec.Tasks, spec.Finally} {
		applyPipelineTasks(list, params)
		applyPipelineTasks(list, contexts)
		applyPipelineTasks(list, strRepl(bound))
	}
	p.spec = spec

	taskChecked := map[string]bool{}
	for i := range spec.Tasks {
		p.tasks = append(p.tasks, r.planTask(ctx, c, p, &spec.Tasks[i], &ps.Tasks[i], false, fmt.Sprintf("%s.tasks[%d]", prefix, i), taskChecked))
	}
	for i := range spec.Finally {
		p.tasks = append(p.tasks, r.planTask(ctx, c, p, &spec.Finally[i], &ps.Finally[i], true, fmt.Sprintf("%s.finally[%d]", prefix, i), taskChecked))
	}
	for i, trs := range pr.Spec.TaskRunSpecs {
		if !slices.ContainsFunc(p.tasks, func(t *planTask) bool { return t.pt.Name == trs.PipelineTaskName }) {
			c.add(fmt.Sprintf("spec.taskRunSpecs[%d].pipelineTaskName", i), "pipeline task %q does not exist", trs.PipelineTaskName)
		}
	}
	p.pipelineTimeout = pr.PipelineTimeout(ctx)
	if d := pr.TasksTimeout(); d != nil {
		p.tasksTimeout = d.Duration
	}
	if d := pr.FinallyTimeout(); d != nil {
		p.finallyTimeout = d.Duration
	}
	p.warnings = c.warnings
	if err := c.err(); err != nil {
		return nil, err
	}
	return p, nil
}

func known[T any](m map[string]T) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return "(none)"
	}
	return strings.Join(names, ", ")
}

// checkRunSpec checks the PipelineRun's own fields.
func (r *Runner) checkRunSpec(c *checker, pr *pipelinev1.PipelineRun) {
	if ref := pr.Spec.PipelineRef; ref != nil {
		if ref.Resolver != "" {
			c.unsupported("spec.pipelineRef.resolver", "remote resolution; give the Pipeline to the runner instead")
		}
		if len(ref.Params) > 0 {
			c.unsupported("spec.pipelineRef.params", "remote resolution")
		}
	}
	if pr.Spec.Status != "" {
		c.unsupported("spec.status", "runs start at once; cancel through the context or Runner.Cancel")
	}
	for i, b := range pr.Spec.Workspaces {
		r.checkBinding(c, fmt.Sprintf("spec.workspaces[%d]", i), b)
	}
	for i, s := range pr.Spec.TaskRunSpecs {
		if s.PodTemplate != nil || s.ServiceAccountName != "" || len(s.StepSpecs) > 0 || len(s.SidecarSpecs) > 0 || s.ComputeResources != nil || s.Metadata != nil {
			c.warn(fmt.Sprintf("spec.taskRunSpecs[%d]", i), "only timeout is used; pod, service account, resource and metadata settings are ignored")
		}
	}
}

// applyRunParamsToBindings substitutes the run's params in its workspace
// bindings (claim, ConfigMap and Secret names, items, subPath), in place, as
// the PipelineRun reconciler's ApplyParametersToWorkspaceBindings does: the
// run's own params only, not the pipeline's defaults.
func applyRunParamsToBindings(pr *pipelinev1.PipelineRun) {
	runParams := newRepl()
	for _, prm := range pr.Spec.Params {
		runParams.addParam(pipelineParamPatterns, prm.Name, prm.Value)
	}
	pr.Spec.Workspaces = workspace.ReplaceWorkspaceBindingsVars(pr.Spec.Workspaces, runParams.str)
}

// checkTaskRunTemplate warns about the taskRunTemplate fields a run sets,
// all of which the local runner ignores. It must see the run before
// Tekton's defaulting.
func checkTaskRunTemplate(c *checker, t pipelinev1.PipelineTaskRunTemplate) {
	var set []string
	if t.ServiceAccountName != "" {
		set = append(set, "serviceAccountName")
	}
	if t.PodTemplate != nil && !equality.Semantic.DeepEqual(*t.PodTemplate, pod.PodTemplate{}) {
		set = append(set, "podTemplate")
	}
	if len(set) > 0 {
		c.warn("spec.taskRunTemplate", "%s ignored: steps run on the host as the worker's user", strings.Join(set, " and "))
	}
}

// checkBinding checks a run's workspace binding, after the run's params
// are substituted. A name that still holds a reference ("$(params.p)") may
// be a task's param, substituted when the task runs: it is checked then.
func (r *Runner) checkBinding(c *checker, path string, b pipelinev1.WorkspaceBinding) {
	switch {
	case b.CSI != nil:
		c.unsupported(path+".csi", "")
	case b.PersistentVolumeClaim != nil:
		if n := b.PersistentVolumeClaim.ClaimName; !strings.Contains(n, "$(") && !usableClaimName(n) {
			c.add(path+".persistentVolumeClaim.claimName", "%q is not a usable directory name", n)
		}
	case b.ConfigMap != nil, b.Secret != nil, b.Projected != nil:
		r.checkBindingObjects(c, path, b, true)
	}
	if b.SubPath != "" && !strings.Contains(b.SubPath, "$(") && !filepath.IsLocal(b.SubPath) {
		c.add(path+".subPath", "%q leaves the workspace", b.SubPath)
	}
}

// checkBindingObjects reports the ConfigMaps and Secrets a binding names
// that the runner was not given. With deferRefs, names that still hold a
// "$(" reference are left alone.
func (r *Runner) checkBindingObjects(c *checker, path string, b pipelinev1.WorkspaceBinding, deferRefs bool) {
	skip := func(name string) bool { return deferRefs && strings.Contains(name, "$(") }
	switch {
	case b.ConfigMap != nil:
		if _, ok := r.configMaps[b.ConfigMap.Name]; !ok && !optional(b.ConfigMap.Optional) && !skip(b.ConfigMap.Name) {
			c.add(path+".configMap.name", "ConfigMap %q not found; give it to the runner", b.ConfigMap.Name)
		}
	case b.Secret != nil:
		if _, ok := r.secrets[b.Secret.SecretName]; !ok && !optional(b.Secret.Optional) && !skip(b.Secret.SecretName) {
			c.add(path+".secret.secretName", "Secret %q not found; give it to the runner", b.Secret.SecretName)
		}
	case b.Projected != nil:
		for j, s := range b.Projected.Sources {
			sp := fmt.Sprintf("%s.projected.sources[%d]", path, j)
			switch {
			case s.ConfigMap != nil:
				if _, ok := r.configMaps[s.ConfigMap.Name]; !ok && !optional(s.ConfigMap.Optional) && !skip(s.ConfigMap.Name) {
					c.add(sp+".configMap.name", "ConfigMap %q not found; give it to the runner", s.ConfigMap.Name)
				}
			case s.Secret != nil:
				if _, ok := r.secrets[s.Secret.Name]; !ok && !optional(s.Secret.Optional) && !skip(s.Secret.Name) {
					c.add(sp+".secret.name", "Secret %q not found; give it to the runner", s.Secret.Name)
				}
			default:
				c.unsupported(sp, "only configMap and secret sources")
			}
		}
	}
}

// usableClaimName reports whether a persistentVolumeClaim's name can be
// its directory under <root>/volumes.
func usableClaimName(n string) bool {
	return n != "" && !strings.ContainsRune(n, '/') && filepath.IsLocal(n)
}

func optional(b *bool) bool { return b != nil && *b }

// checkPipelineBindings mirrors the reconciler's checks of the run against
// the pipeline: required params given with the right types and object
// keys, non-optional workspaces bound.
func (r *Runner) checkPipelineBindings(c *checker, ps *pipelinev1.PipelineSpec, pr *pipelinev1.PipelineRun) {
	given := map[string]pipelinev1.Param{}
	for _, p := range pr.Spec.Params {
		given[p.Name] = p
	}
	for _, s := range ps.Params {
		g, ok := given[s.Name]
		switch {
		case !ok && s.Default == nil:
			c.add("spec.params", "missing parameter %q, required by the pipeline", s.Name)
		case ok && s.Type != "" && g.Value.Type != s.Type:
			c.add("spec.params", "parameter %q is of type %s, the pipeline declares %s", s.Name, g.Value.Type, s.Type)
		case ok && s.Type == pipelinev1.ParamTypeObject:
			for k := range s.Properties {
				if _, has := g.Value.ObjectVal[k]; !has && (s.Default == nil || s.Default.ObjectVal[k] == "") {
					c.add("spec.params", "object parameter %q is missing key %q", s.Name, k)
				}
			}
		}
	}
	bound := map[string]bool{}
	for _, b := range pr.Spec.Workspaces {
		bound[b.Name] = true
	}
	for _, w := range ps.Workspaces {
		if !w.Optional && !bound[w.Name] {
			c.add("spec.workspaces", "pipeline workspace %q is not bound", w.Name)
		}
	}
}

// planTask resolves and checks one pipeline task. orig is the task before
// substitution, whose params tell literal values from references.
func (r *Runner) planTask(ctx context.Context, c *checker, p *plan, pt, orig *pipelinev1.PipelineTask, final bool, path string, checked map[string]bool) *planTask {
	t := &planTask{pt: *pt, final: final, path: path, taskRun: kmeta.ChildName(p.pr.Name, "-"+pt.Name)}
	if !r.checkPipelineTask(c, pt, path) {
		return t
	}
	switch {
	case pt.TaskRef != nil:
		ref := pt.TaskRef
		task, ok := r.tasks[ref.Name]
		if !ok {
			c.add(path+".taskRef.name", "Task %q not found; known Tasks: %s", ref.Name, known(r.tasks))
			return t
		}
		task = task.DeepCopy()
		task.SetDefaults(ctx)
		tpath := fmt.Sprintf("Task %q spec", ref.Name)
		if !checked[ref.Name] {
			checked[ref.Name] = true
			if ferr := task.Validate(ctx); ferr != nil {
				c.add(fmt.Sprintf("Task %q", ref.Name), "invalid: %v", ferr)
				r.checkTaskSpec(c, tpath, &task.Spec)
				return t
			}
			r.checkTaskSpec(c, tpath, &task.Spec)
		}
		t.spec, t.taskName = &task.Spec, ref.Name
	case pt.TaskSpec != nil:
		t.spec, t.taskName = &t.pt.TaskSpec.TaskSpec, t.taskRun
		r.checkTaskSpec(c, path+".taskSpec", t.spec)
	default:
		return t // Tekton's validation reports it
	}
	r.checkTaskParams(c, path, t.spec, orig)
	t.bindings = r.taskBindings(ctx, c, p, t, path)
	return t
}

// checkPipelineSpec reports the unsupported features of every task of ps,
// without resolving anything; it serves when Tekton's validation failed.
func (r *Runner) checkPipelineSpec(c *checker, ps *pipelinev1.PipelineSpec, prefix string) {
	for i := range ps.Tasks {
		path := fmt.Sprintf("%s.tasks[%d]", prefix, i)
		if r.checkPipelineTask(c, &ps.Tasks[i], path) && ps.Tasks[i].TaskSpec != nil {
			r.checkTaskSpec(c, path+".taskSpec", &ps.Tasks[i].TaskSpec.TaskSpec)
		}
	}
	for i := range ps.Finally {
		path := fmt.Sprintf("%s.finally[%d]", prefix, i)
		if r.checkPipelineTask(c, &ps.Finally[i], path) && ps.Finally[i].TaskSpec != nil {
			r.checkTaskSpec(c, path+".taskSpec", &ps.Finally[i].TaskSpec.TaskSpec)
		}
	}
}

// checkPipelineTask reports a pipeline task's unsupported features; it
// reports false if its task cannot be resolved at all.
func (r *Runner) checkPipelineTask(c *checker, pt *pipelinev1.PipelineTask, path string) bool {
	ok := true
	if pt.Matrix != nil {
		c.unsupported(path+".matrix", "")
	}
	if pt.PipelineRef != nil {
		c.unsupported(path+".pipelineRef", "pipelines in pipelines")
		ok = false
	}
	if pt.PipelineSpec != nil {
		c.unsupported(path+".pipelineSpec", "pipelines in pipelines")
		ok = false
	}
	for i, w := range pt.When {
		if w.CEL != "" {
			c.unsupported(fmt.Sprintf("%s.when[%d].cel", path, i), "")
		}
	}
	if ref := pt.TaskRef; ref != nil {
		switch {
		case ref.Resolver != "" || len(ref.Params) > 0:
			c.unsupported(path+".taskRef.resolver", "remote resolution; give the Task to the runner instead")
			ok = false
		case ref.APIVersion != "":
			c.unsupported(path+".taskRef.apiVersion", "custom tasks")
			ok = false
		case ref.Kind != "" && ref.Kind != pipelinev1.NamespacedTaskKind:
			c.unsupported(path+".taskRef.kind", "only Task")
			ok = false
		}
	}
	if pt.TaskSpec != nil && pt.TaskSpec.IsCustomTask() {
		c.unsupported(path+".taskSpec.apiVersion", "custom tasks")
		ok = false
	}
	return ok
}

// checkTaskParams reports params the Task requires that the pipeline task
// does not give, and literal values of the wrong type.
func (r *Runner) checkTaskParams(c *checker, path string, spec *pipelinev1.TaskSpec, pt *pipelinev1.PipelineTask) {
	given := map[string]pipelinev1.ParamValue{}
	for _, p := range pt.Params {
		given[p.Name] = p.Value
	}
	for _, s := range spec.Params {
		v, ok := given[s.Name]
		if !ok {
			if s.Default == nil {
				c.add(path+".params", "missing parameter %q, required by the task", s.Name)
			}
			continue
		}
		isRef := v.Type == pipelinev1.ParamTypeString && strings.HasPrefix(v.StringVal, "$(") && strings.HasSuffix(v.StringVal, ")")
		if s.Type != "" && v.Type != s.Type && !isRef {
			c.add(path+".params", "parameter %q is of type %s, the task declares %s", s.Name, v.Type, s.Type)
		}
	}
}

// taskBindings computes a task's workspace bindings from the run's, as
// getTaskrunWorkspaces does (embedded specs get the pipeline workspaces
// their steps use), and checks them against the Task's declarations.
func (r *Runner) taskBindings(ctx context.Context, c *checker, p *plan, t *planTask, path string) []taskBinding {
	pws := slices.Clone(t.pt.Workspaces)
	if t.pt.TaskSpec != nil && mentionsWorkspaces(t.spec) {
		used, err := workspace.FindWorkspacesUsedByTask(*t.spec)
		if err != nil {
			c.add(path+".taskSpec", "%v", err)
		}
		for _, name := range used.List() {
			if !slices.ContainsFunc(pws, func(w pipelinev1.WorkspacePipelineTaskBinding) bool { return w.Name == name }) {
				pws = append(pws, pipelinev1.WorkspacePipelineTaskBinding{Name: name})
			}
		}
	}
	var out []taskBinding
	var plain []pipelinev1.WorkspaceBinding
	// The TaskRun reconciler substitutes the task's params in its
	// bindings; those known now are checked now, the rest when it runs.
	taskParams := taskParamRepl(t.spec.Params, t.pt.Params).str
	for i, w := range pws {
		from := w.Workspace
		if from == "" {
			from = w.Name
		}
		b, ok := p.bindings[from]
		if !ok {
			decl := slices.IndexFunc(t.spec.Workspaces, func(d pipelinev1.WorkspaceDeclaration) bool { return d.Name == w.Name })
			if decl >= 0 && t.spec.Workspaces[decl].Optional {
				continue
			}
			c.add(path+".workspaces", "expected workspace %q to be provided by the pipelinerun for pipeline task %q", from, t.pt.Name)
			continue
		}
		tb := *b.DeepCopy()
		tb.Name = w.Name
		tb.SubPath = substitution.ApplyReplacements(joinSubPath(b.SubPath, w.SubPath), map[string]string{
			"context.pipelineRun.name": p.pr.Name, "context.pipeline.name": p.pipelineName,
			"context.pipelineRun.namespace": p.pr.Namespace, "context.pipelineRun.uid": p.uid,
		})
		if hasBindingRefs(tb) {
			sub := *tb.DeepCopy()
			applyBindingStrings(&sub, taskParams)
			wp := fmt.Sprintf("%s.workspaces[%d]", path, i)
			r.checkBindingObjects(c, wp, sub, true)
			if pvc := sub.PersistentVolumeClaim; pvc != nil && !strings.Contains(pvc.ClaimName, "$(") && !usableClaimName(pvc.ClaimName) {
				c.add(wp+".persistentVolumeClaim.claimName", "%q is not a usable directory name", pvc.ClaimName)
			}
		}
		out = append(out, taskBinding{WorkspaceBinding: tb, pipelineWorkspace: from})
		plain = append(plain, tb)
	}
	decls := t.spec.Workspaces
	if t.pt.TaskSpec != nil { // embedded specs may use workspaces they do not declare
		decls = slices.Clone(decls)
		for _, b := range plain {
			if !slices.ContainsFunc(decls, func(d pipelinev1.WorkspaceDeclaration) bool { return d.Name == b.Name }) {
				decls = append(decls, pipelinev1.WorkspaceDeclaration{Name: b.Name})
			}
		}
	}
	if err := workspace.ValidateBindings(ctx, decls, plain); err != nil {
		c.add(path+".workspaces", "%v", err)
	}
	return out
}

// hasBindingRefs reports whether the names of the claim, ConfigMaps or
// Secrets a binding uses still hold a "$(" reference.
func hasBindingRefs(b pipelinev1.WorkspaceBinding) bool {
	has := func(s string) bool { return strings.Contains(s, "$(") }
	switch {
	case b.PersistentVolumeClaim != nil:
		return has(b.PersistentVolumeClaim.ClaimName)
	case b.ConfigMap != nil:
		return has(b.ConfigMap.Name)
	case b.Secret != nil:
		return has(b.Secret.SecretName)
	case b.Projected != nil:
		for _, s := range b.Projected.Sources {
			if (s.ConfigMap != nil && has(s.ConfigMap.Name)) || (s.Secret != nil && has(s.Secret.Name)) {
				return true
			}
		}
	}
	return false
}

func joinSubPath(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return filepath.Join(a, b)
}

// checkTaskSpec reports the Task features the local runner rejects, and
// notes the ones it ignores.
func (r *Runner) checkTaskSpec(c *checker, path string, spec *pipelinev1.TaskSpec) {
	const needsNamespaces = "needs isolation namespaces"
	if !r.namespaces {
		if len(spec.Sidecars) > 0 {
			c.unsupported(path+".sidecars", needsNamespaces)
		}
		if len(spec.Volumes) > 0 {
			c.unsupported(path+".volumes", needsNamespaces)
		}
		for i, w := range spec.Workspaces {
			if w.MountPath != "" {
				c.warn(fmt.Sprintf("%s.workspaces[%d].mountPath", path, i), "ignored with isolation none: the workspace is a directory under the run directory; use $(workspaces.%s.path)", w.Name)
			}
		}
	}
	volumes := map[string]bool{}
	if r.namespaces {
		for i, v := range spec.Volumes {
			volumes[v.Name] = true
			r.checkVolume(c, fmt.Sprintf("%s.volumes[%d]", path, i), v)
		}
		for i, sc := range spec.Sidecars {
			sp := fmt.Sprintf("%s.sidecars[%d]", path, i)
			if sc.Script == "" && len(sc.Command) == 0 {
				c.add(sp+".command", "required by the local runner: sidecars run on the host's tools, where the image's entrypoint is unknown; set command or script")
			}
			if strings.HasPrefix(strings.TrimSpace(sc.Script), "#!win") {
				c.unsupported(sp+".script", "Windows scripts")
			}
			if len(sc.VolumeDevices) > 0 {
				c.unsupported(sp+".volumeDevices", "")
			}
			checkVolumeMounts(c, sp, sc.VolumeMounts, volumes)
			r.checkEnv(c, sp, sc.Env, sc.EnvFrom)
		}
	}
	if st := spec.StepTemplate; st != nil {
		tp := path + ".stepTemplate"
		if len(st.VolumeMounts) > 0 && !r.namespaces {
			c.unsupported(tp+".volumeMounts", needsNamespaces)
		}
		checkVolumeMounts(c, tp, st.VolumeMounts, volumes)
		if len(st.VolumeDevices) > 0 {
			c.unsupported(tp+".volumeDevices", "")
		}
		r.checkEnv(c, tp, st.Env, st.EnvFrom)
	}
	steps, err := pipelinev1.MergeStepsWithStepTemplate(spec.StepTemplate, spec.Steps)
	if err != nil {
		c.add(path+".stepTemplate", "%v", err)
		return
	}
	for i, s := range spec.Steps {
		sp := fmt.Sprintf("%s.steps[%d]", path, i)
		for _, f := range []struct {
			set  bool
			name string
			why  string
		}{
			{s.Ref != nil, "ref", "StepActions"},
			{len(s.Params) > 0, "params", "StepActions"},
			{len(s.Results) > 0, "results", "step results"},
			{len(s.When) > 0, "when", "step when expressions"},
			{len(s.Workspaces) > 0 && !r.namespaces, "workspaces", "isolated workspaces " + needsNamespaces},
			{len(s.VolumeMounts) > 0 && !r.namespaces, "volumeMounts", needsNamespaces},
			{len(s.VolumeDevices) > 0, "volumeDevices", ""},
			{s.StdoutConfig != nil, "stdoutConfig", ""},
			{s.StderrConfig != nil, "stderrConfig", ""},
		} {
			if f.set {
				c.unsupported(sp+"."+f.name, f.why)
			}
		}
		if strings.HasPrefix(strings.TrimSpace(s.Script), "#!win") {
			c.unsupported(sp+".script", "Windows scripts")
		}
		if r.namespaces {
			checkVolumeMounts(c, sp, s.VolumeMounts, volumes)
		}
		if s.Ref == nil && steps[i].Script == "" && len(steps[i].Command) == 0 {
			c.add(sp+".command", "required by the local runner: steps run on the host, where the image's entrypoint is unknown; set command or script")
		}
		r.checkEnv(c, sp, s.Env, s.EnvFrom)
	}
}

// checkVolume checks a Task's volume: emptyDir, configMap, secret and
// projected ones (of ConfigMaps and Secrets the runner was given) are
// supported.
func (r *Runner) checkVolume(c *checker, path string, v corev1.Volume) {
	switch {
	case v.EmptyDir != nil:
	case v.ConfigMap != nil, v.Secret != nil, v.Projected != nil:
		r.checkBindingObjects(c, path, pipelinev1.WorkspaceBinding{ConfigMap: v.ConfigMap, Secret: v.Secret, Projected: v.Projected}, true)
	default:
		c.unsupported(path, "only emptyDir, configMap, secret and projected volumes")
	}
}

// checkVolumeMounts checks volumeMounts against the Task's volumes.
func checkVolumeMounts(c *checker, path string, mounts []corev1.VolumeMount, volumes map[string]bool) {
	for i, m := range mounts {
		mp := fmt.Sprintf("%s.volumeMounts[%d]", path, i)
		switch {
		case !volumes[m.Name] && !strings.Contains(m.Name, "$("):
			c.add(mp+".name", "no volume %q in the Task", m.Name)
		case !filepath.IsAbs(m.MountPath) && !strings.Contains(m.MountPath, "$("):
			c.add(mp+".mountPath", "%q is not an absolute path", m.MountPath)
		case m.SubPathExpr != "":
			c.unsupported(mp+".subPathExpr", "")
		case m.MountPropagation != nil:
			c.unsupported(mp+".mountPropagation", "")
		}
	}
}

func (r *Runner) checkEnv(c *checker, path string, env []corev1.EnvVar, from []corev1.EnvFromSource) {
	for i, e := range env {
		vf := e.ValueFrom
		if vf == nil {
			continue
		}
		ep := fmt.Sprintf("%s.env[%d].valueFrom", path, i)
		switch {
		case vf.ConfigMapKeyRef != nil:
			if _, ok := r.configMaps[vf.ConfigMapKeyRef.Name]; !ok && !optional(vf.ConfigMapKeyRef.Optional) && !strings.Contains(vf.ConfigMapKeyRef.Name, "$(") {
				c.add(ep+".configMapKeyRef.name", "ConfigMap %q not found; give it to the runner", vf.ConfigMapKeyRef.Name)
			}
		case vf.SecretKeyRef != nil:
			if _, ok := r.secrets[vf.SecretKeyRef.Name]; !ok && !optional(vf.SecretKeyRef.Optional) && !strings.Contains(vf.SecretKeyRef.Name, "$(") {
				c.add(ep+".secretKeyRef.name", "Secret %q not found; give it to the runner", vf.SecretKeyRef.Name)
			}
		default:
			c.unsupported(ep, "only configMapKeyRef and secretKeyRef")
		}
	}
	for i, f := range from {
		fp := fmt.Sprintf("%s.envFrom[%d]", path, i)
		switch {
		case f.ConfigMapRef != nil:
			if _, ok := r.configMaps[f.ConfigMapRef.Name]; !ok && !optional(f.ConfigMapRef.Optional) && !strings.Contains(f.ConfigMapRef.Name, "$(") {
				c.add(fp+".configMapRef.name", "ConfigMap %q not found; give it to the runner", f.ConfigMapRef.Name)
			}
		case f.SecretRef != nil:
			if _, ok := r.secrets[f.SecretRef.Name]; !ok && !optional(f.SecretRef.Optional) && !strings.Contains(f.SecretRef.Name, "$(") {
				c.add(fp+".secretRef.name", "Secret %q not found; give it to the runner", f.SecretRef.Name)
			}
		}
	}
}

// mentionsWorkspaces is a cheap test for "$(workspaces." anywhere in a
// task's steps, before Tekton's costlier search for the names.
func mentionsWorkspaces(spec *pipelinev1.TaskSpec) bool {
	b, err := json.Marshal(spec.Steps)
	if err != nil || strings.Contains(string(b), "$(workspaces.") {
		return true
	}
	if spec.StepTemplate != nil {
		b, err = json.Marshal(spec.StepTemplate)
		return err != nil || strings.Contains(string(b), "$(workspaces.")
	}
	return false
}
