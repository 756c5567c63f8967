// Package notify holds kiln's notification activities and what they need:
// CODEOWNERS parsing, recipient resolution, the mail templates and the SMTP
// sender (github.com/wneessen/go-mail).
package notify
