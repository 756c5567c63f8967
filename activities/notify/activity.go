package notify

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"text/template"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/kiln-build/kiln/workflows"
)

// Sender sends one mail; *Mailer is the SMTP one.
type Sender interface {
	Send(ctx context.Context, m Mail) error
}

// CodeownersReader returns the CODEOWNERS text at a commit ("" if none).
type CodeownersReader func(ctx context.Context, repo, branch, commit string) (string, error)

// Options configure the Activities.
type Options struct {
	// Handles maps @user and @org/team to addresses.
	Handles map[string]string
	// TemporalURL is a text/template over .Namespace and .WorkflowID for a
	// build's page in the Temporal UI.
	TemporalURL string
	Namespace   string
	// Domain is the Message-ID's right-hand side. Optional: kiln.local.
	Domain string
	// Chat is the second channel, if configured.
	Chat *Chat
}

// Activities send kiln's notifications.
type Activities struct {
	send       Sender
	templates  *Templates
	codeowners CodeownersReader
	opts       Options
	temporal   *template.Template
}

// New returns the notification activities.
func New(send Sender, t *Templates, co CodeownersReader, opts Options) (*Activities, error) {
	a := &Activities{send: send, templates: t, codeowners: co, opts: opts}
	if a.opts.Domain == "" {
		a.opts.Domain = "kiln.local"
	}
	if opts.TemporalURL != "" {
		tt, err := template.New("temporal").Option("missingkey=error").Parse(opts.TemporalURL)
		if err != nil {
			return nil, fmt.Errorf("temporalURL: %w", err)
		}
		a.temporal = tt
	}
	return a, nil
}

// NotifyRequest is the input of NotifyBuild: references and small values
// only.
type NotifyRequest struct {
	Event   string `json:"event"`
	BuildID string `json:"buildID"`
	// RunID is the Build workflow's run ID: one build ID runs again when
	// a build is re-run, and each run's mail gets its own Message-ID.
	// Requests from workflows started before it was added lack it; the
	// activity's own workflow run ID stands in.
	RunID    string                 `json:"runID,omitempty"`
	Request  workflows.BuildRequest `json:"request"`
	Progress workflows.Progress     `json:"progress"`
	Start    time.Time              `json:"start"`
	End      time.Time              `json:"end"`
}

// NotifyResult says who was mailed.
type NotifyResult struct {
	MessageID  string   `json:"messageID"`
	To         []string `json:"to"`
	Unresolved []string `json:"unresolved,omitempty"`
}

// NotifyBuild mails a build's people about an event. Recipients follow
// Resolve, with CODEOWNERS read at the build's commit (when it cannot be
// read, that is reported in the mail and the log, and the other rules
// still apply). The Message-ID is stable per run of the build and event, so
// a retried send is the same mail and a re-run's is a new one. With nobody
// to notify it fails non-retryable.
func (a *Activities) NotifyBuild(ctx context.Context, in NotifyRequest) (NotifyResult, error) {
	logger := activity.GetLogger(ctx)
	rin := RecipientsInput{Only: in.Request.Recipients.Only, Additional: in.Request.Recipients.Additional,
		Changed: in.Request.ChangedPaths, Handles: a.opts.Handles}
	var notes []string
	if len(rin.Only) == 0 && a.codeowners != nil && in.Request.Repo != "" {
		text, err := a.codeowners(ctx, in.Request.Repo, in.Request.Branch, in.Request.Commit)
		switch {
		case err != nil:
			logger.Warn("CODEOWNERS not read; notifying the others", "error", err)
			notes = append(notes, "CODEOWNERS not read: "+err.Error())
		case text != "":
			co, err := ParseCodeowners(text)
			if err != nil {
				logger.Warn("CODEOWNERS not parsed; notifying the others", "error", err)
				notes = append(notes, err.Error())
			} else {
				rin.Codeowners = co
			}
		}
	}
	rcpt := Resolve(rin)
	if len(rcpt.Unresolved) > 0 {
		logger.Warn("owners without an address", "handles", rcpt.Unresolved)
	}
	runID := in.RunID
	if runID == "" {
		runID = activity.GetInfo(ctx).WorkflowExecution.RunID
	}
	res := NotifyResult{MessageID: MessageID(in.BuildID, runID, in.Event, a.opts.Domain), To: rcpt.To, Unresolved: append(rcpt.Unresolved, notes...)}
	if len(rcpt.To) == 0 {
		return res, temporal.NewNonRetryableApplicationError(
			"nobody to notify: no recipients in the request, no resolvable CODEOWNERS; set recipients or the handles file", ErrTypeMailRejected, nil)
	}
	subject, text, html, err := a.templates.Render(a.message(in, res.Unresolved))
	if err != nil {
		return res, temporal.NewNonRetryableApplicationError("render mail: "+err.Error(), "TemplateError", err)
	}
	if err := a.send.Send(ctx, Mail{To: rcpt.To, Subject: subject, Text: text, HTML: html, MessageID: res.MessageID}); err != nil {
		return res, err
	}
	logger.Info("notification sent", "event", in.Event, "to", len(rcpt.To), "messageID", res.MessageID)
	return res, nil
}

func (a *Activities) message(in NotifyRequest, unresolved []string) Message {
	m := Message{
		Event: in.Event, State: in.Progress.State, Error: in.Progress.Error,
		BuildID: in.BuildID, Repo: in.Request.Repo, Branch: in.Request.Branch, Commit: in.Request.Commit, Version: in.Request.Version,
		Phases: in.Progress.Phases, Flavours: in.Progress.Flavours, Unresolved: unresolved,
	}
	if in.Event == EventTimedOut {
		m.State = "TimedOut"
	}
	if !in.Start.IsZero() && in.End.After(in.Start) {
		m.Duration = in.End.Sub(in.Start).Round(time.Second)
	}
	if a.temporal != nil {
		var b bytes.Buffer
		if a.temporal.Execute(&b, map[string]string{"Namespace": a.opts.Namespace, "WorkflowID": url.PathEscape(in.BuildID)}) == nil {
			m.Links = append(m.Links, Link{"Temporal UI", b.String()})
		}
	}
	for _, ph := range in.Progress.Phases {
		if ph.Dashboard != "" {
			m.Links = append(m.Links, Link{"Tekton " + ph.Name, ph.Dashboard})
		}
	}
	return m
}

// NotifyChat posts the same notification to the chat webhook, rendered from
// the same templates (subject and plain text).
func (a *Activities) NotifyChat(ctx context.Context, in NotifyRequest) error {
	if a.opts.Chat == nil {
		return temporal.NewNonRetryableApplicationError("no chat webhook is configured on this worker (notifications.chat)", ErrTypeChatRejected, nil)
	}
	subject, text, _, err := a.templates.Render(a.message(in, nil))
	if err != nil {
		return temporal.NewNonRetryableApplicationError("render: "+err.Error(), "TemplateError", err)
	}
	return a.opts.Chat.Post(ctx, subject+"\n\n"+text)
}
