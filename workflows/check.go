package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// CheckResult is what CheckBuild found: the request is valid, and this is
// what it would build.
type CheckResult struct {
	// Flavours are the names of the flavours the build would build.
	Flavours []string `json:"flavours"`
	// Params are the params the pipelines' templates use.
	Params []string `json:"params,omitempty"`
	// Packages says what the packages check found, with --packages-version.
	Packages string `json:"packages,omitempty"`
}

// CheckBuild plans a build request exactly as Build does, and checks it,
// without running anything: kiln run and kiln trigger call it first, so a
// request with an unknown flavour set, an unknown param, a target nothing
// serves or a packages version the packages check does not find is
// refused before a Build starts. It fails with ErrTypeInvalidRequest
// naming every problem.
func CheckBuild(ctx workflow.Context, in BuildRequest) (CheckResult, error) {
	if err := in.Validate(); err != nil {
		return CheckResult{}, invalidRequest(err)
	}
	var p Plan
	if err := planBuild(ctx, in).Get(ctx, &p); err != nil {
		return CheckResult{}, fmt.Errorf("plan: %w", err)
	}
	if err := p.checkRequest(in); err != nil {
		return CheckResult{}, invalidRequest(err)
	}
	res := CheckResult{Params: p.ParamsUsed()}
	if in.PackagesVersion != "" {
		// The build's own packages check, with a short window: the CLI
		// waits for the answer.
		b := &build{in: in, id: BuildID(in), plan: p}
		reason, err := b.checkPackages(ctx, 20*time.Second)
		if err != nil {
			var app *temporal.ApplicationError
			if errors.As(err, &app) {
				return res, invalidRequest(errors.New(app.Message()))
			}
			return res, err
		}
		res.Packages = reason
	}
	for _, f := range p.Flavours {
		res.Flavours = append(res.Flavours, f.Name())
	}
	return res, nil
}

// planBuild runs the Plan local activity for in. Plan reads only the
// worker's configuration: a local activity costs no task-queue round trip,
// and its result is recorded all the same.
func planBuild(ctx workflow.Context, in BuildRequest) workflow.Future {
	return workflow.ExecuteLocalActivity(workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
		StartToCloseTimeout: 10 * time.Second, RetryPolicy: planRetry,
	}), ActivityPlan, PlanRequest{FlavourSet: in.FlavourSet, Flavours: in.Flavours})
}

// planRetry retries the Plan activity, which reads only configuration.
var planRetry = &temporal.RetryPolicy{InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 10}

func invalidRequest(err error) error {
	return temporal.NewNonRetryableApplicationError("invalid build request: "+err.Error(), ErrTypeInvalidRequest, nil)
}

// checkRequest reports every problem of in against the plan made for it:
// the plan's own (an unknown flavour set), no buildable flavours, targets
// nothing serves, and params no template uses.
func (p Plan) checkRequest(in BuildRequest) error {
	if p.Problem != "" {
		return errors.New(p.Problem)
	}
	var errs []error
	if len(p.Flavours) == 0 {
		errs = append(errs, fmt.Errorf("flavourSet: %q has no buildable flavours (build: true in the flavour file)", in.FlavourSet))
	}
	errs = append(errs, p.checkTargets(in), p.checkParams(in))
	return errors.Join(errs...)
}

// checkParams refuses a param that no template of the plan uses: a typo
// would otherwise be a silent no-op.
func (p Plan) checkParams(in BuildRequest) error {
	if in.AllowUnusedParams || len(in.Params) == 0 {
		return nil
	}
	used, all := p.paramsUsed()
	if all {
		return nil // a template ranges over, or passes on, every param
	}
	var errs []error
	for _, name := range sortedKeys(in.Params) {
		if slices.Contains(used, name) {
			continue
		}
		known := "none"
		if len(used) > 0 {
			known = strings.Join(used, ", ")
		}
		errs = append(errs, fmt.Errorf("params.%s: no pipeline template uses it (the templates use: %s); fix the name, or allow it with --allow-unused-params", name, known))
	}
	return errors.Join(errs...)
}

// ParamsUsed are the names of the request params that the plan's
// templates use, sorted.
func (p Plan) ParamsUsed() []string {
	used, _ := p.paramsUsed()
	return used
}

// paramsUsed returns the params the plan's templates name as
// {{.Params.x}} or {{index .Params "x"}}; all is set when one uses .Params
// as a whole, so any param may matter.
func (p Plan) paramsUsed() (used []string, all bool) {
	configs := []*PipelineConfig{p.Base, p.Packages, p.Image, p.Test, p.TestPlatform}
	for _, n := range sortedKeys(p.Publish) {
		c := p.Publish[n]
		configs = append(configs, &c)
	}
	seen := map[string]bool{}
	for _, c := range configs {
		if c == nil {
			continue
		}
		for _, m := range []map[string]string{c.Params, c.Labels, c.Annotations} {
			for _, text := range m {
				t, err := template.New("").Funcs(templateFuncs).Parse(text)
				if err != nil || t.Tree == nil {
					continue // Validate reports it
				}
				if walkParams(t.Tree.Root, seen) {
					all = true
				}
			}
		}
	}
	for n := range seen {
		used = append(used, n)
	}
	slices.Sort(used)
	return used, all
}

// walkParams adds the params node n names to seen, and reports whether it
// uses .Params as a whole.
func walkParams(n parse.Node, seen map[string]bool) (all bool) {
	// idents returns a field chain's names after the root: .Params.x is
	// [Params x], $.Params.x is [Params x] too.
	params := func(ident []string) bool {
		if len(ident) > 0 && ident[0] == "$" {
			ident = ident[1:]
		}
		if len(ident) == 0 || ident[0] != "Params" {
			return false
		}
		if len(ident) == 1 {
			return true
		}
		seen[ident[1]] = true
		return false
	}
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return false
		}
		for _, c := range n.Nodes {
			all = walkParams(c, seen) || all
		}
	case *parse.ActionNode:
		all = walkParams(n.Pipe, seen)
	case *parse.PipeNode:
		if n == nil {
			return false
		}
		for _, c := range n.Cmds {
			all = walkParams(c, seen) || all
		}
	case *parse.CommandNode:
		// index .Params "x" names x.
		if len(n.Args) >= 3 {
			if id, ok := n.Args[0].(*parse.IdentifierNode); ok && id.Ident == "index" {
				if f, ok := n.Args[1].(*parse.FieldNode); ok && len(f.Ident) == 1 && f.Ident[0] == "Params" {
					if s, ok := n.Args[2].(*parse.StringNode); ok {
						seen[s.Text] = true
						for _, a := range n.Args[3:] {
							all = walkParams(a, seen) || all
						}
						return all
					}
				}
			}
		}
		for _, a := range n.Args {
			all = walkParams(a, seen) || all
		}
	case *parse.FieldNode:
		all = params(n.Ident)
	case *parse.VariableNode:
		all = params(n.Ident)
	case *parse.ChainNode:
		all = walkParams(n.Node, seen)
	case *parse.IfNode:
		all = walkBranch(&n.BranchNode, seen)
	case *parse.RangeNode:
		all = walkBranch(&n.BranchNode, seen)
	case *parse.WithNode:
		all = walkBranch(&n.BranchNode, seen)
	}
	return all
}

func walkBranch(b *parse.BranchNode, seen map[string]bool) bool {
	all := walkParams(b.Pipe, seen)
	all = walkParams(b.List, seen) || all
	return walkParams(b.ElseList, seen) || all
}
