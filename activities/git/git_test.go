package git

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"
)

// repo makes a real repository with one commit on main and returns its path
// and the commit.
func repo(t *testing.T) (string, string) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	dir := filepath.Join(t.TempDir(), "os")
	run := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = filepath.Dir(dir)
		if strings.HasPrefix(args[0], "-C") || args[0] == "-C" {
			cmd.Dir = ""
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("init", "-q", "-b", "main", dir)
	run("-C", dir, "-c", "user.name=kiln", "-c", "user.email=kiln@example.com", "commit", "-q", "--allow-empty", "-m", "first")
	return dir, run("-C", dir, "rev-parse", "HEAD")
}

func TestResolveHead(t *testing.T) {
	dir, head := repo(t)
	got, err := Activities{}.ResolveHead(context.Background(), HeadRequest{Repo: dir, Branch: "main"})
	if err != nil || got != head {
		t.Fatalf("ResolveHead = %q, %v; want %q", got, err, head)
	}
	_, err = Activities{}.ResolveHead(context.Background(), HeadRequest{Repo: dir, Branch: "nope"})
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != ErrTypeNoSuchBranch || !appErr.NonRetryable() {
		t.Errorf("missing branch: %v, want non-retryable %s", err, ErrTypeNoSuchBranch)
	}
}

func TestReadAtCommit(t *testing.T) {
	dir, _ := repo(t)
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{{"add", "-A"}, {"-c", "user.name=k", "-c", "user.email=k@x", "commit", "-q", "-m", name}} {
			if out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
		}
		out, _ := exec.Command("git", "-C", dir, "rev-parse", "HEAD").Output()
		return strings.TrimSpace(string(out))
	}
	first := write(".github/CODEOWNERS", "* @first\n")
	write(".github/CODEOWNERS", "* @second\n")
	path, content, err := ReadAtCommit(context.Background(), dir, "main", first, CodeownersPaths...)
	if err != nil || path != ".github/CODEOWNERS" || content != "* @first\n" {
		t.Errorf("ReadAtCommit = %q, %q, %v; want the first version", path, content, err)
	}
}
