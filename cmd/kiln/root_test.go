package main

import (
	"bytes"
	"strings"
	"testing"
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
