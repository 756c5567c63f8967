package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/wneessen/go-mail"
	"go.temporal.io/sdk/temporal"
)

// ErrTypeMailRejected: the SMTP server refused the mail permanently (5xx,
// a bad address). Retrying would not help.
const ErrTypeMailRejected = "MailRejected"

// TLS modes of SMTPConfig.
const (
	TLSImplicit      = "implicit"          // TLS from the first byte (port 465)
	TLSStartTLS      = "starttls"          // STARTTLS required (port 587)
	TLSOpportunistic = "starttls-optional" // STARTTLS if offered
	TLSNone          = "none"              // plain; only for a server on localhost
)

// SMTPConfig is how mail is sent. The password comes from a file or an
// environment variable named here, never from a request or the history.
type SMTPConfig struct {
	Host string `json:"host"`
	// Port. Optional: 465 for implicit TLS, 587 for STARTTLS, 25 otherwise.
	Port int `json:"port,omitempty"`
	// TLS: implicit, starttls (default), starttls-optional, none.
	TLS      string `json:"tls,omitempty"`
	Username string `json:"username,omitempty"`
	// PasswordFile or PasswordEnv holds the password.
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
	default:
		errs = append(errs, fmt.Errorf("smtp.tls: %q: want implicit, starttls, starttls-optional or none", c.TLS))
	}
	if c.Username != "" && c.PasswordFile == "" && c.PasswordEnv == "" {
		errs = append(errs, errors.New("smtp: a username needs passwordFile or passwordEnv"))
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
	sum := sha256.Sum256([]byte(buildID + "\x00" + runID + "\x00" + event))
	return "<kiln." + hex.EncodeToString(sum[:12]) + "@" + domain + ">"
}

// Mailer sends mail over SMTP with github.com/wneessen/go-mail.
type Mailer struct {
	cfg      SMTPConfig
	password string
}

// NewMailer validates cfg and reads the password.
func NewMailer(cfg SMTPConfig) (*Mailer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Mailer{cfg: cfg}
	switch {
	case cfg.PasswordFile != "":
		b, err := os.ReadFile(cfg.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("smtp.passwordFile: %w", err)
		}
		m.password = strings.TrimRight(string(b), "\r\n")
	case cfg.PasswordEnv != "":
		m.password = os.Getenv(cfg.PasswordEnv)
		if m.password == "" {
			return nil, fmt.Errorf("smtp.passwordEnv: %s is empty", cfg.PasswordEnv)
		}
	}
	return m, nil
}

// Send delivers m. Temporary failures (4xx, connection trouble) are
// retryable; permanent ones (5xx, bad addresses) are a non-retryable
// ErrTypeMailRejected.
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

	timeout := ml.cfg.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	opts := []mail.Option{mail.WithTimeout(timeout)}
	port := ml.cfg.Port
	switch ml.cfg.TLS {
	case TLSImplicit:
		opts = append(opts, mail.WithSSL())
		port = cmpOr(port, 465)
	case TLSNone:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
		port = cmpOr(port, 25)
	case TLSOpportunistic:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSOpportunistic))
		port = cmpOr(port, 587)
	default:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
		port = cmpOr(port, 587)
	}
	opts = append(opts, mail.WithPort(port))
	if ml.cfg.Username != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover), mail.WithUsername(ml.cfg.Username), mail.WithPassword(ml.password))
	}
	c, err := mail.NewClient(ml.cfg.Host, opts...)
	if err != nil {
		return fmt.Errorf("smtp client: %w", err)
	}
	return classifySend(c.DialAndSendWithContext(ctx, msg))
}

func cmpOr(v, def int) int {
	if v != 0 {
		return v
	}
	return def
}

// classifySend sorts go-mail's errors into retryable and permanent.
func classifySend(err error) error {
	if err == nil {
		return nil
	}
	// go-mail joins the errors of a session; one permanent refusal among
	// them (5xx, a bad address) makes the whole send permanent.
	if anyPermanent(err) {
		return temporal.NewNonRetryableApplicationError("mail rejected: "+err.Error(), ErrTypeMailRejected, nil)
	}
	return fmt.Errorf("send mail (will retry): %w", err)
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
