// Package smtptest runs a real SMTP server (github.com/emersion/go-smtp) on
// loopback for tests: it stores what it receives and can refuse chosen
// recipients, permanently or temporarily.
package smtptest

import (
	"io"
	"net"
	"strings"
	"sync"

	"github.com/emersion/go-smtp"
)

// Message is one mail the server accepted.
type Message struct {
	From string
	To   []string
	Data []byte
}

// Server is a running SMTP server.
type Server struct {
	Addr string

	mu     sync.Mutex
	msgs   []Message
	refuse map[string]*smtp.SMTPError
	s      *smtp.Server
	ln     net.Listener
}

// Start serves on addr ("127.0.0.1:0" for any port).
func Start(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &Server{Addr: ln.Addr().String(), refuse: map[string]*smtp.SMTPError{}}
	s := smtp.NewServer(backend{srv})
	s.Domain = "localhost"
	s.AllowInsecureAuth = true
	srv.s, srv.ln = s, ln
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

type backend struct{ s *Server }

func (b backend) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{s: b.s}, nil }

type session struct {
	s   *Server
	msg Message
}

func (se *session) Reset()        { se.msg = Message{} }
func (se *session) Logout() error { return nil }
func (se *session) Mail(from string, _ *smtp.MailOptions) error {
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
	se.msg.Data = b
	se.s.mu.Lock()
	se.s.msgs = append(se.s.msgs, se.msg)
	se.s.mu.Unlock()
	return nil
}
