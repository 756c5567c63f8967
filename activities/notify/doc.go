// Package notify holds kiln's notification activities and what they need:
// CODEOWNERS parsing, recipient resolution, the mail templates, the SMTP
// sender (github.com/wneessen/go-mail) and the chat poster.
//
// A notification is ResolveRecipients, run once (its result is in the
// workflow's history), then NotifyBuild, which renders and sends the mail
// and is retried alone while the relay is down; NotifyChat posts alongside.
// Their request and result types are the workflows package's, aliased here.
// Every attempt of one notification uses one identity (build, run, event):
// the mail's Message-ID and the chat post's transaction ID or
// Idempotency-Key.
package notify
