package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/kiln-build/kiln/workflows"
)

func TestVersionNamesTheSDKs(t *testing.T) {
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"version"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "kiln ") {
		t.Errorf("version output = %q, want it to start with \"kiln \"", out.String())
	}
}

func TestUnknownCommandIsAnError(t *testing.T) {
	cmd := newRootCommand()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs([]string{"nosuch"})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("error = %v, want one naming the unknown command", err)
	}
}

// TestEveryCommandHasAnExample walks the command tree: --help must teach.
func TestEveryCommandHasAnExample(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" || c.HasParent() && c.Parent().Name() == "completion" {
			return
		}
		if c.Example == "" {
			t.Errorf("kiln %s has no example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCommand())
}

func TestProgressBar(t *testing.T) {
	p := workflows.Progress{State: workflows.StateRunning,
		Phases:   []workflows.PhaseState{{Name: "base", State: workflows.StateSucceeded}, {Name: "image", State: workflows.StateRunning}},
		Flavours: []workflows.FlavourState{{State: workflows.StateSucceeded}, {State: workflows.StateRunning}, {State: workflows.StateFailed}, {State: workflows.StatePending}},
	}
	if got, want := progressBar(p, 8), "[####....] 2/4 flavours  phase image  Running"; got != want {
		t.Errorf("bar = %q, want %q", got, want)
	}
}
