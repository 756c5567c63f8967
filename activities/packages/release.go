package packages

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Release is the part of an apt repository's Release file that names the
// distribution (Debian's RepositoryFormat, "Release files").
type Release struct {
	Origin   string
	Label    string
	Suite    string
	Codename string
	// Version is the release's version where the repository writes one:
	// Debian's point release ("12.5"), not the distribution's name.
	Version string
	// Signed is set for a clearsigned file (InRelease). The signature is
	// not verified.
	Signed bool
	// Fields holds every field by its name as written, continuation lines
	// joined with "\n".
	Fields map[string]string
}

const (
	pgpSigned    = "-----BEGIN PGP SIGNED MESSAGE-----"
	pgpSignature = "-----BEGIN PGP SIGNATURE-----"
)

// ParseRelease parses a Release file, or an InRelease file (the same,
// clearsigned, which is all that Garden Linux's repository publishes). It
// is one deb822 paragraph: "Name: value" fields, whose names are matched
// case-insensitively, and continuation lines that start with a space or a
// tab. It must name its distribution with Suite or Codename. Anything else,
// such as an HTML page, is an error naming the line.
func ParseRelease(data []byte) (Release, error) {
	var r Release
	text := strings.ReplaceAll(string(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))), "\r\n", "\n")
	lines := strings.Split(text, "\n")
	first := 0 // lines before the paragraph
	for first < len(lines) && strings.TrimSpace(lines[first]) == "" {
		first++
	}
	if first == len(lines) {
		return r, errors.New("empty")
	}
	lines = lines[first:]
	if strings.TrimSpace(lines[0]) == pgpSigned {
		skip, text, err := clearsigned(lines)
		if err != nil {
			return r, err
		}
		lines, first, r.Signed = text, first+skip, true
	}
	r.Fields = map[string]string{}
	var last string // the field a continuation line continues
	for i, line := range lines {
		where := func() string { return fmt.Sprintf("line %d %q", first+i+1, trunc(line)) }
		switch {
		case strings.TrimSpace(line) == "":
			if rest := strings.TrimSpace(strings.Join(lines[i:], "\n")); rest != "" {
				return r, fmt.Errorf("%s: a second paragraph; a Release file has one", where())
			}
			return r, r.named()
		case line[0] == ' ' || line[0] == '\t':
			if last == "" {
				return r, fmt.Errorf("%s: a continuation line before any field", where())
			}
			r.Fields[last] += "\n" + strings.TrimSpace(line)
			continue
		case line[0] == '#':
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !fieldName(name) {
			return r, fmt.Errorf("%s: not a field (Name: value)", where())
		}
		if _, dup := r.Fields[name]; dup {
			return r, fmt.Errorf("%s: field %s twice", where(), name)
		}
		last = name
		value = strings.TrimSpace(value)
		r.Fields[name] = value
		switch strings.ToLower(name) {
		case "origin":
			r.Origin = value
		case "label":
			r.Label = value
		case "suite":
			r.Suite = value
		case "codename":
			r.Codename = value
		case "version":
			r.Version = value
		}
	}
	return r, r.named()
}

func (r Release) named() error {
	if r.Suite == "" && r.Codename == "" {
		return errors.New("names no distribution: it has neither Suite nor Codename")
	}
	return nil
}

// clearsigned returns the signed text of an OpenPGP clearsigned message
// (RFC 4880 section 7): after the armor headers and the blank line that
// ends them, up to the signature, with dash-escaping undone.
// It also returns how many lines come before the text.
func clearsigned(lines []string) (int, []string, error) {
	i := 1
	for i < len(lines) && strings.TrimSpace(lines[i]) != "" {
		i++ // armor headers: Hash: SHA512
	}
	skip := i + 1
	var out []string
	for i = skip; i < len(lines); i++ {
		if strings.TrimSpace(lines[i]) == pgpSignature {
			return skip, out, nil
		}
		out = append(out, strings.TrimPrefix(lines[i], "- "))
	}
	return 0, nil, errors.New("clearsigned, but the signature block (" + pgpSignature + ") is missing: the file is cut short")
}

// fieldName reports whether s is a deb822 field name: printable US-ASCII
// other than space and colon, not starting with # or -.
func fieldName(s string) bool {
	if s == "" || s[0] == '#' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}

func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
