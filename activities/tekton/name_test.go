package tekton

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestRunName(t *testing.T) {
	long := strings.Repeat("very-long-build-identifier/", 10)
	tests := []struct {
		key, wantPrefix string
	}{
		{"build/main/1.2.3/images/aws-gardener_prod/1", "build-main-1-2-3-images-aws-ga-"},
		{"Build/Main", "build-main-"},
		{"///", "kiln-"},
		{long, "very-long-build-identifier-ver-"},
		{"a--b__c", "a-b-c-"},
	}
	for _, tt := range tests {
		got := RunName(tt.key)
		if !strings.HasPrefix(got, tt.wantPrefix) {
			t.Errorf("RunName(%q) = %q, want prefix %q", tt.key, got, tt.wantPrefix)
		}
		if len(got) > NameMaxLen {
			t.Errorf("RunName(%q) = %q: %d characters, want at most %d", tt.key, got, len(got), NameMaxLen)
		}
		if errs := validation.IsDNS1123Label(got); len(errs) > 0 {
			t.Errorf("RunName(%q) = %q is not a DNS-1123 label: %v", tt.key, got, errs)
		}
		if RunName(tt.key) != got {
			t.Errorf("RunName(%q) is not deterministic", tt.key)
		}
		// A TaskRun pod name for a 19-character task stays a valid label value.
		if pod := got + "-" + strings.Repeat("t", 19) + "-pod"; len(validation.IsValidLabelValue(pod)) > 0 {
			t.Errorf("pod name %q is not a valid label value", pod)
		}
	}
	if RunName(long+"a") == RunName(long+"b") {
		t.Error("keys that share a long prefix got the same name")
	}
}

func TestSpecLabelChangesWithContent(t *testing.T) {
	a := PipelineRunRequest{Namespace: "ns", Key: "k", PipelineRef: "p"}
	b := a
	b.PipelineRef = "q"
	la, _ := specLabel(a)
	lb, _ := specLabel(b)
	la2, _ := specLabel(a)
	if la == lb || la != la2 || len(la) != 16 {
		t.Errorf("spec labels %q %q %q: want stable, 16 chars, different for different content", la, la2, lb)
	}
}
