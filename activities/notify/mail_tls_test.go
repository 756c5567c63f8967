package notify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"go.temporal.io/sdk/temporal"

	"github.com/kiln-build/kiln/test/smtptest"
)

// The relay's login in these tests.
const (
	relayUser     = "kiln@example.com"
	relayPassword = "s3cret-Pa55word"
)

// relay starts a real go-smtp server on loopback with a certificate for
// localhost from a fresh private CA (when tls is set), requiring the login
// relayUser/relayPassword when opts.Users is nil and auth is set. It returns
// the server and the CA file to give kiln.
func relay(t *testing.T, tls, auth bool, opts smtptest.Options) (*smtptest.Server, string) {
	t.Helper()
	caFile := ""
	if tls {
		ca, err := smtptest.NewCA()
		if err != nil {
			t.Fatal(err)
		}
		if opts.TLS, err = ca.ServerTLS("localhost", "127.0.0.1"); err != nil {
			t.Fatal(err)
		}
		caFile = filepath.Join(t.TempDir(), "relay-ca.pem")
		if err := os.WriteFile(caFile, ca.PEM, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if auth && opts.Users == nil {
		opts.Users = map[string]string{relayUser: relayPassword}
	}
	srv, err := smtptest.StartWith("127.0.0.1:0", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv, caFile
}

// passwordFile writes the relay's password as a secret mount would, with
// a trailing newline.
func passwordFile(t *testing.T, password string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "smtp-password")
	if err := os.WriteFile(p, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// relayConfig is an SMTPConfig for srv under the name localhost (the name
// the certificate is for).
func relayConfig(srv *smtptest.Server, tls, caFile string) SMTPConfig {
	_, port, _ := net.SplitHostPort(srv.Addr)
	p, _ := strconv.Atoi(port)
	return SMTPConfig{Host: "localhost", Port: p, TLS: tls, TLSCAFile: caFile, From: "kiln <kiln@example.com>", Timeout: 5 * time.Second}
}

func newMailer(t *testing.T, cfg SMTPConfig) *Mailer {
	t.Helper()
	m, err := NewMailer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func testMail(subject string) Mail {
	return Mail{To: []string{"ops@example.com"}, Subject: subject, Text: "plain", HTML: "<p>html</p>",
		MessageID: MessageID("build/main/1", "run-1", subject, "kiln.test")}
}

// received asserts that srv got exactly the one mail, under user, over
// TLS or not.
func received(t *testing.T, srv *smtptest.Server, subject, user string, overTLS bool) {
	t.Helper()
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("server received %d mails, want 1", len(msgs))
	}
	m := msgs[0]
	if !strings.Contains(string(m.Data), "Subject: "+subject) {
		t.Errorf("mail lacks Subject: %s:\n%s", subject, m.Data)
	}
	if m.User != user {
		t.Errorf("mail came under login %q, want %q", m.User, user)
	}
	if m.TLS != overTLS {
		t.Errorf("mail came over TLS = %v, want %v", m.TLS, overTLS)
	}
	if overTLS && m.TLSServerName != "localhost" {
		t.Errorf("client asked for TLS name %q, want localhost (the host it verifies)", m.TLSServerName)
	}
}

// permanent asserts that err is non-retryable of type typ and mentions
// every one of want, and never the password.
func permanent(t *testing.T, err error, typ string, want ...string) {
	t.Helper()
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || appErr.Type() != typ || !appErr.NonRetryable() {
		t.Fatalf("error %v, want a non-retryable %s", err, typ)
	}
	t.Logf("error: %v", err)
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
	if s := fmt.Sprintf("%+v", err); strings.Contains(s, relayPassword) {
		t.Errorf("error shows the password: %s", s)
	}
}

// TestSendOverImplicitTLS: tls: implicit speaks TLS from the first byte
// (SMTPS) to a relay that trusts nothing else, verifying the relay's
// certificate against tlsCAFile, and logs in.
func TestSendOverImplicitTLS(t *testing.T) {
	srv, ca := relay(t, true, true, smtptest.Options{Implicit: true})
	cfg := relayConfig(srv, TLSImplicit, ca)
	cfg.Username, cfg.PasswordFile = relayUser, passwordFile(t, relayPassword)
	if err := newMailer(t, cfg).Send(context.Background(), testMail("implicit")); err != nil {
		t.Fatalf("send: %v", err)
	}
	received(t, srv, "implicit", relayUser, true)
}

// TestSendOverSTARTTLS: tls: starttls upgrades the connection before it
// logs in or sends.
func TestSendOverSTARTTLS(t *testing.T) {
	srv, ca := relay(t, true, true, smtptest.Options{})
	cfg := relayConfig(srv, TLSStartTLS, ca)
	cfg.Username, cfg.PasswordFile = relayUser, passwordFile(t, relayPassword)
	if err := newMailer(t, cfg).Send(context.Background(), testMail("starttls")); err != nil {
		t.Fatalf("send: %v", err)
	}
	received(t, srv, "starttls", relayUser, true)
	if l := srv.Logins(); len(l) != 1 || !l[0].OK || !l[0].TLS {
		t.Errorf("logins %+v, want one, successful, over TLS", l)
	}
}

// TestSTARTTLSRequiredRefusesAPlainRelay: with tls: starttls (the
// default), a relay that offers no STARTTLS gets nothing, neither the mail
// nor the password, and the error says what to change.
func TestSTARTTLSRequiredRefusesAPlainRelay(t *testing.T) {
	for _, mode := range []string{TLSStartTLS, ""} {
		t.Run("tls="+mode, func(t *testing.T) {
			srv, _ := relay(t, false, true, smtptest.Options{})
			cfg := relayConfig(srv, mode, "")
			cfg.Username, cfg.PasswordFile = relayUser, passwordFile(t, relayPassword)
			err := newMailer(t, cfg).Send(context.Background(), testMail("plain"))
			permanent(t, err, ErrTypeMailTLS, "localhost:", "does not offer STARTTLS", "tls: implicit", "starttls-optional")
			if n, l := len(srv.Messages()), srv.Logins(); n != 0 || len(l) != 0 {
				t.Errorf("a relay without STARTTLS got %d mails and logins %+v, want none", n, l)
			}
		})
	}
}

// TestSTARTTLSOptional: tls: starttls-optional upgrades when the relay
// offers STARTTLS and sends plain when it does not; but it never sends the
// password in the clear, so a login over plain SMTP fails permanently.
func TestSTARTTLSOptional(t *testing.T) {
	t.Run("offered", func(t *testing.T) {
		srv, ca := relay(t, true, true, smtptest.Options{})
		cfg := relayConfig(srv, TLSOpportunistic, ca)
		cfg.Username, cfg.PasswordFile = relayUser, passwordFile(t, relayPassword)
		if err := newMailer(t, cfg).Send(context.Background(), testMail("optional")); err != nil {
			t.Fatalf("send: %v", err)
		}
		received(t, srv, "optional", relayUser, true)
	})
	t.Run("not offered", func(t *testing.T) {
		srv, _ := relay(t, false, false, smtptest.Options{})
		if err := newMailer(t, relayConfig(srv, TLSOpportunistic, "")).Send(context.Background(), testMail("plain")); err != nil {
			t.Fatalf("send: %v", err)
		}
		received(t, srv, "plain", "", false)
	})
	t.Run("not offered, with a login", func(t *testing.T) {
		srv, _ := relay(t, false, true, smtptest.Options{})
		cfg := relayConfig(srv, TLSOpportunistic, "")
		cfg.Username, cfg.PasswordFile = relayUser, passwordFile(t, relayPassword)
		err := newMailer(t, cfg).Send(context.Background(), testMail("plain"))
		permanent(t, err, ErrTypeMailAuth, "localhost:", relayUser, "not encrypted", "set notifications.smtp.tls to starttls or implicit")
		if n, l := len(srv.Messages()), srv.Logins(); n != 0 || len(l) != 0 {
			t.Errorf("got %d mails and logins %+v over plain SMTP, want none", n, l)
		}
	})
}

// TestUntrustedRelayCertificate: a relay whose certificate a private CA
// signed is refused without tlsCAFile (the system's roots), and the error
// names tlsCAFile.
func TestUntrustedRelayCertificate(t *testing.T) {
	for _, mode := range []string{TLSImplicit, TLSStartTLS, TLSOpportunistic} {
		t.Run(mode, func(t *testing.T) {
			srv, _ := relay(t, true, true, smtptest.Options{Implicit: mode == TLSImplicit})
			cfg := relayConfig(srv, mode, "")
			cfg.Username, cfg.PasswordFile = relayUser, passwordFile(t, relayPassword)
			err := newMailer(t, cfg).Send(context.Background(), testMail("untrusted"))
			permanent(t, err, ErrTypeMailTLS, "localhost:", "not trusted", "tlsCAFile")
			if n, l := len(srv.Messages()), srv.Logins(); n != 0 || len(l) != 0 {
				t.Errorf("got %d mails and logins %+v, want none", n, l)
			}
		})
	}
}

// TestAuthMechanisms: kiln logs in with PLAIN or with LOGIN (the one some
// corporate relays offer alone), whichever the relay offers.
func TestAuthMechanisms(t *testing.T) {
	for _, mech := range []string{sasl.Plain, sasl.Login} {
		t.Run(mech, func(t *testing.T) {
			srv, ca := relay(t, true, true, smtptest.Options{Mechanisms: []string{mech}})
			cfg := relayConfig(srv, TLSStartTLS, ca)
			cfg.Username, cfg.PasswordFile = relayUser, passwordFile(t, relayPassword)
			if err := newMailer(t, cfg).Send(context.Background(), testMail(mech)); err != nil {
				t.Fatalf("send: %v", err)
			}
			received(t, srv, mech, relayUser, true)
			if l := srv.Logins(); len(l) != 1 || l[0].Mechanism != mech || !l[0].OK {
				t.Errorf("logins %+v, want one %s", l, mech)
			}
		})
	}
}

// TestWrongPassword: a refused login is permanent (retrying the same
// password for a day would not help), and its error names the relay, the
// user and where the password came from, never the password.
func TestWrongPassword(t *testing.T) {
	srv, ca := relay(t, true, true, smtptest.Options{})
	const wrong = "wrong-Pa55word"
	cfg := relayConfig(srv, TLSStartTLS, ca)
	cfg.Username, cfg.PasswordFile = relayUser, passwordFile(t, wrong)
	err := newMailer(t, cfg).Send(context.Background(), testMail("wrong"))
	permanent(t, err, ErrTypeMailAuth, "localhost:", `user "kiln@example.com"`, "passwordFile "+cfg.PasswordFile, "535")
	if s := fmt.Sprintf("%+v", err); strings.Contains(s, wrong) {
		t.Errorf("error shows the password: %s", s)
	}
	if l := srv.Logins(); len(l) != 1 || l[0].OK || l[0].User != relayUser {
		t.Errorf("logins %+v, want one refused for %s", l, relayUser)
	}
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("%d mails accepted without a login", n)
	}
}

// TestPasswordSources: the password comes from passwordFile (a trailing
// newline dropped) or from the environment variable passwordEnv names;
// both log in as the user.
func TestPasswordSources(t *testing.T) {
	t.Setenv("KILN_TEST_SMTP_PASSWORD", relayPassword)
	for name, set := range map[string]func(*SMTPConfig){
		"passwordFile": func(c *SMTPConfig) { c.PasswordFile = passwordFile(t, relayPassword) },
		"passwordEnv":  func(c *SMTPConfig) { c.PasswordEnv = "KILN_TEST_SMTP_PASSWORD" },
	} {
		t.Run(name, func(t *testing.T) {
			srv, ca := relay(t, true, true, smtptest.Options{})
			cfg := relayConfig(srv, TLSStartTLS, ca)
			cfg.Username = relayUser
			set(&cfg)
			m := newMailer(t, cfg)
			if err := m.Send(context.Background(), testMail(name)); err != nil {
				t.Fatalf("send: %v", err)
			}
			received(t, srv, name, relayUser, true)
			// A Mailer printed into a log line shows no password.
			for _, f := range []string{"%v", "%+v", "%#v"} {
				if s := fmt.Sprintf(f, *m); strings.Contains(s, relayPassword) {
					t.Errorf("Sprintf(%q, Mailer) shows the password: %s", f, s)
				}
			}
		})
	}
	t.Run("passwordEnv unset", func(t *testing.T) {
		_, err := NewMailer(SMTPConfig{Host: "smtp.example.com", From: "k@example.com", Username: relayUser, PasswordEnv: "KILN_TEST_SMTP_UNSET"})
		if err == nil || !strings.Contains(err.Error(), "smtp.passwordEnv: KILN_TEST_SMTP_UNSET is empty") {
			t.Errorf("NewMailer: %v, want the unset variable named", err)
		}
	})
}

func TestSMTPConfigValidateTLSAndAuth(t *testing.T) {
	for _, tc := range []struct {
		cfg  SMTPConfig
		want string
	}{
		{SMTPConfig{Host: "127.0.0.1", TLS: TLSNone, TLSCAFile: "ca.pem", From: "k@x"}, "smtp.tlsCAFile: set, but tls is none"},
		{SMTPConfig{Host: "h", From: "k@x", Username: "u", PasswordFile: "f", PasswordEnv: "E"}, "passwordFile and passwordEnv are both set"},
		{SMTPConfig{Host: "h", From: "k@x", PasswordEnv: "E"}, "smtp.username: required"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v): %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := NewMailer(SMTPConfig{Host: "h", From: "k@x", TLSCAFile: passwordFile(t, "not a certificate")}); err == nil ||
		!strings.Contains(err.Error(), "smtp.tlsCAFile:") || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Errorf("NewMailer with a CA file without certificates: %v", err)
	}
}
