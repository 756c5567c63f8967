package notify

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/kiln-build/kiln/test/smtptest"
)

func mailer(t *testing.T, addr string) *Mailer {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	m, err := NewMailer(SMTPConfig{Host: host, Port: p, TLS: TLSNone, From: "kiln@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestSendAndClassify sends through a real SMTP server: accepted, refused
// for good (5xx), refused for now (4xx), and no server at all.
func TestSendAndClassify(t *testing.T) {
	srv, err := smtptest.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.Refuse("gone@example.com", 550)
	srv.Refuse("busy@example.com", 450)
	m := mailer(t, srv.Addr)
	mail := Mail{To: []string{"ops@example.com"}, Subject: "s", Text: "plain", HTML: "<p>html</p>", MessageID: MessageID("build/main/1", "run-1", "Failed", "kiln.test")}

	if err := m.Send(context.Background(), mail); err != nil {
		t.Fatalf("send: %v", err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 || !strings.Contains(string(msgs[0].Data), "text/plain") || !strings.Contains(string(msgs[0].Data), "text/html") ||
		!strings.Contains(string(msgs[0].Data), "Message-ID: "+mail.MessageID) {
		t.Errorf("received %d messages: %+v", len(msgs), msgs)
	}

	mail.To = []string{"gone@example.com"}
	var appErr *temporal.ApplicationError
	if err := m.Send(context.Background(), mail); !errors.As(err, &appErr) || appErr.Type() != ErrTypeMailRejected || !appErr.NonRetryable() {
		t.Errorf("5xx: %v, want non-retryable %s", err, ErrTypeMailRejected)
	}
	mail.To = []string{"busy@example.com"}
	if err := m.Send(context.Background(), mail); err == nil || errors.As(err, &appErr) {
		t.Errorf("4xx: %v, want a retryable error", err)
	}
	srv.Close()
	mail.To = []string{"ops@example.com"}
	if err := m.Send(context.Background(), mail); err == nil || errors.As(err, &appErr) {
		t.Errorf("server down: %v, want a retryable error", err)
	}
}

func TestMessageIDIsStable(t *testing.T) {
	a, b := MessageID("build/main/1", "run-1", "Failed", "x"), MessageID("build/main/1", "run-1", "Failed", "x")
	if a != b || a == MessageID("build/main/1", "run-1", "Cancelled", "x") || !strings.HasPrefix(a, "<kiln.") {
		t.Errorf("MessageID: %s %s", a, b)
	}
}

// TestMessageIDPerRun: a re-run of a build (same build ID, a new run ID)
// sends a new mail, which mail systems do not drop as a duplicate of the
// first run's; retries within one run keep the one Message-ID (issue 12).
func TestMessageIDPerRun(t *testing.T) {
	first, again := MessageID("build/main/1", "run-1", "Failed", "x"), MessageID("build/main/1", "run-1", "Failed", "x")
	rerun := MessageID("build/main/1", "run-2", "Failed", "x")
	if first != again {
		t.Errorf("one run: %s then %s, want the same Message-ID", first, again)
	}
	if first == rerun {
		t.Errorf("two runs of build/main/1 both got %s, want two Message-IDs", first)
	}
}

func TestSMTPConfigValidate(t *testing.T) {
	err := SMTPConfig{Host: "smtp.example.com", TLS: TLSNone, From: "nope", Username: "u"}.Validate()
	for _, want := range []string{"smtp.from", "smtp.tls: none is only allowed for a server on localhost", "passwordFile or passwordEnv"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate: %v, want %q", err, want)
		}
	}
	if err := (SMTPConfig{Host: "127.0.0.1", TLS: TLSNone, From: "k@x"}).Validate(); err != nil {
		t.Errorf("loopback without TLS: %v", err)
	}
}
