//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"google.golang.org/protobuf/proto"

	"github.com/kiln-build/kiln/test/smtptest"
	"github.com/kiln-build/kiln/worker"
)

// The relay's login in these tests; the password must show up nowhere.
const (
	relayUser     = "kiln@example.com"
	relayPassword = "e2e-relay-Pa55word-7f3a"
)

// tlsRelay is a real SMTP server that requires STARTTLS and the login
// relayUser/relayPassword, with a certificate for localhost from a private
// CA; it returns the server and the CA's PEM file.
func tlsRelay(t *testing.T) (*smtptest.Server, string) {
	t.Helper()
	ca, err := smtptest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ca.ServerTLS("localhost")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := smtptest.StartWith("127.0.0.1:0", smtptest.Options{TLS: cfg, Users: map[string]string{relayUser: relayPassword}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "relay-ca.pem")
	if err := os.WriteFile(caFile, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return srv, caFile
}

// tlsNotifyConfig is notifyConfig with the relay at addr behind STARTTLS
// and a login whose password is in the environment variable env.
func tlsNotifyConfig(t *testing.T, ns, addr, caFile, env string) string {
	_, port, _ := net.SplitHostPort(addr)
	return notifyConfigSMTP(t, ns, fmt.Sprintf("{host: localhost, port: %s, tls: starttls, tlsCAFile: %q, username: %q, passwordEnv: %s, from: kiln@example.com, timeout: 5s}",
		port, caFile, relayUser, env))
}

// logBuffer collects a worker's log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runLoggedWorker is runWorker with everything the worker logs (kiln's
// own log and the SDK's: workflows and activities), at debug level, kept.
func runLoggedWorker(t *testing.T, path, queue string) *logBuffer {
	t.Helper()
	logs := &logBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c, err := client.NewClientFromExisting(env.client, client.Options{Logger: log.NewStructuredLogger(logger)})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := worker.LoadConfig(path, func(k string) string {
		if k == "KILN_TASK_QUEUE" {
			return queue
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- worker.Run(ctx, cfg, c, env.stack.RESTConfig(), logger, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
		c.Close()
	})
	return logs
}

// history is the build's whole history in the wire format: payloads (the
// default converter's JSON) and failure messages appear in it verbatim.
func history(t *testing.T, id string) []byte {
	t.Helper()
	var b []byte
	it := env.client.GetWorkflowHistory(context.Background(), id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		eb, err := proto.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, eb...)
	}
	return b
}

// TestFailedBuildMailsThroughSTARTTLSWithALogin: a failed build's mail goes
// through a relay that requires STARTTLS and a login, with the password
// from passwordEnv; the password is in neither the build's history nor the
// worker's log.
func TestFailedBuildMailsThroughSTARTTLSWithALogin(t *testing.T) {
	s := newSuite(t)
	srv, caFile := tlsRelay(t)
	t.Setenv("KILN_E2E_SMTP_PASSWORD", relayPassword)
	logs := runLoggedWorker(t, tlsNotifyConfig(t, s.ns, srv.Addr, caFile, "KILN_E2E_SMTP_PASSWORD"), s.queue)
	repo, commit := ownedRepo(t)
	id, p := failingBuild(t, s, repo, commit)
	if n := p.Notification; n == nil || n.State != "Sent" {
		t.Fatalf("notification = %+v, want Sent", p.Notification)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d mails, want 1", len(msgs))
	}
	if m := msgs[0]; !m.TLS || m.User != relayUser {
		t.Errorf("mail came over TLS %v under login %q, want STARTTLS and %s", m.TLS, m.User, relayUser)
	}
	h := history(t, id)
	// (JSON writes the Message-ID's <> as \u003c and \u003e.)
	if !bytes.Contains(h, []byte(strings.Trim(p.Notification.MessageID, "<>"))) {
		t.Fatalf("the history lacks the notification's Message-ID %s: the search below would find nothing", p.Notification.MessageID)
	}
	if bytes.Contains(h, []byte(relayPassword)) {
		t.Error("the build's history holds the relay's password")
	}
	if l := logs.String(); l == "" || strings.Contains(l, relayPassword) {
		t.Errorf("the worker's log (%d bytes) holds the relay's password, or is empty", len(l))
	}
}

// TestWrongRelayPasswordIsReported: a login the relay refuses fails the
// notification at once (no day of retries), and the build's progress says
// which relay refused which user, without the password, which is in
// neither the history nor the log either.
func TestWrongRelayPasswordIsReported(t *testing.T) {
	s := newSuite(t)
	srv, caFile := tlsRelay(t)
	const wrong = "e2e-wrong-Pa55word-91c2"
	t.Setenv("KILN_E2E_SMTP_PASSWORD", wrong)
	logs := runLoggedWorker(t, tlsNotifyConfig(t, s.ns, srv.Addr, caFile, "KILN_E2E_SMTP_PASSWORD"), s.queue)
	repo, commit := ownedRepo(t)
	id, p := failingBuild(t, s, repo, commit)
	n := p.Notification
	if n == nil || n.State != "Failed" {
		t.Fatalf("notification = %+v, want Failed", n)
	}
	for _, want := range []string{"MailAuthFailed", "localhost:", `user "` + relayUser + `"`, "passwordEnv KILN_E2E_SMTP_PASSWORD", "535"} {
		if !strings.Contains(n.Error, want) {
			t.Errorf("notification error %q lacks %q", n.Error, want)
		}
	}
	if l := srv.Logins(); len(l) != 1 || l[0].OK {
		t.Errorf("logins %+v, want one refused attempt (no retries)", l)
	}
	h := history(t, id)
	if !bytes.Contains(h, []byte(`user "`+relayUser+`"`)) {
		t.Fatal("the history lacks the login error: the search below would find nothing")
	}
	for _, pw := range []string{wrong, relayPassword} {
		if bytes.Contains(h, []byte(pw)) {
			t.Errorf("the build's history holds the password %q", pw)
		}
		if strings.Contains(logs.String(), pw) {
			t.Errorf("the worker's log holds the password %q", pw)
		}
	}
	if !strings.Contains(logs.String(), relayUser) {
		t.Errorf("the worker's log does not report the refused login:\n%s", logs.String())
	}
}
