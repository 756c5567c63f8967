package release

import (
	"reflect"
	"strings"
	"testing"
)

const (
	commit  = "75df9f401a842914563f312899ec3ce34b24515c"
	tpmBase = "aws-gardener_prod_tpm2_trustedboot-amd64-1877.3-75df9f40"
)

func TestParseCName(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want CName
		base string
	}{
		{tpmBase, CName{"aws-gardener_prod_tpm2_trustedboot", "amd64", "1877.3", "75df9f40"}, tpmBase},
		{"aws-gardener_prod-amd64", CName{Flavor: "aws-gardener_prod", Arch: "amd64"}, ""},
		{"aws-gardener_prod", CName{Flavor: "aws-gardener_prod"}, ""},
		{"aws-gardener", CName{Flavor: "aws-gardener"}, ""},
		{"metal", CName{Flavor: "metal"}, ""},
		{"metal_pxe-amd64-1877.3-75df9f40", CName{"metal_pxe", "amd64", "1877.3", "75df9f40"}, "metal_pxe-amd64-1877.3-75df9f40"},
		{"gcp-gardener_prod-arm64-1877.3-" + commit, CName{"gcp-gardener_prod", "arm64", "1877.3", commit}, "gcp-gardener_prod-arm64-1877.3-75df9f40"},
		{"kvm-amd64-today-local", CName{"kvm", "amd64", "today", "local"}, "kvm-amd64-today-local"},
		// cname.py's lazy match folds these into the flavor; the base
		// name is the same either way.
		{"kvm-gardener-cloud-amd64-1877.3-75df9f40", CName{"kvm-gardener-cloud", "amd64", "1877.3", "75df9f40"}, "kvm-gardener-cloud-amd64-1877.3-75df9f40"},
		{"kvm-gardener-cloud-arm64", CName{Flavor: "kvm-gardener-cloud", Arch: "arm64"}, ""},
	} {
		got, err := ParseCName(tt.in)
		if err != nil || got != tt.want || got.Base() != tt.base {
			t.Errorf("ParseCName(%q) = %#v (base %q), %v; want %#v (base %q)", tt.in, got, got.Base(), err, tt.want, tt.base)
		}
	}
	for _, tt := range []struct{ in, why string }{
		{"", "empty"},
		{"aws-gardener_prod-amd64-1877.3", "malformed"},  // a version without a commit
		{"aws gardener", "malformed"},                    // a blank
		{"aws-gardener_prod-x86-1877.3-75df9f40", "x86"}, // not an arch
		{"-amd64", "malformed"},
		{"aws-gardener_prod-amd64-1877.3-75DF9F40", "malformed"}, // upper-case commit
	} {
		if c, err := ParseCName(tt.in); err == nil || !strings.Contains(err.Error(), tt.why) {
			t.Errorf("ParseCName(%q) = %#v, %v; want an error saying %q", tt.in, c, err, tt.why)
		}
	}
}

const releaseFile = `ID=gardenlinux
NAME="Garden Linux"
PRETTY_NAME="Garden Linux 1877.3"
IMAGE_VERSION=1877.3
GARDENLINUX_CNAME="aws-gardener_prod_tpm2_trustedboot-amd64-1877.3-75df9f40"
GARDENLINUX_FEATURES="log,sap,ssh,_nopkg,_prod,_slim,base,server,cloud,aws,multipath,iscsi,nvme,gardener,_tpm2,_usi,_trustedboot"
GARDENLINUX_FEATURES_PLATFORMS="aws"
GARDENLINUX_FEATURES_ELEMENTS='log,sap,ssh,base,server,cloud,multipath,iscsi,nvme,gardener'
GARDENLINUX_FEATURES_FLAGS=_nopkg,_prod,_slim,_tpm2,_usi,_trustedboot
GARDENLINUX_PLATFORM=aws
GARDENLINUX_PLATFORM_VARIANT=""
GARDENLINUX_VERSION='1877.3'
GARDENLINUX_COMMIT_ID="75df9f40"
GARDENLINUX_COMMIT_ID_LONG="75df9f401a842914563f312899ec3ce34b24515c"
`

func TestParseRelease(t *testing.T) {
	r, err := ParseRelease([]byte(releaseFile))
	if err != nil {
		t.Fatal(err)
	}
	if r.CName != tpmBase || r.Version != "1877.3" || r.CommitID != "75df9f40" || r.CommitIDLong != commit ||
		r.Platform != "aws" || r.PlatformVariant != "" || len(r.Features) != 17 || r.Features[0] != "log" || r.Features[16] != "_trustedboot" ||
		len(r.FeaturesElements) != 10 || len(r.FeaturesFlags) != 6 || !reflect.DeepEqual(r.FeaturesPlatforms, []string{"aws"}) {
		t.Errorf("ParseRelease = %+v", r)
	}
	// Older tooling: a cname without version and commit, bare values, an
	// escaped quote, and only the long commit.
	r, err = ParseRelease([]byte("# comment\n\nGARDENLINUX_CNAME=aws-gardener_prod-amd64\nGARDENLINUX_VERSION = 1877.3\n" +
		"PRETTY_NAME=\"Garden \\\"Linux\\\"\"\nGARDENLINUX_COMMIT_ID_LONG=" + commit + "\n"))
	if err != nil || r.CName != "aws-gardener_prod-amd64" || r.Version != "1877.3" || r.CommitID != "" || r.CommitIDLong != commit {
		t.Errorf("ParseRelease(old) = %+v, %v", r, err)
	}
	for _, tt := range []struct{ drop, want string }{
		{"GARDENLINUX_CNAME=", "GARDENLINUX_CNAME"},
		{"GARDENLINUX_VERSION=", "GARDENLINUX_VERSION"},
		{"GARDENLINUX_COMMIT_ID", "GARDENLINUX_COMMIT_ID"}, // both commit lines
	} {
		var kept []string
		for _, l := range strings.Split(releaseFile, "\n") {
			if !strings.HasPrefix(l, tt.drop) {
				kept = append(kept, l)
			}
		}
		if _, err := ParseRelease([]byte(strings.Join(kept, "\n"))); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("without %s: %v, want an error naming %s", tt.drop, err, tt.want)
		}
	}
	for _, tt := range []struct{ file, want string }{
		{releaseFile + "GARDENLINUX_VERSION=1877.4\n", "GARDENLINUX_VERSION is given twice"},
		{releaseFile + "garbage\n", "line 15"},
		{strings.Replace(releaseFile, `COMMIT_ID="75df9f40"`, `COMMIT_ID="deadbeef"`, 1), "GARDENLINUX_COMMIT_ID deadbeef is not the start"},
		{strings.Replace(releaseFile, "-amd64-1877.3", "-amd64-1877.3-x-y z", 1), "GARDENLINUX_CNAME"},
	} {
		if _, err := ParseRelease([]byte(tt.file)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("error = %v, want %q", err, tt.want)
		}
	}
}

func TestParseRequirements(t *testing.T) {
	r, err := ParseRequirements([]byte("arch=arm64\nuefi=true\nSecureBoot = No\ntpm2=1\nfoo=bar\n"))
	if err != nil || r.Arch != "arm64" || r.UEFI == nil || !*r.UEFI || r.SecureBoot == nil || *r.SecureBoot || r.TPM2 == nil || !*r.TPM2 {
		t.Errorf("ParseRequirements = %+v, %v", r, err)
	}
	r, err = ParseRequirements([]byte("arch=amd64\n"))
	if err != nil || r.Arch != "amd64" || r.UEFI != nil || r.SecureBoot != nil || r.TPM2 != nil {
		t.Errorf("ParseRequirements(arch only) = %+v, %v", r, err)
	}
	for _, v := range []string{"on", "YES", "True"} {
		if r, err := ParseRequirements([]byte("uefi=" + v)); err != nil || !*r.UEFI {
			t.Errorf("uefi=%s: %+v, %v", v, r, err)
		}
	}
	if _, err := ParseRequirements([]byte("tpm2=maybe\n")); err == nil || !strings.Contains(err.Error(), "tpm2") {
		t.Errorf("tpm2=maybe: %v, want an error naming tpm2", err)
	}
}

func TestSameFlavour(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		same bool
	}{
		{"aws-gardener_prod_tpm2_trustedboot", "aws-gardener_prod_trustedboot_tpm2", true},
		{"aws-gardener_prod", "aws-gardener_prod", true},
		{"metal_pxe", "metal-_pxe", true},
		{"kvm-gardener-cloud", "kvm-cloud-gardener", true},
		{"gcp-gardener_prod", "aws-gardener_prod", false},                                         // platform
		{"aws-gardener_prod_tpm2_trustedboot", "aws-gardener_prod_trustedboot", false},            // missing feature
		{"aws-gardener_prod", "aws-gardener_prod_trustedboot", false},                             // extra feature
		{"aws-gardener_prod", "aws-gardener_prod_prod", false},                                    // a multiset
		{"kvm-cloud-gardener", "kvm-cloud-cloud", false},                                          // a multiset
		{"aws-gardener_prod", "aws-prod_gardener", false},                                         // flags are not features
		{"aws-gardener_prod_tpm2_trustedboot-amd64", "aws-gardener_prod_trustedboot_tpm2", false}, // an arch is a token
		{"", "", false},
	} {
		if got := SameFlavour(tt.a, tt.b); got != tt.same {
			t.Errorf("SameFlavour(%q, %q) = %v", tt.a, tt.b, got)
		}
		if got := SameFlavour(tt.b, tt.a); got != tt.same {
			t.Errorf("SameFlavour(%q, %q) = %v", tt.b, tt.a, got)
		}
	}
}

func tpmInput() ResolveInput {
	rel, err := ParseRelease([]byte(releaseFile))
	if err != nil {
		panic(err)
	}
	return ResolveInput{
		FlavourName: "aws-gardener_prod_trustedboot_tpm2-amd64", Platform: "aws", Arch: "amd64",
		Features: []string{"_prod", "_tpm2", "_trustedboot", "gardener"}, Version: "1877.3", Commit: commit,
		Release: &rel,
	}
}

func TestResolve(t *testing.T) {
	id, err := Resolve(tpmInput())
	if err != nil {
		t.Fatal(err)
	}
	want := Identity{
		Base: tpmBase, Flavor: "aws-gardener_prod_tpm2_trustedboot", Arch: "amd64", Platform: "aws", Version: "1877.3", Commit: commit,
		Modifiers:   strings.Split("log,sap,ssh,_nopkg,_prod,_slim,base,server,cloud,aws,multipath,iscsi,nvme,gardener,_tpm2,_usi,_trustedboot", ","),
		RequireUEFI: true, SecureBoot: true, TPM2: true,
	}
	if !reflect.DeepEqual(id, want) {
		t.Errorf("Resolve = %+v\nwant %+v", id, want)
	}

	// No .release file: the pipeline's cname, else the flavour name; the
	// flavors.yaml features; the .requirements file over the features.
	in := tpmInput()
	in.Release, in.CName = nil, "aws-gardener_prod_tpm2_trustedboot-amd64"
	no := false
	in.Requirements = &Requirements{Arch: "amd64", SecureBoot: &no}
	id, err = Resolve(in)
	if err != nil || id.Base != tpmBase || !reflect.DeepEqual(id.Modifiers, in.Features) || id.RequireUEFI || id.SecureBoot || !id.TPM2 {
		t.Errorf("Resolve(cname result) = %+v, %v", id, err)
	}
	in.CName = ""
	id, err = Resolve(in)
	if err != nil || id.Base != "aws-gardener_prod_trustedboot_tpm2-amd64-1877.3-75df9f40" || id.Flavor != "aws-gardener_prod_trustedboot_tpm2" {
		t.Errorf("Resolve(fallback) = %+v, %v", id, err)
	}
	// A short build commit is completed from the .release file.
	in = tpmInput()
	in.Commit = "75df9f40"
	if id, err = Resolve(in); err != nil || id.Commit != commit {
		t.Errorf("Resolve(short commit) = %+v, %v", id, err)
	}
}

func TestResolveDisagreements(t *testing.T) {
	const fl = "aws-gardener_prod_trustedboot_tpm2-amd64: "
	for _, tt := range []struct {
		name   string
		change func(*ResolveInput)
		want   string
	}{
		{"release version", func(in *ResolveInput) { in.Version = "1877.4" },
			fl + "the .release file's GARDENLINUX_CNAME says version 1877.3, the build is 1877.4"},
		{"release file version", func(in *ResolveInput) { in.Release.Version = "1877.2" },
			fl + "the .release file says version 1877.2, the build is 1877.3"},
		{"cname commit", func(in *ResolveInput) { in.Commit = "0123456789" + commit[10:] },
			fl + "the .release file's GARDENLINUX_CNAME says commit 75df9f40, the build is 0123456789"},
		{"release commit id", func(in *ResolveInput) { in.Release.CommitID = "75df9f41" },
			fl + "the .release file says commit 75df9f41"},
		{"release long commit", func(in *ResolveInput) { in.Release.CommitIDLong = commit[:39] + "d" },
			fl + "the .release file says commit " + commit[:39] + "d"},
		{"cname arch", func(in *ResolveInput) { in.Arch = "arm64"; in.FlavourName = "aws-gardener_prod_trustedboot_tpm2-arm64" },
			"aws-gardener_prod_trustedboot_tpm2-arm64: the .release file's GARDENLINUX_CNAME says arch amd64, the build is arm64"},
		{"requirements arch", func(in *ResolveInput) { in.Requirements = &Requirements{Arch: "arm64"} },
			fl + "the .requirements file says arch arm64, the build is amd64"},
		{"pipeline cname commit", func(in *ResolveInput) {
			in.Release = nil
			in.CName = "aws-gardener_prod_tpm2_trustedboot-amd64-1877.3-deadbeef"
		},
			fl + "the pipeline's cname result says commit deadbeef"},
		{"malformed cname", func(in *ResolveInput) { in.Release = nil; in.CName = "aws gardener" },
			fl + "the pipeline's cname result: canonical name \"aws gardener\" is malformed"},
		{"another flavour", func(in *ResolveInput) { in.Release = nil; in.CName = "aws-gardener_prod-amd64" },
			fl + "the pipeline's cname result \"aws-gardener_prod-amd64\" names flavour aws-gardener_prod, not aws-gardener_prod_trustedboot_tpm2"},
		{"short build commit", func(in *ResolveInput) { in.Commit = "75df9f4" }, fl + "the build's commit \"75df9f4\" is not a commit hash"},
	} {
		in := tpmInput()
		tt.change(&in)
		if id, err := Resolve(in); err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%s: Resolve = %+v, %v\nwant an error starting %q", tt.name, id, err, tt.want)
		}
	}
}
