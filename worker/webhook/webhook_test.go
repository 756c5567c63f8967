package webhook

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/workflows"
)

var secret = []byte("It's a Secret to Everybody")

// TestSignMatchesGitHubsExample checks the HMAC against the example in
// GitHub's webhook documentation.
func TestSignMatchesGitHubsExample(t *testing.T) {
	got := Sign(secret, []byte("Hello, World!"))
	if want := "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"; got != want {
		t.Errorf("Sign = %s, want %s", got, want)
	}
}

type fakeStarter struct {
	got []workflows.BuildRequest
	err error
}

func (f *fakeStarter) Start(_ context.Context, in workflows.BuildRequest) (string, error) {
	if f.err != nil {
		return "", f.err
	}
	f.got = append(f.got, in)
	return workflows.BuildID(in), nil
}

func handler(s Starter, logs *bytes.Buffer) *Handler {
	return &Handler{
		Secret: secret, Branches: []string{"main", "rel-*"}, Tags: []string{"[0-9]*"}, MaxBody: 64 << 10,
		Template: workflows.BuildRequest{FlavourSet: "all", Targets: []workflows.Target{"build"}},
		Starter:  s, Logger: slog.New(slog.NewTextHandler(logs, nil)),
	}
}

func read(t *testing.T, name string) []byte {
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDeliveries(t *testing.T) {
	branch := read(t, "push-branch.json")
	other := bytes.Replace(branch, []byte("refs/heads/main"), []byte("refs/heads/feature-x"), 1)
	tests := []struct {
		name, event string
		body        []byte
		sign        func([]byte) string
		starterErr  error
		method      string
		code        int
		wantID      string
	}{
		{name: "push to main", event: "push", body: branch, code: 202, wantID: "build/main/4f1c2e9d8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e"},
		{name: "release tag", event: "push", body: read(t, "push-tag.json"), code: 202, wantID: "build/1443.3/1443.3"},
		{name: "other branch", event: "push", body: other, code: 204},
		{name: "deleted branch", event: "push", body: read(t, "push-deleted.json"), code: 204},
		{name: "ping", event: "ping", body: read(t, "ping.json"), code: 204},
		{name: "issues event", event: "issues", body: []byte(`{}`), code: 204},
		{name: "missing signature", event: "push", body: branch, sign: func([]byte) string { return "" }, code: 401},
		{name: "tampered body", event: "push", body: branch, sign: func(b []byte) string { return Sign(secret, append(b, ' ')) }, code: 401},
		{name: "other secret", event: "push", body: branch, sign: func(b []byte) string { return Sign([]byte("guess"), b) }, code: 401},
		{name: "sha1 header", event: "push", body: branch, sign: func([]byte) string { return "sha1=abc" }, code: 401},
		{name: "malformed json", event: "push", body: []byte(`{"ref": "refs/heads/main",`), code: 400},
		{name: "bad commit", event: "push", body: []byte(`{"ref":"refs/heads/main","after":"xyz","repository":{"clone_url":"u"}}`), code: 400},
		{name: "too large", event: "push", body: bytes.Repeat([]byte(" "), 65<<10), code: 413},
		{name: "GET", event: "push", body: branch, method: "GET", code: 405},
		{name: "temporal down", event: "push", body: branch, starterErr: errors.New("connection refused"), code: 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			s := &fakeStarter{err: tt.starterErr}
			method := tt.method
			if method == "" {
				method = "POST"
			}
			r := httptest.NewRequest(method, "/", bytes.NewReader(tt.body))
			sig := Sign(secret, tt.body)
			if tt.sign != nil {
				sig = tt.sign(tt.body)
			}
			r.Header.Set("X-Hub-Signature-256", sig)
			r.Header.Set("X-GitHub-Event", tt.event)
			r.Header.Set("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
			w := httptest.NewRecorder()
			handler(s, &logs).ServeHTTP(w, r)
			if w.Code != tt.code {
				t.Fatalf("status %d, want %d: %s", w.Code, tt.code, w.Body)
			}
			if tt.wantID != "" {
				if len(s.got) != 1 || !strings.Contains(w.Body.String(), tt.wantID) {
					t.Errorf("started %+v, body %s; want %s", s.got, w.Body, tt.wantID)
				}
			} else if len(s.got) != 0 {
				t.Errorf("started %+v for a %d", s.got, tt.code)
			}
			if strings.Contains(logs.String(), string(secret)) {
				t.Error("the secret is in the log")
			}
		})
	}
}

func TestRequestFromPush(t *testing.T) {
	p, err := ParsePush(read(t, "push-branch.json"))
	if err != nil {
		t.Fatal(err)
	}
	in, ignored := handler(nil, &bytes.Buffer{}).Request(p)
	if ignored != "" || in.Repo != "https://github.com/gardenlinux/gardenlinux.git" || in.Branch != "main" ||
		in.Commit != "4f1c2e9d8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e" || in.FlavourSet != "all" {
		t.Errorf("request = %+v (%s)", in, ignored)
	}
	if err := in.Validate(); err != nil {
		t.Error(err)
	}
	if len(in.ChangedPaths) != 1 || in.ChangedPaths[0] != "features/_prod/pkg.include" {
		t.Errorf("changed paths = %v", in.ChangedPaths)
	}
}
