package workflows_test

import (
	"os"
	"testing"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/kiln-build/kiln/workflows"
)

// TestReplayRecordedHistories replays histories recorded from real builds
// (test/e2e with KILN_RECORD_HISTORY=workflows/testdata) against the current
// code. A change to the order of commands that is not behind
// workflow.GetVersion fails here, as it would fail running builds.
func TestReplayRecordedHistories(t *testing.T) {
	for _, f := range []struct{ file, id string }{
		// Child workflow IDs derive from the build's ID, so replay under
		// the recorded one.
		{"testdata/build-11-flavours.json", "build/e2e-de45/576.0"},
		{"testdata/flavour-aws.json", "build/e2e-de45/576.0/flavour/aws-gardener_prod-amd64"},
	} {
		t.Run(f.file, func(t *testing.T) {
			r, err := os.Open(f.file)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			h, err := client.HistoryFromJSON(r, client.HistoryJSONOptions{})
			if err != nil {
				t.Fatal(err)
			}
			rep := worker.NewWorkflowReplayer()
			rep.RegisterWorkflowWithOptions(workflows.Build, workflow.RegisterOptions{Name: "Build"})
			rep.RegisterWorkflowWithOptions(workflows.FlavourBuild, workflow.RegisterOptions{Name: "FlavourBuild"})
			err = rep.ReplayWorkflowHistoryWithOptions(nil, h, worker.ReplayWorkflowHistoryOptions{
				OriginalExecution: workflow.Execution{ID: f.id, RunID: "replay"},
			})
			if err != nil {
				t.Fatalf("replay %s: %v", f.file, err)
			}
		})
	}
}
