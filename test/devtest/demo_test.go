//go:build e2e

package devtest

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/workflows"
)

// demoFlavour is what deploy/dev/flavours.yaml says of one buildable
// flavour, and the canonical name its image pipeline reports.
type demoFlavour struct {
	cname                       string // <flavor>-<arch>, as the demo's builder orders the features
	test, testPlatform, publish bool
}

// demoFlavours are the demo's buildable flavours, by Garden Linux's
// flavors.yaml name. Its builder sorts the flag features, as Garden Linux's
// feature graph can reorder them, so two flavours' cnames differ from their
// flavors.yaml names.
var demoFlavours = map[string]demoFlavour{
	"kvm-gardener_prod-amd64":                  {"kvm-gardener_prod-amd64", true, true, true},
	"kvm-gardener_prod-arm64":                  {"kvm-gardener_prod-arm64", false, false, true},
	"kvm-gardener_prod_trustedboot_tpm2-amd64": {"kvm-gardener_prod_tpm2_trustedboot-amd64", true, false, true},
	"metal-gardener_prod-amd64":                {"metal-gardener_prod-amd64", true, true, true},
	"metal_pxe-amd64":                          {"metal_pxe-amd64", true, false, true},
	"metal_prod-vhost-amd64":                   {"metal-vhost_prod-amd64", true, true, false},
}

// demoProgress is a build's progress as kiln status -o json prints it.
func demoProgress(t *testing.T, id string) workflows.Progress {
	t.Helper()
	out, err := kiln(t, "status", id, "-o", "json")
	if err != nil {
		t.Fatalf("kiln status %s: %v\n%s", id, err, out)
	}
	var p workflows.Progress
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("kiln status -o json: %v\n%s", err, out)
	}
	return p
}

func phaseOf(f workflows.FlavourState, name string) workflows.PhaseState {
	for _, ph := range f.Phases {
		if ph.Name == name {
			return ph
		}
	}
	return workflows.PhaseState{}
}

// checkDemoBuild checks the demo build's outcome: every buildable flavour
// built under the cname its .release file reports, Garden Linux's objects
// and YAML manifest in the release bucket (a directory of versitygw's),
// its tests and publishing run only where the flavour file's flags say so.
func checkDemoBuild(t *testing.T, releases, prefix string, set storage.ManifestSet, id, version, commit string) {
	t.Helper()
	p := demoProgress(t, id)
	if len(p.Flavours) != len(demoFlavours) {
		t.Errorf("the demo built %d flavours, want %d (build: false is not built)", len(p.Flavours), len(demoFlavours))
	}
	for _, f := range p.Flavours {
		want, ok := demoFlavours[f.Name]
		if !ok {
			t.Errorf("unexpected flavour %s", f.Name)
			continue
		}
		base := want.cname + "-" + version + "-" + commit[:8]
		if f.Base != base {
			t.Errorf("%s: built as %q, want %q (from its .release file)", f.Name, f.Base, base)
		}
		checkTest := func(phase, flag string, wanted bool) {
			ph := phaseOf(f, phase)
			switch {
			case wanted && (ph.State != workflows.StateSucceeded || ph.PipelineRun == ""):
				t.Errorf("%s: %s = %+v, want it run (%s: true)", f.Name, phase, ph, flag)
			case !wanted && (ph.State != workflows.StateSkipped || ph.Reason != flag+": false in the flavour file" || ph.PipelineRun != ""):
				t.Errorf("%s: %s = %+v, want skipped for %s: false", f.Name, phase, ph, flag)
			}
		}
		checkTest(workflows.PhaseTest, "test", want.test)
		checkTest(workflows.PhaseTestPlatform, "test-platform", want.testPlatform)
		pub := phaseOf(f, workflows.PhasePublish)
		if want.publish != (pub.Reason != "publish: false in the flavour file") {
			t.Errorf("%s: publish = %+v, want publish %v", f.Name, pub, want.publish)
		}

		key := set.Manifests[f.Name]
		if key != prefix+"meta/singles/"+base {
			t.Errorf("%s: manifest %q, want %smeta/singles/%s", f.Name, key, prefix, base)
			continue
		}
		data, err := os.ReadFile(filepath.Join(releases, key))
		if err != nil {
			t.Fatal(err)
		}
		m, format, err := storage.DecodeManifest(data)
		if err != nil || format != storage.FormatGardenLinux || strings.HasPrefix(strings.TrimSpace(string(data)), "{") {
			t.Fatalf("%s: %v, format %s:\n%s", key, err, format, data)
		}
		if m.BuildCommittish != commit || m.Version != version || m.S3Key != key || m.S3Bucket != "releases" ||
			m.Architecture != want.cname[strings.LastIndex(want.cname, "-")+1:] || m.Kiln == nil || m.Kiln.Flavour != f.Name {
			t.Errorf("%s: manifest = %+v", key, m)
		}
		if want.test != (m.Test() == storage.TestPassed) {
			t.Errorf("%s: test_result %v, want tested %v", key, m.TestResult, want.test)
		}
		if strings.Contains(f.Name, "_tpm2") && (!m.TPM2 || !m.SecureBoot) {
			t.Errorf("%s: tpm2 %v secureboot %v from its .requirements", key, m.TPM2, m.SecureBoot)
		}
		var suffixes []string
		for _, path := range m.Paths {
			suffixes = append(suffixes, path.Suffix)
			if path.Name != base+path.Suffix || path.S3Key != prefix+"objects/"+base+"/"+path.Name || path.S3BucketName != "releases" {
				t.Errorf("%s: path %+v", key, path)
			}
			obj := filepath.Join(releases, path.S3Key)
			if path.Suffix == ".tar.gz" {
				checkTarball(t, obj, path.SHA256Sum)
			}
			if got := md5Of(t, obj); got != path.MD5Sum {
				t.Errorf("%s: md5 %s, manifest says %s", obj, got, path.MD5Sum)
			}
		}
		slices.Sort(suffixes)
		if !slices.Equal(suffixes, []string{".release", ".requirements", ".tar.gz", ".tar.gz.sha256"}) {
			t.Errorf("%s: files %v", key, suffixes)
		}
	}
}

func md5Of(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := md5.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
