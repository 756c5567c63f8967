// Package smtptest runs a real SMTP server (github.com/emersion/go-smtp) on
// loopback for tests: it stores what it receives and can refuse chosen
// recipients, permanently or temporarily. With Options it speaks TLS
// (implicit, or STARTTLS) with a certificate from NewCA, and requires a
// login (AUTH PLAIN and LOGIN).
package smtptest

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Message is one mail the server accepted.
type Message struct {
	From string
	To   []string
	Data []byte
	// User is the login the mail came under ("" without AUTH).
	User string
	// TLS reports that the mail came over TLS (implicit or STARTTLS), and
	// TLSServerName the name the client asked for (SNI).
	TLS           bool
	TLSServerName string
}

// Login is one AUTH attempt.
type Login struct {
	Mechanism string
	User      string
	OK        bool
	TLS       bool
}

// Options configure a server beyond plain, open SMTP.
type Options struct {
	// TLS, if set, is the server's certificate (see CA.ServerTLS): the
	// server offers STARTTLS, or with Implicit speaks TLS from the first
	// byte (SMTPS, port 465 style).
	TLS      *tls.Config
	Implicit bool
	// Users (user → password), if set, are the logins AUTH accepts; the
	// server then refuses MAIL FROM before a login, and offers AUTH only
	// over TLS when TLS is set.
	Users map[string]string
	// Mechanisms are the AUTH mechanisms offered. Optional: PLAIN, LOGIN.
	Mechanisms []string
}

// Server is a running SMTP server.
type Server struct {
	Addr string

	opts   Options
	mu     sync.Mutex
	msgs   []Message
	logins []Login
	refuse map[string]*smtp.SMTPError
	s      *smtp.Server
	ln     net.Listener
}

// Start serves plain, open SMTP on addr ("127.0.0.1:0" for any port).
func Start(addr string) (*Server, error) { return StartWith(addr, Options{}) }

// StartWith serves on addr as opts say.
func StartWith(addr string, opts Options) (*Server, error) {
	if opts.Implicit && opts.TLS == nil {
		return nil, errors.New("smtptest: Implicit needs TLS")
	}
	if len(opts.Mechanisms) == 0 {
		opts.Mechanisms = []string{sasl.Plain, sasl.Login}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &Server{Addr: ln.Addr().String(), opts: opts, refuse: map[string]*smtp.SMTPError{}, ln: ln}
	s := smtp.NewServer(backend{srv})
	s.Domain = "localhost"
	s.TLSConfig = opts.TLS
	// Without TLS, AUTH is offered in the clear (a client must refuse to
	// send a password over it); with TLS only after the handshake.
	s.AllowInsecureAuth = opts.TLS == nil
	srv.s = s
	if opts.Implicit {
		ln = tls.NewListener(ln, opts.TLS)
	}
	go s.Serve(ln)
	return srv, nil
}

// Close stops the server: nothing listens on Addr afterwards. (The
// listener is closed here too, in case Serve has not registered it yet.)
func (s *Server) Close() {
	s.ln.Close()
	s.s.Close()
}

// Refuse makes RCPT TO:<addr> fail with code (550: permanent, 450:
// temporary).
func (s *Server) Refuse(addr string, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse[strings.ToLower(addr)] = &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCode{code / 100, 1, 1}, Message: "refused by the test"}
}

// Messages returns what the server has accepted.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Logins returns the AUTH attempts, in order.
func (s *Server) Logins() []Login {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Login(nil), s.logins...)
}

type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{s: b.s, c: c}, nil
}

type session struct {
	s    *Server
	c    *smtp.Conn
	user string
	msg  Message
}

func (se *session) Reset()        { se.msg = Message{} }
func (se *session) Logout() error { return nil }

func (se *session) AuthMechanisms() []string {
	if se.s.opts.Users == nil {
		return nil
	}
	return se.s.opts.Mechanisms
}

func (se *session) Auth(mech string) (sasl.Server, error) {
	if !slices.Contains(se.AuthMechanisms(), mech) {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	check := func(user, password string) error {
		want, ok := se.s.opts.Users[user]
		ok = ok && password == want
		_, isTLS := se.c.TLSConnectionState()
		se.s.mu.Lock()
		se.s.logins = append(se.s.logins, Login{Mechanism: mech, User: user, OK: ok, TLS: isTLS})
		se.s.mu.Unlock()
		if !ok {
			return smtp.ErrAuthFailed
		}
		se.user = user
		return nil
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, password string) error {
			if identity != "" && identity != user {
				return smtp.ErrAuthFailed
			}
			return check(user, password)
		}), nil
	case sasl.Login:
		return &loginServer{check: check}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (se *session) Mail(from string, _ *smtp.MailOptions) error {
	if se.s.opts.Users != nil && se.user == "" {
		return smtp.ErrAuthRequired
	}
	se.msg.From = from
	return nil
}

func (se *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	se.s.mu.Lock()
	err := se.s.refuse[strings.ToLower(to)]
	se.s.mu.Unlock()
	if err != nil {
		return err
	}
	se.msg.To = append(se.msg.To, to)
	return nil
}

func (se *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	se.msg.Data, se.msg.User = b, se.user
	if st, ok := se.c.TLSConnectionState(); ok {
		se.msg.TLS, se.msg.TLSServerName = true, st.ServerName
	}
	se.s.mu.Lock()
	se.s.msgs = append(se.s.msgs, se.msg)
	se.s.mu.Unlock()
	return nil
}

// loginServer is the server side of AUTH LOGIN (draft-murchison-sasl-login),
// which go-sasl has only as a client: "Username:", then "Password:".
type loginServer struct {
	step  int
	user  string
	check func(user, password string) error
}

func (l *loginServer) Next(resp []byte) ([]byte, bool, error) {
	switch l.step {
	case 0:
		l.step = 1
		if len(resp) == 0 {
			return []byte("Username:"), false, nil
		}
		fallthrough // the initial response is the user name
	case 1:
		l.user, l.step = string(resp), 2
		return []byte("Password:"), false, nil
	default:
		return nil, true, l.check(l.user, string(resp))
	}
}
