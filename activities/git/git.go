// Package git holds the activity that resolves a branch's head commit on a
// remote, as `git ls-remote` does, without a clone.
package git

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	"github.com/go-git/go-git/v5/storage/memory"
	"github.com/go-git/go-git/v5/utils/ioutil"
	"go.temporal.io/sdk/temporal"

	"github.com/kiln-build/kiln/workflows"
)

// ErrTypeNoSuchBranch: the remote has no such branch.
const ErrTypeNoSuchBranch = "NoSuchBranch"

// ErrTypeBadCommit: ReadAtCommit cannot read at this commit, whatever it
// tries: the hash is not a full one, or the repository does not exist.
const ErrTypeBadCommit = "BadCommit"

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
// (a full 40-hex hash) on the remote repo, and its content; "" when none
// does. Which ref points at the commit, if any, and how old it is do not
// matter: it asks the server for that one commit by its hash, as `git fetch
// --depth=1 --filter=blob:none origin <commit>` does, and gets the commit
// and its trees, without history or file contents (all of them from a
// server that does not filter), then the one file it reads. Servers that
// serve reachable commits by hash do this: GitHub, GitLab, Gitea, git
// http-backend; a server that refuses says so in the error.
func ReadAtCommit(ctx context.Context, repo, commit string, paths ...string) (string, string, error) {
	if !plumbing.IsHash(commit) {
		return "", "", temporal.NewNonRetryableApplicationError(fmt.Sprintf("commit %q: want the full 40-hex hash to read files at it", commit), ErrTypeBadCommit, nil)
	}
	h := plumbing.NewHash(commit)
	ep, err := transport.NewEndpoint(repo)
	if err != nil {
		return "", "", temporal.NewNonRetryableApplicationError(fmt.Sprintf("repo %q: %v", repo, err), ErrTypeBadCommit, err)
	}
	st := memory.NewStorage()
	err = fetchObjects(ctx, ep, st, h, true)
	if errors.Is(err, transport.ErrRepositoryNotFound) {
		return "", "", temporal.NewNonRetryableApplicationError(fmt.Sprintf("repository %s not found", repo), ErrTypeBadCommit, err)
	}
	if err != nil {
		return "", "", fmt.Errorf("fetch commit %s from %s (the server must have it and serve commits by hash, as GitHub does): %w", commit, repo, err)
	}
	c, err := object.GetCommit(st, h)
	if err != nil {
		return "", "", fmt.Errorf("commit %s from %s: %w", commit, repo, err)
	}
	tree, err := c.Tree()
	if err != nil {
		return "", "", fmt.Errorf("tree of commit %s: %w", commit, err)
	}
	for _, p := range paths {
		e, err := tree.FindEntry(p)
		if err != nil || !e.Mode.IsFile() {
			continue
		}
		if _, err := st.EncodedObject(plumbing.BlobObject, e.Hash); errors.Is(err, plumbing.ErrObjectNotFound) {
			// The server filtered the blobs out: get this one.
			if err := fetchObjects(ctx, ep, st, e.Hash, false); err != nil {
				return "", "", fmt.Errorf("fetch %s at %s from %s: %w", p, commit, repo, err)
			}
		}
		b, err := object.GetBlob(st, e.Hash)
		if err != nil {
			return "", "", fmt.Errorf("%s at %s: %w", p, commit, err)
		}
		r, err := b.Reader()
		if err != nil {
			return "", "", fmt.Errorf("%s at %s: %w", p, commit, err)
		}
		defer r.Close()
		content, err := io.ReadAll(r)
		if err != nil {
			return "", "", fmt.Errorf("%s at %s: %w", p, commit, err)
		}
		return p, string(content), nil
	}
	return "", "", nil
}

// fetchObjects asks the server for want by its hash, in one upload-pack
// session, and stores what it sends in st. A commit is fetched as the
// shallow clone of depth 1 with blobs filtered out, when the server
// filters.
func fetchObjects(ctx context.Context, ep *transport.Endpoint, st *memory.Storage, want plumbing.Hash, commit bool) (err error) {
	c, err := client.NewClient(ep)
	if err != nil {
		return err
	}
	sess, err := c.NewUploadPackSession(ep, nil)
	if err != nil {
		return err
	}
	defer ioutil.CheckClose(sess, &err)
	ar, err := sess.AdvertisedReferencesContext(ctx)
	if err != nil {
		return err
	}
	req := packp.NewUploadPackRequestFromCapabilities(ar.Capabilities)
	req.Wants = []plumbing.Hash{want}
	set := func(c capability.Capability) {
		if err == nil && ar.Capabilities.Supports(c) {
			err = req.Capabilities.Set(c)
		}
	}
	set(capability.NoProgress)
	if commit {
		req.Depth = packp.DepthCommits(1)
		set(capability.Shallow)
		if ar.Capabilities.Supports(capability.Filter) {
			req.Filter = packp.FilterBlobNone()
			set(capability.Filter)
		}
	}
	if err != nil {
		return err
	}
	resp, err := sess.UploadPack(ctx, req)
	if err != nil {
		return err
	}
	defer ioutil.CheckClose(resp, &err)
	var pack io.Reader = resp
	switch {
	case req.Capabilities.Supports(capability.Sideband64k):
		pack = sideband.NewDemuxer(sideband.Sideband64k, resp)
	case req.Capabilities.Supports(capability.Sideband):
		pack = sideband.NewDemuxer(sideband.Sideband, resp)
	}
	return packfile.UpdateObjectStorage(st, pack)
}
