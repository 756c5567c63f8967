//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/mail"
	"net/textproto"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kiln-build/kiln/activities/notify"
	"github.com/kiln-build/kiln/test/gittest"
	"github.com/kiln-build/kiln/test/smtptest"
	"github.com/kiln-build/kiln/workflows"
)

// notifyConfig is a build config whose gcp flavour fails, with mail to the
// SMTP server at addr.
func notifyConfig(t *testing.T, ns, addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	return notifyConfigSMTP(t, ns, fmt.Sprintf("{host: %q, port: %s, tls: none, from: kiln@example.com, timeout: 5s}", host, port))
}

// notifyConfigSMTP is notifyConfig with its notifications.smtp given as a
// YAML flow mapping.
func notifyConfigSMTP(t *testing.T, ns, smtp string) string {
	t.Helper()
	path := buildConfig(t, ns, `    labels:
      kiln.test/outcome: '{{if eq .Flavour.Platform "gcp"}}fail{{else}}ok{{end}}'`)
	handles := filepath.Join(filepath.Dir(path), "handles.yaml")
	if err := os.WriteFile(handles, []byte("\"@gardenlinux/maintainers\": maintainers@example.com\n\"@gardenlinux/release\": release@example.com\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, `notifications:
  smtp: %s
  handles: handles.yaml
  temporalURL: "http://%s/namespaces/{{.Namespace}}/workflows/{{.WorkflowID}}"
`, smtp, uiAddr())
	return path
}

// ownedRepo is a git repository whose CODEOWNERS names a team handle.
func ownedRepo(t *testing.T) (string, string) {
	dir, commit := gitRepo(t)
	if err := os.MkdirAll(filepath.Join(dir, ".github"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".github", "CODEOWNERS"), []byte("* @gardenlinux/maintainers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("git", "-C", dir, "add", "-A").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return dir, commit()
}

func failingBuild(t *testing.T, s *suite, repo, commit string) (string, workflows.Progress) {
	t.Helper()
	in := gardenRequest(s.ns, "build")
	in.FlavourSet, in.Repo, in.Branch, in.Commit, in.Version = "testing", repo, "main", commit, s.ns
	in.Recipients.Additional = []string{"ops@example.com"}
	run := startBuild(t, s.queue, in)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := run.Get(ctx, nil); err == nil || !strings.Contains(err.Error(), workflows.ErrTypeFlavoursFailed) {
		t.Fatalf("build error = %v, want %s", err, workflows.ErrTypeFlavoursFailed)
	}
	// The result is the build's; the notification's outcome is in progress.
	return run.GetID(), getProgress(t, run)
}

func TestFailedBuildMailsItsPeople(t *testing.T) {
	s := newSuite(t)
	srv, err := smtptest.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	runWorker(t, notifyConfig(t, s.ns, srv.Addr), s.queue)
	repo, commit := ownedRepo(t)
	id, p := failingBuild(t, s, repo, commit)
	if n := p.Notification; n == nil || n.State != "Sent" || n.Event != "Failed" {
		t.Fatalf("notification = %+v", p.Notification)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d mails, want exactly 1", len(msgs))
	}
	m := msgs[0]
	if !slices.Equal(m.To, []string{"maintainers@example.com", "ops@example.com"}) {
		t.Errorf("recipients = %v, want the CODEOWNERS team (mapped) and the additional address", m.To)
	}
	subject, parts := decodeMail(t, m.Data)
	// The link works: the Temporal UI answers it.
	defer func() {
		resp, err := http.Get("http://" + uiAddr() + "/namespaces/default/workflows/" + url.PathEscape(id))
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("GET the mail's Temporal UI link: %v %v", err, resp)
		} else {
			resp.Body.Close()
		}
	}()
	link := "http://" + uiAddr() + "/namespaces/default/workflows/" + url.PathEscape(id)
	if !strings.HasPrefix(subject, "[kiln] ❌ Failed: main") {
		t.Errorf("subject = %q", subject)
	}
	for _, ct := range []string{"text/plain", "text/html"} {
		body, ok := parts[ct]
		if !ok {
			t.Errorf("no %s part; parts: %v", ct, parts)
			continue
		}
		for _, want := range []string{"gcp-gardener_prod-amd64", link} {
			if !strings.Contains(body, want) {
				t.Errorf("%s part lacks %q:\n%s", ct, want, body)
			}
		}
	}
}

// servedRepo serves the repository at dir over smart HTTP (git
// http-backend, serving commits by hash as GitHub does) and returns its URL
// and the server, which counts the fetches.
func servedRepo(t *testing.T, dir string) (string, *gittest.Server) {
	t.Helper()
	srv, err := gittest.Start(filepath.Dir(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv.RepoURL(dir), srv
}

// TestTagBuildMailsCodeOwners: a build of a tag (Branch is the tag's name)
// whose commit no branch reaches mails the code owners named in CODEOWNERS
// at that commit, not those of main's head (issue 13: CODEOWNERS was read
// from refs/heads/<tag>, which does not exist, so they were never mailed).
func TestTagBuildMailsCodeOwners(t *testing.T) {
	s := newSuite(t)
	srv, err := smtptest.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	runWorker(t, notifyConfig(t, s.ns, srv.Addr), s.queue)
	dir, _ := ownedRepo(t)
	git := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=kiln", "-c", "user.email=kiln@example.com"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	// The release commit, on no branch: only its tag reaches it.
	git("checkout", "-q", "--detach")
	if err := os.WriteFile(filepath.Join(dir, ".github", "CODEOWNERS"), []byte("* @gardenlinux/release\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("commit", "-q", "-am", "release "+s.ns)
	tagged := git("rev-parse", "HEAD")
	tag := "rel-" + s.ns
	git("tag", tag)
	git("checkout", "-q", "main")
	git("commit", "-q", "--allow-empty", "-m", "after the release")
	repo, _ := servedRepo(t, dir)

	in := gardenRequest(s.ns, "build")
	in.FlavourSet, in.Repo, in.Branch, in.Commit, in.Version = "testing", repo, tag, tagged, s.ns
	in.Recipients.Additional = []string{"ops@example.com"}
	run := startBuild(t, s.queue, in)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := run.Get(ctx, nil); err == nil || !strings.Contains(err.Error(), workflows.ErrTypeFlavoursFailed) {
		t.Fatalf("build error = %v, want %s", err, workflows.ErrTypeFlavoursFailed)
	}
	if n := getProgress(t, run).Notification; n == nil || n.State != "Sent" {
		t.Fatalf("notification = %+v, want Sent", n)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d mails, want exactly 1", len(msgs))
	}
	if !slices.Equal(msgs[0].To, []string{"ops@example.com", "release@example.com"}) {
		t.Errorf("recipients = %v, want the tagged commit's code owners (release@example.com, not main's maintainers) and the additional address", msgs[0].To)
	}
	if _, parts := decodeMail(t, msgs[0].Data); strings.Contains(parts["text/plain"], "CODEOWNERS not read") {
		t.Errorf("the mail says CODEOWNERS was not read:\n%s", parts["text/plain"])
	}
}

// TestMailWaitsForTheRelay: while the relay is down the send is retried,
// and only the send: the recipients were resolved once (one
// ResolveRecipients in the history, no fetch from the git server after
// it). When the relay is back the mail arrives, with the Message-ID of
// this run's notification (issue 13: each retry fetched the repository
// again).
func TestMailWaitsForTheRelay(t *testing.T) {
	s := newSuite(t)
	// Take a port, and leave nothing listening on it.
	srv, err := smtptest.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr
	srv.Close()
	runWorker(t, notifyConfig(t, s.ns, addr), s.queue)
	dir, commit := ownedRepo(t)
	repo, git := servedRepo(t, dir)

	in := gardenRequest(s.ns, "build")
	in.FlavourSet, in.Repo, in.Branch, in.Commit, in.Version = "testing", repo, "main", commit, s.ns
	run := startBuild(t, s.queue, in)
	// The build has failed and is mailing; the relay is down.
	p := waitProgress(t, run.GetID(), func(p workflows.Progress) bool {
		return p.Notification != nil
	})
	if p.Notification.State != "Sending" {
		t.Fatalf("notification = %+v, want Sending while the relay is down", p.Notification)
	}
	// Two sends fail; the third waits for its retry.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		d, err := env.client.DescribeWorkflowExecution(ctx, run.GetID(), run.GetRunID())
		if err != nil {
			return false, err
		}
		for _, a := range d.PendingActivities {
			if a.ActivityType.GetName() == workflows.ActivityNotifyBuild && a.Attempt >= 3 {
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		t.Fatalf("NotifyBuild did not fail twice: %v", err)
	}
	// kiln list and kiln status agree while the mail waits: the build has
	// failed, and is still notifying.
	status := kilnCLI(t, "status", run.GetID())
	if !strings.Contains(status, "state: Failed\n") || !strings.Contains(status, "notification: Failed sending") {
		t.Errorf("kiln status while the mail waits:\n%s", status)
	}
	var listed string
	for _, l := range strings.Split(kilnCLI(t, "list", "--limit", "200"), "\n") {
		if strings.HasPrefix(l, run.GetID()+" ") {
			listed = l
		}
	}
	if !strings.Contains(listed, " Failed (notifying) ") {
		t.Errorf("kiln list while the mail waits: %q, want Failed (notifying)", listed)
	}
	fetches := git.Fetches(dir)
	if fetches == 0 {
		t.Fatal("the git server served no fetch: CODEOWNERS was not read from it")
	}
	srv, err = smtptest.Start(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := run.Get(ctx, nil); err == nil {
		t.Fatal("the build succeeded")
	}
	n := getProgress(t, run).Notification
	if n.State != "Sent" {
		t.Errorf("notification = %+v", n)
	}
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return len(srv.Messages()) == 1, nil
	}); err != nil {
		t.Fatalf("%d mails after the relay came back, want 1", len(srv.Messages()))
	}
	msg, err := mail.ReadMessage(bytes.NewReader(srv.Messages()[0].Data))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := msg.Header.Get("Message-ID"), notify.MessageID(run.GetID(), run.GetRunID(), workflows.EventFailed, "kiln.local"); got != want || n.MessageID != want {
		t.Errorf("Message-ID %s (progress: %s), want this run's %s", got, n.MessageID, want)
	}
	if got := git.Fetches(dir); got != fetches {
		t.Errorf("the git server served %d fetches by the end, %d after the recipients were resolved; want no more while the send retried", got, fetches)
	}
	resolves, sendAttempt := 0, int32(0)
	it := env.client.GetWorkflowHistory(ctx, run.GetID(), run.GetRunID(), false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	scheduled := map[int64]string{}
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := e.GetActivityTaskScheduledEventAttributes(); a != nil {
			scheduled[e.GetEventId()] = a.GetActivityType().GetName()
			if a.GetActivityType().GetName() == workflows.ActivityResolveRecipients {
				resolves++
			}
		}
		if a := e.GetActivityTaskStartedEventAttributes(); a != nil {
			switch scheduled[a.GetScheduledEventId()] {
			case workflows.ActivityResolveRecipients:
				if a.GetAttempt() != 1 {
					t.Errorf("ResolveRecipients ran %d attempts, want 1", a.GetAttempt())
				}
			case workflows.ActivityNotifyBuild:
				sendAttempt = a.GetAttempt()
			}
		}
	}
	if resolves != 1 || sendAttempt < 3 {
		t.Errorf("history: %d ResolveRecipients, NotifyBuild sent at attempt %d; want 1 and at least 3", resolves, sendAttempt)
	}
}

func TestPermanentRejectionIsReported(t *testing.T) {
	s := newSuite(t)
	srv, err := smtptest.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.Refuse("ops@example.com", 550)
	runWorker(t, notifyConfig(t, s.ns, srv.Addr), s.queue)
	repo, commit := ownedRepo(t)
	_, p := failingBuild(t, s, repo, commit)
	if n := p.Notification; n == nil || n.State != "Failed" || !strings.Contains(n.Error, "mail rejected") {
		t.Errorf("notification = %+v, want Failed with the rejection", p.Notification)
	}
	if len(srv.Messages()) != 0 {
		t.Errorf("a rejected mail was delivered")
	}
}

// decodeMail returns a mail's decoded subject and its parts' decoded bodies
// by content type.
func decodeMail(t *testing.T, data []byte) (string, map[string]string) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	parts := map[string]string{}
	var walk func(ct string, h textproto.MIMEHeader, r io.Reader)
	walk = func(ct string, h textproto.MIMEHeader, r io.Reader) {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(mt, "multipart/") {
			mr := multipart.NewReader(r, params["boundary"])
			for {
				p, err := mr.NextRawPart()
				if err == io.EOF {
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				walk(p.Header.Get("Content-Type"), p.Header, p)
			}
		}
		switch strings.ToLower(h.Get("Content-Transfer-Encoding")) {
		case "quoted-printable":
			r = quotedprintable.NewReader(r)
		case "base64":
			r = base64.NewDecoder(base64.StdEncoding, r)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		parts[mt] = string(b)
	}
	walk(msg.Header.Get("Content-Type"), textproto.MIMEHeader(msg.Header), msg.Body)
	return subject, parts
}

// uiAddr is where the dev server serves its UI: the frontend's port + 1000.
func uiAddr() string {
	host, port, _ := net.SplitHostPort(env.temporal.FrontendHostPort())
	p, _ := strconv.Atoi(port)
	return net.JoinHostPort(host, strconv.Itoa(p+1000))
}
