package worker

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/activities/notify"
	"github.com/kiln-build/kiln/test/smtptest"
)

// readmeBlock returns the first yaml block after marker in README.md.
func readmeBlock(t *testing.T, marker string) string {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i := strings.Index(s, marker)
	if i < 0 {
		t.Fatalf("README.md has no %q", marker)
	}
	const open = "```yaml\n"
	j := strings.Index(s[i:], open)
	if j < 0 {
		t.Fatalf("README.md: no yaml block after %q", marker)
	}
	body := s[i+j+len(open):]
	k := strings.Index(body, "\n```\n")
	if k < 0 {
		t.Fatalf("README.md: the yaml block after %q does not end", marker)
	}
	return body[:k+1]
}

// TestREADMERelayExample loads the README's relay example as a worker
// config, with its password file and CA file beside it, and sends a mail
// through it to a real SMTP server that requires STARTTLS and a login and
// whose certificate a private CA signed. Only host and port are changed,
// to point at that server; the mail must arrive over TLS, logged in as the
// example's user. It does so again with the password from the environment
// variable the example names.
func TestREADMERelayExample(t *testing.T) {
	const password = "correct-horse-battery-staple"
	ca, err := smtptest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, err := ca.ServerTLS("localhost")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := smtptest.StartWith("127.0.0.1:0", smtptest.Options{TLS: serverTLS, Users: map[string]string{"kiln@example.com": password}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	dir := t.TempDir()
	for name, content := range map[string]string{
		"kiln.yaml":     readmeBlock(t, "<!-- relay example:"),
		"smtp-password": password + "\n",
		"relay-ca.pem":  string(ca.PEM),
		"handles.yaml":  "\"@gardenlinux/garden-linux-maintainers\": maintainers@example.com\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := LoadConfig(filepath.Join(dir, "kiln.yaml"), func(string) string { return "" })
	if err != nil {
		t.Fatalf("README relay example: %v", err)
	}
	s := &cfg.Notifications.SMTP
	// The example stays a corporate relay: 587, STARTTLS required, a
	// private CA, a login with the password in a file.
	if s.Host != "smtp.example.com" || s.Port != 587 || s.TLS != notify.TLSStartTLS || s.TLSCAFile == "" || s.Username == "" || s.PasswordFile == "" {
		t.Fatalf("README relay example changed shape: %+v", *s)
	}
	_, port, _ := net.SplitHostPort(srv.Addr)
	s.Host = "localhost"
	if s.Port, err = strconv.Atoi(port); err != nil {
		t.Fatal(err)
	}
	if a, err := cfg.NotifyActivities(); err != nil || a == nil {
		t.Fatalf("NotifyActivities from the README example: %v", err)
	}

	send := func(t *testing.T, subject string) {
		t.Helper()
		m, err := cfg.Mailer()
		if err != nil {
			t.Fatal(err)
		}
		err = m.Send(context.Background(), notify.Mail{To: []string{"maintainers@example.com"}, Subject: subject, Text: "t", HTML: "<p>t</p>",
			MessageID: notify.MessageID("build/main/1", "run-1", subject, "kiln.test")})
		if err != nil {
			t.Fatalf("send through the README relay example: %v", err)
		}
		var got *smtptest.Message
		for _, msg := range srv.Messages() {
			if strings.Contains(string(msg.Data), "Subject: "+subject) {
				got = &msg
			}
		}
		switch {
		case got == nil:
			t.Fatalf("the server did not receive %q", subject)
		case !got.TLS || got.TLSServerName != "localhost":
			t.Errorf("mail came over TLS %v (name %q), want STARTTLS to localhost", got.TLS, got.TLSServerName)
		case got.User != s.Username:
			t.Errorf("mail came under login %q, want %q", got.User, s.Username)
		}
	}
	t.Run("passwordFile", func(t *testing.T) { send(t, "password from the file") })
	t.Run("passwordEnv", func(t *testing.T) {
		// The alternative the example's comment names.
		if !strings.Contains(readmeBlock(t, "<!-- relay example:"), "# or passwordEnv: KILN_SMTP_PASSWORD") {
			t.Fatal("the README relay example no longer names passwordEnv: KILN_SMTP_PASSWORD")
		}
		t.Setenv("KILN_SMTP_PASSWORD", password)
		s.PasswordFile, s.PasswordEnv = "", "KILN_SMTP_PASSWORD"
		send(t, "password from the environment")
	})
}
