package release

import (
	"fmt"
	"slices"
	"strings"
)

// Identity is everything the manifest needs to know about the build of one
// flavour.
type Identity struct {
	// Base is <flavor>-<arch>-<version>-<commit[:8]>, the name Garden
	// Linux files the flavour's release under.
	Base            string `json:"base"`
	Flavor          string `json:"flavor"` // the cname's flavor part
	Arch            string `json:"arch"`
	Platform        string `json:"platform"`
	PlatformVariant string `json:"platformVariant,omitempty"`
	Version         string `json:"version"`
	// Commit is the full 40-hex commit hash.
	Commit string `json:"commit"`
	// Modifiers are the features, as GL lists them in the manifest.
	Modifiers   []string `json:"modifiers,omitempty"`
	RequireUEFI bool     `json:"requireUefi"`
	SecureBoot  bool     `json:"secureboot"`
	TPM2        bool     `json:"tpm2"`
}

// ResolveInput is what Resolve derives an Identity from.
type ResolveInput struct {
	// FlavourName is the flavors.yaml name, such as
	// aws-gardener_prod_trustedboot_tpm2-amd64: for messages, and the
	// cname when nothing better is known.
	FlavourName string `json:"flavourName"`
	Platform    string `json:"platform"`
	Arch        string `json:"arch"`
	// Features are the flavors.yaml features.
	Features []string `json:"features,omitempty"`
	// Version and Commit (the full hash) are the build's.
	Version string `json:"version"`
	Commit  string `json:"commit"`
	// CName is the image pipeline's cname result, if any.
	CName string `json:"cname,omitempty"`
	// Release and Requirements are the parsed .release and .requirements
	// artifacts, if any.
	Release      *Release      `json:"release,omitempty"`
	Requirements *Requirements `json:"requirements,omitempty"`
}

// Resolve derives the Identity of a flavour's build.
//
// The cname is the .release file's GARDENLINUX_CNAME if given, else the
// pipeline's cname result, else FlavourName. Resolve refuses a malformed
// cname, and checks that what the cname and the .release and .requirements
// files say agrees with the build: the version, the commit (an 8-character
// prefix or the full hash), the arch, and that the cname names this
// flavour (SameFlavour). Every error names the flavour and says what
// disagrees.
//
// Modifiers are Release.Features if given, else Features; Platform is
// Release.Platform if given, else Platform. RequireUEFI, SecureBoot and
// TPM2 come from the .requirements file, or when it does not say, from the
// features _usi, _trustedboot and _tpm2, as Garden Linux's tooling does.
func Resolve(in ResolveInput) (Identity, error) {
	name := in.FlavourName
	if name == "" {
		name = in.Platform + "-" + in.Arch
	}
	fail := func(format string, a ...any) (Identity, error) {
		return Identity{}, fmt.Errorf("%s: "+format, append([]any{name}, a...)...)
	}
	commit := strings.ToLower(in.Commit)
	if len(commit) < 8 || !isHex(commit) {
		return fail("the build's commit %q is not a commit hash", in.Commit)
	}
	if in.Version == "" {
		return fail("the build has no version")
	}
	what, s := "the flavour name", in.FlavourName
	switch {
	case in.Release != nil && in.Release.CName != "":
		what, s = "the .release file's "+KeyCName, in.Release.CName
	case in.CName != "":
		what, s = "the pipeline's cname result", in.CName
	}
	c, err := ParseCName(s)
	if err != nil {
		return fail("%s: %v", what, err)
	}
	if what != "the flavour name" && in.FlavourName != "" {
		own := strings.TrimSuffix(in.FlavourName, "-"+in.Arch)
		if !SameFlavour(c.Flavor, own) {
			return fail("%s %q names flavour %s, not %s", what, s, c.Flavor, own)
		}
	}

	arch := in.Arch
	if c.Arch != "" {
		if arch != "" && c.Arch != arch {
			return fail("%s says arch %s, the build is %s", what, c.Arch, arch)
		}
		arch = c.Arch
	}
	if r := in.Requirements; r != nil && r.Arch != "" {
		if arch != "" && r.Arch != arch {
			return fail("the .requirements file says arch %s, the build is %s", r.Arch, arch)
		}
		arch = r.Arch
	}
	if arch == "" {
		return fail("no arch: neither the build nor %s says", what)
	}

	if c.Version != "" && c.Version != in.Version {
		return fail("%s says version %s, the build is %s", what, c.Version, in.Version)
	}
	if c.Commit != "" && !SameCommit(c.Commit, commit) {
		return fail("%s says commit %s, the build is %s", what, c.Commit, commit)
	}
	if r := in.Release; r != nil {
		if r.Version != "" && r.Version != in.Version {
			return fail("the .release file says version %s, the build is %s", r.Version, in.Version)
		}
		if r.CommitID != "" && !SameCommit(r.CommitID, commit) {
			return fail("the .release file says commit %s, the build is %s", r.CommitID, commit)
		}
		if r.CommitIDLong != "" {
			if !SameCommit(r.CommitIDLong, commit) {
				return fail("the .release file says commit %s, the build is %s", r.CommitIDLong, commit)
			}
			if len(r.CommitIDLong) > len(commit) {
				commit = r.CommitIDLong
			}
		}
	}

	id := Identity{
		Flavor: c.Flavor, Arch: arch, Platform: in.Platform, Version: in.Version, Commit: commit,
		Modifiers: slices.Clone(in.Features),
	}
	id.Base = CName{Flavor: c.Flavor, Arch: arch, Version: in.Version, Commit: commit}.Base()
	if r := in.Release; r != nil {
		if len(r.Features) > 0 {
			id.Modifiers = slices.Clone(r.Features)
		}
		if r.Platform != "" {
			id.Platform = r.Platform
		}
		id.PlatformVariant = r.PlatformVariant
	}
	if id.Platform == "" {
		id.Platform = flavourTokens(c.Flavor)[0]
	}
	id.RequireUEFI = slices.Contains(id.Modifiers, "_usi")
	id.SecureBoot = slices.Contains(id.Modifiers, "_trustedboot")
	id.TPM2 = slices.Contains(id.Modifiers, "_tpm2")
	if r := in.Requirements; r != nil {
		for _, f := range []struct {
			v   *bool
			dst *bool
		}{{r.UEFI, &id.RequireUEFI}, {r.SecureBoot, &id.SecureBoot}, {r.TPM2, &id.TPM2}} {
			if f.v != nil {
				*f.dst = *f.v
			}
		}
	}
	return id, nil
}

// SameCommit reports whether a and b name the same commit: equal, or one
// the 8-character prefix of the other (case-insensitive).
func SameCommit(a, b string) bool {
	a, b = strings.ToLower(a), strings.ToLower(b)
	if a == "" || b == "" {
		return false
	}
	if len(a) > len(b) {
		a, b = b, a
	}
	return a == b || (len(a) == 8 && strings.HasPrefix(b, a))
}

func isHex(s string) bool {
	for _, r := range s {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return false
		}
	}
	return true
}
