package notify

import (
	"slices"
	"testing"
)

func TestResolve(t *testing.T) {
	co, err := ParseCodeowners(`
* @gardenlinux/garden-linux-maintainers
/features/_prod/ kernel@example.com @alice
/docs/ @ghost
`)
	if err != nil {
		t.Fatal(err)
	}
	handles := map[string]string{
		"@gardenlinux/garden-linux-maintainers": "maintainers@gardenlinux.io",
		"@Alice":                                "alice@example.com",
	}
	tests := []struct {
		name           string
		in             RecipientsInput
		to, unresolved []string
	}{
		{"only replaces everything", RecipientsInput{Only: []string{"Rel@x.io", "rel@X.io", "b@x.io"}, Additional: []string{"c@x.io"}, Codeowners: co},
			[]string{"b@x.io", "Rel@x.io"}, nil},
		{"default owners without changes", RecipientsInput{Codeowners: co, Handles: handles},
			[]string{"maintainers@gardenlinux.io"}, nil},
		{"owners of changed paths, handles mapped ignoring case", RecipientsInput{Codeowners: co, Handles: handles, Changed: []string{"features/_prod/pkg.include"}},
			[]string{"alice@example.com", "kernel@example.com"}, nil},
		{"unresolved handles reported, additional added, dedup ignoring case", RecipientsInput{
			Codeowners: co, Handles: handles, Changed: []string{"docs/a.md", "features/_prod/x"},
			Additional: []string{"KERNEL@example.com", "ops@example.com"},
		}, []string{"alice@example.com", "kernel@example.com", "ops@example.com"}, []string{"@ghost"}},
		{"no CODEOWNERS", RecipientsInput{Additional: []string{"ops@example.com"}}, []string{"ops@example.com"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Resolve(tt.in)
			if !slices.Equal(got.To, tt.to) || !slices.Equal(got.Unresolved, tt.unresolved) {
				t.Errorf("Resolve = %+v, want to %v unresolved %v", got, tt.to, tt.unresolved)
			}
		})
	}
}
