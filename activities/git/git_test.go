package git

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/kiln-build/kiln/test/gittest"
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

// TestReadAtCommit reads CODEOWNERS from a real git server (git
// http-backend, serving commits by hash as GitHub does) at a commit that
// only a tag reaches, behind 60 newer commits of main: the file of that
// commit, fetched without history and without the other files' contents.
func TestReadAtCommit(t *testing.T) {
	root := t.TempDir()
	srv, err := gittest.Start(root)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dir := filepath.Join(root, "os.git")
	git := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=k", "-c", "user.email=k@x"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		git("add", "-A")
		git("commit", "-q", "-m", name)
		return git("rev-parse", "HEAD")
	}
	if out, err := exec.Command("git", "init", "-q", "-b", "main", dir).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	old := write(".github/CODEOWNERS", "* @main\n")
	write("big.bin", strings.Repeat("not needed\n", 1<<16))
	// The release commit: on no branch, only a tag reaches it.
	git("checkout", "-q", "--detach")
	tagged := write(".github/CODEOWNERS", "* @release\n")
	git("tag", "v1.0")
	git("checkout", "-q", "main")
	// 60 newer commits on main, in one git process.
	var stream strings.Builder
	for i := range 60 {
		fmt.Fprintf(&stream, "commit refs/heads/main\ncommitter k <k@x> %d +0000\ndata 2\n%02d\n", 1700000000+i, i)
		if i == 0 {
			stream.WriteString("from refs/heads/main^0\n")
		}
	}
	imp := exec.Command("git", "-C", dir, "fast-import", "--quiet")
	imp.Stdin = strings.NewReader(stream.String())
	if out, err := imp.CombinedOutput(); err != nil {
		t.Fatalf("fast-import: %v\n%s", err, out)
	}

	path, content, err := ReadAtCommit(context.Background(), srv.RepoURL(dir), tagged, CodeownersPaths...)
	if err != nil || path != ".github/CODEOWNERS" || content != "* @release\n" {
		t.Errorf("ReadAtCommit = %q, %q, %v; want the tagged commit's", path, content, err)
	}
	// Two fetches: the commit and its trees (the server filters the
	// blobs out), then the one file.
	if n := srv.Fetches(dir); n != 2 {
		t.Errorf("%d fetches, want 2: the commit without contents, then CODEOWNERS", n)
	}
	// An old commit of main, 61 behind its head.
	if _, content, err := ReadAtCommit(context.Background(), srv.RepoURL(dir), old, CodeownersPaths...); err != nil || content != "* @main\n" {
		t.Errorf("old commit: %q, %v; want its CODEOWNERS", content, err)
	}
	var appErr *temporal.ApplicationError
	if _, _, err := ReadAtCommit(context.Background(), srv.RepoURL(dir), "75df9f40", CodeownersPaths...); !errors.As(err, &appErr) || !appErr.NonRetryable() || !strings.Contains(err.Error(), "full 40-hex") {
		t.Errorf("short commit: %v, want a non-retryable error asking for the full hash", err)
	}
	missing := strings.Repeat("0", 39) + "1"
	if _, _, err := ReadAtCommit(context.Background(), srv.RepoURL(dir), missing, CodeownersPaths...); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("unknown commit: %v, want an error naming it", err)
	}

}
