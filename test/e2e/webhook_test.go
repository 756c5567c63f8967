//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"go.temporal.io/api/serviceerror"

	"github.com/kiln-build/kiln/worker/webhook"
	"github.com/kiln-build/kiln/workflows"
)

func TestWebhookDeliveryStartsABuild(t *testing.T) {
	s := newSuite(t)
	runWorker(t, buildConfig(t, s.ns, ""), s.queue)
	secret := []byte("e2e-" + s.ns)
	h := &webhook.Handler{
		Secret: secret, Branches: []string{s.ns}, Template: workflows.BuildRequest{FlavourSet: "testing"},
		Starter: webhook.QueueStarter{Client: env.client, TaskQueue: s.queue},
		Logger:  slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	commit := fmt.Sprintf("%040x", len(s.ns)*7919)
	body, _ := json.Marshal(map[string]any{
		"ref": "refs/heads/" + s.ns, "after": commit, "deleted": false,
		"repository": map[string]any{"full_name": "gardenlinux/gardenlinux", "clone_url": "https://github.com/gardenlinux/gardenlinux.git"},
	})
	post := func(body []byte, sig string) *http.Response {
		req, _ := http.NewRequest("POST", srv.URL, bytes.NewReader(body))
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-Hub-Signature-256", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp
	}

	// Tampered: 401, and no queue, no build.
	tampered := bytes.Replace(body, []byte(commit), []byte(fmt.Sprintf("%040x", 1)), 1)
	if resp := post(tampered, webhook.Sign(secret, body)); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("tampered delivery: %d, want 401", resp.StatusCode)
	}
	_, err := env.client.DescribeWorkflowExecution(context.Background(), workflows.QueueID(s.ns), "")
	var nf *serviceerror.NotFound
	if !errors.As(err, &nf) {
		t.Fatalf("a tampered delivery started the queue: %v", err)
	}

	// Signed: 202, and the build runs to success on the real stack.
	if resp := post(body, webhook.Sign(secret, body)); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("signed delivery: %d, want 202", resp.StatusCode)
	}
	waitBuild(t, "build/"+s.ns+"/"+commit)
}
