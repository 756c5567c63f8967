package dev

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// MailSink is an SMTP server on loopback that accepts every mail and
// stores it as an .eml file, for kiln dev's notifications.
type MailSink struct {
	// Addr is where it listens.
	Addr string
	// Dir holds the .eml files.
	Dir string

	onMail func(Mail)
	n      atomic.Int64
	mu     sync.Mutex
	mails  []Mail
	srv    *smtp.Server
	ln     net.Listener
}

// Mail is one stored mail.
type Mail struct {
	File    string
	From    string
	To      []string
	Subject string
}

// StartMailSink listens on addr ("127.0.0.1:0" for any port) and stores
// mails in dir, calling onMail (if not nil) for each.
func StartMailSink(addr, dir string, onMail func(Mail)) (*MailSink, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("mail sink: %w", err)
	}
	m := &MailSink{Addr: ln.Addr().String(), Dir: dir, onMail: onMail, ln: ln}
	m.srv = smtp.NewServer(sinkBackend{m})
	m.srv.Domain = "localhost"
	m.srv.ReadTimeout, m.srv.WriteTimeout = time.Minute, time.Minute
	go m.srv.Serve(ln)
	return m, nil
}

// Close stops the sink; nothing listens on Addr afterwards.
func (m *MailSink) Close() {
	m.ln.Close()
	m.srv.Close()
}

// store writes one mail to a new file.
func (m *MailSink) store(from string, to []string, r io.Reader) error {
	name := fmt.Sprintf("%s-%03d.eml", time.Now().UTC().Format("20060102T150405Z"), m.n.Add(1))
	path := filepath.Join(m.Dir, name)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	var head bytes.Buffer
	_, err = io.Copy(f, io.TeeReader(r, &limited{w: &head, n: 64 << 10}))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return err
	}
	got := Mail{File: path, From: from, To: to, Subject: subject(head.Bytes())}
	m.mu.Lock()
	m.mails = append(m.mails, got)
	m.mu.Unlock()
	if m.onMail != nil {
		m.onMail(got)
	}
	return nil
}

// Mails lists the mails stored since the sink started, oldest first.
func (m *MailSink) Mails() []Mail {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Mail(nil), m.mails...)
}

// subject decodes the Subject header of a mail's head.
func subject(head []byte) string {
	msg, err := mail.ReadMessage(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		return ""
	}
	s := msg.Header.Get("Subject")
	if d, err := new(mime.WordDecoder).DecodeHeader(s); err == nil {
		s = d
	}
	return s
}

// limited keeps the first n bytes written to it.
type limited struct {
	w io.Writer
	n int
}

func (l *limited) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

type sinkBackend struct{ m *MailSink }

func (b sinkBackend) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &sinkSession{m: b.m}, nil
}

type sinkSession struct {
	m    *MailSink
	from string
	to   []string
}

func (s *sinkSession) Reset()        { s.from, s.to = "", nil }
func (s *sinkSession) Logout() error { return nil }
func (s *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}
func (s *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}
func (s *sinkSession) Data(r io.Reader) error {
	return s.m.store(s.from, s.to, r)
}

// Summary is the one line kiln dev prints for a mail.
func (m Mail) Summary() string {
	return fmt.Sprintf("mail to %s: %q (%s)", strings.Join(m.To, ", "), m.Subject, m.File)
}
