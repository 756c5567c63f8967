package notify

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"
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
	if err := c.Post(context.Background(), "build failed"); err != nil || len(*got) != 1 || (*got)[0]["text"] != "build failed" {
		t.Fatalf("post: %v, received %v", err, *got)
	}
	var appErr *temporal.ApplicationError
	for status, permanent := range map[int]bool{404: true, 400: true, 429: false, 503: false} {
		srv, _ := chatServer(t, status)
		c.url = srv.URL + "/hook/secret-token"
		err := c.Post(context.Background(), "x")
		if err == nil || errors.As(err, &appErr) != permanent {
			t.Errorf("%d: %v, want permanent=%v", status, err, permanent)
		}
	}
	c.url = "http://127.0.0.1:1/hook/secret-token"
	if err := c.Post(context.Background(), "x"); err == nil || errors.As(err, &appErr) || strings.Contains(err.Error(), "secret-token") {
		t.Errorf("unreachable: %v, want retryable and no URL", err)
	}
}

func TestChatConfig(t *testing.T) {
	if _, err := NewChat(ChatConfig{Format: "teams", URLEnv: "X"}); err == nil || !strings.Contains(err.Error(), "chat.format") {
		t.Errorf("format: %v", err)
	}
	t.Setenv("EMPTY_URL", "")
	if _, err := NewChat(ChatConfig{Format: ChatSlack, URLEnv: "EMPTY_URL"}); err == nil {
		t.Error("an empty URL was accepted")
	}
}
