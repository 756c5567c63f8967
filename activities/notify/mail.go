package notify

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/wneessen/go-mail"
	"go.temporal.io/sdk/temporal"
)

// Error types of Send.
const (
	// ErrTypeMailRejected: the SMTP server refused the mail permanently
	// (5xx, a bad address). Retrying would not help.
	ErrTypeMailRejected = "MailRejected"
	// ErrTypeMailAuth: the relay refused kiln's login (535: a wrong user or
	// password), or offers no mechanism kiln may use over the connection.
	// Fix the username or the password and restart the worker.
	ErrTypeMailAuth = "MailAuthFailed"
	// ErrTypeMailTLS: the relay's TLS is not what the config asks for: no
	// STARTTLS where tls is starttls, or a certificate kiln does not trust
	// (set tlsCAFile for a private CA).
	ErrTypeMailTLS = "MailTLS"
)

// TLS modes of SMTPConfig.
const (
	TLSImplicit      = "implicit"          // TLS from the first byte (SMTPS, port 465)
	TLSStartTLS      = "starttls"          // STARTTLS required (port 587)
	TLSOpportunistic = "starttls-optional" // STARTTLS if offered, else plain (and then no login)
	TLSNone          = "none"              // plain; only for a server on localhost
)

// SMTPConfig is how mail is sent. The password comes from a file or an
// environment variable named here, never from a request or the history.
type SMTPConfig struct {
	Host string `json:"host"`
	// Port. Optional: 465 for implicit TLS, 587 for STARTTLS, 25 for none.
	Port int `json:"port,omitempty"`
	// TLS: implicit, starttls (default), starttls-optional, none. With
	// starttls-optional and a relay that offers no STARTTLS, mail goes out
	// unencrypted and kiln does not log in (the password is never sent in
	// the clear).
	TLS string `json:"tls,omitempty"`
	// TLSCAFile is a PEM file of the CA certificates that sign the relay's
	// certificate, trusted instead of the system's (a corporate relay with
	// a private CA). Optional: the system's roots.
	TLSCAFile string `json:"tlsCAFile,omitempty"`
	// Username logs in to the relay (AUTH PLAIN or LOGIN, over TLS only).
	// Optional: no login.
	Username string `json:"username,omitempty"`
	// PasswordFile or PasswordEnv (one of them, with Username) holds the
	// password: a file (trailing newlines dropped) or the name of an
	// environment variable of the worker.
	PasswordFile string `json:"passwordFile,omitempty"`
	PasswordEnv  string `json:"passwordEnv,omitempty"`
	From         string `json:"from"`
	// Timeout bounds connecting and each SMTP command. Optional: 30s.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// Validate reports every problem, with its field.
func (c SMTPConfig) Validate() error {
	var errs []error
	if c.Host == "" {
		errs = append(errs, errors.New("smtp.host: required"))
	}
	if c.From == "" || !strings.Contains(c.From, "@") {
		errs = append(errs, fmt.Errorf("smtp.from: %q is not an address", c.From))
	}
	switch c.TLS {
	case "", TLSImplicit, TLSStartTLS, TLSOpportunistic:
	case TLSNone:
		if ip := net.ParseIP(c.Host); c.Host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			errs = append(errs, fmt.Errorf("smtp.tls: none is only allowed for a server on localhost, not %s", c.Host))
		}
		if c.TLSCAFile != "" {
			errs = append(errs, errors.New("smtp.tlsCAFile: set, but tls is none; drop it or choose a TLS mode"))
		}
	default:
		errs = append(errs, fmt.Errorf("smtp.tls: %q: want implicit, starttls, starttls-optional or none", c.TLS))
	}
	switch {
	case c.Username != "" && c.PasswordFile == "" && c.PasswordEnv == "":
		errs = append(errs, errors.New("smtp: a username needs passwordFile or passwordEnv"))
	case c.PasswordFile != "" && c.PasswordEnv != "":
		errs = append(errs, errors.New("smtp: passwordFile and passwordEnv are both set; keep one"))
	case c.Username == "" && (c.PasswordFile != "" || c.PasswordEnv != ""):
		errs = append(errs, errors.New("smtp.username: required with passwordFile or passwordEnv"))
	}
	return errors.Join(errs...)
}

// Mail is one message to send.
type Mail struct {
	To        []string
	Subject   string
	Text      string
	HTML      string
	MessageID string
}

// MessageID is the Message-ID of an event of one run of a build: the same
// for every attempt of the activity in that run, so a retried send is
// recognisable as the same mail, and another for each run of the build ID
// (a re-run after a failure), so that mail systems, which deduplicate on
// the Message-ID, do not drop the re-run's mail as a copy of the first's.
func MessageID(buildID, runID, event, domain string) string {
	return "<" + messageKey(buildID, runID, event) + "@" + domain + ">"
}

// messageKey identifies a notification (an event of one run of a build):
// the Message-ID's left-hand side, and the chat post's idempotency key.
func messageKey(buildID, runID, event string) string {
	sum := sha256.Sum256([]byte(buildID + "\x00" + runID + "\x00" + event))
	return "kiln." + hex.EncodeToString(sum[:12])
}

// Mailer sends mail over SMTP with github.com/wneessen/go-mail. It holds
// the password, which it never logs nor puts into an error.
type Mailer struct {
	cfg SMTPConfig
	// password is a func so that printing a Mailer (%+v) shows no password.
	password func() string
	roots    *x509.CertPool // from TLSCAFile; nil: the system's
}

// NewMailer validates cfg and reads the password and the CA file.
func NewMailer(cfg SMTPConfig) (*Mailer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Mailer{cfg: cfg}
	var password string
	switch {
	case cfg.PasswordFile != "":
		b, err := os.ReadFile(cfg.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("smtp.passwordFile: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
		if password == "" {
			return nil, fmt.Errorf("smtp.passwordFile: %s is empty", cfg.PasswordFile)
		}
	case cfg.PasswordEnv != "":
		password = os.Getenv(cfg.PasswordEnv)
		if password == "" {
			return nil, fmt.Errorf("smtp.passwordEnv: %s is empty or unset in the worker's environment", cfg.PasswordEnv)
		}
	}
	m.password = func() string { return password }
	if cfg.TLSCAFile != "" {
		pem, err := os.ReadFile(cfg.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("smtp.tlsCAFile: %w", err)
		}
		m.roots = x509.NewCertPool()
		if !m.roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("smtp.tlsCAFile: %s holds no PEM certificate", cfg.TLSCAFile)
		}
	}
	return m, nil
}

// Send delivers m. Temporary failures (4xx, connection trouble) are
// retryable; permanent ones are non-retryable: ErrTypeMailRejected (5xx,
// bad addresses), ErrTypeMailAuth (the login refused) and ErrTypeMailTLS
// (no STARTTLS where required, an untrusted certificate).
func (ml *Mailer) Send(ctx context.Context, m Mail) error {
	msg := mail.NewMsg()
	if err := msg.From(ml.cfg.From); err != nil {
		return temporal.NewNonRetryableApplicationError("from: "+err.Error(), ErrTypeMailRejected, err)
	}
	if err := msg.To(m.To...); err != nil {
		return temporal.NewNonRetryableApplicationError("recipients: "+err.Error(), ErrTypeMailRejected, err)
	}
	msg.Subject(m.Subject)
	msg.SetMessageIDWithValue(strings.Trim(m.MessageID, "<>"))
	msg.SetBodyString(mail.TypeTextPlain, m.Text)
	msg.AddAlternativeString(mail.TypeTextHTML, m.HTML)

	c, err := mail.NewClient(ml.cfg.Host, ml.options()...)
	if err != nil {
		return fmt.Errorf("smtp client: %w", err)
	}
	return ml.classify(c.DialAndSendWithContext(ctx, msg))
}

// options are go-mail's options for the config.
func (ml *Mailer) options() []mail.Option {
	timeout := ml.cfg.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	opts := []mail.Option{mail.WithTimeout(timeout), mail.WithPort(ml.port()),
		mail.WithTLSConfig(&tls.Config{ServerName: ml.cfg.Host, RootCAs: ml.roots, MinVersion: tls.VersionTLS12})}
	switch ml.cfg.TLS {
	case TLSImplicit:
		opts = append(opts, mail.WithSSL())
	case TLSNone:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	case TLSOpportunistic:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSOpportunistic))
	default:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	}
	if ml.cfg.Username != "" {
		// Auto-discovery picks the strongest mechanism offered and, over a
		// connection without TLS, none that sends the password (PLAIN,
		// LOGIN).
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover), mail.WithUsername(ml.cfg.Username), mail.WithPassword(ml.password()))
	}
	return opts
}

// port is the configured port or the TLS mode's default.
func (ml *Mailer) port() int {
	switch {
	case ml.cfg.Port != 0:
		return ml.cfg.Port
	case ml.cfg.TLS == TLSImplicit:
		return 465
	case ml.cfg.TLS == TLSNone:
		return 25
	default:
		return 587
	}
}

// classify sorts go-mail's errors into retryable and permanent, and says
// what to fix in the config. Errors name the relay and the user, never the
// password.
func (ml *Mailer) classify(err error) error {
	if err == nil {
		return nil
	}
	relay := net.JoinHostPort(ml.cfg.Host, strconv.Itoa(ml.port()))
	var reply *textproto.Error
	var cert *tls.CertificateVerificationError
	switch {
	case errors.As(err, &cert):
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"smtp relay %s: its TLS certificate is not trusted (%v); set notifications.smtp.tlsCAFile to the CA that signs it, or fix host", relay, cert.Err),
			ErrTypeMailTLS, nil)
	case ml.cfg.TLS != TLSImplicit && strings.Contains(err.Error(), "does not support STARTTLS"):
		// go-mail's refusal under TLSMandatory, before anything is sent.
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
			"smtp relay %s does not offer STARTTLS, which notifications.smtp.tls requires (starttls, the default): kiln sent nothing; "+
				"set tls: implicit for a relay that speaks TLS from the start (port 465), or starttls-optional to allow plain SMTP", relay),
			ErrTypeMailTLS, nil)
	case ml.cfg.Username != "" && errors.Is(err, mail.ErrNoSupportedAuthDiscovered):
		why := "none of the relay's AUTH mechanisms is one kiln supports (PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256)"
		if ml.cfg.TLS == TLSOpportunistic || ml.cfg.TLS == TLSNone {
			why = "the connection is not encrypted (the relay offered no STARTTLS, or tls is none), and kiln does not send a password in the clear; " +
				"set notifications.smtp.tls to starttls or implicit"
		}
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("smtp relay %s: cannot log in as %q: %s", relay, ml.cfg.Username, why),
			ErrTypeMailAuth, nil)
	case ml.cfg.Username != "" && errors.As(err, &reply) && isAuthReply(reply.Code):
		what := fmt.Sprintf("smtp relay %s refused the login of user %q with the password from %s: %d %s",
			relay, ml.cfg.Username, ml.passwordSource(), reply.Code, reply.Msg)
		if reply.Code/100 == 4 {
			return fmt.Errorf("%s (will retry)", what)
		}
		return temporal.NewNonRetryableApplicationError(what+"; fix notifications.smtp.username or the password and restart the worker", ErrTypeMailAuth, nil)
	}
	// go-mail joins the errors of a session; one permanent refusal among
	// them (5xx, a bad address) makes the whole send permanent.
	if anyPermanent(err) {
		return temporal.NewNonRetryableApplicationError("mail rejected: "+err.Error(), ErrTypeMailRejected, nil)
	}
	return fmt.Errorf("send mail (will retry): %w", err)
}

// isAuthReply reports the SMTP replies to AUTH (RFC 4954): 454 temporary,
// 534 mechanism too weak, 535 credentials invalid, 538 encryption required.
func isAuthReply(code int) bool {
	return code == 454 || code == 534 || code == 535 || code == 538
}

// passwordSource names where the password came from, for errors.
func (ml *Mailer) passwordSource() string {
	if ml.cfg.PasswordFile != "" {
		return "passwordFile " + ml.cfg.PasswordFile
	}
	return "passwordEnv " + ml.cfg.PasswordEnv
}

func anyPermanent(err error) bool {
	if se, ok := err.(*mail.SendError); ok && !se.IsTemp() && !isConnError(se) {
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			if anyPermanent(e) {
				return true
			}
		}
	case interface{ Unwrap() error }:
		return anyPermanent(u.Unwrap())
	}
	return false
}

// isConnError reports a SendError about the connection rather than the
// mail, which a later attempt may get past.
func isConnError(se *mail.SendError) bool {
	var ne net.Error
	return errors.As(se, &ne)
}
