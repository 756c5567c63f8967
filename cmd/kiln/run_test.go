package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/workflows"
)

func TestRunRefusesACommitThatIsNoHash(t *testing.T) {
	for _, commit := range []string{"4f1c2e9", "main", "4f1c2e9d8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e00"} {
		cmd := newRootCommand()
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		// No Temporal is reachable: the request is refused before kiln dials.
		t.Setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
		cmd.SetArgs([]string{"run", "--repo", "https://example.com/os.git", "--branch", "main", "--commit", commit})
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), "--commit \""+commit+"\"") || !strings.Contains(err.Error(), "at least 8 hex digits") {
			t.Errorf("commit %s: error = %v, want one naming --commit and the fix", commit, err)
		}
	}
	if err := checkCommit("75df9f40"); err != nil {
		t.Errorf("an 8-digit hash: %v", err)
	}
}

func TestStatusTableShowsWhySkippedAndTheBase(t *testing.T) {
	p := workflows.Progress{State: workflows.StateSucceeded, Flavours: []workflows.FlavourState{{
		Name: "kvm-gardener_prod_trustedboot_tpm2-amd64", State: workflows.StateSucceeded,
		Base: "kvm-gardener_prod_tpm2_trustedboot-amd64-1877.3-75df9f40",
		Phases: []workflows.PhaseState{
			{Name: workflows.PhaseImage, State: workflows.StateSucceeded, LogsError: "ArchiveLogs: S3 unreachable", Restarts: 1},
			{Name: workflows.PhaseTestPlatform, State: workflows.StateSkipped, Reason: "test-platform: false in the flavour file"},
		},
	}}}
	var out bytes.Buffer
	if err := printProgress(&out, p, "table"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"built as kvm-gardener_prod_tpm2_trustedboot-amd64-1877.3-75df9f40", "test-platform: false in the flavour file",
		"logs not archived: ArchiveLogs: S3 unreachable", "restarted 1×"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status table lacks %q:\n%s", want, out.String())
		}
	}
}

// TestStatusTableShowsWhatWentWrongAroundTheBuild: a failed notification
// and unarchived logs are in the table, not only in -o yaml.
func TestStatusTableShowsWhatWentWrongAroundTheBuild(t *testing.T) {
	p := workflows.Progress{State: workflows.StateFailed, Error: "image failed",
		Notification: &workflows.NotificationState{Event: workflows.EventFailed, State: "Failed",
			Error: "nobody to notify: no code owner, no notifications.recipients, no --additional"},
		Phases: []workflows.PhaseState{{Name: workflows.PhaseBase, State: workflows.StateSucceeded, LogsError: "S3 unreachable"}},
		Flavours: []workflows.FlavourState{{Name: "kvm-gardener_prod-amd64", State: workflows.StateFailed,
			Phases: []workflows.PhaseState{{Name: workflows.PhaseImage, State: workflows.StateFailed, LogsError: "S3 unreachable"}}}},
	}
	var out bytes.Buffer
	if err := printProgress(&out, p, "table"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"notification: Failed failed: nobody to notify: no code owner",
		"logs not archived: base, kvm-gardener_prod-amd64/image",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status table lacks %q:\n%s", want, out.String())
		}
	}
}
