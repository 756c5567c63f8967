package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
)

// ErrTypeChatRejected: the chat service refused the message (4xx other
// than 429). Retrying would not help.
const ErrTypeChatRejected = "ChatRejected"

// Chat payload formats.
const (
	ChatSlack    = "slack"    // {"text": ...}: Slack, Mattermost, Rocket.Chat incoming webhooks
	ChatDingTalk = "dingtalk" // {"msgtype": "text", "text": {"content": ...}}
)

// ChatConfig is the second notification channel: JSON posted to an
// incoming-webhook URL. The URL holds a token, so it comes from a file or
// an environment variable.
type ChatConfig struct {
	Format  string
	URLFile string
	URLEnv  string
	Timeout time.Duration
}

// Chat posts notifications to a chat webhook.
type Chat struct {
	format string
	url    string
	client *http.Client
}

// NewChat validates cfg and reads the URL.
func NewChat(cfg ChatConfig) (*Chat, error) {
	if cfg.Format != ChatSlack && cfg.Format != ChatDingTalk {
		return nil, fmt.Errorf("chat.format: %q: want slack or dingtalk", cfg.Format)
	}
	var url string
	switch {
	case cfg.URLFile != "":
		b, err := os.ReadFile(cfg.URLFile)
		if err != nil {
			return nil, fmt.Errorf("chat.urlFile: %w", err)
		}
		url = strings.TrimSpace(string(b))
	case cfg.URLEnv != "":
		url = os.Getenv(cfg.URLEnv)
	}
	if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
		return nil, errors.New("chat: urlFile or urlEnv must hold the webhook's http(s) URL")
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	return &Chat{format: cfg.Format, url: url, client: &http.Client{Timeout: timeout}}, nil
}

// Payload is the JSON body for text in the chat's format.
func (c *Chat) Payload(text string) ([]byte, error) {
	if c.format == ChatDingTalk {
		return json.Marshal(map[string]any{"msgtype": "text", "text": map[string]string{"content": text}})
	}
	return json.Marshal(map[string]string{"text": text})
}

// Post sends text. 429, 5xx and network trouble are retryable; other 4xx
// are a non-retryable ErrTypeChatRejected. The URL is never part of an
// error, since it holds the token.
func (c *Chat) Post(ctx context.Context, text string) error {
	body, err := c.Payload(text)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return temporal.NewNonRetryableApplicationError("chat: bad webhook URL", ErrTypeChatRejected, nil)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("chat: post failed (will retry): %s", redact(err.Error(), c.url))
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("chat: %s (will retry): %s", resp.Status, msg)
	default:
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("chat: %s: %s", resp.Status, msg), ErrTypeChatRejected, nil)
	}
}

func redact(s, url string) string { return strings.ReplaceAll(s, url, "<chat webhook URL>") }
