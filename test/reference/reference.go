// Package reference finds Garden Linux's real files, which the project
// leads keep in ../shared/reference beside the checkout (read-only, and
// present in CI). Tests read them through Path: without the directory a
// test is skipped, or fails when CI is "true", so CI always runs it.
// Every test that uses them also carries a small fixture of its own, so
// the repository tests without ../shared.
package reference

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// Dir is the reference directory: ../shared/reference beside the
// checkout that holds this file.
func Dir() string {
	_, file, _, _ := runtime.Caller(0) // <checkout>/test/reference/reference.go
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "reference")
}

// Path returns the path of name (such as "flavors-2024.yaml" or
// "gardenlinux-s3-metadata") under Dir. When it is missing, t is skipped,
// or failed if the environment's CI is "true".
func Path(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(Dir(), name)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true and Garden Linux's reference file is missing: %v", err)
		}
		t.Skipf("reference file not present: %v", err)
	}
	return p
}
