// Package release reads the facts a Garden Linux build writes about itself
// (the canonical name, the .release and .requirements files) and derives
// the identity a flavour's release is filed under in Garden Linux's S3
// layout: the base name <flavor>-<arch>-<version>-<commit[:8]> of
// objects/<base>/ and meta/singles/<base>.
//
// It is pure: no I/O, no clock, no output that depends on map order, so
// workflows may call it.
package release

import (
	"fmt"
	"regexp"
	"strings"
)

// Archs are the architectures a canonical name can carry.
var Archs = []string{"amd64", "arm64"}

func isArch(s string) bool { return s == "amd64" || s == "arm64" }

// cnameRE is Garden Linux's canonical name grammar (cname.py): a flavor of
// alphanumeric words joined by "-" or "_", then optionally "-<arch>" and
// "-<version>-<commit>". RE2 has lazy quantifiers and, like Python, picks
// the submatches a backtracking engine would, so the groups agree with
// cname.py's: 1 the flavor, 4 the arch (only when it is one of Archs),
// 6 the version and 7 the commit.
var cnameRE = regexp.MustCompile(`^([a-zA-Z0-9]+([_\-][a-zA-Z0-9]+)*?)(-([a-z0-9]+)(-([a-z0-9.]+)-([a-z0-9]+))*)?$`)

var (
	flavorRE  = regexp.MustCompile(`^[a-zA-Z0-9]+([_\-][a-zA-Z0-9]+)*$`)
	versionRE = regexp.MustCompile(`^[a-z0-9.]+$`)
	commitRE  = regexp.MustCompile(`^[a-z0-9]+$`)
)

// CName is a parsed canonical name. Arch, Version and Commit are empty when
// the name does not carry them ("aws-gardener_prod" or
// "aws-gardener_prod-amd64").
type CName struct {
	// Flavor is the platform and features, such as aws-gardener_prod.
	Flavor string `json:"flavor"`
	Arch   string `json:"arch,omitempty"`
	// Version is such as 1877.3.
	Version string `json:"version,omitempty"`
	// Commit is the commit as given, 8 or 40 characters (or "local").
	Commit string `json:"commit,omitempty"`
}

// ParseCName parses a canonical name in one of the forms
// <flavor>-<arch>-<version>-<commit>, <flavor>-<arch> or <flavor>. The
// error says what is malformed.
//
// The name must match Garden Linux's grammar. Where cname.py's lazy match
// would fold a trailing "-<arch>-<version>-<commit>" into the flavor (a
// flavor of several plain features, such as kvm-gardener-cloud), ParseCName
// splits it off the end instead, which gives the same base name back.
func ParseCName(s string) (CName, error) {
	if s == "" {
		return CName{}, fmt.Errorf("canonical name is empty")
	}
	m := cnameRE.FindStringSubmatch(s)
	if m == nil {
		return CName{}, fmt.Errorf("canonical name %q is malformed: want <flavor>[-<arch>[-<version>-<commit>]], "+
			"the flavor being alphanumeric words joined by \"-\" or \"_\", arch one of %s, version of [a-z0-9.] and commit of [a-z0-9]",
			s, strings.Join(Archs, ", "))
	}
	if isArch(m[4]) {
		return CName{Flavor: m[1], Arch: m[4], Version: m[6], Commit: m[7]}, nil
	}
	// Group 4 is a feature: the arch, if any, is further right.
	t := strings.Split(s, "-")
	switch n := len(t); {
	case n >= 2 && isArch(t[n-1]):
		return CName{Flavor: strings.Join(t[:n-1], "-"), Arch: t[n-1]}, nil
	case n >= 4 && isArch(t[n-3]) && versionRE.MatchString(t[n-2]) && commitRE.MatchString(t[n-1]):
		return CName{Flavor: strings.Join(t[:n-3], "-"), Arch: t[n-3], Version: t[n-2], Commit: t[n-1]}, nil
	}
	if !flavorRE.MatchString(s) {
		// Such as aws-gardener_prod-x86-1877.3-75df9f40.
		return CName{}, fmt.Errorf("canonical name %q is malformed: %q is not an architecture (want one of %s)",
			s, m[4], strings.Join(Archs, ", "))
	}
	return CName{Flavor: s}, nil
}

// Base is the base name <flavor>-<arch>-<version>-<commit[:8]>, or "" when
// one of the four is missing.
func (c CName) Base() string {
	if c.Flavor == "" || c.Arch == "" || c.Version == "" || c.Commit == "" {
		return ""
	}
	return c.Flavor + "-" + c.Arch + "-" + c.Version + "-" + shortCommit(c.Commit)
}

// String is the name as parsed: as many of the parts as are set.
func (c CName) String() string {
	s := c.Flavor
	if c.Arch != "" {
		s += "-" + c.Arch
	}
	if c.Version != "" && c.Commit != "" {
		s += "-" + c.Version + "-" + shortCommit(c.Commit)
	}
	return s
}

func shortCommit(c string) string {
	if len(c) > 8 {
		return c[:8]
	}
	return c
}

// SameFlavour reports whether a cname's flavor part (such as
// "aws-gardener_prod_tpm2_trustedboot") names the same flavour as a
// flavors.yaml name without its arch ("aws-gardener_prod_trustedboot_tpm2"):
// the same platform (the first token) and the same multiset of feature
// tokens. Tokens are split at "-" and at "_", a "_" starting a flag token
// that keeps its "_" ("metal-_pxe" and "metal_pxe" are both metal, _pxe).
func SameFlavour(cnameFlavor, flavourFlavor string) bool {
	a, b := flavourTokens(cnameFlavor), flavourTokens(flavourFlavor)
	if len(a) == 0 || len(a) != len(b) || a[0] != b[0] || strings.HasPrefix(a[0], "_") {
		return false
	}
	count := map[string]int{}
	for _, t := range a[1:] {
		count[t]++
	}
	for _, t := range b[1:] {
		if count[t] == 0 {
			return false
		}
		count[t]--
	}
	return true
}

// flavourTokens splits a flavor into its platform and feature tokens.
func flavourTokens(s string) []string {
	var out []string
	for _, part := range strings.Split(s, "-") {
		for part != "" {
			i := strings.IndexByte(part[1:], '_')
			if i < 0 {
				out = append(out, part)
				break
			}
			out = append(out, part[:i+1])
			part = part[i+1:]
		}
	}
	return out
}
