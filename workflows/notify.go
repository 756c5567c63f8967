package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// The notification activities (activities/notify). ResolveRecipients
// works out who is mailed (CODEOWNERS at the build's commit, the handles
// file, the request's recipients) once, and its result is in the history;
// NotifyBuild renders and sends the mail, and is the one retried while the
// relay is down; NotifyChat posts to the chat webhook.
const (
	ActivityResolveRecipients = "ResolveRecipients"
	ActivityNotifyBuild       = "NotifyBuild"
	ActivityNotifyChat        = "NotifyChat"
)

// changeNotifyChat: notifications also go to the chat webhook.
const changeNotifyChat = "notify-chat"

// changeNotify: builds notify at their end, and have a deadline timer.
const changeNotify = "notify"

// Notification events (activities/notify uses these).
const (
	EventFailed    = "Failed"
	EventCancelled = "Cancelled"
	EventTimedOut  = "TimedOut"
	EventSucceeded = "Succeeded"
	// EventApprovalRequested: a release build waits at its approval gate.
	EventApprovalRequested = "ApprovalRequested"
)

// ErrTypeBuildTimeout: the build's own deadline (Plan.BuildTimeout) passed.
const ErrTypeBuildTimeout = "BuildTimeout"

// NotificationState is a notification's outcome in Progress.
type NotificationState struct {
	Event     string   `json:"event"`
	State     string   `json:"state"` // Sending, Sent, Failed
	MessageID string   `json:"messageID,omitempty"`
	To        []string `json:"to,omitempty"`
	Error     string   `json:"error,omitempty"`
	// Chat is the chat webhook's outcome: Sent, or the error.
	Chat string `json:"chat,omitempty"`
}

// RecipientsRequest is the input of ResolveRecipients: where CODEOWNERS
// is read (the build's repository, at its commit), the paths the build
// changed, and the request's own recipients.
type RecipientsRequest struct {
	Repo         string     `json:"repo"`
	Commit       string     `json:"commit"`
	ChangedPaths []string   `json:"changedPaths,omitempty"`
	Recipients   Recipients `json:"recipients,omitzero"`
}

// MailRecipients are ResolveRecipients' result: the addresses, and what
// could not be resolved (handles without an address, and why CODEOWNERS
// was not read), which the mail's footer names.
type MailRecipients struct {
	To         []string `json:"to"`
	Unresolved []string `json:"unresolved,omitempty"`
}

// NotifyRequest is the input of NotifyBuild and NotifyChat: references and
// small values only.
type NotifyRequest struct {
	Event   string `json:"event"`
	BuildID string `json:"buildID"`
	// RunID is the Build workflow's run ID: one build ID runs again when
	// a build is re-run, and each run's mail gets its own Message-ID.
	// Requests from workflows started before it was added lack it; the
	// activity's own workflow run ID stands in.
	RunID    string       `json:"runID,omitempty"`
	Request  BuildRequest `json:"request"`
	Progress Progress     `json:"progress"`
	Start    time.Time    `json:"start"`
	End      time.Time    `json:"end"`
	// Recipients are ResolveRecipients' result, for NotifyBuild (NotifyChat
	// posts to its channel). A request without them (scheduled before
	// ResolveRecipients existed) has NotifyBuild resolve them itself.
	Recipients *MailRecipients `json:"recipients,omitempty"`
}

// NotifyResult says who was mailed, under which Message-ID.
type NotifyResult struct {
	MessageID  string   `json:"messageID"`
	To         []string `json:"to"`
	Unresolved []string `json:"unresolved,omitempty"`
}

// notify sends the build's notification from a disconnected context, so it
// runs also when the build was cancelled, and records the outcome without
// touching the build's own result. SMTP that is down delays the mail (the
// activity retries for NotifyWindow); it is not lost.
func (b *build) notify(ctx workflow.Context, event string, start time.Time) {
	if !b.plan.Notify {
		workflow.GetLogger(ctx).Warn("notifications are not configured on the workers (config: smtp)", "event", event)
		return
	}
	window := b.plan.NotifyWindow
	if window <= 0 {
		window = 24 * time.Hour
	}
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	dctx = workflow.WithActivityOptions(dctx, workflow.ActivityOptions{
		StartToCloseTimeout:    2 * time.Minute,
		ScheduleToCloseTimeout: window,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: 10 * time.Second, BackoffCoefficient: 2, MaximumInterval: 5 * time.Minute,
		},
	})
	n := &NotificationState{Event: event, State: "Sending"}
	b.progress.Notification = n
	in := NotifyRequest{Event: event, BuildID: b.id, RunID: workflow.GetInfo(ctx).WorkflowExecution.RunID,
		Request: b.in, Progress: b.progress, Start: start, End: workflow.Now(ctx)}
	var chat workflow.Future
	if b.plan.NotifyChat && workflow.GetVersion(ctx, changeNotifyChat, workflow.DefaultVersion, 1) == 1 {
		chat = workflow.ExecuteActivity(dctx, ActivityNotifyChat, in)
	}
	// Who is mailed is worked out once; only the send is retried while the
	// relay is down.
	var rcpt MailRecipients
	err := workflow.ExecuteActivity(dctx, ActivityResolveRecipients, RecipientsRequest{
		Repo: b.in.Repo, Commit: b.in.Commit, ChangedPaths: b.in.ChangedPaths, Recipients: b.in.Recipients,
	}).Get(dctx, &rcpt)
	var out NotifyResult
	if err == nil {
		in.Recipients = &rcpt
		err = workflow.ExecuteActivity(dctx, ActivityNotifyBuild, in).Get(dctx, &out)
	}
	if chat != nil {
		if cerr := chat.Get(dctx, nil); cerr != nil {
			n.Chat = rootMessage(cerr)
			workflow.GetLogger(ctx).Error("chat notification failed", "event", event, "error", cerr)
		} else {
			n.Chat = "Sent"
		}
	}
	if err != nil {
		n.State, n.Error = "Failed", rootMessage(err)
		workflow.GetLogger(ctx).Error("notification failed", "event", event, "error", err)
		return
	}
	n.State, n.MessageID, n.To = "Sent", out.MessageID, out.To
}
