package workflows_test

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"go.temporal.io/sdk/temporal"

	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/workflows"
	"github.com/kiln-build/kiln/workflows/flavour"
)

// gl2024 is a flavour as a 2024 flavors.yaml gives it.
func gl2024(platform, arch string, test, testPlatform bool, features ...string) flavour.Flavour {
	return flavour.Flavour{Platform: platform, Arch: arch, Features: features, Format: flavour.Format2024,
		Build: true, Test: test, TestPlatform: testPlatform, Publish: true}
}

func TestFlavourFlagsDecideItsTests(t *testing.T) {
	p := storagePlan(3)
	p.TestPlatform = &workflows.PipelineConfig{PipelineRef: "test-platform"}
	fl := []flavour.Flavour{
		gl2024("kvm", "amd64", true, true, "gardener", "_prod"),
		gl2024("kvm", "arm64", false, false, "gardener", "_prod"),
		gl2024("metal", "amd64", true, false, "_pxe"),
	}
	rec := &recorder{results: artifactResults}
	env := newEnv(t, p, rec, newStore().register)
	env.ExecuteWorkflow(workflows.Build, request(fl, "build", "manifest", "tests"))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	ran := map[string][]string{}
	for _, q := range rec.reqs {
		ran[q.Labels["kiln.dev/flavour"]] = append(ran[q.Labels["kiln.dev/flavour"]], q.Labels["kiln.dev/phase"])
	}
	want := map[string][]string{
		"kvm-gardener_prod-amd64": {"image", "test", "test-platform"},
		"kvm-gardener_prod-arm64": {"image"},
		"metal_pxe-amd64":         {"image", "test"},
	}
	for name, phases := range want {
		if !slices.Equal(ran[name], phases) {
			t.Errorf("%s ran %v, want %v", name, ran[name], phases)
		}
	}
	for _, f := range progressOf(t, env).Flavours {
		for _, ph := range f.Phases {
			if ph.State == workflows.StateSkipped && !strings.HasSuffix(ph.Reason, ": false in the flavour file") {
				t.Errorf("%s: %s skipped with %q, want the flag that skipped it", f.Name, ph.Name, ph.Reason)
			}
		}
		if f.Name == "kvm-gardener_prod-arm64" && f.Phases[1].Reason != "test: false in the flavour file" {
			t.Errorf("%s: test = %+v", f.Name, f.Phases[1])
		}
	}
}

// releaseFile is a .release file as Garden Linux's builder writes it, for
// version 1443.3 at commit 0123abcd.
func releaseFile(cname string) string {
	return "GARDENLINUX_CNAME=\"" + cname + "\"\nGARDENLINUX_FEATURES=\"aws,gardener,_prod,_tpm2,_trustedboot\"\n" +
		"GARDENLINUX_PLATFORM=\"aws\"\nGARDENLINUX_VERSION=\"1443.3\"\nGARDENLINUX_COMMIT_ID=\"0123abcd\"\n"
}

func TestTheBuildsCNameNamesTheManifest(t *testing.T) {
	st := newStore()
	f := gl2024("aws", "amd64", true, false, "gardener", "_prod", "_trustedboot", "_tpm2")
	// The builder's feature graph orders the flags otherwise.
	st.release[f.Name()] = releaseFile("aws-gardener_prod_tpm2_trustedboot-amd64-1443.3-0123abcd")
	st.requirements[f.Name()] = "arch=amd64\nuefi=true\nsecureboot=true\ntpm2=true\n"
	env := newEnv(t, storagePlan(1), &recorder{results: artifactResults}, st.register)
	env.ExecuteWorkflow(workflows.Build, request([]flavour.Flavour{f}, "build", "manifest"))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	base := "aws-gardener_prod_tpm2_trustedboot-amd64-1443.3-0123abcd"
	m, ok := st.manifests[storage.ManifestKey("", base)]
	if !ok {
		t.Fatalf("no manifest at meta/singles/%s; have %v", base, slices.Collect(maps.Keys(st.manifests)))
	}
	if !m.TPM2 || !m.SecureBoot || !m.RequireUEFI || len(m.Modifiers) != 5 || m.Paths[0].Name != base+".rootfs.raw" || m.Kiln.Flavour != f.Name() {
		t.Errorf("manifest = %+v", m)
	}
	if fs := progressOf(t, env).Flavours[0]; fs.Base != base {
		t.Errorf("progress base = %q", fs.Base)
	}

	// Built again: the manifest under the reordered cname is found.
	rec := &recorder{results: artifactResults}
	env = newEnv(t, storagePlan(1), rec, st.register)
	env.ExecuteWorkflow(workflows.Build, request([]flavour.Flavour{f}, "build", "manifest"))
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(rec.phases(), "image") || !progressOf(t, env).Flavours[0].Reused {
		t.Errorf("phases %v: the flavour was built again", rec.phases())
	}
}

func TestACNameThatDisagreesFailsItsFlavour(t *testing.T) {
	st := newStore()
	f := gl2024("aws", "amd64", true, false, "gardener", "_prod", "_trustedboot", "_tpm2")
	st.release[f.Name()] = strings.ReplaceAll(releaseFile("aws-gardener_prod_tpm2_trustedboot-amd64-1443.2-0123abcd"), "1443.3", "1443.2")
	env := newEnv(t, storagePlan(1), &recorder{results: artifactResults}, st.register)
	env.ExecuteWorkflow(workflows.Build, request([]flavour.Flavour{f}, "build", "manifest"))
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != workflows.ErrTypeFlavoursFailed {
		t.Fatalf("error = %v, want FlavoursFailed", err)
	}
	fs := progressOf(t, env).Flavours[0]
	if fs.State != workflows.StateFailed || !strings.Contains(fs.Error, f.Name()) || !strings.Contains(fs.Error, "1443.2") || len(st.manifests) != 0 {
		t.Errorf("flavour = %+v, manifests %d: want failed naming the flavour and the version", fs, len(st.manifests))
	}
}
