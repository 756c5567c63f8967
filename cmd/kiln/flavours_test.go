package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kiln-build/kiln/test/reference"
)

const (
	flavours2024Fixture = "../../workflows/flavour/testdata/flavors-2024.yaml"
	flavours2021Fixture = "../../workflows/flavour/testdata/sets-2021.yaml"
)

// runKiln runs the kiln command line with args and returns its output.
func runKiln(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func lines(s ...string) string { return strings.Join(s, "\n") + "\n" }

// TestFlavoursExpandOutput runs kiln flavours expand on the in-repo
// fixtures. The expected output is gl-flavors-parse's for the same options
// (with --build where kiln's default, build-only, applies).
func TestFlavoursExpandOutput(t *testing.T) {
	f24, f21 := flavours2024Fixture, flavours2021Fixture
	// unbuilt: flavours with test, test-platform and publish but not build,
	// which --test and the others print and the default does not.
	unbuilt := filepath.Join(t.TempDir(), "flavors.yaml")
	require.NoError(t, os.WriteFile(unbuilt, []byte("targets:\n  - name: gcp\n    flavors:\n      - features: [gardener, _prod]\n        test: true\n        test-platform: true\n        publish: true\n      - features: [_prod]\n        arch: arm64\n        build: true\n"), 0o644))
	built := lines("aws-gardener_prod_trustedboot_tpm2-amd64", "aws-gardener_prod_trustedboot_tpm2-arm64", "aws_prod-gardener-amd64",
		"bare-python-amd64", "container-amd64", "container-arm64", "kvm_prod-arm64", "metal_pxe-amd64", "metal_pxe-arm64")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"default is build-only", []string{"-f", f24}, built},
		{"--build", []string{"-f", f24, "--build"}, built},
		{"--all", []string{"-f", f24, "--all"}, lines("aws-gardener_prod-arm64", "aws-gardener_prod_trustedboot_tpm2-amd64",
			"aws-gardener_prod_trustedboot_tpm2-arm64", "aws_prod-gardener-amd64", "bare-python-amd64", "container-amd64", "container-arm64",
			"kvm_prod-arm64", "metal_pxe-amd64", "metal_pxe-arm64")},
		{"--test does not imply build", []string{"-f", f24, "--test"}, lines("aws-gardener_prod_trustedboot_tpm2-amd64",
			"aws-gardener_prod_trustedboot_tpm2-arm64", "aws_prod-gardener-amd64", "bare-python-amd64", "container-amd64", "kvm_prod-arm64", "metal_pxe-arm64")},
		{"--test-platform", []string{"-f", f24, "--test-platform"}, lines("aws-gardener_prod_trustedboot_tpm2-amd64", "kvm_prod-arm64")},
		{"--publish", []string{"-f", f24, "--publish"}, lines("aws-gardener_prod_trustedboot_tpm2-amd64", "aws-gardener_prod_trustedboot_tpm2-arm64",
			"metal_pxe-amd64", "metal_pxe-arm64")},
		{"--publish --test-platform", []string{"-f", f24, "--publish", "--test-platform"}, lines("aws-gardener_prod_trustedboot_tpm2-amd64")},
		{"--category, build-only", []string{"-f", f24, "--category", "public-cloud"}, lines("aws-gardener_prod_trustedboot_tpm2-amd64",
			"aws-gardener_prod_trustedboot_tpm2-arm64", "aws_prod-gardener-amd64")},
		{"--category --all", []string{"-f", f24, "--all", "--category", "public-cloud"}, lines("aws-gardener_prod-arm64",
			"aws-gardener_prod_trustedboot_tpm2-amd64", "aws-gardener_prod_trustedboot_tpm2-arm64", "aws_prod-gardener-amd64")},
		{"--category repeated", []string{"-f", f24, "--category", "baremetal", "--category", "container"}, lines("container-amd64", "container-arm64",
			"metal_pxe-amd64", "metal_pxe-arm64")},
		{"--exclude-category repeated", []string{"-f", f24, "--exclude-category", "public-cloud", "--exclude-category", "container"},
			lines("bare-python-amd64", "kvm_prod-arm64", "metal_pxe-amd64", "metal_pxe-arm64")},
		{"--exclude", []string{"-f", f24, "--exclude", "*-arm64"}, lines("aws-gardener_prod_trustedboot_tpm2-amd64", "aws_prod-gardener-amd64",
			"bare-python-amd64", "container-amd64", "metal_pxe-amd64")},
		{"--exclude repeated", []string{"-f", f24, "--exclude", "*-arm64", "--exclude", "aws*"}, lines("bare-python-amd64", "container-amd64", "metal_pxe-amd64")},
		{"--include-only", []string{"-f", f24, "--include-only", "aws-*"}, lines("aws-gardener_prod_trustedboot_tpm2-amd64", "aws-gardener_prod_trustedboot_tpm2-arm64")},
		{"--include-only repeated", []string{"-f", f24, "--include-only", "aws_*", "--include-only", "kvm*"}, lines("aws_prod-gardener-amd64", "kvm_prod-arm64")},
		{"a pattern with a comma is one pattern", []string{"-f", f24, "--include-only", "kvm*,metal*"}, ""},
		{"--no-arch dedupes", []string{"-f", f24, "--no-arch"}, lines("aws-gardener_prod_trustedboot_tpm2", "aws_prod-gardener", "bare-python",
			"container", "kvm_prod", "metal_pxe")},
		{"nothing selected", []string{"-f", f24, "--category", "none"}, ""},
		{"unbuilt, default", []string{"-f", unbuilt}, lines("gcp_prod-arm64")},
		{"unbuilt, --test", []string{"-f", unbuilt, "--test"}, lines("gcp-gardener_prod-amd64")},
		{"unbuilt, --test-platform", []string{"-f", unbuilt, "--test-platform"}, lines("gcp-gardener_prod-amd64")},
		{"unbuilt, --publish", []string{"-f", unbuilt, "--publish"}, lines("gcp-gardener_prod-amd64")},
		{"unbuilt, --build --publish", []string{"-f", unbuilt, "--build", "--publish"}, ""},
		{"unbuilt, --all", []string{"-f", unbuilt, "--all"}, lines("gcp-gardener_prod-amd64", "gcp_prod-arm64")},
		{"--json-by-arch", []string{"-f", f24, "--publish", "--json-by-arch"}, `{
  "amd64": [
    "aws-gardener_prod_trustedboot_tpm2-amd64",
    "metal_pxe-amd64"
  ],
  "arm64": [
    "aws-gardener_prod_trustedboot_tpm2-arm64",
    "metal_pxe-arm64"
  ]
}
`},
		{"--json-by-arch --no-arch", []string{"-f", f24, "--json-by-arch", "--no-arch"}, `{
  "amd64": [
    "aws-gardener_prod_trustedboot_tpm2",
    "aws_prod-gardener",
    "bare-python",
    "container",
    "metal_pxe"
  ],
  "arm64": [
    "aws-gardener_prod_trustedboot_tpm2",
    "container",
    "kvm_prod",
    "metal_pxe"
  ]
}
`},
		{"--json-by-arch, nothing selected", []string{"-f", f24, "--category", "none", "--json-by-arch"}, "{}\n"},
		{"-o json", []string{"-f", f24, "--include-only", "kvm*", "-o", "json"}, `[
  {
    "name": "kvm_prod-arm64",
    "platform": "kvm",
    "arch": "arm64",
    "features": [
      "_prod"
    ],
    "build": true,
    "test": true,
    "testPlatform": true,
    "publish": false,
    "category": "hypervisor",
    "format": "targets"
  }
]
`},
		{"-o json, nothing selected", []string{"-f", f24, "--category", "none", "-o", "json"}, "[]\n"},
		// The 2021 format keeps its names and its JSON shape.
		{"2021 set", []string{"-f", f21, "--set", "all"}, lines("aws-gardener_prod-amd64", "aws-gardener_prod-arm64",
			"gcp-gardener_prod-amd64", "gcp-gardener_prod-arm64", "metal-amd64", "metal-gardener_prod-amd64")},
		{"2021 other set", []string{"-f", f21, "--set", "nightly"}, lines("kvm-amd64")},
		{"2021 --no-arch", []string{"-f", f21, "--no-arch"}, lines("aws-gardener_prod", "gcp-gardener_prod", "metal", "metal-gardener_prod")},
		{"2021 --exclude", []string{"-f", f21, "--exclude", "*-arm64", "--exclude", "metal-*"}, lines("aws-gardener_prod-amd64", "gcp-gardener_prod-amd64")},
		{"2021 -o json", []string{"-f", f21, "--set", "nightly", "-o", "json"}, `[
  {
    "name": "kvm-amd64",
    "platform": "kvm",
    "arch": "amd64",
    "build": true,
    "test": true,
    "testPlatform": true,
    "publish": true
  }
]
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runKiln(t, append([]string{"flavours", "expand"}, tt.args...)...)
			require.NoError(t, err)
			assert.Equal(t, tt.want, out)
		})
	}
}

// TestFlavoursExpandReference checks the command on Garden Linux's own
// flavors.yaml: --all prints exactly the flavours of the expected TSV, and
// a filtered --json-by-arch is gl-flavors-parse's.
func TestFlavoursExpandReference(t *testing.T) {
	yamlPath := reference.Path(t, "flavors-2024.yaml")
	fh, err := os.Open(reference.Path(t, "flavors-2024.expected.tsv"))
	require.NoError(t, err)
	defer fh.Close()
	var want []string
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
			name, _, _ := strings.Cut(l, "\t")
			want = append(want, name)
		}
	}
	require.NoError(t, sc.Err())
	slices.Sort(want)
	require.Len(t, want, 56)

	out, err := runKiln(t, "flavours", "expand", "-f", yamlPath, "--all")
	require.NoError(t, err)
	assert.Equal(t, lines(want...), out)

	out, err = runKiln(t, "flavours", "expand", "-f", yamlPath)
	require.NoError(t, err)
	assert.Len(t, strings.Split(strings.TrimSuffix(out, "\n"), "\n"), 55, "build-only by default")

	out, err = runKiln(t, "flavours", "expand", "-f", yamlPath, "--test-platform")
	require.NoError(t, err)
	assert.Len(t, strings.Split(strings.TrimSuffix(out, "\n"), "\n"), 14)

	out, err = runKiln(t, "flavours", "expand", "-f", yamlPath, "--publish", "--test-platform", "--json-by-arch")
	require.NoError(t, err)
	assert.Equal(t, `{
  "amd64": [
    "ali-gardener_prod-amd64",
    "aws-gardener_prod-amd64",
    "aws-gardener_prod_trustedboot_tpm2-amd64",
    "azure-gardener_prod-amd64",
    "gcp-gardener_prod-amd64",
    "gcp-gardener_prod_trustedboot_tpm2-amd64"
  ],
  "arm64": [
    "aws-gardener_prod-arm64",
    "aws-gardener_prod_trustedboot_tpm2-arm64",
    "gcp-gardener_prod-arm64",
    "gcp-gardener_prod_trustedboot_tpm2-arm64"
  ]
}
`, out)
}

func TestFlavoursExpandErrors(t *testing.T) {
	f24, f21 := flavours2024Fixture, flavours2021Fixture
	bad := filepath.Join(t.TempDir(), "flavors.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("targets:\n  - name: aws\n    flavors:\n      - arch: amd64\n        build: maybe\n"), 0o644))
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"no file", nil, []string{`required flag(s) "file" not set`}},
		{"missing file", []string{"-f", "no/such/flavors.yaml"}, []string{"--file: open no/such/flavors.yaml", "no such file"}},
		{"malformed file", []string{"-f", bad}, []string{bad + ": ", "line 5"}},
		{"bad output", []string{"-f", f24, "-o", "yaml"}, []string{`--output "yaml": want names or json`}},
		{"--all with a flag filter", []string{"-f", f24, "--all", "--test"}, []string{"--all prints every flavour", "drop --all, or drop the flag filters"}},
		{"--json-by-arch with -o json", []string{"-f", f24, "--json-by-arch", "-o", "json"}, []string{"--json-by-arch and -o json", "give one of them"}},
		{"--no-arch with -o json", []string{"-f", f24, "--no-arch", "-o", "json"}, []string{"--no-arch", "-o json", "drop --no-arch"}},
		{"bad --exclude", []string{"-f", f24, "--exclude", "*-arm64", "--exclude", "aws-["}, []string{`--exclude pattern "aws-[": malformed wildcard`, "every [ needs its ]"}},
		{"bad --include-only", []string{"-f", f24, "--include-only", "[z-"}, []string{`--include-only pattern "[z-": malformed wildcard`}},
		{"--category on 2021", []string{"-f", f21, "--category", "public-cloud"}, []string{"--category: ", "2021 format (flavour_sets), which has no categories", "--set"}},
		{"--exclude-category on 2021", []string{"-f", f21, "--exclude-category", "container"}, []string{"--exclude-category: ", "no categories"}},
		{"unknown 2021 set", []string{"-f", f21, "--set", "weekly"}, []string{`--set: flavour set "weekly" not found; the file has all, nightly`}},
		{"--set on 2024", []string{"-f", f24, "--set", "dev"}, []string{`--set "dev": the 2024 format has one set, all`}},
		{"arguments", []string{"-f", f24, "aws"}, []string{`unknown command "aws"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runKiln(t, append([]string{"flavours", "expand"}, tt.args...)...)
			require.Error(t, err)
			for _, w := range tt.want {
				assert.Contains(t, err.Error(), w)
			}
			assert.Empty(t, out)
		})
	}
}

// TestFlavoursExpandHelp: --help teaches the naming rule with a worked
// example and shows every option in an example.
func TestFlavoursExpandHelp(t *testing.T) {
	out, err := runKiln(t, "flavours", "expand", "--help")
	require.NoError(t, err)
	for _, w := range []string{
		"in the file's order", `every "--" becomes "-"`, `every "-_"`,
		"[gardener, _prod,\n_trustedboot, _tpm2]", "aws-gardener_prod_trustedboot_tpm2-amd64", "metal_pxe-amd64", "aws_prod-gardener-amd64",
		"build: true", "--all",
	} {
		assert.Contains(t, out, w)
	}
	var examples []string
	for _, l := range strings.Split(newFlavoursExpandCommand().Example, "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, "kiln flavours expand ") {
			examples = append(examples, l+" ")
		}
	}
	for _, opt := range []string{"--set", "--all", "--build", "--test", "--test-platform", "--publish", "--category", "--exclude-category",
		"--exclude", "--include-only", "--no-arch", "--json-by-arch", "-o json"} {
		assert.True(t, slices.ContainsFunc(examples, func(e string) bool { return strings.Contains(e, " "+opt+" ") }), "no example uses %s", opt)
		assert.Contains(t, out, strings.Fields(opt)[0], "--help lists %s", opt)
	}
}
