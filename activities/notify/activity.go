package notify

import (
	"bytes"
	"context"
	"errors"
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

// CodeownersReader returns the CODEOWNERS text at a commit of a repository
// ("" if it has none), whatever ref points at the commit. A non-retryable
// temporal.ApplicationError says that trying again would not help.
type CodeownersReader func(ctx context.Context, repo, commit string) (string, error)

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

// The activities' request and result types are the workflow's own, so the
// two cannot drift apart.
type (
	// RecipientsRequest is the input of ResolveRecipients.
	RecipientsRequest = workflows.RecipientsRequest
	// MailRecipients is ResolveRecipients' result.
	MailRecipients = workflows.MailRecipients
	// NotifyRequest is the input of NotifyBuild and NotifyChat.
	NotifyRequest = workflows.NotifyRequest
	// NotifyResult says who was mailed.
	NotifyResult = workflows.NotifyResult
)

// codeownersAttempts is how many attempts ResolveRecipients makes to read
// CODEOWNERS through transient trouble before it resolves without it.
const codeownersAttempts = 3

// ResolveRecipients works out who a build's notification goes to, as
// Resolve does, with CODEOWNERS read at the build's commit. It runs once
// per notification and its result is in the workflow's history, so the
// repository is not fetched again for each retry of the send. When
// CODEOWNERS cannot be read, it fails retryably for the first attempts
// (unless the error is permanent) and then resolves without it, saying so
// in Unresolved (the mail's footer) and the log. With nobody to notify it
// fails non-retryable with ErrTypeMailRejected.
func (a *Activities) ResolveRecipients(ctx context.Context, in RecipientsRequest) (MailRecipients, error) {
	logger := activity.GetLogger(ctx)
	rin := RecipientsInput{Only: in.Recipients.Only, Additional: in.Recipients.Additional,
		Changed: in.ChangedPaths, Handles: a.opts.Handles}
	var notes []string
	if len(rin.Only) == 0 && a.codeowners != nil && in.Repo != "" {
		text, err := a.codeowners(ctx, in.Repo, in.Commit)
		var appErr *temporal.ApplicationError
		switch {
		case err != nil && !(errors.As(err, &appErr) && appErr.NonRetryable()) && activity.GetInfo(ctx).Attempt < codeownersAttempts:
			return MailRecipients{}, fmt.Errorf("read CODEOWNERS (will retry, then notify without it): %w", err)
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
	rcpt.Unresolved = append(rcpt.Unresolved, notes...)
	if len(rcpt.To) == 0 {
		return rcpt, temporal.NewNonRetryableApplicationError(
			"nobody to notify: no recipients in the request, no resolvable CODEOWNERS; set recipients or the handles file", ErrTypeMailRejected, nil)
	}
	return rcpt, nil
}

// NotifyBuild mails a build's people about an event, to in.Recipients
// (ResolveRecipients' result). The Message-ID is stable per run of the
// build and event, so a retried send is the same mail and a re-run's is a
// new one. Temporary failures (relay down, 4xx) are retryable; a
// permanent refusal is a non-retryable ErrTypeMailRejected.
func (a *Activities) NotifyBuild(ctx context.Context, in NotifyRequest) (NotifyResult, error) {
	if in.Recipients == nil {
		// Scheduled by a workflow from before ResolveRecipients.
		rcpt, err := a.ResolveRecipients(ctx, RecipientsRequest{Repo: in.Request.Repo, Commit: in.Request.Commit,
			ChangedPaths: in.Request.ChangedPaths, Recipients: in.Request.Recipients})
		if err != nil {
			return NotifyResult{}, err
		}
		in.Recipients = &rcpt
	}
	rcpt := *in.Recipients
	res := NotifyResult{MessageID: MessageID(in.BuildID, a.runID(ctx, in), in.Event, a.opts.Domain), To: rcpt.To, Unresolved: rcpt.Unresolved}
	if len(rcpt.To) == 0 {
		return res, temporal.NewNonRetryableApplicationError("nobody to notify: the request's recipients are empty", ErrTypeMailRejected, nil)
	}
	subject, text, html, err := a.templates.Render(a.message(in, rcpt.Unresolved))
	if err != nil {
		return res, temporal.NewNonRetryableApplicationError("render mail: "+err.Error(), "TemplateError", err)
	}
	if err := a.send.Send(ctx, Mail{To: rcpt.To, Subject: subject, Text: text, HTML: html, MessageID: res.MessageID}); err != nil {
		return res, err
	}
	activity.GetLogger(ctx).Info("notification sent", "event", in.Event, "to", len(rcpt.To), "messageID", res.MessageID)
	return res, nil
}

// runID is the build run the notification is about.
func (a *Activities) runID(ctx context.Context, in NotifyRequest) string {
	if in.RunID != "" {
		return in.RunID
	}
	return activity.GetInfo(ctx).WorkflowExecution.RunID
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

// NotifyChat posts the same notification to the chat, rendered from the
// same templates (subject and plain text). Every attempt posts under the
// same key, derived as the mail's Message-ID is (build, run, event): a
// Matrix homeserver deduplicates a retry whose first attempt's response was
// lost; a webhook gets the key as its Idempotency-Key header (see
// Chat.Post for which honour it).
func (a *Activities) NotifyChat(ctx context.Context, in NotifyRequest) error {
	if a.opts.Chat == nil {
		return temporal.NewNonRetryableApplicationError("no chat is configured on this worker (notifications.chat)", ErrTypeChatRejected, nil)
	}
	subject, text, _, err := a.templates.Render(a.message(in, nil))
	if err != nil {
		return temporal.NewNonRetryableApplicationError("render: "+err.Error(), "TemplateError", err)
	}
	return a.opts.Chat.Post(ctx, messageKey(in.BuildID, a.runID(ctx, in), in.Event), subject+"\n\n"+text)
}
