package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/workflows"
)

// TestStatusSaysWhatTheGateWaitsOn: a build waiting after a failed publish
// says so in kiln status, with the failed flavours and the decisions that
// are open; a release's wait offers no skip.
func TestStatusSaysWhatTheGateWaitsOn(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    workflows.ResumeState
		want []string
		not  string
	}{
		{"flavours", workflows.ResumeState{Phase: workflows.PhasePublish, Failed: []string{"aws-gardener_prod-amd64"}, FailedKind: workflows.KindFlavour, CanSkip: true},
			[]string{"publish failed for flavour aws-gardener_prod-amd64", "--flavour X", "--skip --flavour X", "--abort"}, ""},
		{"platforms in a release", workflows.ResumeState{Phase: workflows.PhasePublish, Failed: []string{"gcp", "aws"}, FailedKind: workflows.KindPlatform},
			[]string{"publish failed for platforms gcp, aws", "--platform X", "--abort"}, "--skip"},
		{"manifest set", workflows.ResumeState{Phase: workflows.PhaseManifest},
			[]string{"manifest failed (kiln retry --by NAME, or --abort)"}, "--flavour"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.r
			r.Waiting, r.Deadline = true, time.Now().Add(time.Hour)
			r.Decisions = []workflows.ResumeDecision{{Action: workflows.UpdateRetry, Phase: workflows.PhasePublish, Platform: "gcp", By: "ops"}}
			var out bytes.Buffer
			if err := printProgress(&out, workflows.Progress{State: workflows.StateRunning, Resume: &r}, "table"); err != nil {
				t.Fatal(err)
			}
			s := out.String()
			for _, w := range append(tc.want, "waiting for an operator until ", "decision: retry publish gcp by ops") {
				if !strings.Contains(s, w) {
					t.Errorf("status lacks %q:\n%s", w, s)
				}
			}
			if tc.not != "" && strings.Contains(s, tc.not) {
				t.Errorf("status offers %q:\n%s", tc.not, s)
			}
		})
	}
}

func TestRetryHelpNamesPublishAndManifest(t *testing.T) {
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"retry", "--help"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"--platform", "manifest", "publish", "never in a release", "the retry finishes it"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("kiln retry --help lacks %q", w)
		}
	}
}

func TestRetryRefusesFlavourAndPlatform(t *testing.T) {
	cmd := newRootCommand()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	t.Setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")
	cmd.SetArgs([]string{"retry", "build/main/1", "--by", "ops", "--flavour", "a", "--platform", "gcp"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--flavour and --platform exclude each other") {
		t.Errorf("error = %v", err)
	}
}
