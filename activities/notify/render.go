package notify

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"os"
	"path/filepath"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/kiln-build/kiln/workflows"
)

// Events a notification is about: the workflow's.
const (
	EventFailed            = workflows.EventFailed
	EventCancelled         = workflows.EventCancelled
	EventTimedOut          = workflows.EventTimedOut
	EventSucceeded         = workflows.EventSucceeded
	EventApprovalRequested = workflows.EventApprovalRequested
)

// Link is a named URL in a mail.
type Link struct {
	Name string
	URL  string
}

// Message is what the templates render.
type Message struct {
	Event, State, Error                    string
	BuildID, Repo, Branch, Commit, Version string
	Phases                                 []workflows.PhaseState
	Flavours                               []workflows.FlavourState
	Links                                  []Link
	Duration                               time.Duration
	Unresolved                             []string
	Subject                                string
}

//go:embed templates/*.tmpl
var builtin embed.FS

// Templates render a Message into a subject, a plain-text body and an HTML
// alternative.
type Templates struct {
	subject *texttemplate.Template
	text    *texttemplate.Template
	html    *htmltemplate.Template
}

var funcs = map[string]any{
	"icon":  icon,
	"lower": strings.ToLower,
	"join":  strings.Join,
	"short": func(s string) string { return s[:min(len(s), 12)] },
}

func icon(state string) string {
	switch state {
	case workflows.StateSucceeded:
		return "✅"
	case workflows.StateFailed, workflows.StateTestFailed:
		return "❌"
	case workflows.StateSkipped:
		return "⏭"
	case workflows.StateCancelled:
		return "⏹"
	case "TimedOut":
		return "⌛"
	default:
		return "⏳"
	}
}

// LoadTemplates returns the built-in templates, each overridden by the file
// of the same name (subject.tmpl, mail.txt.tmpl, mail.html.tmpl) in dir, if
// dir is set and holds it.
func LoadTemplates(dir string) (*Templates, error) {
	read := func(name string) (string, error) {
		if dir != "" {
			if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
				return string(b), nil
			} else if !os.IsNotExist(err) {
				return "", err
			}
		}
		b, err := builtin.ReadFile("templates/" + name)
		return string(b), err
	}
	var t Templates
	src, err := read("subject.tmpl")
	if err == nil {
		t.subject, err = texttemplate.New("subject").Funcs(funcs).Parse(src)
	}
	if err == nil {
		src, err = read("mail.txt.tmpl")
	}
	if err == nil {
		t.text, err = texttemplate.New("text").Funcs(funcs).Parse(src)
	}
	if err == nil {
		src, err = read("mail.html.tmpl")
	}
	if err == nil {
		t.html, err = htmltemplate.New("html").Funcs(funcs).Parse(src)
	}
	if err != nil {
		return nil, fmt.Errorf("mail templates: %w", err)
	}
	return &t, nil
}

// Render renders m.
func (t *Templates) Render(m Message) (subject, text, html string, err error) {
	var b bytes.Buffer
	if err = t.subject.Execute(&b, m); err != nil {
		return
	}
	m.Subject = strings.TrimSpace(b.String())
	subject = m.Subject
	b.Reset()
	if err = t.text.Execute(&b, m); err != nil {
		return
	}
	text = b.String()
	b.Reset()
	if err = t.html.Execute(&b, m); err != nil {
		return
	}
	return subject, text, b.String(), nil
}
