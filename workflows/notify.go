package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// ActivityNotifyBuild and ActivityNotifyChat are the notification
// activities (activities/notify): mail, and the chat webhook.
const (
	ActivityNotifyBuild = "NotifyBuild"
	ActivityNotifyChat  = "NotifyChat"
)

// changeNotifyChat: notifications also go to the chat webhook.
const changeNotifyChat = "notify-chat"

// changeNotify: builds notify at their end, and have a deadline timer.
const changeNotify = "notify"

// Notification events (as activities/notify names them).
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

// notifyInput mirrors activities/notify.NotifyRequest; keep the two in step.
type notifyInput struct {
	Event   string `json:"event"`
	BuildID string `json:"buildID"`
	// RunID is this workflow run's: the Message-ID differs per run.
	RunID    string       `json:"runID,omitempty"`
	Request  BuildRequest `json:"request"`
	Progress Progress     `json:"progress"`
	Start    time.Time    `json:"start"`
	End      time.Time    `json:"end"`
}

type notifyOutput struct {
	MessageID string   `json:"messageID"`
	To        []string `json:"to"`
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
	in := notifyInput{Event: event, BuildID: b.id, RunID: workflow.GetInfo(ctx).WorkflowExecution.RunID,
		Request: b.in, Progress: b.progress, Start: start, End: workflow.Now(ctx)}
	var chat workflow.Future
	if b.plan.NotifyChat && workflow.GetVersion(ctx, changeNotifyChat, workflow.DefaultVersion, 1) == 1 {
		chat = workflow.ExecuteActivity(dctx, ActivityNotifyChat, in)
	}
	var out notifyOutput
	err := workflow.ExecuteActivity(dctx, ActivityNotifyBuild, in).Get(dctx, &out)
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
