// Package git holds the activity that resolves a branch's head commit on a
// remote, as `git ls-remote` does, without a clone.
package git

import (
	"context"
	"errors"
	"fmt"
	"strings"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/memory"
	"go.temporal.io/sdk/temporal"

	"github.com/kiln-build/kiln/workflows"
)

// ErrTypeNoSuchBranch: the remote has no such branch.
const ErrTypeNoSuchBranch = "NoSuchBranch"

// HeadRequest names a branch on a remote.
type HeadRequest = workflows.HeadRequest

// Activities resolve remote refs. Credentials, if any, come from the
// environment of the worker (for example a git credential helper is not
// used; use a URL the worker can read, or an SSH agent).
type Activities struct{}

// ResolveHead returns the commit the branch points to on the remote. It has
// no side effects. A missing branch is non-retryable; network trouble is
// retried.
func (Activities) ResolveHead(ctx context.Context, in HeadRequest) (string, error) {
	if in.Repo == "" || in.Branch == "" {
		return "", temporal.NewNonRetryableApplicationError("repo and branch are required", ErrTypeNoSuchBranch, nil)
	}
	remote := gogit.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{in.Repo}})
	refs, err := remote.ListContext(ctx, &gogit.ListOptions{})
	if errors.Is(err, transport.ErrRepositoryNotFound) {
		return "", temporal.NewNonRetryableApplicationError(fmt.Sprintf("repository %s not found", in.Repo), ErrTypeNoSuchBranch, err)
	}
	if err != nil {
		return "", fmt.Errorf("list refs of %s: %w", in.Repo, err)
	}
	want := plumbing.NewBranchReferenceName(strings.TrimPrefix(in.Branch, "refs/heads/"))
	for _, r := range refs {
		if r.Name() == want {
			return r.Hash().String(), nil
		}
	}
	return "", temporal.NewNonRetryableApplicationError(fmt.Sprintf("branch %s not found on %s", in.Branch, in.Repo), ErrTypeNoSuchBranch, nil)
}

// CodeownersPaths are where GitHub looks for CODEOWNERS, in order.
var CodeownersPaths = []string{".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS"}

// ReadAtCommit returns the first of paths that exists in the tree of commit
// on branch, and its content; "" when none does. It fetches the branch's
// last 50 commits into memory, without a worktree.
func ReadAtCommit(ctx context.Context, repo, branch, commit string, paths ...string) (string, string, error) {
	r, err := gogit.CloneContext(ctx, memory.NewStorage(), nil, &gogit.CloneOptions{
		URL: repo, ReferenceName: plumbing.NewBranchReferenceName(branch), SingleBranch: true, Depth: 50, NoCheckout: true,
	})
	if err != nil {
		return "", "", fmt.Errorf("fetch %s %s: %w", repo, branch, err)
	}
	c, err := r.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return "", "", fmt.Errorf("commit %s is not among the last 50 of %s: %w", commit, branch, err)
	}
	tree, err := c.Tree()
	if err != nil {
		return "", "", err
	}
	for _, p := range paths {
		f, err := tree.File(p)
		if err != nil {
			continue
		}
		s, err := f.Contents()
		if err != nil {
			return "", "", err
		}
		return p, s, nil
	}
	return "", "", nil
}
