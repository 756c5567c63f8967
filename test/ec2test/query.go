package ec2test

import (
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// params reads the EC2 Query protocol's flattened lists and structures
// (Name.1, Filter.1.Value.2, TagSpecification.1.Tag.1.Key) from a form.
type params url.Values

func (p params) get(key string) string { return url.Values(p).Get(key) }

func (p params) has(key string) bool { _, ok := p[key]; return ok }

// list returns prefix.1, prefix.2, … up to the first gap.
func (p params) list(prefix string) []string {
	var out []string
	for i := 1; ; i++ {
		k := prefix + "." + strconv.Itoa(i)
		if !p.has(k) {
			return out
		}
		out = append(out, p.get(k))
	}
}

// count returns how many consecutive members prefix.N exist, where a
// member exists when any key starts with prefix.N. or equals prefix.N.
func (p params) count(prefix string) int {
	n := 0
	for i := 1; ; i++ {
		k := prefix + "." + strconv.Itoa(i)
		found := p.has(k)
		if !found {
			for key := range p {
				if strings.HasPrefix(key, k+".") {
					found = true
					break
				}
			}
		}
		if !found {
			return n
		}
		n++
	}
}

func (p params) boolean(key string) (bool, *apiError) {
	v := p.get(key)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, invalidValue(key, v)
	}
	return b, nil
}

func (p params) integer(key string) (int, *apiError) {
	v := p.get(key)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, invalidValue(key, v)
	}
	return n, nil
}

// tags reads prefix.N.Key and prefix.N.Value.
func (p params) tags(prefix string) (map[string]string, *apiError) {
	n := p.count(prefix)
	out := make(map[string]string, n)
	for i := 1; i <= n; i++ {
		base := prefix + "." + strconv.Itoa(i)
		k, v := p.get(base+".Key"), p.get(base+".Value")
		if err := validTag(k, v); err != nil {
			return nil, err
		}
		out[k] = v
	}
	if len(out) > 50 {
		return nil, &apiError{Code: "TagLimitExceeded", Message: "The maximum number of tags (50) was exceeded."}
	}
	return out, nil
}

func validTag(k, v string) *apiError {
	switch {
	case k == "":
		return &apiError{Code: "InvalidParameterValue", Message: "Tag keys must not be empty."}
	case len(k) > 128:
		return &apiError{Code: "InvalidParameterValue", Message: "Tag key exceeds the maximum length of 128 characters."}
	case len(v) > 256:
		return &apiError{Code: "InvalidParameterValue", Message: "Tag value exceeds the maximum length of 256 characters."}
	case strings.HasPrefix(strings.ToLower(k), "aws:"):
		return &apiError{Code: "InvalidParameterValue", Message: "Tag keys starting with 'aws:' are reserved for internal use."}
	}
	return nil
}

// tagSpecs reads TagSpecification.N.ResourceType and .Tag.M, and rejects
// resource types the action does not allow, as EC2 does.
func (p params) tagSpecs(allowed ...string) (map[string]map[string]string, *apiError) {
	n := p.count("TagSpecification")
	out := map[string]map[string]string{}
	for i := 1; i <= n; i++ {
		base := "TagSpecification." + strconv.Itoa(i)
		rt := p.get(base + ".ResourceType")
		ok := false
		for _, a := range allowed {
			ok = ok || rt == a
		}
		if !ok {
			return nil, &apiError{Code: "InvalidParameterValue", Message: "'" + rt + "' is not a valid taggable resource type for this operation."}
		}
		tags, err := p.tags(base + ".Tag")
		if err != nil {
			return nil, err
		}
		if out[rt] == nil {
			out[rt] = map[string]string{}
		}
		for k, v := range tags {
			out[rt][k] = v
		}
	}
	return out, nil
}

type filter struct {
	name   string
	values []string
}

// filters reads prefix.N.Name and prefix.N.Value.M and rejects names the
// resource does not support, as EC2 does. A supported name "tag:" admits
// every tag:<key> filter.
func (p params) filters(prefix string, supported ...string) ([]filter, *apiError) {
	n := p.count(prefix)
	var out []filter
	for i := 1; i <= n; i++ {
		base := prefix + "." + strconv.Itoa(i)
		f := filter{name: p.get(base + ".Name"), values: p.list(base + ".Value")}
		ok := false
		for _, s := range supported {
			ok = ok || f.name == s || (s == "tag:" && strings.HasPrefix(f.name, "tag:") && len(f.name) > 4)
		}
		if !ok {
			return nil, &apiError{Code: "InvalidParameterValue", Message: "The filter '" + f.name + "' is invalid"}
		}
		if len(f.values) == 0 {
			return nil, &apiError{Code: "InvalidParameterValue", Message: "The filter '" + f.name + "' has no values"}
		}
		out = append(out, f)
	}
	return out, nil
}

// match reports whether a resource passes every filter (AND) with any of
// its values (OR). attr returns the resource's values of a filter name.
func match(fs []filter, tags map[string]string, attr func(name string) []string) bool {
	for _, f := range fs {
		var have []string
		switch {
		case strings.HasPrefix(f.name, "tag:"):
			if v, ok := tags[f.name[4:]]; ok {
				have = []string{v}
			}
		case f.name == "tag-key":
			for k := range tags {
				have = append(have, k)
			}
		case f.name == "tag-value":
			for _, v := range tags {
				have = append(have, v)
			}
		default:
			have = attr(f.name)
		}
		if !anyMatch(f.values, have) {
			return false
		}
	}
	return true
}

func anyMatch(patterns, have []string) bool {
	for _, p := range patterns {
		for _, h := range have {
			if glob(p, h) {
				return true
			}
		}
	}
	return false
}

// glob matches EC2 filter wildcards: * any run, ? one character, \ escapes.
func glob(pattern, s string) bool {
	if pattern == "" {
		return s == ""
	}
	switch c := pattern[0]; c {
	case '*':
		for i := 0; i <= len(s); i++ {
			if glob(pattern[1:], s[i:]) {
				return true
			}
		}
		return false
	case '?':
		return s != "" && glob(pattern[1:], s[1:])
	case '\\':
		if len(pattern) > 1 {
			pattern = pattern[1:]
		}
		fallthrough
	default:
		return s != "" && s[0] == pattern[0] && glob(pattern[1:], s[1:])
	}
}

// page cuts a sorted result by MaxResults and NextToken.
func page[T any](p params, items []T) ([]T, string, *apiError) {
	max, err := p.integer("MaxResults")
	if err != nil {
		return nil, "", err
	}
	start := 0
	if tok := p.get("NextToken"); tok != "" {
		n, convErr := strconv.Atoi(strings.TrimPrefix(tok, "page-"))
		if convErr != nil || !strings.HasPrefix(tok, "page-") || n > len(items) {
			return nil, "", &apiError{Code: "InvalidNextToken", Message: "The token '" + tok + "' is invalid."}
		}
		start = n
	}
	if max == 0 || start+max >= len(items) {
		return items[start:], "", nil
	}
	return items[start : start+max], "page-" + strconv.Itoa(start+max), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
