package flavour

import (
	"bufio"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kiln-build/kiln/test/reference"
)

// flags are a flavour's four 2024 flags.
type flags struct{ Build, Test, TestPlatform, Publish bool }

func flagsOf(f Flavour) flags { return flags{f.Build, f.Test, f.TestPlatform, f.Publish} }

// readExpected reads a flavors-2024.expected.tsv: per line a name, a tab
// and the flags it sets, a comma list of build, test, test-platform and
// publish (empty when none); "#" lines are comments.
func readExpected(t *testing.T, path string) map[string]flags {
	t.Helper()
	fh, err := os.Open(path)
	require.NoError(t, err)
	defer fh.Close()
	want := map[string]flags{}
	sc := bufio.NewScanner(fh)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, list, ok := strings.Cut(line, "\t")
		require.True(t, ok, "%s:%d: no tab in %q", path, n, line)
		require.NotContains(t, want, name, "%s:%d: %s listed twice", path, n, name)
		var fl flags
		for _, x := range strings.Split(list, ",") {
			switch x {
			case "":
			case "build":
				fl.Build = true
			case "test":
				fl.Test = true
			case "test-platform":
				fl.TestPlatform = true
			case "publish":
				fl.Publish = true
			default:
				t.Fatalf("%s:%d: unknown flag %q", path, n, x)
			}
		}
		want[name] = fl
	}
	require.NoError(t, sc.Err())
	return want
}

// TestExpected2024 checks every line of an expected.tsv against the parsed
// file: the same set of names (every flavour, as --all prints them), the
// same four flags each, and the count; and that each flag filter of Select
// keeps exactly the lines that set that flag.
func TestExpected2024(t *testing.T) {
	tests := []struct {
		name, yaml, tsv string
		reference       bool
		count           int
	}{
		{"fixture", "testdata/flavors-2024.yaml", "testdata/flavors-2024.expected.tsv", false, 10},
		{"reference", "flavors-2024.yaml", "flavors-2024.expected.tsv", true, 56},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yamlPath, tsvPath := tt.yaml, tt.tsv
			if tt.reference {
				yamlPath, tsvPath = reference.Path(t, tt.yaml), reference.Path(t, tt.tsv)
			}
			want := readExpected(t, tsvPath)
			require.Len(t, want, tt.count, "lines of %s", tsvPath)
			f := mustParse(t, yamlPath)
			require.Equal(t, Format2024, f.Format)
			all, err := f.Set("all")
			require.NoError(t, err)
			require.Len(t, all, tt.count)
			got := map[string]flags{}
			for _, fl := range all {
				assert.Equal(t, Format2024, fl.Format, fl.Name())
				got[fl.Name()] = flagsOf(fl)
			}
			assert.Equal(t, want, got)
			assert.True(t, slices.IsSorted(names(all)), "sorted by name: %v", names(all))

			for _, flag := range []struct {
				name string
				sel  Selection
				has  func(flags) bool
			}{
				{"build", Selection{Build: true}, func(f flags) bool { return f.Build }},
				{"test", Selection{Test: true}, func(f flags) bool { return f.Test }},
				{"test-platform", Selection{TestPlatform: true}, func(f flags) bool { return f.TestPlatform }},
				{"publish", Selection{Publish: true}, func(f flags) bool { return f.Publish }},
			} {
				var wantNames []string
				for n, fl := range want {
					if flag.has(fl) {
						wantNames = append(wantNames, n)
					}
				}
				slices.Sort(wantNames)
				sel, err := Select(all, flag.sel)
				require.NoError(t, err)
				assert.Equal(t, wantNames, names(sel), "--%s", flag.name)
			}
		})
	}
}

// TestFixture2024Fields checks what the fixture's flavours hold beyond
// their names: features in file order, the default arch, missing flags,
// categories.
func TestFixture2024Fields(t *testing.T) {
	f := mustParse(t, "testdata/flavors-2024.yaml")
	all, err := f.Set("")
	require.NoError(t, err)
	byName := map[string]Flavour{}
	for _, fl := range all {
		byName[fl.Name()] = fl
	}
	tests := []struct {
		name string
		want Flavour
	}{
		{"aws-gardener_prod_trustedboot_tpm2-amd64", Flavour{Platform: "aws", Arch: "amd64", Features: []string{"gardener", "_prod", "_trustedboot", "_tpm2"},
			Build: true, Test: true, TestPlatform: true, Publish: true, Category: "public-cloud", Format: Format2024}},
		// an element after a flag; no arch in the file: amd64
		{"aws_prod-gardener-amd64", Flavour{Platform: "aws", Arch: "amd64", Features: []string{"_prod", "gardener"},
			Build: true, Test: true, Category: "public-cloud", Format: Format2024}},
		// no flags in the file: all false
		{"aws-gardener_prod-arm64", Flavour{Platform: "aws", Arch: "arm64", Features: []string{"gardener", "_prod"},
			Category: "public-cloud", Format: Format2024}},
		{"metal_pxe-amd64", Flavour{Platform: "metal", Arch: "amd64", Features: []string{"_pxe"},
			Build: true, Publish: true, Category: "baremetal", Format: Format2024}},
		{"kvm_prod-arm64", Flavour{Platform: "kvm", Arch: "arm64", Features: []string{"_prod"},
			Build: true, Test: true, TestPlatform: true, Category: "hypervisor", Format: Format2024}},
		// no features key, and features: []
		{"container-amd64", Flavour{Platform: "container", Arch: "amd64", Build: true, Test: true, Category: "container", Format: Format2024}},
		{"container-arm64", Flavour{Platform: "container", Arch: "arm64", Build: true, Category: "container", Format: Format2024}},
		// no category, no arch
		{"bare-python-amd64", Flavour{Platform: "bare", Arch: "amd64", Features: []string{"python"}, Build: true, Test: true, Format: Format2024}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := byName[tt.name]
			require.True(t, ok, "no flavour %s in %v", tt.name, names(all))
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.name, tt.want.Name())
		})
	}
}

// TestFeatureOrderIsKept: the same features in another order are another
// flavour in the 2024 format, and the 2021 rule is not applied.
func TestFeatureOrderIsKept(t *testing.T) {
	f, err := Parse([]byte("targets:\n  - name: aws\n    flavors:\n      - features: [gardener, _prod]\n      - features: [_prod, gardener]\n      - features: [chost, _prod, gardener]\n"))
	require.NoError(t, err)
	all, _ := f.Set("all")
	assert.Equal(t, []string{"aws-chost_prod-gardener-amd64", "aws-gardener_prod-amd64", "aws_prod-gardener-amd64"}, names(all))
	assert.Equal(t, []string{"chost", "_prod", "gardener"}, all[0].Features)
}
