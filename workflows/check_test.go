package workflows

import (
	"slices"
	"strings"
	"testing"
)

func TestParamsUsedFindsEveryWayATemplateNamesAParam(t *testing.T) {
	p := Plan{
		Base:  &PipelineConfig{Params: map[string]string{"a": "{{.Params.registry}}", "b": `{{index .Params "mirror"}}`}},
		Image: &PipelineConfig{Labels: map[string]string{"c": `{{if .Params.debug}}x{{else}}{{$.Params.level}}{{end}}`}},
		Publish: map[string]PipelineConfig{"aws": {Annotations: map[string]string{
			"d": `{{with .Commit}}{{.}}{{end}}{{printf "%s" .Params.bucket | printf "%s"}}`,
		}}},
	}
	used, all := p.paramsUsed()
	if want := []string{"bucket", "debug", "level", "mirror", "registry"}; !slices.Equal(used, want) || all {
		t.Errorf("used %v (all %v), want %v", used, all, want)
	}
	for _, whole := range []string{`{{range $k, $v := .Params}}{{$k}}{{end}}`, `{{with .Params}}{{.x}}{{end}}`, `{{printf "%v" .Params}}`} {
		p := Plan{Base: &PipelineConfig{Params: map[string]string{"a": whole}}}
		if _, all := p.paramsUsed(); !all {
			t.Errorf("%s uses every param; paramsUsed says not", whole)
		}
		if err := p.checkParams(BuildRequest{Params: map[string]string{"anything": "1"}}); err != nil {
			t.Errorf("%s: %v", whole, err)
		}
	}
}

func TestCheckRequestNamesEveryProblem(t *testing.T) {
	p := Plan{Base: &PipelineConfig{Params: map[string]string{"a": "{{.Params.registry}}"}}}
	err := p.checkRequest(BuildRequest{FlavourSet: "empty", Params: map[string]string{"registy": "x", "registry": "y", "zz": "1"}})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{`flavourSet: "empty" has no buildable flavours`,
		"params.registy: no pipeline template uses it (the templates use: registry)", "params.zz:", "--allow-unused-params"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "params.registry:") {
		t.Errorf("a used param is refused:\n%v", err)
	}
	if err := (Plan{Problem: "flavourSet: nope"}).checkRequest(BuildRequest{}); err == nil || err.Error() != "flavourSet: nope" {
		t.Errorf("the plan's problem: %v", err)
	}
	allowed := BuildRequest{Params: map[string]string{"zz": "1"}, AllowUnusedParams: true}
	if err := p.checkParams(allowed); err != nil {
		t.Errorf("allowUnusedParams: %v", err)
	}
}
