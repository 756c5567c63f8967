package flavour

import (
	"fmt"
	"path"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/kiln-build/kiln/test/reference"
)

const fixture2024 = "testdata/flavors-2024.yaml"

// all2024 returns every flavour of the fixture, or of the reference file.
func all2024(t *testing.T, ref bool) []Flavour {
	t.Helper()
	p := fixture2024
	if ref {
		p = reference.Path(t, "flavors-2024.yaml")
	}
	all, err := mustParse(t, p).Set("all")
	require.NoError(t, err)
	return all
}

// TestSelect checks each option against gl-flavors-parse: the expected
// names are what gl-flavors-parse prints for the same options (its
// Parser.filter: categories per target, flags ANDed, fnmatch --exclude and
// --include-only on the whole name).
func TestSelect(t *testing.T) {
	tests := []struct {
		name  string
		ref   bool // the reference file, else the fixture
		sel   Selection
		want  []string // nil: check count only
		count int
	}{
		{name: "zero selection keeps all", sel: Selection{}, count: 10},
		{name: "build", sel: Selection{Build: true}, count: 9},
		{name: "test", sel: Selection{Test: true}, want: []string{
			"aws-gardener_prod_trustedboot_tpm2-amd64", "aws-gardener_prod_trustedboot_tpm2-arm64", "aws_prod-gardener-amd64",
			"bare-python-amd64", "container-amd64", "kvm_prod-arm64", "metal_pxe-arm64"}},
		{name: "test-platform", sel: Selection{TestPlatform: true}, want: []string{"aws-gardener_prod_trustedboot_tpm2-amd64", "kvm_prod-arm64"}},
		{name: "publish", sel: Selection{Publish: true}, want: []string{
			"aws-gardener_prod_trustedboot_tpm2-amd64", "aws-gardener_prod_trustedboot_tpm2-arm64", "metal_pxe-amd64", "metal_pxe-arm64"}},
		{name: "flags combine with AND", sel: Selection{Publish: true, TestPlatform: true}, want: []string{"aws-gardener_prod_trustedboot_tpm2-amd64"}},
		{name: "category", sel: Selection{Categories: []string{"public-cloud"}}, want: []string{
			"aws-gardener_prod-arm64", "aws-gardener_prod_trustedboot_tpm2-amd64", "aws-gardener_prod_trustedboot_tpm2-arm64", "aws_prod-gardener-amd64"}},
		{name: "two categories", sel: Selection{Categories: []string{"baremetal", "container"}}, want: []string{
			"container-amd64", "container-arm64", "metal_pxe-amd64", "metal_pxe-arm64"}},
		{name: "empty category is a target without one", sel: Selection{Categories: []string{""}}, want: []string{"bare-python-amd64"}},
		{name: "unknown category", sel: Selection{Categories: []string{"cloud"}}, want: []string{}},
		{name: "exclude category", sel: Selection{ExcludeCategories: []string{"public-cloud"}}, want: []string{
			"bare-python-amd64", "container-amd64", "container-arm64", "kvm_prod-arm64", "metal_pxe-amd64", "metal_pxe-arm64"}},
		{name: "category and its exclusion", sel: Selection{Categories: []string{"public-cloud"}, ExcludeCategories: []string{"public-cloud"}}, want: []string{}},
		{name: "exclude arm64", sel: Selection{Exclude: []string{"*-arm64"}}, want: []string{
			"aws-gardener_prod_trustedboot_tpm2-amd64", "aws_prod-gardener-amd64", "bare-python-amd64", "container-amd64", "metal_pxe-amd64"}},
		{name: "exclude, any pattern", sel: Selection{Exclude: []string{"*-arm64", "aws*", "?are-*"}}, want: []string{"container-amd64", "metal_pxe-amd64"}},
		// aws_prod-gardener-amd64 does not start with "aws-"
		{name: "include-only aws-*", sel: Selection{IncludeOnly: []string{"aws-*"}}, want: []string{
			"aws-gardener_prod-arm64", "aws-gardener_prod_trustedboot_tpm2-amd64", "aws-gardener_prod_trustedboot_tpm2-arm64"}},
		{name: "include-only, some pattern", sel: Selection{IncludeOnly: []string{"aws_*", "kvm*"}}, want: []string{"aws_prod-gardener-amd64", "kvm_prod-arm64"}},
		{name: "include-only fnmatch negation", sel: Selection{IncludeOnly: []string{"[!a]*-arm64"}}, want: []string{"container-arm64", "kvm_prod-arm64", "metal_pxe-arm64"}},
		{name: "include-only and exclude", sel: Selection{IncludeOnly: []string{"*_prod*"}, Exclude: []string{"kvm*"}}, want: []string{
			"aws-gardener_prod-arm64", "aws-gardener_prod_trustedboot_tpm2-amd64", "aws-gardener_prod_trustedboot_tpm2-arm64", "aws_prod-gardener-amd64"}},
		{name: "build, exclude, category", sel: Selection{Build: true, Exclude: []string{"*_trustedboot*"}, Categories: []string{"hypervisor"}}, want: []string{"kvm_prod-arm64"}},

		{name: "reference test-platform", ref: true, sel: Selection{TestPlatform: true}, count: 14},
		{name: "reference publish", ref: true, sel: Selection{Publish: true}, count: 35},
		{name: "reference build", ref: true, sel: Selection{Build: true}, count: 55},
		{name: "reference test", ref: true, sel: Selection{Test: true}, count: 55},
		{name: "reference publish and test-platform", ref: true, sel: Selection{Publish: true, TestPlatform: true}, want: []string{
			"ali-gardener_prod-amd64", "aws-gardener_prod-amd64", "aws-gardener_prod-arm64", "aws-gardener_prod_trustedboot_tpm2-amd64",
			"aws-gardener_prod_trustedboot_tpm2-arm64", "azure-gardener_prod-amd64", "gcp-gardener_prod-amd64", "gcp-gardener_prod-arm64",
			"gcp-gardener_prod_trustedboot_tpm2-amd64", "gcp-gardener_prod_trustedboot_tpm2-arm64"}},
		{name: "reference category", ref: true, sel: Selection{Categories: []string{"public-cloud"}}, count: 20},
		{name: "reference two categories", ref: true, sel: Selection{Categories: []string{"baremetal", "container"}}, count: 24},
		{name: "reference exclude category", ref: true, sel: Selection{ExcludeCategories: []string{"public-cloud"}}, count: 36},
		{name: "reference exclude arm64", ref: true, sel: Selection{Exclude: []string{"*-arm64"}}, count: 28},
		{name: "reference include-only aws-*", ref: true, sel: Selection{IncludeOnly: []string{"aws-*"}}, want: []string{
			"aws-gardener_prod-amd64", "aws-gardener_prod-arm64", "aws-gardener_prod_trustedboot-amd64", "aws-gardener_prod_trustedboot-arm64",
			"aws-gardener_prod_trustedboot_tpm2-amd64", "aws-gardener_prod_trustedboot_tpm2-arm64"}},
		{name: "reference build, exclude, category", ref: true, sel: Selection{Build: true, Exclude: []string{"*_trustedboot*"}, Categories: []string{"hypervisor"}}, want: []string{
			"firecracker-gardener_prod-amd64", "firecracker-gardener_prod-arm64", "kvm-gardener_prod-amd64", "kvm-gardener_prod-arm64",
			"openstack-gardener_prod-amd64", "openstack-gardener_prod-arm64", "vmware-gardener_prod-amd64", "vmware-gardener_prod-arm64"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			all := all2024(t, tt.ref)
			got, err := Select(all, tt.sel)
			require.NoError(t, err)
			if tt.want == nil {
				assert.Len(t, got, tt.count, "%v", names(got))
				return
			}
			assert.Equal(t, tt.want, append([]string{}, names(got)...)) // none: [], not nil
		})
	}
}

func TestSelectKeepsOrderAndInput(t *testing.T) {
	all := all2024(t, false)
	before := names(all)
	got, err := Select(all, Selection{Exclude: []string{"container-*"}})
	require.NoError(t, err)
	assert.Equal(t, before, names(all), "input unchanged")
	assert.Equal(t, append(append([]string{}, before[:5]...), before[7:]...), names(got))
}

func TestSelectBadPattern(t *testing.T) {
	tests := []struct {
		name, field, pattern string
		sel                  Selection
	}{
		{"exclude", "exclude", "aws-[", Selection{Exclude: []string{"*-arm64", "aws-["}}},
		{"include-only", "include-only", "[z-", Selection{IncludeOnly: []string{"[z-"}}},
		{"trailing escape", "exclude", `aws\`, Selection{Exclude: []string{`aws\`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, fl := range [][]Flavour{nil, all2024(t, false)} { // reported with no flavour to match too
				_, err := Select(fl, tt.sel)
				var pe *PatternError
				require.ErrorAs(t, err, &pe)
				assert.Equal(t, tt.field, pe.Field)
				assert.Equal(t, tt.pattern, pe.Pattern)
				assert.ErrorIs(t, err, path.ErrBadPattern)
				assert.Contains(t, err.Error(), fmt.Sprintf("%s pattern %q: malformed wildcard", tt.field, tt.pattern))
			}
		})
	}
}

func TestFnmatchNegation(t *testing.T) {
	tests := []struct{ in, want string }{
		{"aws-*", "aws-*"},
		{"[!a]*", "[^a]*"},
		{"x[!ab]y[!c]", "x[^ab]y[^c]"},
		{`\[!a]`, `\[!a]`}, // an escaped [ opens no class
		{"[a!]", "[a!]"},   // ! not first in the class
		{"a!b", "a!b"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, fnmatchNegation(tt.in), tt.in)
	}
}

func TestNoArch(t *testing.T) {
	tests := []struct {
		f    Flavour
		want string
	}{
		{Flavour{Platform: "aws", Arch: "amd64", Features: []string{"gardener", "_prod"}, Format: Format2024}, "aws-gardener_prod"},
		{Flavour{Platform: "metal", Arch: "arm64", Features: []string{"_pxe"}, Format: Format2024}, "metal_pxe"},
		{Flavour{Platform: "container", Arch: "amd64", Format: Format2024}, "container"},
		{Flavour{Platform: "kvm", Arch: "amd64", Features: []string{"_prod"}}, "kvm-_prod"}, // 2021 name
		// like Python's combination.replace(f"-{arch}", ""): every occurrence
		{Flavour{Platform: "kvm", Arch: "amd64", Features: []string{"amd64x"}, Format: Format2024}, "kvmx"},
		{Flavour{Platform: "kvm", Arch: "amd64", Features: []string{"arm64"}, Format: Format2024}, "kvm-arm64"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, NoArch(tt.f), tt.f.Name())
	}
}

func TestByArch(t *testing.T) {
	tests := []struct {
		name   string
		ref    bool
		sel    Selection
		noArch bool
		want   map[string][]string
	}{
		{name: "all", want: map[string][]string{
			"amd64": {"aws-gardener_prod_trustedboot_tpm2-amd64", "aws_prod-gardener-amd64", "bare-python-amd64", "container-amd64", "metal_pxe-amd64"},
			"arm64": {"aws-gardener_prod-arm64", "aws-gardener_prod_trustedboot_tpm2-arm64", "container-arm64", "kvm_prod-arm64", "metal_pxe-arm64"},
		}},
		{name: "publish, no arch", sel: Selection{Publish: true}, noArch: true, want: map[string][]string{
			"amd64": {"aws-gardener_prod_trustedboot_tpm2", "metal_pxe"},
			"arm64": {"aws-gardener_prod_trustedboot_tpm2", "metal_pxe"},
		}},
		{name: "one arch", sel: Selection{TestPlatform: true}, want: map[string][]string{
			"amd64": {"aws-gardener_prod_trustedboot_tpm2-amd64"},
			"arm64": {"kvm_prod-arm64"},
		}},
		{name: "none", sel: Selection{Categories: []string{"cloud"}}, want: map[string][]string{}},
		{name: "reference test-platform, no arch", ref: true, sel: Selection{TestPlatform: true}, noArch: true, want: map[string][]string{
			"amd64": {"ali-gardener_prod", "aws-gardener_prod", "aws-gardener_prod_trustedboot", "aws-gardener_prod_trustedboot_tpm2",
				"azure-gardener_prod", "gcp-gardener_prod", "gcp-gardener_prod_trustedboot", "gcp-gardener_prod_trustedboot_tpm2"},
			"arm64": {"aws-gardener_prod", "aws-gardener_prod_trustedboot", "aws-gardener_prod_trustedboot_tpm2",
				"gcp-gardener_prod", "gcp-gardener_prod_trustedboot", "gcp-gardener_prod_trustedboot_tpm2"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fl, err := Select(all2024(t, tt.ref), tt.sel)
			require.NoError(t, err)
			assert.Equal(t, tt.want, ByArch(fl, tt.noArch))
		})
	}
}

// TestByArchDedupes: ByArch sorts, and with noArch, names that differ only in an arch
// substring collapse within their arch, as gl-flavors-parse's set does.
func TestByArchDedupes(t *testing.T) {
	fl := []Flavour{ // not sorted: ByArch sorts
		{Platform: "kvm", Arch: "amd64", Features: []string{"x-amd64"}, Format: Format2024},
		{Platform: "kvm", Arch: "arm64", Features: []string{"x"}, Format: Format2024},
		{Platform: "kvm", Arch: "amd64", Features: []string{"x"}, Format: Format2024},
	}
	assert.Equal(t, map[string][]string{"amd64": {"kvm-x"}, "arm64": {"kvm-x"}}, ByArch(fl, true))
	assert.Equal(t, map[string][]string{"amd64": {"kvm-x-amd64", "kvm-x-amd64-amd64"}, "arm64": {"kvm-x-arm64"}}, ByArch(fl, false))
}
