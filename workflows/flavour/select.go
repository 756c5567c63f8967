package flavour

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// Selection chooses flavours the way gl-flavors-parse's options do. The
// zero Selection keeps every flavour. A flavour is kept only if it passes
// every filter that is set:
//
//   - Build, Test, TestPlatform, Publish: when true, the flavour's flag of
//     that name must be true (several combine with AND);
//   - Categories: the flavour's Category must be one of them;
//   - ExcludeCategories: its Category must be none of them;
//   - Exclude: its Name must match none of these wildcard patterns;
//   - IncludeOnly: its Name must match one of these patterns (none given:
//     every name).
//
// Patterns are shell wildcards matched against the whole name, arch
// included, with path.Match: "*" matches any run of characters (names hold
// no "/"), "?" one character, "[a-z]" a class, negated with "[^…]" or, as
// in Python's fnmatch, "[!…]"; "\" escapes the next character.
type Selection struct {
	Build, Test, TestPlatform, Publish bool
	Categories, ExcludeCategories      []string
	Exclude, IncludeOnly               []string
}

// PatternError is a malformed wildcard pattern in a Selection.
type PatternError struct {
	// Field is "exclude" or "include-only", gl-flavors-parse's option.
	Field string
	// Pattern is the pattern as given.
	Pattern string
	// Err is path.ErrBadPattern.
	Err error
}

func (e *PatternError) Error() string {
	return fmt.Sprintf("%s pattern %q: malformed wildcard (%v); write a shell wildcard such as 'aws-*' or '*-arm64' (* ? [a-z] [!a-z], \\ escapes; every [ needs its ])", e.Field, e.Pattern, e.Err)
}

func (e *PatternError) Unwrap() error { return e.Err }

// Select returns the flavours of fl that s keeps, in fl's order. A
// malformed pattern is a *PatternError, reported whether or not any
// flavour reaches it.
func Select(fl []Flavour, s Selection) ([]Flavour, error) {
	exclude, err := patterns("exclude", s.Exclude)
	if err != nil {
		return nil, err
	}
	include, err := patterns("include-only", s.IncludeOnly)
	if err != nil {
		return nil, err
	}
	var out []Flavour
	for _, f := range fl {
		switch {
		case len(s.Categories) > 0 && !slices.Contains(s.Categories, f.Category),
			slices.Contains(s.ExcludeCategories, f.Category),
			s.Build && !f.Build,
			s.Test && !f.Test,
			s.TestPlatform && !f.TestPlatform,
			s.Publish && !f.Publish:
			continue
		}
		name := f.Name()
		if matchAny(exclude, name) {
			continue
		}
		if len(include) > 0 && !matchAny(include, name) {
			continue
		}
		out = append(out, f)
	}
	return out, nil
}

// patterns checks ps and returns them in path.Match's syntax.
func patterns(field string, ps []string) ([]string, error) {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = fnmatchNegation(p)
		// path.Match checks the whole pattern even when the name does
		// not match, so any name finds a malformed one.
		if _, err := path.Match(out[i], ""); err != nil {
			return nil, &PatternError{Field: field, Pattern: p, Err: err}
		}
	}
	return out, nil
}

// fnmatchNegation rewrites fnmatch's negated class "[!…]" as path.Match's
// "[^…]".
func fnmatchNegation(p string) string {
	if !strings.Contains(p, "[!") {
		return p
	}
	b := []byte(p)
	inClass := false
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] == '\\':
			i++ // the escaped character is literal
		case !inClass && b[i] == '[':
			inClass = true
			if i+1 < len(b) && b[i+1] == '!' {
				b[i+1] = '^'
				i++
			}
		case inClass && b[i] == ']':
			inClass = false
		}
	}
	return string(b)
}

func matchAny(ps []string, name string) bool {
	for _, p := range ps {
		if ok, _ := path.Match(p, name); ok { // checked by patterns
			return true
		}
	}
	return false
}

// NoArch is f's name without its architecture, as gl-flavors-parse's
// --no-arch prints it: every "-<arch>" removed from the name
// ("aws-gardener_prod-amd64" → "aws-gardener_prod").
func NoArch(f Flavour) string {
	return strings.ReplaceAll(f.Name(), "-"+f.Arch, "")
}

// ByArch groups flavours by architecture, as gl-flavors-parse's
// --json-by-arch does: each arch maps to the sorted names, without
// duplicates, of its flavours; with noArch the names are NoArch's.
func ByArch(fl []Flavour, noArch bool) map[string][]string {
	out := map[string][]string{}
	for _, f := range fl {
		n := f.Name()
		if noArch {
			n = NoArch(f)
		}
		out[f.Arch] = append(out[f.Arch], n)
	}
	for a, names := range out {
		slices.Sort(names)
		out[a] = slices.Compact(names)
	}
	return out
}
