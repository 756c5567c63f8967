package release

import (
	"bytes"
	"fmt"
	"strings"
)

// The keys of a .release file that Release holds.
const (
	KeyCName             = "GARDENLINUX_CNAME"
	KeyFeatures          = "GARDENLINUX_FEATURES"
	KeyFeaturesElements  = "GARDENLINUX_FEATURES_ELEMENTS"
	KeyFeaturesFlags     = "GARDENLINUX_FEATURES_FLAGS"
	KeyFeaturesPlatforms = "GARDENLINUX_FEATURES_PLATFORMS"
	KeyPlatform          = "GARDENLINUX_PLATFORM"
	KeyPlatformVariant   = "GARDENLINUX_PLATFORM_VARIANT"
	KeyVersion           = "GARDENLINUX_VERSION"
	KeyCommitID          = "GARDENLINUX_COMMIT_ID"
	KeyCommitIDLong      = "GARDENLINUX_COMMIT_ID_LONG"
)

// Release is what a build's <base>.release file (os-release style) says
// about it.
type Release struct {
	// CName is GARDENLINUX_CNAME: the base name in current tooling, in
	// older tooling <flavor>-<arch> or <flavor>.
	CName           string `json:"cname"`
	Version         string `json:"version"`
	CommitID        string `json:"commitId,omitempty"`     // 8 characters
	CommitIDLong    string `json:"commitIdLong,omitempty"` // 40 hex
	Platform        string `json:"platform,omitempty"`
	PlatformVariant string `json:"platformVariant,omitempty"`
	// Features is GARDENLINUX_FEATURES split at ",", in its order.
	Features          []string `json:"features,omitempty"`
	FeaturesElements  []string `json:"featuresElements,omitempty"`
	FeaturesFlags     []string `json:"featuresFlags,omitempty"`
	FeaturesPlatforms []string `json:"featuresPlatforms,omitempty"`
}

// ParseRelease parses a .release file: KEY=value lines, values bare or
// quoted with " or ', blank lines and # comments skipped. It requires
// GARDENLINUX_CNAME, GARDENLINUX_VERSION and GARDENLINUX_COMMIT_ID or
// GARDENLINUX_COMMIT_ID_LONG; errors name the key.
func ParseRelease(data []byte) (Release, error) {
	kv, err := parseKV(data, ".release file", false)
	if err != nil {
		return Release{}, err
	}
	r := Release{
		CName: kv[KeyCName], Version: kv[KeyVersion],
		CommitID: strings.ToLower(kv[KeyCommitID]), CommitIDLong: strings.ToLower(kv[KeyCommitIDLong]),
		Platform: kv[KeyPlatform], PlatformVariant: kv[KeyPlatformVariant],
		Features: splitList(kv[KeyFeatures]), FeaturesElements: splitList(kv[KeyFeaturesElements]),
		FeaturesFlags: splitList(kv[KeyFeaturesFlags]), FeaturesPlatforms: splitList(kv[KeyFeaturesPlatforms]),
	}
	for _, req := range []struct{ key, val string }{{KeyCName, r.CName}, {KeyVersion, r.Version}} {
		if req.val == "" {
			return Release{}, fmt.Errorf(".release file: %s is missing or empty", req.key)
		}
	}
	if r.CommitID == "" && r.CommitIDLong == "" {
		return Release{}, fmt.Errorf(".release file: %s (or %s) is missing or empty", KeyCommitID, KeyCommitIDLong)
	}
	if r.CommitID != "" && r.CommitIDLong != "" && !strings.HasPrefix(r.CommitIDLong, r.CommitID) {
		return Release{}, fmt.Errorf(".release file: %s %s is not the start of %s %s", KeyCommitID, r.CommitID, KeyCommitIDLong, r.CommitIDLong)
	}
	if _, err := ParseCName(r.CName); err != nil {
		return Release{}, fmt.Errorf(".release file: %s: %w", KeyCName, err)
	}
	return r, nil
}

// Requirements is what a build's <base>.requirements file says. A nil
// flag was not in the file.
type Requirements struct {
	Arch       string `json:"arch,omitempty"`
	UEFI       *bool  `json:"uefi,omitempty"`
	SecureBoot *bool  `json:"secureboot,omitempty"`
	TPM2       *bool  `json:"tpm2,omitempty"`
}

// ParseRequirements parses a .requirements file: key=value lines such as
// arch=amd64, uefi=true, secureboot=false, tpm2=true; booleans as Python's
// configparser reads them (true/false, yes/no, on/off, 1/0, any case).
// Other keys are ignored.
func ParseRequirements(data []byte) (Requirements, error) {
	kv, err := parseKV(data, ".requirements file", true)
	if err != nil {
		return Requirements{}, err
	}
	r := Requirements{Arch: kv["arch"]}
	for _, f := range []struct {
		key string
		dst **bool
	}{{"uefi", &r.UEFI}, {"secureboot", &r.SecureBoot}, {"tpm2", &r.TPM2}} {
		v, ok := kv[f.key]
		if !ok {
			continue
		}
		b, err := parseBool(v)
		if err != nil {
			return Requirements{}, fmt.Errorf(".requirements file: %s: %w", f.key, err)
		}
		*f.dst = &b
	}
	return r, nil
}

func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "1", "yes", "true", "on":
		return true, nil
	case "0", "no", "false", "off":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (true/false, yes/no, on/off, 1/0)", s)
}

// parseKV reads KEY=value lines. A key given twice is an error, as in
// configparser; foldKeys lowercases keys, as configparser does.
func parseKV(data []byte, what string, foldKeys bool) (map[string]string, error) {
	kv := map[string]string{}
	for i, line := range bytes.Split(data, []byte("\n")) {
		s := strings.TrimSpace(string(line))
		if s == "" || s[0] == '#' || s[0] == ';' {
			continue
		}
		s = strings.TrimPrefix(s, "export ")
		k, v, ok := strings.Cut(s, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("%s: line %d: want KEY=value, got %q", what, i+1, s)
		}
		if foldKeys {
			k = strings.ToLower(k)
		}
		if _, dup := kv[k]; dup {
			return nil, fmt.Errorf("%s: line %d: %s is given twice", what, i+1, k)
		}
		kv[k] = unquote(strings.TrimSpace(v))
	}
	return kv, nil
}

// unquote strips one pair of matching quotes; in double quotes it undoes
// the shell escapes os-release allows (\" \\ \$ \`).
func unquote(v string) string {
	if len(v) < 2 || (v[0] != '"' && v[0] != '\'') || v[len(v)-1] != v[0] {
		return v
	}
	q, v := v[0], v[1:len(v)-1]
	if q == '\'' || !strings.Contains(v, `\`) {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) && strings.IndexByte("\"\\$`", v[i+1]) >= 0 {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// splitList splits a comma list, trimming blanks and dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
