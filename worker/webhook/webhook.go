// Package webhook receives GitHub push and tag events and turns them into
// kiln builds. It checks X-Hub-Signature-256 (HMAC-SHA256 over the body,
// compared in constant time), limits the body size, and filters refs by
// branch and tag patterns.
//
// Answers: 202 with the build's workflow ID when a build is queued; 204 for
// an event that is ignored (ping, a branch or tag that matches no pattern,
// a deleted ref); 400 for a malformed body; 401 for a missing or bad
// signature; 405 for a method other than POST; 413 for a body over the
// limit; 503 when Temporal cannot be reached.
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path"
	"strings"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/kiln-build/kiln/workflows"
)

// Starter queues a build and returns its workflow ID.
type Starter interface {
	Start(ctx context.Context, in workflows.BuildRequest) (string, error)
}

// Handler is the webhook's http.Handler.
type Handler struct {
	// Secret is the webhook secret shared with GitHub. Required.
	Secret []byte
	// Branches and Tags are path.Match patterns ("main", "rel-*", "v*");
	// a ref that matches none is ignored.
	Branches, Tags []string
	// MaxBody bounds the request body. Optional: default 1 MiB (GitHub caps
	// payloads at 25 MB; push payloads are far smaller).
	MaxBody int64
	// Template supplies what the event does not: flavour set, targets,
	// params. Its repo, branch, commit and version are overwritten.
	Template workflows.BuildRequest
	Starter  Starter
	Logger   *slog.Logger
}

// Push is the part of GitHub's push event kiln reads.
type Push struct {
	Ref        string `json:"ref"`
	After      string `json:"after"`
	Deleted    bool   `json:"deleted"`
	Repository struct {
		FullName string `json:"full_name"`
		CloneURL string `json:"clone_url"`
	} `json:"repository"`
	Pusher struct {
		Name string `json:"name"`
	} `json:"pusher"`
	Commits []struct {
		Added    []string `json:"added"`
		Modified []string `json:"modified"`
		Removed  []string `json:"removed"`
	} `json:"commits"`
}

// changed returns the paths the push's commits touched, without repeats.
func (p Push) changed() []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range p.Commits {
		for _, list := range [][]string{c.Added, c.Modified, c.Removed} {
			for _, f := range list {
				if !seen[f] {
					seen[f] = true
					out = append(out, f)
				}
			}
		}
	}
	return out
}

// ErrSignature means the signature header is missing or wrong.
var ErrSignature = errors.New("missing or invalid X-Hub-Signature-256")

// Verify checks GitHub's X-Hub-Signature-256 header value for body.
func Verify(secret, body []byte, header string) error {
	hexSum, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return ErrSignature
	}
	got, err := hex.DecodeString(hexSum)
	if err != nil {
		return ErrSignature
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return ErrSignature
	}
	return nil
}

// Sign returns the X-Hub-Signature-256 value for body, as GitHub sends it.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// ParsePush reads a push event and checks the fields kiln needs.
func ParsePush(body []byte) (Push, error) {
	var p Push
	if err := json.Unmarshal(body, &p); err != nil {
		return p, fmt.Errorf("malformed push event: %w", err)
	}
	if !strings.HasPrefix(p.Ref, "refs/heads/") && !strings.HasPrefix(p.Ref, "refs/tags/") {
		return p, fmt.Errorf("malformed push event: ref %q is neither refs/heads/ nor refs/tags/", p.Ref)
	}
	if !p.Deleted {
		if len(p.After) != 40 && len(p.After) != 64 {
			return p, fmt.Errorf("malformed push event: after %q is not a commit hash", p.After)
		}
		if _, err := hex.DecodeString(p.After); err != nil {
			return p, fmt.Errorf("malformed push event: after %q is not a commit hash", p.After)
		}
		if p.Repository.CloneURL == "" {
			return p, errors.New("malformed push event: repository.clone_url is missing")
		}
	}
	return p, nil
}

// Request turns a push into a build request, or reports why it is ignored.
func (h *Handler) Request(p Push) (workflows.BuildRequest, string) {
	if p.Deleted {
		return workflows.BuildRequest{}, "ref deleted"
	}
	in := h.Template
	in.Repo, in.Commit = p.Repository.CloneURL, p.After
	// Notifications go to the CODEOWNERS of what the push changed.
	in.ChangedPaths = p.changed()
	if branch, ok := strings.CutPrefix(p.Ref, "refs/heads/"); ok {
		if !matchAny(h.Branches, branch) {
			return in, "branch " + branch + " matches no pattern"
		}
		in.Branch, in.Version = branch, ""
		return in, ""
	}
	tag := strings.TrimPrefix(p.Ref, "refs/tags/")
	if !matchAny(h.Tags, tag) {
		return in, "tag " + tag + " matches no pattern"
	}
	// A tag builds its commit as that version, on a queue of its own.
	in.Branch, in.Version = tag, tag
	return in, ""
}

func matchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := h.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("delivery", r.Header.Get("X-GitHub-Delivery"), "event", r.Header.Get("X-GitHub-Event"))
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	limit := h.MaxBody
	if limit <= 0 {
		limit = 1 << 20
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		log.Warn("webhook rejected: body too large", "limit", limit)
		http.Error(w, fmt.Sprintf("body over %d bytes", limit), http.StatusRequestEntityTooLarge)
		return
	}
	if err != nil {
		http.Error(w, "read body", http.StatusBadRequest)
		return
	}
	// The signature is checked before anything in the body is looked at.
	if err := Verify(h.Secret, body, r.Header.Get("X-Hub-Signature-256")); err != nil {
		log.Warn("webhook rejected: bad signature", "remote", r.RemoteAddr)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	switch ev := r.Header.Get("X-GitHub-Event"); ev {
	case "push":
	case "ping":
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		log.Info("webhook ignored: event type")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	p, err := ParsePush(body)
	if err != nil {
		log.Warn("webhook rejected", "error", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	in, ignored := h.Request(p)
	if ignored != "" {
		log.Info("webhook ignored", "ref", p.Ref, "reason", ignored)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if err := in.Validate(); err != nil {
		log.Warn("webhook rejected: the event makes no valid build", "ref", p.Ref, "error", err)
		http.Error(w, "the event makes no valid build: "+err.Error(), http.StatusBadRequest)
		return
	}
	id, err := h.Starter.Start(r.Context(), in)
	if err != nil {
		log.Error("webhook: queue build", "ref", p.Ref, "error", err)
		http.Error(w, "cannot queue the build now; redeliver later", http.StatusServiceUnavailable)
		return
	}
	log.Info("webhook queued build", "ref", p.Ref, "commit", p.After, "build", id)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	json.NewEncoder(w).Encode(map[string]string{"workflowId": id})
}

// QueueStarter queues builds on their branch's Queue workflow: Start with
// SignalWithStart (the webhook: a signal is durable while no worker runs),
// Enqueue with UpdateWithStart (kiln trigger: the queue answers what it did).
type QueueStarter struct {
	Client    client.Client
	TaskQueue string
	// Concurrency is the queue's, if this starts it. Optional: 1.
	Concurrency int
}

// Start signals queue/<branch>, starting it if needed, and returns the
// build's workflow ID.
func (q QueueStarter) Start(ctx context.Context, in workflows.BuildRequest) (string, error) {
	qid := workflows.QueueID(in.Branch)
	_, err := q.Client.SignalWithStartWorkflow(ctx, qid, workflows.SignalBuild, in,
		client.StartWorkflowOptions{ID: qid, TaskQueue: q.TaskQueue},
		"Queue", workflows.QueueInput{Branch: in.Branch, Concurrency: q.Concurrency})
	if err != nil {
		return "", err
	}
	return workflows.BuildID(in), nil
}

// Enqueue queues in on queue/<branch>, starting the queue if needed, and
// says what happened: queued at a position, coalesced with the pending or
// running build, or not queued because the build already succeeded. A
// build that runs or succeeded outside the queue (kiln run) is answered
// from its own execution; every other case is the queue's answer. It needs
// a worker to answer; ctx bounds the wait.
func (q QueueStarter) Enqueue(ctx context.Context, in workflows.BuildRequest) (workflows.EnqueueResult, error) {
	id := workflows.BuildID(in)
	d, err := q.Client.DescribeWorkflowExecution(ctx, id, "")
	var notFound *serviceerror.NotFound
	last := ""
	switch {
	case errors.As(err, &notFound):
	case err != nil:
		return workflows.EnqueueResult{}, fmt.Errorf("look up build %s: %w", id, err)
	default:
		info := d.GetWorkflowExecutionInfo()
		run := info.GetExecution().GetRunId()
		switch state, _ := workflows.ExecutionState(info.GetStatus(), ""); state {
		case workflows.StateRunning:
			return workflows.EnqueueResult{BuildID: id, Outcome: workflows.EnqueueRunning, RunID: run}, nil
		case workflows.StateSucceeded:
			return workflows.EnqueueResult{BuildID: id, Outcome: workflows.EnqueueSucceeded, RunID: run}, nil
		default:
			last = state
		}
	}
	qid := workflows.QueueID(in.Branch)
	start := q.Client.NewWithStartWorkflowOperation(client.StartWorkflowOptions{
		ID: qid, TaskQueue: q.TaskQueue, WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
	}, "Queue", workflows.QueueInput{Branch: in.Branch, Concurrency: q.Concurrency})
	h, err := q.Client.UpdateWithStartWorkflow(ctx, client.UpdateWithStartWorkflowOptions{
		StartWorkflowOperation: start,
		UpdateOptions: client.UpdateWorkflowOptions{
			UpdateName: workflows.UpdateEnqueue, Args: []any{workflows.EnqueueRequest{Build: in, Last: last}}, WaitForStage: client.WorkflowUpdateStageCompleted,
		},
	})
	if err != nil {
		return workflows.EnqueueResult{}, err
	}
	var res workflows.EnqueueResult
	if err := h.Get(ctx, &res); err != nil {
		return workflows.EnqueueResult{}, err
	}
	return res, nil
}
