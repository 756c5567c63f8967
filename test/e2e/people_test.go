//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/kiln-build/kiln/workflows"
)

// waitProgress polls the build's progress until cond holds.
func waitProgress(t *testing.T, id string, cond func(workflows.Progress) bool) workflows.Progress {
	t.Helper()
	var p workflows.Progress
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		v, err := env.client.QueryWorkflow(ctx, id, "", workflows.QueryProgress)
		if err != nil {
			return false, nil
		}
		if err := v.Get(&p); err != nil {
			return false, err
		}
		return cond(p), nil
	})
	if err != nil {
		t.Fatalf("progress of %s never got there: %v (last %+v)", id, err, p)
	}
	return p
}

// kilnFails runs bin/kiln expecting it to fail, and returns its output.
func kilnFails(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runKiln(t, args...)
	if err == nil {
		t.Fatalf("kiln %s succeeded:\n%s", strings.Join(args, " "), out)
	}
	return out
}

func TestReleaseApprovedWithTheCLI(t *testing.T) {
	s := newSuite(t)
	runWorker(t, buildConfig(t, s.ns, ""), s.queue)
	run := startBuild(t, s.queue, gardenRequest(s.ns, "build", "manifest", "freeze-version", "release", "publish"))
	waitProgress(t, run.GetID(), func(p workflows.Progress) bool {
		return p.Approval != nil && p.Approval.State == workflows.ApprovalWaiting
	})
	if out := kilnFails(t, "approve", run.GetID()); !strings.Contains(out, `required flag(s) "by" not set`) {
		t.Errorf("approve without --by:\n%s", out)
	}
	if out := kilnCLI(t, "approve", run.GetID(), "--by", "release-manager", "--comment", "looks good"); !strings.Contains(out, "approved by release-manager") {
		t.Errorf("approve:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("release build: %v", err)
	}
	if out := kilnFails(t, "approve", run.GetID(), "--by", "late"); !strings.Contains(out, "has finished (completed)") {
		t.Errorf("approve a finished build:\n%s", out)
	}
	if out := kilnFails(t, "approve", "build/nope/0", "--by", "x"); !strings.Contains(out, "no build build/nope/0") {
		t.Errorf("approve an unknown build:\n%s", out)
	}
	status := kilnCLI(t, "status", run.GetID())
	if !strings.Contains(status, "approval: approved by release-manager") || !strings.Contains(status, "publish/aws") {
		t.Errorf("status:\n%s", status)
	}
	recordHistory(t, run.GetID(), run.GetRunID(), "build-v5-approval.json")
}

func TestFailedFlavourSkippedWithTheCLI(t *testing.T) {
	s := newSuite(t)
	const bad = "gcp-gardener_prod-amd64"
	runWorker(t, buildConfig(t, s.ns, `    labels:
      kiln.test/outcome: '{{if eq .Flavour.Name "`+bad+`"}}fail{{else}}ok{{end}}'`), s.queue)
	in := gardenRequest(s.ns, "build")
	in.OnFailure = workflows.OnFailureWait
	run := startBuild(t, s.queue, in)
	p := waitProgress(t, run.GetID(), func(p workflows.Progress) bool { return p.Resume != nil && p.Resume.Waiting })
	if len(p.Resume.Failed) != 1 || p.Resume.Failed[0] != bad {
		t.Fatalf("waiting on %v, want %s", p.Resume.Failed, bad)
	}
	if out := kilnFails(t, "retry", run.GetID(), "--by", "ops", "--skip", "--flavour", "aws-gardener_prod-amd64"); !strings.Contains(out, "has not failed") {
		t.Errorf("skip a flavour that did not fail:\n%s", out)
	}
	kilnCLI(t, "retry", run.GetID(), "--by", "ops", "--skip", "--flavour", bad)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := run.Get(ctx, nil); err != nil {
		t.Fatalf("build after the skip: %v", err)
	}
	status := kilnCLI(t, "status", run.GetID())
	if !strings.Contains(status, "decision: skip "+bad+" by ops") {
		t.Errorf("status:\n%s", status)
	}
	recordHistory(t, run.GetID(), run.GetRunID(), "build-v5-skip.json")
}
