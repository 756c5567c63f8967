package notify

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/kiln-build/kiln/workflows"
)

func chatServer(t *testing.T, status int) (*httptest.Server, *[]map[string]any) {
	var got []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("bad request: %s %v", b, err)
		}
		got = append(got, m)
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, &got
}

func TestChatPayloads(t *testing.T) {
	for _, tt := range []struct{ format, want string }{
		{ChatSlack, `{"text":"hi"}`},
		{ChatDingTalk, `{"msgtype":"text","text":{"content":"hi"}}`},
	} {
		t.Setenv("CHAT_URL", "https://hooks.example.com/T/B/secret")
		c, err := NewChat(ChatConfig{Format: tt.format, URLEnv: "CHAT_URL"})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := c.Payload("hi")
		if string(b) != tt.want {
			t.Errorf("%s payload = %s, want %s", tt.format, b, tt.want)
		}
	}
}

func TestChatPostAndClassify(t *testing.T) {
	ok, got := chatServer(t, 200)
	t.Setenv("CHAT_URL", ok.URL+"/hook/secret-token")
	c, err := NewChat(ChatConfig{Format: ChatSlack, URLEnv: "CHAT_URL"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Post(context.Background(), "kiln.1", "build failed"); err != nil || len(*got) != 1 || (*got)[0]["text"] != "build failed" {
		t.Fatalf("post: %v, received %v", err, *got)
	}
	var appErr *temporal.ApplicationError
	for status, permanent := range map[int]bool{404: true, 400: true, 429: false, 503: false} {
		srv, _ := chatServer(t, status)
		c.url = srv.URL + "/hook/secret-token"
		err := c.Post(context.Background(), "kiln.1", "x")
		if err == nil || errors.As(err, &appErr) != permanent {
			t.Errorf("%d: %v, want permanent=%v", status, err, permanent)
		}
	}
	c.url = "http://127.0.0.1:1/hook/secret-token"
	if err := c.Post(context.Background(), "kiln.1", "x"); err == nil || errors.As(err, &appErr) || strings.Contains(err.Error(), "secret-token") {
		t.Errorf("unreachable: %v, want retryable and no URL", err)
	}
}

func TestChatConfig(t *testing.T) {
	if _, err := NewChat(ChatConfig{Format: "teams", URLEnv: "X"}); err == nil || !strings.Contains(err.Error(), "chat.format") {
		t.Errorf("format: %v", err)
	}
	err := ChatConfig{Format: ChatMatrix, Homeserver: "matrix.example.com", Room: "#ops:example.com"}.Validate()
	for _, want := range []string{"chat.homeserver", "chat.room", "tokenFile or tokenEnv"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("matrix: %v, want %q", err, want)
		}
	}
	t.Setenv("EMPTY_URL", "")
	if _, err := NewChat(ChatConfig{Format: ChatSlack, URLEnv: "EMPTY_URL"}); err == nil {
		t.Error("an empty URL was accepted")
	}
}

// lossyChat is a chat service that deduplicates posts as its API offers:
// a Matrix homeserver by the PUT's transaction ID, a webhook by the
// Idempotency-Key header. Its first response is lost: it stores the
// message, then drops the connection without answering.
type lossyChat struct {
	mu       sync.Mutex
	keys     []string // the key of every request, the lost one too
	messages []string
	seen     map[string]bool
}

func (l *lossyChat) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var key string
	switch {
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/_matrix/client/v3/rooms/!ops:example.com/send/m.room.message/"):
		if r.Header.Get("Authorization") != "Bearer syt_secret" {
			http.Error(w, `{"errcode":"M_UNKNOWN_TOKEN"}`, http.StatusUnauthorized)
			return
		}
		key = path.Base(r.URL.Path)
	case r.Method == http.MethodPost && r.URL.Path == "/hook/secret-token":
		key = r.Header.Get("Idempotency-Key")
	default:
		http.NotFound(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	l.mu.Lock()
	l.keys = append(l.keys, key)
	first := len(l.keys) == 1
	if key == "" || !l.seen[key] {
		l.seen[key] = true
		l.messages = append(l.messages, string(body))
	}
	l.mu.Unlock()
	if first {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"event_id":"$1"}`)
}

// chatWorkflow runs NotifyChat as the Build workflow does: retried.
func chatWorkflow(ctx workflow.Context, in NotifyRequest) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         &temporal.RetryPolicy{InitialInterval: 10 * time.Second, BackoffCoefficient: 2, MaximumAttempts: 5},
	})
	return workflow.ExecuteActivity(ctx, workflows.ActivityNotifyChat, in).Get(ctx, nil)
}

// TestChatRetryAfterALostResponsePostsOnce: the chat service takes the
// post and the response is lost; Temporal retries NotifyChat, whose retry
// carries the same transaction ID (Matrix) or Idempotency-Key (webhook),
// and the service's deduplication leaves one message (issue 13: a lost
// response posted it twice).
func TestChatRetryAfterALostResponsePostsOnce(t *testing.T) {
	tpl, err := LoadTemplates("")
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{ChatMatrix, ChatSlack} {
		t.Run(format, func(t *testing.T) {
			l := &lossyChat{seen: map[string]bool{}}
			srv := httptest.NewServer(l)
			defer srv.Close()
			cfg := ChatConfig{Format: format, URLEnv: "CHAT_URL", Homeserver: srv.URL, Room: "!ops:example.com", TokenEnv: "MATRIX_TOKEN"}
			t.Setenv("CHAT_URL", srv.URL+"/hook/secret-token")
			t.Setenv("MATRIX_TOKEN", "syt_secret")
			chat, err := NewChat(cfg)
			if err != nil {
				t.Fatal(err)
			}
			a, err := New(&sent{}, tpl, nil, Options{Chat: chat})
			if err != nil {
				t.Fatal(err)
			}
			var suite testsuite.WorkflowTestSuite
			suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
			env := suite.NewTestWorkflowEnvironment()
			env.RegisterWorkflow(chatWorkflow)
			env.RegisterActivityWithOptions(a.NotifyChat, activity.RegisterOptions{Name: workflows.ActivityNotifyChat})
			env.ExecuteWorkflow(chatWorkflow, NotifyRequest{Event: EventFailed, BuildID: "build/main/1443.3", RunID: "run-1",
				Request:  workflows.BuildRequest{Repo: "https://example.com/gl.git", Branch: "main", Commit: "75df9f40", Version: "1443.3"},
				Progress: workflows.Progress{State: workflows.StateFailed, Error: "base failed"}})
			if err := env.GetWorkflowError(); err != nil {
				t.Fatalf("NotifyChat: %v", err)
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			want := messageKey("build/main/1443.3", "run-1", EventFailed)
			if format == ChatSlack {
				want = `"` + want + `"`
			}
			if len(l.keys) != 2 || l.keys[0] != want || l.keys[1] != want {
				t.Errorf("requests' keys %q, want two (the lost one and the retry), both %s", l.keys, want)
			}
			if len(l.messages) != 1 || !strings.Contains(l.messages[0], "build/main/1443.3") {
				t.Errorf("%d messages posted, want 1: %q", len(l.messages), l.messages)
			}
		})
	}
}
