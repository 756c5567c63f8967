// Package gittest serves git repositories over smart HTTP for tests, with
// the real `git http-backend` behind net/http/cgi, set up as GitHub
// behaves: a reachable commit (or any object) can be fetched by its hash
// (uploadpack.allowReachableSHA1InWant, uploadpack.allowAnySHA1InWant) and
// partial-clone filters are honoured (uploadpack.allowFilter). It counts
// the fetches (upload-pack requests) it serves per repository.
package gittest

import (
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// Server serves every repository under one directory.
type Server struct {
	// URL is the server's base: a repository at Root/a/b.git is fetched
	// from URL/a/b.git.
	URL  string
	Root string

	srv     *httptest.Server
	mu      sync.Mutex
	fetches map[string]int
}

// config is what GitHub effectively allows, as git -c would set it.
var config = [][2]string{
	{"uploadpack.allowReachableSHA1InWant", "true"},
	{"uploadpack.allowFilter", "true"},
	{"http.uploadpack", "true"},
}

// Start serves the repositories under root (bare or not) on a loopback
// port. It needs git (with its http-backend) on PATH.
func Start(root string) (*Server, error) {
	gitBin, err := exec.LookPath("git")
	if err != nil {
		return nil, fmt.Errorf("gittest: %w", err)
	}
	root, err = filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	env := []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", fmt.Sprintf("GIT_CONFIG_COUNT=%d", len(config))}
	for i, kv := range config {
		env = append(env, fmt.Sprintf("GIT_CONFIG_KEY_%d=%s", i, kv[0]), fmt.Sprintf("GIT_CONFIG_VALUE_%d=%s", i, kv[1]))
	}
	s := &Server{Root: root, fetches: map[string]int{}}
	backend := &cgi.Handler{Path: gitBin, Args: []string{"http-backend"}, Env: env, InheritEnv: []string{"PATH", "HOME"}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if repo, ok := strings.CutSuffix(r.URL.Path, "/git-upload-pack"); ok && r.Method == http.MethodPost {
			s.mu.Lock()
			s.fetches[strings.TrimPrefix(repo, "/")]++
			s.mu.Unlock()
		}
		backend.ServeHTTP(w, r)
	}))
	s.URL = s.srv.URL
	return s, nil
}

// RepoURL is the URL of the repository at dir, which is under Root.
func (s *Server) RepoURL(dir string) string {
	rel, err := filepath.Rel(s.Root, dir)
	if err != nil || strings.HasPrefix(rel, "..") {
		panic(fmt.Sprintf("gittest: %s is not under %s", dir, s.Root))
	}
	return s.URL + "/" + filepath.ToSlash(rel)
}

// Fetches is how many upload-pack requests (fetches, each one pack) the
// repository at dir has served.
func (s *Server) Fetches(dir string) int {
	rel, _ := filepath.Rel(s.Root, dir)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches[filepath.ToSlash(rel)]
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }
