package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
)

// ErrTypeChatRejected: the chat service refused the message (4xx other
// than 429). Retrying would not help.
const ErrTypeChatRejected = "ChatRejected"

// Chat formats.
const (
	ChatSlack    = "slack"    // {"text": ...}: Slack, Mattermost, Rocket.Chat incoming webhooks
	ChatDingTalk = "dingtalk" // {"msgtype": "text", "text": {"content": ...}}
	// ChatMatrix sends an m.room.message to a Matrix room with the
	// client-server API's PUT .../send/m.room.message/{txnId}: the
	// homeserver deduplicates a retried post by its transaction ID.
	ChatMatrix = "matrix"
)

// ChatConfig is the second notification channel. A webhook format (slack,
// dingtalk) posts JSON to an incoming-webhook URL, which holds a token and
// so comes from a file or an environment variable. Matrix posts to Room on
// Homeserver, with an access token from a file or an environment variable.
type ChatConfig struct {
	Format string
	// URLFile or URLEnv holds the webhook's URL (slack, dingtalk).
	URLFile string
	URLEnv  string
	// Homeserver is the Matrix homeserver's base URL, such as
	// https://matrix.example.com; Room the room's ID (!…:example.com).
	Homeserver string
	Room       string
	// TokenFile or TokenEnv holds the Matrix access token.
	TokenFile string
	TokenEnv  string
	// Timeout bounds one post. Optional: 15s.
	Timeout time.Duration
}

// Validate reports every problem, each with its field ("chat.…").
func (cfg ChatConfig) Validate() error {
	var errs []error
	switch cfg.Format {
	case ChatSlack, ChatDingTalk:
		if cfg.URLFile == "" && cfg.URLEnv == "" {
			errs = append(errs, errors.New("chat: urlFile or urlEnv is required (the URL holds a token)"))
		}
	case ChatMatrix:
		if u, err := url.Parse(cfg.Homeserver); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("chat.homeserver: %q: want the homeserver's http(s) URL, such as https://matrix.example.com", cfg.Homeserver))
		}
		if !strings.HasPrefix(cfg.Room, "!") || !strings.Contains(cfg.Room, ":") {
			errs = append(errs, fmt.Errorf("chat.room: %q: want the room's ID (!…:server; in Element: Room settings, Advanced), not its alias", cfg.Room))
		}
		if cfg.TokenFile == "" && cfg.TokenEnv == "" {
			errs = append(errs, errors.New("chat: tokenFile or tokenEnv is required for matrix (the access token)"))
		}
	default:
		errs = append(errs, fmt.Errorf("chat.format: %q: want slack, dingtalk or matrix", cfg.Format))
	}
	return errors.Join(errs...)
}

// Chat posts notifications to a chat webhook or a Matrix room.
type Chat struct {
	format string
	url    string // the webhook's, or the Matrix room's send endpoint
	token  string // Matrix only
	client *http.Client
}

// NewChat validates cfg and reads the URL or the token.
func NewChat(cfg ChatConfig) (*Chat, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 15 * time.Second
	}
	c := &Chat{format: cfg.Format, client: &http.Client{Timeout: timeout}}
	if cfg.Format == ChatMatrix {
		token, err := secret("chat.tokenFile", cfg.TokenFile, "chat.tokenEnv", cfg.TokenEnv)
		if err != nil {
			return nil, err
		}
		c.token = token
		c.url = strings.TrimSuffix(cfg.Homeserver, "/") + "/_matrix/client/v3/rooms/" + url.PathEscape(cfg.Room) + "/send/m.room.message/"
		return c, nil
	}
	u, err := secret("chat.urlFile", cfg.URLFile, "chat.urlEnv", cfg.URLEnv)
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return nil, errors.New("chat: urlFile or urlEnv must hold the webhook's http(s) URL")
	}
	c.url = u
	return c, nil
}

// secret reads a value from a file or, failing that, an environment
// variable, and says which field is empty.
func secret(fileField, file, envField, env string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%s: %w", fileField, err)
		}
		if v := strings.TrimSpace(string(b)); v != "" {
			return v, nil
		}
		return "", fmt.Errorf("%s: %s is empty", fileField, file)
	}
	if v := strings.TrimSpace(os.Getenv(env)); v != "" {
		return v, nil
	}
	return "", fmt.Errorf("%s: the environment variable %s is empty", envField, env)
}

// Payload is the JSON body for text in the chat's format.
func (c *Chat) Payload(text string) ([]byte, error) {
	switch c.format {
	case ChatDingTalk:
		return json.Marshal(map[string]any{"msgtype": "text", "text": map[string]string{"content": text}})
	case ChatMatrix:
		return json.Marshal(map[string]string{"msgtype": "m.text", "body": text})
	default:
		return json.Marshal(map[string]string{"text": text})
	}
}

// Post sends text as the message key names: the same key for every retry
// of one notification. Matrix gets it as the transaction ID of a PUT,
// which the homeserver deduplicates; webhooks get it as an Idempotency-Key
// header, which Slack, Mattermost, Rocket.Chat and DingTalk ignore (so a
// lost response there may post twice), and which a webhook that honours
// the header (or a proxy in front of one) deduplicates. 429, 5xx and
// network trouble are retryable; other 4xx are a non-retryable
// ErrTypeChatRejected. Neither the webhook URL nor the token is ever part
// of an error.
func (c *Chat) Post(ctx context.Context, key, text string) error {
	body, err := c.Payload(text)
	if err != nil {
		return err
	}
	method, target := http.MethodPost, c.url
	if c.format == ChatMatrix {
		method, target = http.MethodPut, c.url+url.PathEscape(key)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return temporal.NewNonRetryableApplicationError("chat: bad webhook URL", ErrTypeChatRejected, nil)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.format == ChatMatrix {
		req.Header.Set("Authorization", "Bearer "+c.token)
	} else {
		req.Header.Set("Idempotency-Key", `"`+key+`"`)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("chat: post failed (will retry): %s", c.redact(err.Error()))
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("chat: %s (will retry): %s", resp.Status, c.redact(string(msg)))
	default:
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("chat: %s: %s", resp.Status, c.redact(string(msg))), ErrTypeChatRejected, nil)
	}
}

func (c *Chat) redact(s string) string {
	s = strings.ReplaceAll(s, c.url, "<chat URL>")
	if c.token != "" {
		s = strings.ReplaceAll(s, c.token, "<token>")
	}
	return s
}
