package storage

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Manifest formats, as Found reports them.
const (
	// FormatGardenLinux is Garden Linux's YAML manifest, written by its
	// tooling or by kiln.
	FormatGardenLinux = "gardenlinux"
	// FormatKilnJSONv1 is the JSON manifest kiln wrote before it wrote
	// Garden Linux's (schemaVersion 1).
	FormatKilnJSONv1 = "kiln-json-v1"
)

// ManifestSchemaVersion is the version of kiln's JSON schemas: the old
// JSON manifest (a reader refuses a newer one) and ManifestSet.
const ManifestSchemaVersion = 1

// KilnFactsSchema is the version of KilnFacts that kiln writes.
const KilnFactsSchema = 1

// TimestampLayout is build_timestamp's layout: ISO 8601 without a zone, as
// Python's datetime.isoformat writes it (kiln writes UTC).
const TimestampLayout = "2006-01-02T15:04:05.000000"

// Manifest is a flavour's release manifest in Garden Linux's format, the
// YAML document at meta/singles/<base>. Its fields are Garden Linux's
// (python-gardenlinux-lib's s3_artifacts.py writes them, glci and the
// release notes read them), in the order PyYAML sorts them; kiln's own
// facts go under the one extra top-level key, kiln. Garden Linux's readers
// tolerate it: glci decodes the document into a map and then into its
// Manifest type with mapstructure, keeping unknown keys in a ",remain"
// field that it writes back (internal/gardenlinux/gardenlinux.go,
// internal/cloudprovider/cloudprovider.go); the release notes load it
// with yaml.SafeLoader into a dict and read single keys.
//
// Reading accepts what Garden Linux's tooling wrote in any version:
// without tpm2 and platform_variant (older), without base_image,
// published_image_metadata and gardenlinux_epoch (newer), with
// build_timestamp quoted or a YAML timestamp. Keys it does not know are
// kept in Extra.
type Manifest struct {
	Architecture string `yaml:"architecture" json:"architecture"`
	// BaseImage is null in every Garden Linux manifest.
	BaseImage any `yaml:"base_image" json:"base_image"`
	// BuildCommittish is the full commit hash.
	BuildCommittish string `yaml:"build_committish" json:"build_committish"`
	// BuildTimestamp is such as 2025-09-08T11:13:13.957549 (see Built).
	BuildTimestamp string `yaml:"build_timestamp" json:"build_timestamp"`
	// GardenLinuxEpoch is the version's part before the first ".".
	GardenLinuxEpoch int `yaml:"gardenlinux_epoch" json:"gardenlinux_epoch"`
	// Kiln is what kiln knows beyond Garden Linux's fields; nil in a
	// manifest Garden Linux's tooling wrote.
	Kiln *KilnFacts `yaml:"kiln,omitempty" json:"kiln,omitempty"`
	// Logs is Garden Linux's logs field, null as its tooling writes it;
	// kiln's task logs are in Kiln.Logs.
	Logs any `yaml:"logs" json:"logs"`
	// Modifiers are the flavour's features (GARDENLINUX_FEATURES).
	Modifiers []string `yaml:"modifiers" json:"modifiers"`
	Paths     []Path   `yaml:"paths" json:"paths"`
	Platform  string   `yaml:"platform" json:"platform"`
	// PlatformVariant is written only when there is one.
	PlatformVariant string `yaml:"platform_variant,omitempty" json:"platform_variant,omitempty"`
	// PublishedImageMetadata is the platform's published-image metadata
	// (activities/publish documents each platform's shape), nil until
	// published.
	PublishedImageMetadata map[string]any `yaml:"published_image_metadata" json:"published_image_metadata"`
	RequireUEFI            bool           `yaml:"require_uefi" json:"require_uefi"`
	// S3Bucket and S3Key are where the manifest itself is.
	S3Bucket   string `yaml:"s3_bucket" json:"s3_bucket"`
	S3Key      string `yaml:"s3_key" json:"s3_key"`
	SecureBoot bool   `yaml:"secureboot" json:"secureboot"`
	// TestResult is null, or what the test said (kiln: TestPassed or
	// TestFailed; see Test).
	TestResult any  `yaml:"test_result" json:"test_result"`
	TPM2       bool `yaml:"tpm2" json:"tpm2"`
	// Version is such as 1877.3, a string.
	Version string `yaml:"version" json:"version"`
	// Extra holds the top-level keys this type does not know (glci's
	// glci_version, publishing_group, …).
	Extra map[string]any `yaml:",inline" json:"extra,omitempty"`
}

// Path is one file of a release, an entry of Manifest.Paths.
type Path struct {
	MD5Sum       string `yaml:"md5sum" json:"md5sum"`
	Name         string `yaml:"name" json:"name"`
	S3BucketName string `yaml:"s3_bucket_name" json:"s3_bucket_name"`
	S3Key        string `yaml:"s3_key" json:"s3_key"`
	SHA256Sum    string `yaml:"sha256sum" json:"sha256sum"`
	Suffix       string `yaml:"suffix" json:"suffix"`
}

// KilnFacts are kiln's facts about a build, the manifest's kiln mapping.
type KilnFacts struct {
	// Schema is KilnFactsSchema when written.
	Schema int `yaml:"schema" json:"schema"`
	// BuildID is the ID of the Build workflow that wrote the manifest.
	BuildID string `yaml:"build_id,omitempty" json:"build_id,omitempty"`
	Repo    string `yaml:"repo,omitempty" json:"repo,omitempty"`
	// Flavour is the flavors.yaml name, such as
	// aws-gardener_prod_trustedboot_tpm2-amd64.
	Flavour string `yaml:"flavour,omitempty" json:"flavour,omitempty"`
	// Layout is the layout the files were promoted in.
	Layout Layout `yaml:"layout,omitempty" json:"layout,omitempty"`
	// Logs maps "<phase>/<task>" to the task's archived log (s3:// URI).
	Logs map[string]string `yaml:"logs,omitempty" json:"logs,omitempty"`
	// Sizes maps each file's name to its size in bytes.
	Sizes map[string]int64 `yaml:"sizes,omitempty" json:"sizes,omitempty"`
	// Notes are remarks of the build, such as attempts that failed.
	Notes []string `yaml:"notes,omitempty" json:"notes,omitempty"`
}

// ManifestKey is the key of a flavour's manifest, meta/singles/<base>.
func ManifestKey(prefix, base string) string {
	return prefix + "meta/singles/" + base
}

// LegacyManifestKey is the key kiln wrote its JSON manifests at, before
// it wrote Garden Linux's: meta/singles/<flavour>-<version>-<commit>.
func LegacyManifestKey(prefix, flavour, version, commit string) string {
	return prefix + "meta/singles/" + flavour + "-" + version + "-" + commit
}

// Built parses BuildTimestamp: ISO 8601 with or without a zone (read as
// UTC without), with "T" or a blank between date and time.
func (m Manifest) Built() (time.Time, error) {
	s := strings.Replace(m.BuildTimestamp, " ", "T", 1)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("build_timestamp %q is not an ISO 8601 time", m.BuildTimestamp)
}

// Test is TestResult as a string: "" when null or not a string.
func (m Manifest) Test() string {
	s, _ := m.TestResult.(string)
	return s
}

// Files are the manifest's paths as Files (Size from kiln's facts, 0 when
// Garden Linux's tooling wrote the manifest).
func (m Manifest) Files() []File {
	files := make([]File, len(m.Paths))
	for i, p := range m.Paths {
		files[i] = File{Name: p.Name, Key: p.S3Key, SHA256: p.SHA256Sum, MD5: p.MD5Sum, Suffix: p.Suffix}
		if m.Kiln != nil {
			files[i].Size = m.Kiln.Sizes[p.Name]
		}
	}
	return files
}

// Epoch is a version's Garden Linux epoch, its part before the first "."
// (0 when that is not a number).
func Epoch(version string) int {
	n, _ := strconv.Atoi(strings.SplitN(version, ".", 2)[0])
	return n
}

// EncodeManifest writes m as Garden Linux's YAML: keys in m's order,
// build_timestamp single-quoted (a YAML 1.1 reader such as PyYAML would
// take a bare one for a timestamp), an empty published_image_metadata as
// null.
func EncodeManifest(m Manifest) ([]byte, error) {
	var doc yaml.Node
	if err := doc.Encode(m); err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		k, v := doc.Content[i].Value, doc.Content[i+1]
		switch {
		case k == "build_timestamp":
			v.Style = yaml.SingleQuotedStyle
		case k == "published_image_metadata" && m.PublishedImageMetadata == nil:
			*v = yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
		}
	}
	return encodeYAML(&doc)
}

func encodeYAML(n *yaml.Node) ([]byte, error) {
	var b bytes.Buffer
	e := yaml.NewEncoder(&b)
	e.SetIndent(2)
	if err := e.Encode(n); err != nil {
		return nil, err
	}
	if err := e.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// DecodeManifest reads a manifest in either format and says which:
// Garden Linux's YAML (FormatGardenLinux) or kiln's old JSON
// (FormatKilnJSONv1, converted; a schemaVersion newer than
// ManifestSchemaVersion is an error, as is a document that is neither).
func DecodeManifest(data []byte) (Manifest, string, error) {
	if isJSON(data) {
		m, err := decodeLegacy(data)
		return m, FormatKilnJSONv1, err
	}
	var m Manifest
	if err := yaml.Unmarshal(data, &m); err != nil {
		return Manifest{}, FormatGardenLinux, fmt.Errorf("not valid YAML: %w", err)
	}
	if m.BuildCommittish == "" && m.Version == "" && len(m.Paths) == 0 {
		return Manifest{}, FormatGardenLinux, fmt.Errorf("not a Garden Linux manifest: no build_committish, version or paths")
	}
	return m, FormatGardenLinux, nil
}

// isJSON: kiln's old manifests are a JSON object; Garden Linux's YAML never
// starts with "{".
func isJSON(data []byte) bool {
	b := bytes.TrimLeft(data, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}

// legacyManifest is kiln's old JSON manifest (FormatKilnJSONv1).
type legacyManifest struct {
	SchemaVersion   int               `json:"schemaVersion"`
	BuildID         string            `json:"buildId,omitempty"`
	Flavour         string            `json:"flavour"`
	Repo            string            `json:"repo,omitempty"`
	Commit          string            `json:"commit"`
	Version         string            `json:"version"`
	Architecture    string            `json:"architecture"`
	Platform        string            `json:"platform"`
	Features        []string          `json:"features"`
	BuildTimestamp  time.Time         `json:"buildTimestamp"`
	Files           []legacyFile      `json:"files"`
	PublishedImages map[string]any    `json:"publishedImages,omitempty"`
	TestResult      string            `json:"testResult,omitempty"`
	Logs            map[string]string `json:"logs,omitempty"`
}

type legacyFile struct {
	Name   string `json:"name"`
	Key    string `json:"key"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

func decodeLegacy(data []byte) (Manifest, error) {
	var l legacyManifest
	if err := json.Unmarshal(data, &l); err != nil {
		return Manifest{}, fmt.Errorf("not valid JSON: %w", err)
	}
	if l.SchemaVersion > ManifestSchemaVersion {
		return Manifest{}, fmt.Errorf("schema version %d; this kiln reads up to %d: upgrade the workers", l.SchemaVersion, ManifestSchemaVersion)
	}
	m := Manifest{
		Architecture: l.Architecture, BuildCommittish: l.Commit, Version: l.Version, GardenLinuxEpoch: Epoch(l.Version),
		Platform: l.Platform, Modifiers: l.Features, PublishedImageMetadata: l.PublishedImages,
		Kiln: &KilnFacts{BuildID: l.BuildID, Repo: l.Repo, Flavour: l.Flavour, Logs: l.Logs, Layout: LayoutContentAddressed},
	}
	if !l.BuildTimestamp.IsZero() {
		m.BuildTimestamp = l.BuildTimestamp.UTC().Format(TimestampLayout)
	}
	if l.TestResult == TestPassed || l.TestResult == TestFailed {
		m.TestResult = l.TestResult
	}
	for _, f := range l.Files {
		m.Paths = append(m.Paths, Path{Name: f.Name, S3Key: f.Key, SHA256Sum: f.SHA256})
		if m.Kiln.Sizes == nil {
			m.Kiln.Sizes = map[string]int64{}
		}
		m.Kiln.Sizes[f.Name] = f.Size
	}
	return m, nil
}
