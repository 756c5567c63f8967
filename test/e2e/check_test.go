//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
)

// TestBadRequestsAreRefusedBeforeAnythingStarts runs kiln run and kiln
// trigger as an operator would, with a mistyped flavour set and a mistyped
// param, against the real server and worker: each is refused with the fix,
// once and without Temporal's wrapping, and no Build (and no queue) starts.
func TestBadRequestsAreRefusedBeforeAnythingStarts(t *testing.T) {
	s := newSuite(t)
	// The image phase uses one param, as Garden Linux's registry would be.
	runWorker(t, buildConfig(t, s.ns, `    labels: {kiln.test/registry: '{{index .Params "registry"}}'}`), s.queue)
	base := []string{"--repo", "https://github.com/gardenlinux/gardenlinux", "--branch", s.ns, "--commit", "b2279318", "--version", "576.0", "--task-queue", s.queue}
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"unknown flavour set", append([]string{"run", "--flavour-set", "nightlyy"}, base...),
			[]string{`flavour set "nightlyy" not found; the file has all`, "testing"}},
		{"unknown flavour set, trigger", append([]string{"trigger", "--flavour-set", "nightlyy"}, base...),
			[]string{`flavour set "nightlyy" not found`}},
		{"unknown param", append([]string{"run", "--param", "registy=ghcr.io"}, base...),
			[]string{"params.registy: no pipeline template uses it (the templates use: registry)", "--allow-unused-params"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := runKiln(t, c.args...)
			if err == nil {
				t.Fatalf("kiln %s succeeded:\n%s", strings.Join(c.args, " "), out)
			}
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, bad := range []string{"retryable", "wrapError", "workflow execution error"} {
				if strings.Contains(out, bad) {
					t.Errorf("output has Temporal's wrapping %q:\n%s", bad, out)
				}
			}
			if strings.Count(out, "not found") > 1 {
				t.Errorf("the message is doubled:\n%s", out)
			}
		})
	}
	ctx := context.Background()
	for _, id := range []string{"build/" + s.ns + "/576.0", "queue/" + s.ns} {
		if _, err := env.client.DescribeWorkflowExecution(ctx, id, ""); err == nil {
			t.Errorf("%s was started", id)
		} else if _, ok := err.(*serviceerror.NotFound); !ok {
			t.Errorf("describe %s: %v", id, err)
		}
	}
	// An unused param passes with --allow-unused-params, and the build runs.
	out, err := runKiln(t, append([]string{"run", "--param", "registry=ghcr.io", "--param", "nosuch=1", "--allow-unused-params", "--flavour-set", "testing", "--wait"}, base...)...)
	if err != nil {
		t.Fatalf("with --allow-unused-params: %v\n%s", err, out)
	}
	resp, err := env.client.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query: fmt.Sprintf("WorkflowType = 'CheckBuild' AND TaskQueue = '%s'", s.queue),
	})
	if err != nil || len(resp.Executions) == 0 {
		t.Errorf("no CheckBuild runs on the queue: %v", err)
	}
}
