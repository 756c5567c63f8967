package flavour

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/test/reference"
)

func names(fl []Flavour) []string {
	var out []string
	for _, f := range fl {
		out = append(out, f.Name())
	}
	return out
}

func mustParse(t *testing.T, path string) *File {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return f
}

func TestName(t *testing.T) {
	tests := []struct {
		f    Flavour
		want string
	}{
		{Flavour{Platform: "aws", Arch: "amd64", Features: []string{"_prod", "gardener"}}, "aws-gardener_prod-amd64"},
		{Flavour{Platform: "metal", Arch: "amd64"}, "metal-amd64"},
		{Flavour{Platform: "kvm", Arch: "arm64", Features: []string{"_prod"}}, "kvm-_prod-arm64"},
		{Flavour{Platform: "aws", Arch: "amd64", Features: []string{"_prod", "_trustedboot", "gardener"}}, "aws-gardener_prod_trustedboot-amd64"},
		{Flavour{Platform: "azure", Arch: "amd64", Features: []string{"chost", "gardener"}}, "azure-chost-gardener-amd64"},
		// Name does not sort: a hand-built 2021 flavour keeps its order.
		{Flavour{Platform: "azure", Arch: "amd64", Features: []string{"gardener", "chost"}}, "azure-gardener-chost-amd64"},
		{Flavour{Platform: "azure", Arch: "amd64", Features: []string{"chost", "gardener"}, Format: Format2021}, "azure-chost-gardener-amd64"},
		// The 2024 rule (gl-flavors-parse): file order, "--" -> "-", "-_" -> "_".
		{Flavour{Platform: "aws", Arch: "amd64", Features: []string{"gardener", "_prod", "_trustedboot", "_tpm2"}, Format: Format2024}, "aws-gardener_prod_trustedboot_tpm2-amd64"},
		{Flavour{Platform: "aws", Arch: "amd64", Features: []string{"_prod", "gardener"}, Format: Format2024}, "aws_prod-gardener-amd64"},
		{Flavour{Platform: "metal", Arch: "amd64", Features: []string{"_pxe"}, Format: Format2024}, "metal_pxe-amd64"},
		{Flavour{Platform: "kvm", Arch: "arm64", Features: []string{"_prod"}, Format: Format2024}, "kvm_prod-arm64"},
		{Flavour{Platform: "container", Arch: "amd64", Format: Format2024}, "container-amd64"},
		{Flavour{Platform: "container", Arch: "amd64", Features: []string{}, Format: Format2024}, "container-amd64"},
		{Flavour{Platform: "azure", Arch: "amd64", Features: []string{"gardener", "chost"}, Format: Format2024}, "azure-gardener-chost-amd64"},
		{Flavour{Platform: "x", Arch: "amd64", Features: []string{"_a", "_b"}, Format: Format2024}, "x_a_b-amd64"},
		// Python's str.replace: "x---a-amd64" -> "x--a-amd64" (one pass, non-overlapping), no "-_".
		{Flavour{Platform: "x", Arch: "amd64", Features: []string{"", "a"}, Format: Format2024}, "x--a-amd64"},
		// every "--": "x--a--b-amd64" -> "x-a-b-amd64"
		{Flavour{Platform: "x", Arch: "amd64", Features: []string{"a-", "b"}, Format: Format2024}, "x-a-b-amd64"},
		// "x---_a-amd64" -> "x--_a-amd64" -> "x-_a-amd64": each replace once, "--" first.
		{Flavour{Platform: "x", Arch: "amd64", Features: []string{"-_a"}, Format: Format2024}, "x-_a-amd64"},
	}
	for _, tt := range tests {
		if got := tt.f.Name(); got != tt.want {
			t.Errorf("Name(%+v) = %q, want %q", tt.f, got, tt.want)
		}
	}
}

func TestParse2021Fixture(t *testing.T) {
	f := mustParse(t, "testdata/sets-2021.yaml")
	if f.Format != Format2021 || !slices.Equal(f.SetNames(), []string{"all", "nightly"}) {
		t.Fatalf("format %s sets %v", f.Format, f.SetNames())
	}
	all, err := f.Set("all")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"aws-gardener_prod-amd64", "aws-gardener_prod-arm64",
		"gcp-gardener_prod-amd64", "gcp-gardener_prod-arm64",
		"metal-amd64", "metal-gardener_prod-amd64",
	}
	if got := names(all); !slices.Equal(got, want) {
		t.Errorf("all = %v, want %v", got, want)
	}
	nightly, _ := f.Set("nightly")
	if got := names(nightly); !slices.Equal(got, []string{"kvm-amd64"}) {
		t.Errorf("nightly = %v", got)
	}
	if _, err := f.Set("weekly"); err == nil || !strings.Contains(err.Error(), "all, nightly") {
		t.Errorf("unknown set: %v, want an error listing the sets", err)
	}
}

func TestParse2024Fixture(t *testing.T) {
	f := mustParse(t, "testdata/targets-2024.yaml")
	all, _ := f.Set("")
	if got := names(all); !slices.Equal(got, []string{"ali-gardener_prod-arm64", "aws-gardener_prod-amd64", "aws-gardener_prod_trustedboot-arm64"}) {
		t.Errorf("flavours = %v", got)
	}
	b := Buildable(all)
	if len(b) != 2 || b[1].Test || !b[0].Publish {
		t.Errorf("buildable = %+v", b)
	}
}

func TestReference2021All(t *testing.T) {
	f := mustParse(t, reference.Path(t, "flavours-2021.yaml"))
	all, _ := f.Set("all")
	if len(all) != 11 {
		t.Errorf("all: %d flavours, want 11: %v", len(all), names(all))
	}
	testing, _ := f.Set("testing")
	if len(testing) != 7 {
		t.Errorf("testing: %d flavours, want 7", len(testing))
	}
	for _, n := range []string{"metal-amd64", "kvm-chost_prod-amd64", "ali-gardener_prod-amd64"} {
		if !slices.Contains(names(all), n) {
			t.Errorf("all lacks %s: %v", n, names(all))
		}
	}
}

func TestReference2024Buildable(t *testing.T) {
	f := mustParse(t, reference.Path(t, "flavors-2024.yaml"))
	all, _ := f.Set("all")
	if n := len(Buildable(all)); n != 55 {
		t.Errorf("%d buildable flavours, want 55", n)
	}
}

func TestExpansionIsDeterministic(t *testing.T) {
	data, err := os.ReadFile("testdata/sets-2021.yaml")
	if err != nil {
		t.Fatal(err)
	}
	a, _ := Parse(data)
	for range 20 {
		b, err := Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		x, _ := a.Set("all")
		y, _ := b.Set("all")
		if !slices.Equal(names(x), names(y)) {
			t.Fatalf("expansion differs: %v vs %v", names(x), names(y))
		}
	}
}

func TestMalformed(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"not a mapping", "- a\n- b\n", "line 1"},
		{"no known key", "flavours: []\n", "no flavour_sets"},
		{"unknown field", "flavour_sets:\n  - name: all\n    flavour_combinations:\n      - architectures: [amd64]\n        platform: [aws]\n", "line 5: field platform not found"},
		{"wrong type", "targets:\n  - name: aws\n    flavors:\n      - arch: amd64\n        build: maybe\n", "line 5"},
		{"no platforms", "flavour_sets:\n  - name: all\n    flavour_combinations:\n      - architectures: [amd64]\n", "flavour_sets[0].flavour_combinations[0].platforms"},
		{"empty arch", "targets:\n  - name: aws\n    flavors:\n      - features: [a]\n        arch: \"\"\n", "targets[0].flavors[0].arch: empty (target aws); write amd64 or arm64, or leave arch out for amd64"},
		{"duplicate 2024 name", "targets:\n  - name: aws\n    flavors:\n      - features: [gardener, _prod]\n      - features: [gardener-_prod]\n", "targets: flavour aws-gardener_prod-amd64 appears twice"},
		{"duplicate", "flavour_sets:\n  - name: all\n    flavour_combinations:\n      - {architectures: [amd64], platforms: [aws, aws]}\n", "aws-amd64 appears twice"},
		{"duplicate set", "flavour_sets:\n  - name: all\n    flavour_combinations: [{architectures: [amd64], platforms: [aws]}]\n  - name: all\n    flavour_combinations: [{architectures: [amd64], platforms: [gcp]}]\n", "defined twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
