package local

// Variable substitution, in the order and with the semantics of Tekton's
// reconcilers (pkg/reconciler/pipelinerun/resources/apply.go and
// pkg/reconciler/taskrun/resources/apply.go). Those packages cannot be
// imported here: they pull in remote resolution and trusted-resources
// verification (sigstore, Vault, cloud KMS clients), some eighty modules
// this module does not otherwise need. Everything below is built on the
// substitution primitives Tekton exports from packages that are cheap to
// import: the v1 types' own ReplaceVariables and ApplyReplacements methods,
// pkg/container.ApplyStepReplacements, pkg/substitution and pkg/workspace.

import (
	"fmt"
	"maps"
	"strconv"
	"strings"

	pipelinev1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	"github.com/tektoncd/pipeline/pkg/container"
	"github.com/tektoncd/pipeline/pkg/substitution"
	corev1 "k8s.io/api/core/v1"
)

// repl holds Tekton's three kinds of replacements, keyed by the variable
// without "$(" and ")": strings, whole arrays ($(x[*])) and whole objects.
type repl struct {
	str map[string]string
	arr map[string][]string
	obj map[string]map[string]string
}

func newRepl() repl {
	return repl{str: map[string]string{}, arr: map[string][]string{}, obj: map[string]map[string]string{}}
}

func strRepl(m map[string]string) repl {
	return repl{str: m, arr: map[string][]string{}, obj: map[string]map[string]string{}}
}

func (r repl) clone() repl {
	c := repl{str: maps.Clone(r.str), arr: maps.Clone(r.arr), obj: map[string]map[string]string{}}
	for k, v := range r.obj {
		c.obj[k] = maps.Clone(v)
	}
	return c
}

var (
	// pipelineParamPatterns are the forms of a pipeline param reference.
	pipelineParamPatterns = []string{"params.%s", "params[%q]", "params['%s']"}
	// taskParamPatterns add the v1beta1 form that Tasks still accept.
	taskParamPatterns = []string{"params.%s", "params[%q]", "params['%s']", "inputs.params.%s"}
)

const maxParamReferenceDepth = 10

// addParam adds the replacements for one param value.
func (r repl) addParam(patterns []string, name string, v pipelinev1.ParamValue) {
	switch v.Type {
	case pipelinev1.ParamTypeArray:
		for _, pattern := range patterns {
			for i, e := range v.ArrayVal {
				r.str[fmt.Sprintf(pattern+"[%d]", name, i)] = e
			}
			r.arr[fmt.Sprintf(pattern, name)] = v.ArrayVal
		}
	case pipelinev1.ParamTypeObject:
		for _, pattern := range patterns {
			r.obj[fmt.Sprintf(pattern, name)] = maps.Clone(v.ObjectVal)
		}
		for k, e := range v.ObjectVal {
			r.str[fmt.Sprintf("params.%s.%s", name, k)] = e
		}
	default:
		for _, pattern := range patterns {
			r.str[fmt.Sprintf(pattern, name)] = v.StringVal
		}
	}
}

// paramRefs returns the "params.…" expressions in s.
func paramRefs(s string) []string {
	p := pipelinev1.Param{Value: *pipelinev1.NewStructuredValues(s)}
	exprs, _ := p.GetVarSubstitutionExpressions()
	var refs []string
	for _, e := range exprs {
		if strings.HasPrefix(e, "params.") {
			refs = append(refs, e)
		}
	}
	return refs
}

// pipelineParamRepl returns the replacements for a pipeline's params: the
// run's values, then defaults, where string defaults may refer to other
// params (resolved recursively, at most ten levels deep, cycles rejected)
// and array and object defaults may use string params. It mirrors
// resources.ApplyParameters of the PipelineRun reconciler.
func pipelineParamRepl(specs pipelinev1.ParamSpecs, given pipelinev1.Params) (repl, error) {
	r := newRepl()
	for _, p := range given {
		r.addParam(pipelineParamPatterns, p.Name, p.Value)
	}
	provided := func(name string) bool {
		for _, p := range given {
			if p.Name == name {
				return true
			}
		}
		return false
	}
	unresolved := map[string]string{}
	for _, s := range specs {
		if (s.Type == pipelinev1.ParamTypeString || s.Type == "") && s.Default != nil && !provided(s.Name) {
			for _, pattern := range pipelineParamPatterns {
				unresolved[fmt.Sprintf(pattern, s.Name)] = s.Default.StringVal
			}
		}
	}
	visiting := map[string]bool{}
	var resolve func(key, value string, depth int) error
	resolve = func(key, value string, depth int) error {
		if visiting[key] {
			return fmt.Errorf("parameter resolution failed: circular dependency detected in param %q", key)
		}
		if depth > maxParamReferenceDepth {
			return fmt.Errorf("parameter resolution failed: maximum recursion depth (%d) exceeded for param %q", maxParamReferenceDepth, key)
		}
		visiting[key] = true
		defer delete(visiting, key)
		for _, ref := range paramRefs(value) {
			if _, ok := r.str[ref]; ok {
				continue
			}
			v, ok := unresolved[ref]
			if !ok {
				return fmt.Errorf("parameter resolution failed: param %q references undefined param %q", key, ref)
			}
			if err := resolve(ref, v, depth+1); err != nil {
				return err
			}
		}
		r.str[key] = substitution.ApplyReplacements(value, r.str)
		return nil
	}
	for _, s := range specs { // in declaration order, for deterministic errors
		for _, pattern := range pipelineParamPatterns {
			key := fmt.Sprintf(pattern, s.Name)
			v, ok := unresolved[key]
			if _, done := r.str[key]; !ok || done {
				continue
			}
			if err := resolve(key, v, 0); err != nil {
				return repl{}, err
			}
		}
	}
	for _, s := range specs {
		if s.Default == nil || provided(s.Name) {
			continue
		}
		switch s.Type {
		case pipelinev1.ParamTypeArray:
			for _, pattern := range pipelineParamPatterns {
				key := fmt.Sprintf(pattern, s.Name)
				vals := make([]string, len(s.Default.ArrayVal))
				for i, v := range s.Default.ArrayVal {
					vals[i] = substitution.ApplyReplacements(v, r.str)
					r.str[fmt.Sprintf("%s[%d]", key, i)] = vals[i]
				}
				r.arr[key] = vals
			}
		case pipelinev1.ParamTypeObject:
			for _, pattern := range pipelineParamPatterns {
				key := fmt.Sprintf(pattern, s.Name)
				vals := make(map[string]string, len(s.Default.ObjectVal))
				for k, v := range s.Default.ObjectVal {
					vals[k] = substitution.ApplyReplacements(v, r.str)
					r.str[key+"."+k] = vals[k]
				}
				r.obj[key] = vals
			}
		}
	}
	return r, nil
}

// taskParamRepl returns the replacements for a Task's params: defaults,
// overridden by the TaskRun's values. It mirrors getTaskParameters of the
// TaskRun reconciler (a default may refer to other params' values).
func taskParamRepl(specs pipelinev1.ParamSpecs, given pipelinev1.Params) repl {
	r := newRepl()
	var referring []pipelinev1.ParamSpec
	for _, s := range specs {
		if s.Default == nil {
			continue
		}
		if strings.Contains(s.Default.StringVal, "$(params.") {
			referring = append(referring, s)
			continue
		}
		r.addParam(taskParamPatterns, s.Name, *s.Default)
	}
	for _, s := range referring {
		v := substitution.ApplyReplacements(s.Default.StringVal, r.str)
		for _, pattern := range taskParamPatterns {
			r.str[fmt.Sprintf(pattern, s.Name)] = v
		}
	}
	tr := newRepl()
	for _, p := range given {
		tr.addParam(taskParamPatterns, p.Name, p.Value)
	}
	maps.Copy(r.str, tr.str)
	maps.Copy(r.arr, tr.arr)
	for k, v := range tr.obj {
		if r.obj[k] == nil {
			r.obj[k] = v
			continue
		}
		maps.Copy(r.obj[k], v)
	}
	return r
}

// applyTaskSpec returns a copy of spec with r applied to every field Tekton
// substitutes in a Task: steps, the step template, sidecars, workspace
// mount paths and the names and items of volumes.
func applyTaskSpec(spec *pipelinev1.TaskSpec, r repl) *pipelinev1.TaskSpec {
	spec = spec.DeepCopy()
	for i := range spec.Steps {
		if spec.Steps[i].Params != nil {
			spec.Steps[i].Params = spec.Steps[i].Params.ReplaceVariables(r.str, r.arr, r.obj)
		}
		// Substituting builds a replacer per field: skip steps with no
		// variable at all, which it would leave as they are.
		if stepHasVars(&spec.Steps[i]) {
			container.ApplyStepReplacements(&spec.Steps[i], r.str, r.arr)
		}
	}
	if spec.StepTemplate != nil {
		container.ApplyStepTemplateReplacements(spec.StepTemplate, r.str, r.arr)
	}
	for i := range spec.Sidecars {
		container.ApplySidecarReplacements(&spec.Sidecars[i], r.str, r.arr)
	}
	for i := range spec.Workspaces {
		spec.Workspaces[i].MountPath = substitution.ApplyReplacements(spec.Workspaces[i].MountPath, r.str)
	}
	for i := range spec.Volumes {
		applyVolumeStrings(&spec.Volumes[i], r.str)
	}
	return spec
}

// applyVolumeStrings substitutes in a volume's name and in the names and
// items of the ConfigMaps and Secrets it holds, as the TaskRun
// reconciler's applyVolumeReplacements does.
func applyVolumeStrings(v *corev1.Volume, m map[string]string) {
	sub := func(s *string) { *s = substitution.ApplyReplacements(*s, m) }
	items := func(its []corev1.KeyToPath) {
		for i := range its {
			sub(&its[i].Key)
			sub(&its[i].Path)
		}
	}
	sub(&v.Name)
	if c := v.ConfigMap; c != nil {
		sub(&c.Name)
		items(c.Items)
	}
	if s := v.Secret; s != nil {
		sub(&s.SecretName)
		items(s.Items)
	}
	if p := v.Projected; p != nil {
		for _, src := range p.Sources {
			if c := src.ConfigMap; c != nil {
				sub(&c.Name)
				items(c.Items)
			}
			if s := src.Secret; s != nil {
				sub(&s.Name)
				items(s.Items)
			}
		}
	}
}

// applyPipelineTasks applies r to the pipeline tasks in place, to the
// fields the PipelineRun reconciler substitutes, and propagates it into
// embedded task specs, where a pipeline task's own params take precedence
// over the pipeline's of the same name.
func applyPipelineTasks(tasks []pipelinev1.PipelineTask, r repl) {
	for i := range tasks {
		t := &tasks[i]
		t.Params = t.Params.ReplaceVariables(r.str, r.arr, r.obj)
		t.DisplayName = substitution.ApplyReplacements(t.DisplayName, r.str)
		for j := range t.Workspaces {
			t.Workspaces[j].SubPath = substitution.ApplyReplacements(t.Workspaces[j].SubPath, r.str)
		}
		t.When = t.When.ReplaceVariables(r.str, r.arr)
		if t.TaskRef != nil {
			if t.TaskRef.Params != nil {
				t.TaskRef.Params = t.TaskRef.Params.ReplaceVariables(r.str, r.arr, r.obj)
			}
			t.TaskRef.Name = substitution.ApplyReplacements(t.TaskRef.Name, r.str)
		}
		t.OnError = pipelinev1.PipelineTaskOnErrorType(substitution.ApplyReplacements(string(t.OnError), r.str))
		propagate(t, r)
	}
}

func propagate(t *pipelinev1.PipelineTask, r repl) {
	if t.TaskSpec == nil {
		return
	}
	if len(t.Params) > 0 {
		r = r.clone()
		for _, p := range t.Params {
			for _, pattern := range pipelineParamPatterns {
				key := fmt.Sprintf(pattern, p.Name)
				if _, ok := r.str[key]; ok {
					r.str[key] = p.Value.StringVal
				}
				if _, ok := r.arr[key]; ok {
					r.arr[key] = p.Value.ArrayVal
				}
				if _, ok := r.obj[key]; ok {
					r.obj[key] = p.Value.ObjectVal
					for k, v := range p.Value.ObjectVal {
						r.str[fmt.Sprintf("params.%s.%s", p.Name, k)] = v
					}
				}
			}
		}
	}
	t.TaskSpec.TaskSpec = *applyTaskSpec(&t.TaskSpec.TaskSpec, r)
}

// applyResolved applies result or execution-status replacements to the
// fields of one pipeline task that may refer to them, as ApplyTaskResults
// and ApplyPipelineTaskStateContext do.
func applyResolved(t *pipelinev1.PipelineTask, r repl) {
	t.Params = t.Params.ReplaceVariables(r.str, r.arr, r.obj)
	t.When = t.When.ReplaceVariables(r.str, r.arr)
	if t.TaskRef != nil {
		if t.TaskRef.Params != nil {
			t.TaskRef.Params = t.TaskRef.Params.ReplaceVariables(r.str, r.arr, r.obj)
		}
		t.TaskRef.Name = substitution.ApplyReplacements(t.TaskRef.Name, r.str)
	}
	t.DisplayName = substitution.ApplyReplacements(t.DisplayName, r.str)
	for i := range t.Workspaces {
		t.Workspaces[i].SubPath = substitution.ApplyReplacements(t.Workspaces[i].SubPath, r.str)
	}
}

// resultTargets are the forms of a reference to result res of task pt.
func resultTargets(pt, res string) []string {
	return []string{
		fmt.Sprintf("tasks.%s.results.%s", pt, res),
		fmt.Sprintf("tasks.%s.results[%q]", pt, res),
		fmt.Sprintf("tasks.%s.results['%s']", pt, res),
	}
}

// addResult adds the replacements for one task result, as
// ResolvedResultRefs.get{String,Array,Object}Replacements do.
func (r repl) addResult(pt string, res pipelinev1.TaskRunResult) {
	targets := resultTargets(pt, res.Name)
	switch res.Value.Type {
	case pipelinev1.ParamTypeArray:
		for i, v := range res.Value.ArrayVal {
			for _, t := range targets {
				r.str[fmt.Sprintf("%s[%d]", t, i)] = v
			}
		}
		for _, t := range targets {
			r.arr[t] = res.Value.ArrayVal
		}
	case pipelinev1.ParamTypeObject:
		for k, v := range res.Value.ObjectVal {
			r.str[fmt.Sprintf("tasks.%s.results.%s.%s", pt, res.Name, k)] = v
			r.str[fmt.Sprintf("tasks.%s.results[%q][%s]", pt, res.Name, k)] = v
			r.str[fmt.Sprintf("tasks.%s.results['%s'][%s]", pt, res.Name, k)] = v
		}
		for _, t := range targets {
			r.obj[t] = res.Value.ObjectVal
		}
	default:
		for _, t := range targets {
			r.str[t] = res.Value.StringVal
		}
	}
}

// propagatedResults returns the replacements PropagateResults applies to
// a task spec: every finished task's results, referred to without params.
func propagatedResults(results map[string][]pipelinev1.TaskRunResult) repl {
	r := newRepl()
	for pt, rs := range results {
		for _, res := range rs {
			key := fmt.Sprintf("tasks.%s.results.%s", pt, res.Name)
			switch res.Type {
			case pipelinev1.ResultsTypeArray:
				r.arr[key] = res.Value.ArrayVal
			case pipelinev1.ResultsTypeObject:
				for k, v := range res.Value.ObjectVal {
					r.str[key+"."+k] = v
				}
			default:
				r.str[key] = res.Value.StringVal
			}
		}
	}
	return r
}

// pipelineResults computes a run's results from its tasks' results, as
// ApplyTaskResultsToPipelineResults does: a result that refers to a task
// that did not succeed is left out; one that refers to a result a
// successful task did not produce is left out and reported.
func pipelineResults(results []pipelinev1.PipelineResult, taskResults map[string][]pipelinev1.TaskRunResult, succeeded func(string) bool) ([]pipelinev1.PipelineRunResult, error) {
	var out []pipelinev1.PipelineRunResult
	var invalid []string
	r := newRepl()
	for _, pres := range results {
		exprs, _ := pres.GetVarSubstitutionExpressions()
		if len(exprs) == 0 {
			continue
		}
		valid := true
		for _, expr := range exprs {
			parts := strings.Split(expr, ".")
			if len(parts) < 4 || (parts[0] != "tasks" && parts[0] != "finally") || parts[2] != "results" {
				invalid, valid = append(invalid, pres.Name), false
				continue
			}
			task := parts[1]
			name, idx := pipelinev1.ParseResultName(parts[3])
			value, found := findResult(taskResults[task], name)
			if !found {
				if !succeeded(task) {
					valid = false // skipped or failed: leave it out quietly
					continue
				}
				invalid, valid = append(invalid, pres.Name), false
				continue
			}
			switch len(parts) {
			case 4:
				switch value.Type {
				case pipelinev1.ParamTypeArray:
					if idx != "*" {
						i, _ := strconv.Atoi(idx)
						if i >= len(value.ArrayVal) {
							invalid, valid = append(invalid, pres.Name), false
							continue
						}
						r.str[expr] = value.ArrayVal[i]
					} else {
						r.arr[substitution.StripStarVarSubExpression("$("+expr+")")] = value.ArrayVal
					}
				case pipelinev1.ParamTypeObject:
					r.obj[substitution.StripStarVarSubExpression("$("+expr+")")] = value.ObjectVal
				default:
					r.str[expr] = value.StringVal
				}
			case 5:
				v, ok := value.ObjectVal[parts[4]]
				if !ok {
					invalid, valid = append(invalid, pres.Name), false
					continue
				}
				r.str[expr] = v
			default:
				invalid, valid = append(invalid, pres.Name), false
			}
		}
		if valid {
			v := pres.Value
			v.ApplyReplacements(r.str, r.arr, r.obj)
			out = append(out, pipelinev1.PipelineRunResult{Name: pres.Name, Value: v})
		}
	}
	if len(invalid) > 0 {
		return out, fmt.Errorf("invalid pipelineresults %v, the referenced results don't exist", invalid)
	}
	return out, nil
}

func findResult(rs []pipelinev1.TaskRunResult, name string) (pipelinev1.ResultValue, bool) {
	for _, r := range rs {
		if r.Name == name {
			return r.Value, true
		}
	}
	return pipelinev1.ResultValue{}, false
}

// stepHasVars reports whether any field ApplyStepReplacements substitutes
// holds a "$(" reference.
func stepHasVars(s *pipelinev1.Step) bool {
	has := func(v string) bool { return strings.Contains(v, "$(") }
	if has(s.Name) || has(s.Image) || has(string(s.ImagePullPolicy)) || has(s.Script) || has(s.WorkingDir) || has(string(s.OnError)) {
		return true
	}
	for _, v := range s.Command {
		if has(v) {
			return true
		}
	}
	for _, v := range s.Args {
		if has(v) {
			return true
		}
	}
	for _, e := range s.Env {
		if has(e.Value) {
			return true
		}
		if vf := e.ValueFrom; vf != nil {
			if vf.SecretKeyRef != nil && (has(vf.SecretKeyRef.Name) || has(vf.SecretKeyRef.Key)) {
				return true
			}
			if vf.ConfigMapKeyRef != nil && (has(vf.ConfigMapKeyRef.Name) || has(vf.ConfigMapKeyRef.Key)) {
				return true
			}
		}
	}
	for _, e := range s.EnvFrom {
		if has(e.Prefix) || (e.ConfigMapRef != nil && has(e.ConfigMapRef.Name)) || (e.SecretRef != nil && has(e.SecretRef.Name)) {
			return true
		}
	}
	for _, m := range s.VolumeMounts {
		if has(m.Name) || has(m.MountPath) || has(m.SubPath) {
			return true
		}
	}
	for _, w := range s.When {
		if has(w.Input) || has(w.CEL) {
			return true
		}
		for _, v := range w.Values {
			if has(v) {
				return true
			}
		}
	}
	return (s.StdoutConfig != nil && has(s.StdoutConfig.Path)) || (s.StderrConfig != nil && has(s.StderrConfig.Path))
}
