package notify

import (
	"bufio"
	"fmt"
	"regexp"
	"strings"
)

// Rule is one CODEOWNERS line: a pattern and its owners. A rule without
// owners makes the paths it matches unowned.
type Rule struct {
	Line    int
	Pattern string
	Owners  []string
	re      *regexp.Regexp
}

// Codeowners is a parsed CODEOWNERS file.
type Codeowners struct {
	Rules []Rule
}

// ParseCodeowners reads a CODEOWNERS file as GitHub does: one rule per line,
// "#" comments, a pattern then owners (@user, @org/team or an e-mail
// address). Patterns follow GitHub's rules (mostly .gitignore's): "*"
// matches within one path segment, "**" across segments, a leading "/" or a
// slash inside anchors the pattern at the root, a trailing "/" matches a
// directory and everything in it, and "docs/*" matches files directly in
// docs only. Errors name the line.
func ParseCodeowners(text string) (*Codeowners, error) {
	co := &Codeowners{}
	sc := bufio.NewScanner(strings.NewReader(text))
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if i := strings.Index(line, " #"); i >= 0 {
			line = line[:i]
		}
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		r := Rule{Line: n, Pattern: fields[0], Owners: fields[1:]}
		for _, o := range r.Owners {
			if !strings.HasPrefix(o, "@") && !strings.Contains(o, "@") {
				return nil, fmt.Errorf("CODEOWNERS line %d: owner %q is neither @user, @org/team nor an e-mail address", n, o)
			}
		}
		re, err := patternRegexp(r.Pattern)
		if err != nil {
			return nil, fmt.Errorf("CODEOWNERS line %d: pattern %q: %w", n, r.Pattern, err)
		}
		r.re = re
		co.Rules = append(co.Rules, r)
	}
	return co, sc.Err()
}

func patternRegexp(p string) (*regexp.Regexp, error) {
	if strings.HasPrefix(p, "!") || strings.Contains(p, "[") || strings.HasPrefix(p, `\#`) {
		return nil, fmt.Errorf("negation, character ranges and escapes are not supported by GitHub's CODEOWNERS")
	}
	dir := strings.HasSuffix(p, "/")
	p = strings.TrimSuffix(p, "/")
	anchored := strings.HasPrefix(p, "/") || strings.Contains(p, "/")
	p = strings.TrimPrefix(p, "/")
	var b strings.Builder
	b.WriteString("^")
	if !anchored {
		b.WriteString("(?:.*/)?")
	}
	for i := 0; i < len(p); i++ {
		switch {
		case strings.HasPrefix(p[i:], "**/"):
			b.WriteString("(?:.*/)?")
			i += 2
		case strings.HasPrefix(p[i:], "/**"):
			b.WriteString("(?:/.*)?")
			i += 2
		case strings.HasPrefix(p[i:], "**"):
			b.WriteString(".*")
			i++
		case p[i] == '*':
			b.WriteString("[^/]*")
		case p[i] == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(p[i : i+1]))
		}
	}
	// A pattern naming a directory owns everything in it; "docs/*" owns
	// only the files directly in docs, as GitHub documents.
	last := p[strings.LastIndex(p, "/")+1:]
	if dir || !strings.HasSuffix(last, "*") || strings.HasSuffix(last, "**") || p == "*" {
		if p == "*" {
			b.Reset()
			b.WriteString("^.*")
		} else {
			b.WriteString("(?:/.*)?")
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}

// Owners returns the owners of path: those of the last rule that matches
// it, and whether any rule did.
func (co *Codeowners) Owners(path string) ([]string, bool) {
	path = strings.TrimPrefix(path, "/")
	for i := len(co.Rules) - 1; i >= 0; i-- {
		if co.Rules[i].re.MatchString(path) {
			return co.Rules[i].Owners, true
		}
	}
	return nil, false
}

// Default returns the owners of the last "*" rule: everyone's fallback.
func (co *Codeowners) Default() []string {
	for i := len(co.Rules) - 1; i >= 0; i-- {
		if co.Rules[i].Pattern == "*" {
			return co.Rules[i].Owners
		}
	}
	return nil
}
