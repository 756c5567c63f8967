package workflows_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/kiln-build/kiln/workflows"
)

// TestReplayRecordedHistories replays every history in testdata/, recorded
// from real builds (test/e2e with KILN_RECORD_HISTORY=workflows/testdata),
// against the current code. A change to the commands a workflow issues that
// is not behind workflow.GetVersion fails here, as it would fail the builds
// running when it is deployed. Keep old histories when recording new ones.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) < 2 {
		t.Fatalf("histories: %v %v", files, err)
	}
	for _, file := range files {
		t.Run(file, func(t *testing.T) {
			// Child workflow IDs derive from the build's ID, so replay
			// under the recorded one, kept beside the history.
			id, err := os.ReadFile(file + ".id")
			if err != nil {
				t.Fatal(err)
			}
			r, err := os.Open(file)
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
			rep.RegisterWorkflowWithOptions(workflows.PublishFlavour, workflow.RegisterOptions{Name: "PublishFlavour"})
			err = rep.ReplayWorkflowHistoryWithOptions(nil, h, worker.ReplayWorkflowHistoryOptions{
				OriginalExecution: workflow.Execution{ID: strings.TrimSpace(string(id)), RunID: "replay"},
			})
			if err != nil {
				t.Fatalf("replay %s: %v", file, err)
			}
		})
	}
}
