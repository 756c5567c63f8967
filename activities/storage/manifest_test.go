package storage_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kiln-build/kiln/activities/storage"
	"github.com/kiln-build/kiln/workflows/release"
)

// manifestFiles are the manifests to read: the in-repo fixtures, and the
// reference files when there (ref false: skipped without them).
func manifestFiles(t *testing.T, ref bool) []string {
	t.Helper()
	files, _ := filepath.Glob("testdata/*.yaml")
	if ref {
		refs, _ := filepath.Glob(filepath.Join(referenceDir(t), "*.yaml"))
		if len(refs) != 7 {
			t.Fatalf("%d reference manifests, want 7", len(refs))
		}
		files = append(files, refs...)
	}
	return files
}

// raw reads a manifest file as a plain map, independently of Manifest.
func raw(t *testing.T, path string) (map[string]any, []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m, b
}

// checkAgainst compares a decoded manifest with the file's plain map.
func checkAgainst(t *testing.T, name string, m storage.Manifest, want map[string]any) {
	t.Helper()
	str := func(k string) string {
		if v, ok := want[k].(string); ok {
			return v
		}
		if v, ok := want[k].(time.Time); ok { // a bare timestamp
			return v.Format("2006-01-02 15:04:05.999999")
		}
		return ""
	}
	if m.Platform != str("platform") || m.Architecture != str("architecture") || m.BuildCommittish != str("build_committish") || m.Version != str("version") {
		t.Errorf("%s: platform %q, arch %q, commit %q, version %q", name, m.Platform, m.Architecture, m.BuildCommittish, m.Version)
	}
	if epoch, _ := want["gardenlinux_epoch"].(int); m.GardenLinuxEpoch != epoch {
		t.Errorf("%s: epoch %d, want %d", name, m.GardenLinuxEpoch, epoch)
	}
	var mods []string
	for _, v := range want["modifiers"].([]any) {
		mods = append(mods, v.(string))
	}
	if !slices.Equal(m.Modifiers, mods) {
		t.Errorf("%s: modifiers %v, want %v", name, m.Modifiers, mods)
	}
	if paths := want["paths"].([]any); len(m.Paths) != len(paths) || len(paths) == 0 {
		t.Errorf("%s: %d paths, want %d", name, len(m.Paths), len(paths))
	} else if p := paths[0].(map[string]any); m.Paths[0].Name != p["name"] || m.Paths[0].S3Key != p["s3_key"] || m.Paths[0].MD5Sum != p["md5sum"] ||
		m.Paths[0].SHA256Sum != p["sha256sum"] || m.Paths[0].Suffix != p["suffix"] || m.Paths[0].S3BucketName != p["s3_bucket_name"] {
		t.Errorf("%s: path 0 = %+v, want %v", name, m.Paths[0], p)
	}
	pub, _ := want["published_image_metadata"].(map[string]any)
	if !reflect.DeepEqual(m.PublishedImageMetadata, pub) {
		t.Errorf("%s: published_image_metadata = %v, want %v", name, m.PublishedImageMetadata, pub)
	}
	if u, _ := want["require_uefi"].(bool); m.RequireUEFI != u {
		t.Errorf("%s: require_uefi = %v", name, m.RequireUEFI)
	}
	if sb, _ := want["secureboot"].(bool); m.SecureBoot != sb {
		t.Errorf("%s: secureboot = %v", name, m.SecureBoot)
	}
	if _, err := m.Built(); err != nil {
		t.Errorf("%s: %v", name, err)
	}
}

// published is what each reference manifest's platform publishes under.
var published = map[string]string{
	"aws": "published_aws_images", "ali": "published_alicloud_images", "azure": "published_gallery_images",
	"gcp": "gcp_image_name", "openstack": "published_openstack_images", "metal": "",
}

func TestDecodeGardenLinuxManifests(t *testing.T) {
	for _, path := range manifestFiles(t, hasReference()) {
		want, b := raw(t, path)
		m, format, err := storage.DecodeManifest(b)
		if err != nil || format != storage.FormatGardenLinux {
			t.Fatalf("%s: %v %s", path, err, format)
		}
		checkAgainst(t, filepath.Base(path), m, want)
		if key, ok := published[m.Platform]; ok && strings.Contains(path, "shared") {
			if _, there := m.PublishedImageMetadata[key]; key != "" && !there || key == "" && m.PublishedImageMetadata != nil {
				t.Errorf("%s: published_image_metadata = %v, want %q", path, m.PublishedImageMetadata, key)
			}
		}
	}
	// The newer tooling's shape: tpm2, platform_variant, a bare
	// timestamp, glci's key kept.
	_, b := raw(t, "testdata/kvm-gardener_prod-arm64.newer-tooling.yaml")
	m, _, _ := storage.DecodeManifest(b)
	if built, err := m.Built(); err != nil || !built.Equal(time.Date(2025, 9, 8, 11, 13, 16, 95433000, time.UTC)) || m.Extra["glci_version"] != "v2.1.0" || m.BaseImage != nil {
		t.Errorf("newer tooling: built %v, %v; extra %v", built, err, m.Extra)
	}
	for _, bad := range []string{"{not json", "- a list", "just: a mapping\n"} {
		if _, _, err := storage.DecodeManifest([]byte(bad)); err == nil {
			t.Errorf("DecodeManifest(%q) succeeded", bad)
		}
	}
}

// referenceKeys is the top-level key set of Garden Linux's manifests.
var referenceKeys = []string{"architecture", "base_image", "build_committish", "build_timestamp", "gardenlinux_epoch", "logs", "modifiers",
	"paths", "platform", "published_image_metadata", "require_uefi", "s3_bucket", "s3_key", "secureboot", "test_result", "version"}

func TestReferenceKeySet(t *testing.T) {
	for _, path := range manifestFiles(t, hasReference()) {
		if strings.Contains(path, "newer-tooling") {
			continue
		}
		m, _ := raw(t, path)
		if keys := sortedKeys(m); !slices.Equal(keys, referenceKeys) {
			t.Errorf("%s: keys %v", path, keys)
		}
	}
}

func sortedKeys(m map[string]any) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func TestEncodeManifest(t *testing.T) {
	in := storage.PutManifestRequest{
		Identity: tpmIdentity(), BuildTimestamp: time.Date(2025, 9, 8, 11, 13, 11, 317861000, time.UTC), BuildID: "build/main/1877.3",
		Files: []storage.File{{Name: tpmBase + ".raw", Key: "objects/" + tpmBase + "/" + tpmBase + ".raw", Size: 5, SHA256: "ab", MD5: "cd", Suffix: ".raw"}},
	}
	b, err := storage.EncodeManifest(storage.BuildManifest(in, storage.LayoutGardenLinux, "releases", "meta/singles/"+tpmBase))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{"build_timestamp: '2025-09-08T11:13:11.317861'\n", "version: \"1877.3\"\n", "published_image_metadata: null\n",
		"test_result: null\n", "base_image: null\n", "logs: null\n", "gardenlinux_epoch: 1877\n", "tpm2: true\n", "  build_id: build/main/1877.3\n"} {
		if !strings.Contains(s, want) {
			t.Errorf("manifest lacks %q:\n%s", want, s)
		}
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if keys, want := sortedKeys(m), sortedCopy(append(slices.Clone(referenceKeys), "tpm2", "kiln")); !slices.Equal(keys, want) {
		t.Errorf("keys %v\nwant %v", keys, want)
	}
	// Written in PyYAML's order: sorted.
	var doc yaml.Node
	_ = yaml.Unmarshal(b, &doc)
	var order []string
	for i := 0; i < len(doc.Content[0].Content); i += 2 {
		order = append(order, doc.Content[0].Content[i].Value)
	}
	if !sort.StringsAreSorted(order) {
		t.Errorf("keys not sorted: %v", order)
	}
}

func sortedCopy(s []string) []string { s = slices.Clone(s); sort.Strings(s); return s }

func TestFindReferenceManifests(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.yaml")
	t.Run("testdata", func(t *testing.T) { findManifests(t, files) })
	t.Run("reference", func(t *testing.T) {
		refs, _ := filepath.Glob(filepath.Join(referenceDir(t), "*.yaml"))
		findManifests(t, refs)
	})
}

// findManifests places manifest files in a bucket at their s3_key, all of
// them, and finds each for its flavour.
func findManifests(t *testing.T, files []string) {
	e := newEnv(t)
	e.use(storageConfig(""))
	for _, path := range files {
		want, b := raw(t, path)
		e.put("releases", want["s3_key"].(string), b)
	}
	for _, path := range files {
		want, _ := raw(t, path)
		name := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(path), ".s3_metadata.yaml"), ".newer-tooling.yaml")
		c, err := release.ParseCName(name)
		if err != nil {
			t.Fatal(err)
		}
		in := storage.FindManifestRequest{Flavour: name, Arch: c.Arch, Version: want["version"].(string), Commit: commit}
		if name == "aws-gardener_prod_tpm2_trustedboot-amd64" {
			// flavors.yaml's name sorts the features: the reorder case.
			in.Flavour, in.Features = "aws-gardener_prod_trustedboot_tpm2-amd64", []string{"gardener", "_prod", "_trustedboot", "_tpm2"}
		}
		var f storage.Found
		if err := e.run(&f, e.acts.FindManifest, in); err != nil || !f.Found || f.Key != want["s3_key"] || f.Format != storage.FormatGardenLinux {
			t.Errorf("%s: find = %v %+v", name, err, f)
			continue
		}
		checkAgainst(t, name, f.Manifest, want) // through Temporal's JSON too
		if pub, _ := want["published_image_metadata"].(map[string]any); f.Base != strings.TrimPrefix(f.Key, "meta/singles/") || f.Published != (len(pub) > 0) || f.TestResult != "" {
			t.Errorf("%s: base %q, published %v, test result %q", name, f.Base, f.Published, f.TestResult)
		}
		if len(f.Files) != len(f.Manifest.Paths) {
			t.Errorf("%s: %d files", name, len(f.Files))
		}
		// Another commit or version is not a match.
		for _, other := range []storage.FindManifestRequest{{Flavour: in.Flavour, Arch: in.Arch, Version: in.Version, Commit: "75df9f40" + strings.Repeat("0", 32)},
			{Flavour: in.Flavour, Arch: in.Arch, Version: "1877.4", Commit: commit}} {
			if err := e.run(&f, e.acts.FindManifest, other); err != nil || f.Found {
				t.Errorf("%s: find %+v = %v %+v", name, other, err, f.Key)
			}
		}
	}
}

func storageConfig(prefix string) storage.Config {
	return storage.Config{StagingBucket: "staging", ReleaseBucket: "releases", Prefix: prefix}
}

func TestPutManifestThenFind(t *testing.T) {
	e := newEnv(t)
	in := storage.PutManifestRequest{
		Identity: tpmIdentity(), BuildTimestamp: time.Date(2026, 11, 22, 2, 0, 0, 0, time.FixedZone("CET", 3600)),
		Files: []storage.File{
			{Name: tpmBase + ".raw", Key: "gardenlinux/objects/" + tpmBase + "/" + tpmBase + ".raw", Size: 5 << 30, SHA256: strings.Repeat("a", 64), MD5: strings.Repeat("b", 32), Suffix: ".raw"},
			{Name: tpmBase + ".release", Key: "gardenlinux/objects/" + tpmBase + "/" + tpmBase + ".release", Size: 700, SHA256: strings.Repeat("c", 64), MD5: strings.Repeat("d", 32), Suffix: ".release"},
		},
		TestResult: storage.TestPassed, BuildID: "build/main/1877.3", Repo: "https://github.com/gardenlinux/gardenlinux",
		Flavour: "aws-gardener_prod_trustedboot_tpm2-amd64", Logs: map[string]string{"image/build": "s3://releases/logs/build.log"},
	}
	in.Identity.PlatformVariant = "nitro"
	var key string
	if err := e.run(&key, e.acts.PutManifest, in); err != nil || key != "gardenlinux/meta/singles/"+tpmBase {
		t.Fatalf("put: %v %s", err, key)
	}
	var written map[string]any
	if err := yaml.Unmarshal(e.get("releases", key), &written); err != nil {
		t.Fatal(err)
	}
	if keys, want := sortedKeys(written), sortedCopy(append(slices.Clone(referenceKeys), "tpm2", "platform_variant", "kiln")); !slices.Equal(keys, want) {
		t.Errorf("written keys %v\nwant %v", keys, want)
	}
	var f storage.Found
	req := storage.FindManifestRequest{Flavour: in.Flavour, Platform: "aws", Arch: "amd64", Features: []string{"_prod", "_tpm2", "_trustedboot", "gardener"}, Version: "1877.3", Commit: commit}
	if err := e.run(&f, e.acts.FindManifest, req); err != nil || !f.Found || f.Key != key || f.Base != tpmBase || f.TestResult != storage.TestPassed || f.Published {
		t.Fatalf("find: %v %+v", err, f)
	}
	m := f.Manifest
	checkAgainst(t, "written", m, written)
	built, _ := m.Built()
	if m.Test() != storage.TestPassed || m.TPM2 != true || m.PlatformVariant != "nitro" || m.S3Bucket != "releases" || m.S3Key != key ||
		!built.Equal(in.BuildTimestamp) || m.Kiln == nil || m.Kiln.BuildID != in.BuildID || m.Kiln.Flavour != in.Flavour ||
		m.Kiln.Logs["image/build"] != in.Logs["image/build"] || m.Kiln.Layout != storage.LayoutGardenLinux || m.Logs != nil {
		t.Errorf("found %+v\nkiln %+v", m, m.Kiln)
	}
	if !reflect.DeepEqual(f.Files, in.Files) {
		t.Errorf("files %+v\nwant %+v", f.Files, in.Files)
	}
	// A second write leaves the first.
	in2 := in
	in2.BuildID = "build/other"
	if err := e.run(&key, e.acts.PutManifest, in2); err != nil || key != f.Key {
		t.Fatalf("second put: %v %s", err, key)
	}
	if err := e.run(&f, e.acts.FindManifest, req); err != nil || f.Manifest.Kiln.BuildID != in.BuildID {
		t.Errorf("after a second put: %v, build %s", err, f.Manifest.Kiln.BuildID)
	}
	bad := in
	bad.TestResult = "flaky"
	wantAppError(t, e.run(nil, e.acts.PutManifest, bad), storage.ErrTypeBadRequest, "flaky")
}

// legacyJSON is a manifest in kiln's old JSON format, as it wrote them.
const legacyJSON = `{
  "schemaVersion": 1,
  "buildId": "build/main/1443.3",
  "flavour": "aws-gardener_prod-amd64",
  "commit": "4f1c2e9a4f1c2e9a4f1c2e9a4f1c2e9a4f1c2e9a",
  "version": "1443.3",
  "architecture": "amd64",
  "platform": "aws",
  "features": ["_prod", "gardener"],
  "buildTimestamp": "2026-11-22T02:00:00Z",
  "files": [{"name": "rootfs.raw", "key": "gardenlinux/objects/sha256/aa", "size": 7, "sha256": "aa"}],
  "testResult": "failed",
  "logs": {"image/build": "s3://releases/logs/x"}
}`

func TestLegacyJSONManifest(t *testing.T) {
	e := newEnv(t)
	const c = "4f1c2e9a4f1c2e9a4f1c2e9a4f1c2e9a4f1c2e9a"
	key := storage.LegacyManifestKey("gardenlinux/", "aws-gardener_prod-amd64", "1443.3", c)
	e.put("releases", key, []byte(legacyJSON))
	var f storage.Found
	req := storage.FindManifestRequest{Flavour: "aws-gardener_prod-amd64", Platform: "aws", Arch: "amd64", Version: "1443.3", Commit: c}
	if err := e.run(&f, e.acts.FindManifest, req); err != nil || !f.Found || f.Key != key || f.Format != storage.FormatKilnJSONv1 {
		t.Fatalf("find: %v %+v", err, f)
	}
	m := f.Manifest
	if m.Platform != "aws" || m.Architecture != "amd64" || m.BuildCommittish != c || m.Version != "1443.3" || m.GardenLinuxEpoch != 1443 ||
		!slices.Equal(m.Modifiers, []string{"_prod", "gardener"}) || m.Test() != storage.TestFailed || m.BuildTimestamp != "2026-11-22T02:00:00.000000" ||
		m.Kiln.BuildID != "build/main/1443.3" || m.Kiln.Logs["image/build"] == "" || len(f.Files) != 1 || f.Files[0].Size != 7 || f.Files[0].Key != "gardenlinux/objects/sha256/aa" ||
		f.Base != "aws-gardener_prod-amd64-1443.3-4f1c2e9a" || f.TestResult != storage.TestFailed || f.Published {
		t.Errorf("legacy manifest read as %+v, files %+v", m, f.Files)
	}
	// Its updates stay JSON.
	images := map[string]any{"published_aws_images": []any{map[string]any{"ami_id": "ami-1", "aws_region_id": "eu-central-1"}}}
	for range 2 {
		if err := e.run(nil, e.acts.SetPublished, storage.SetPublishedRequest{Key: key, Images: images}); err != nil {
			t.Fatal(err)
		}
	}
	var after map[string]any
	if err := json.Unmarshal(e.get("releases", key), &after); err != nil || after["schemaVersion"] != 1.0 || after["publishedImages"] == nil || after["testResult"] != "failed" {
		t.Errorf("after SetPublished: %v %v", err, after)
	}
	if err := e.run(&f, e.acts.FindManifest, req); err != nil || !reflect.DeepEqual(f.Manifest.PublishedImageMetadata, images) || !f.Published {
		t.Errorf("published after SetPublished: %v %v", err, f.Manifest.PublishedImageMetadata)
	}
}

func TestManifestOfANewerSchemaIsRefused(t *testing.T) {
	e := newEnv(t)
	key := storage.LegacyManifestKey("gardenlinux/", "kvm-amd64", "1.0", "abcdef0123")
	e.put("releases", key, []byte(`{"schemaVersion": 2, "flavour": "kvm-amd64"}`))
	err := e.run(nil, e.acts.FindManifest, storage.FindManifestRequest{Flavour: "kvm-amd64", Version: "1.0", Commit: "abcdef0123"})
	wantAppError(t, err, storage.ErrTypeArtifactCorrupt, "schema version 2", key)
}
