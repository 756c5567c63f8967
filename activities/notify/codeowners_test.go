package notify

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/test/reference"
)

// The example from GitHub's documentation "About code owners", with the
// paths it says each rule covers.
const githubExample = `
# These owners will be the default owners for everything in the repo.
*       @global-owner1 @global-owner2

# Order is important; the last matching pattern takes the most precedence.
*.js    @js-owner #This is an inline comment.

*.go docs@example.com

*.txt @octo-org/octocats

/build/logs/ @doctocat

docs/*  docs@example.com

apps/ @octocat

/docs/ @doctocat

/scripts/ @doctocat @octocat

**/logs @octocat

/apps/ @octocat
/apps/github
`

func TestGitHubsDocumentedExample(t *testing.T) {
	co, err := ParseCodeowners(githubExample)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path  string
		owner []string
	}{
		{"README.md", []string{"@global-owner1", "@global-owner2"}},
		{"src/app.js", []string{"@js-owner"}},
		{"main.go", []string{"docs@example.com"}},
		{"notes/todo.txt", []string{"@octo-org/octocats"}},
		{"build/logs/today.log", []string{"@octocat"}}, // **/logs comes later and wins
		{"deeply/nested/logs/x.log", []string{"@octocat"}},
		{"docs/getting-started.md", []string{"@doctocat"}}, // /docs/ is later than docs/*
		{"docs/build-app/troubleshooting.md", []string{"@doctocat"}},
		{"lib/apps/x.c", []string{"@octocat"}},
		{"scripts/run.sh", []string{"@doctocat", "@octocat"}},
		{"apps/github/index.c", nil}, // explicitly unowned
		{"apps/other/index.c", []string{"@octocat"}},
	}
	for _, tt := range tests {
		got, ok := co.Owners(tt.path)
		if !ok || !slices.Equal(got, tt.owner) {
			t.Errorf("Owners(%s) = %v, %v; want %v", tt.path, got, ok, tt.owner)
		}
	}
}

func TestDocsStarMatchesOnlyDirectFiles(t *testing.T) {
	co, err := ParseCodeowners("* @all\ndocs/* docs@example.com\n")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := co.Owners("docs/getting-started.md"); !slices.Equal(got, []string{"docs@example.com"}) {
		t.Errorf("docs/getting-started.md: %v", got)
	}
	if got, _ := co.Owners("docs/build-app/troubleshooting.md"); !slices.Equal(got, []string{"@all"}) {
		t.Errorf("docs/build-app/troubleshooting.md: %v, want the default", got)
	}
}

func TestGardenLinux2021(t *testing.T) {
	b, err := os.ReadFile(reference.Path(t, "CODEOWNERS-2021"))
	if err != nil {
		t.Fatal(err)
	}
	co, err := ParseCodeowners(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if got := co.Default(); !slices.Equal(got, []string{"@gardenlinux/garden-linux-maintainers"}) {
		t.Errorf("default owners = %v", got)
	}
	if got, _ := co.Owners("features/_prod/pkg.include"); !slices.Equal(got, []string{"@gardenlinux/garden-linux-maintainers"}) {
		t.Errorf("owners = %v", got)
	}
}

func TestBadCodeowners(t *testing.T) {
	for _, text := range []string{"* owner-without-at\n", "!*.js @a\n", "[ab].go @a\n"} {
		_, err := ParseCodeowners("# c\n" + text)
		if err == nil || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("%q: %v, want an error naming line 2", text, err)
		}
	}
}
