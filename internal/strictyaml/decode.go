package strictyaml

import (
	"bytes"
	"encoding"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong in a file.
type Problem struct {
	// Line and Column are where the problem is, from 1; 0 when unknown.
	Line, Column int
	// Path is the field path of the value: local.maxParallel,
	// phases.publish.aws.timeout, schedules[2].id; "" for the document.
	Path string
	// Message says what is wrong and what is wanted.
	Message string
}

// Error is every problem found in a file, in the order of the file.
type Error struct {
	// Name is the file's name, starting each problem's line; it may be "".
	Name     string
	Problems []Problem
}

// Error returns one line per problem, as "name:line:column: path: message".
func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.Name)
		switch {
		case p.Line > 0 && e.Name == "":
			fmt.Fprintf(&b, "line %d", p.Line)
		case p.Line > 0:
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		if p.Line > 0 && p.Column > 0 {
			fmt.Fprintf(&b, ":%d", p.Column)
		}
		if p.Line > 0 || e.Name != "" {
			b.WriteString(": ")
		}
		if p.Path != "" {
			b.WriteString(p.Path)
			b.WriteString(": ")
		}
		b.WriteString(p.Message)
	}
	return b.String()
}

// maxNodes bounds the nodes one document may expand to through aliases.
const maxNodes = 1 << 20

// Unmarshal decodes data, one YAML document or a JSON text, into v, a
// non-nil pointer, by v's json tags, strictly (see the package doc). name
// is the file's name for the messages. It checks the whole document before
// it decodes anything: when the document has problems, it returns an
// *Error listing all of them and leaves v unchanged. An empty document
// leaves v unchanged too.
func Unmarshal(name string, data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("strictyaml: Unmarshal wants a non-nil pointer, got %T", v)
	}
	d := &decoder{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		d.parseError(data, err)
		return &Error{Name: name, Problems: d.problems}
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		d.addf(&next, "", "a second YAML document; the file holds one (remove the ---)")
	case !errors.Is(err, io.EOF):
		d.parseError(data, err)
	}
	var root *yaml.Node
	if len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	var out any
	if root != nil {
		out = d.value(root, rv.Type().Elem(), "")
	}
	if len(d.problems) > 0 {
		slices.SortStableFunc(d.problems, func(a, b Problem) int {
			if a.Line != b.Line {
				return a.Line - b.Line
			}
			return a.Column - b.Column
		})
		return &Error{Name: name, Problems: d.problems}
	}
	if out == nil {
		return nil // a null document
	}
	b, err := json.Marshal(out)
	if err != nil {
		return &Error{Name: name, Problems: []Problem{{Message: err.Error()}}}
	}
	jd := json.NewDecoder(bytes.NewReader(b))
	jd.DisallowUnknownFields()
	if err := jd.Decode(v); err != nil {
		// The walk should have found it; name what encoding/json says.
		p := Problem{Message: err.Error()}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			p.Path = te.Field
		}
		return &Error{Name: name, Problems: []Problem{p}}
	}
	return nil
}

type decoder struct {
	problems []Problem
	nodes    int
}

func (d *decoder) addf(n *yaml.Node, path, format string, args ...any) {
	d.problems = append(d.problems, Problem{Line: n.Line, Column: n.Column, Path: path, Message: fmt.Sprintf(format, args...)})
}

var parseLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserProblems are the problems of go.yaml.in/yaml/v3's parser (as
// opposed to its scanner), whose line it counts from 0; the line is where
// the mapping or list the problem is in starts, or else the problem's.
var parserProblems = []string{
	"did not find expected <stream-start>", "did not find expected <document start>",
	"found undefined tag handle", "did not find expected node content",
	"did not find expected '-' indicator", "did not find expected key",
	"did not find expected ',' or ']'", "did not find expected ',' or '}'",
	"found duplicate %YAML directive", "found incompatible YAML document", "found duplicate %TAG directive",
}

// parseError adds a syntax error from the YAML parser, with its line.
func (d *decoder) parseError(data []byte, err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	p := Problem{Message: "YAML syntax: " + msg}
	if m := parseLine.FindStringSubmatch(err.Error()); m != nil {
		p.Line, _ = strconv.Atoi(m[1])
		p.Message = "YAML syntax: " + m[2]
		if slices.Contains(parserProblems, m[2]) {
			p.Line++
			p.Message += " (in what starts on this line)"
		}
	} else if slices.Contains(parserProblems, msg) {
		p.Line = 1
	}
	if p.Line > 0 {
		lines := strings.Split(string(data), "\n")
		if p.Line <= len(lines) && strings.HasPrefix(strings.TrimLeft(lines[p.Line-1], " "), "\t") {
			p.Message += " (a tab: YAML indents with spaces)"
		}
	}
	d.problems = append(d.problems, p)
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// implements reports whether t or *t implements iface.
func implements(t, iface reflect.Type) bool {
	return t.Implements(iface) || t.Kind() != reflect.Pointer && reflect.PointerTo(t).Implements(iface)
}

// resolve follows aliases, counting the nodes the document expands to.
func (d *decoder) resolve(n *yaml.Node) (*yaml.Node, bool) {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	d.nodes++
	if d.nodes == maxNodes {
		d.addf(n, "", "the document expands to over %d values through its aliases", maxNodes)
	}
	return n, d.nodes < maxNodes
}

// value checks n against t and returns its JSON form (a tree of maps,
// slices, strings, json.Number, bools, nil and json.RawMessage). What it
// returns does not matter once a problem is recorded.
func (d *decoder) value(n *yaml.Node, t reflect.Type, path string) any {
	n, ok := d.resolve(n)
	if !ok {
		return nil
	}
	tag := n.ShortTag()
	if n.Kind == yaml.ScalarNode && tag == "!!null" {
		// As encoding/json: a null sets a pointer, map, slice or
		// interface to nil, leaves other values alone, and is handed
		// to an UnmarshalJSON of a non-pointer type.
		if t.Kind() != reflect.Pointer && implements(t, jsonUnmarshaler) {
			return d.unmarshaler(n, t, path)
		}
		return nil
	}
	if n.Kind == yaml.ScalarNode && !strings.HasPrefix(tag, "!!") {
		d.addf(n, path, "the YAML tag %s is not supported", n.Tag)
		return nil
	}
	for t.Kind() == reflect.Pointer && !implements(t, jsonUnmarshaler) && !implements(t, textUnmarshaler) {
		t = t.Elem()
	}
	if implements(t, jsonUnmarshaler) {
		return d.unmarshaler(n, t, path)
	}
	if implements(t, textUnmarshaler) {
		if n.Kind != yaml.ScalarNode {
			d.addf(n, path, "want a string, got %s", describe(n))
			return nil
		}
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			d.addf(n, path, "%v", err)
		}
		return n.Value
	}
	switch t.Kind() {
	case reflect.Interface:
		if t.NumMethod() > 0 {
			d.addf(n, path, "cannot decode into the Go interface %v", t)
			return nil
		}
		return d.generic(n, path)
	case reflect.Struct:
		return d.object(n, t, path)
	case reflect.Map:
		return d.mapping(n, t, path)
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 && !implements(t.Elem(), jsonUnmarshaler) && !implements(t.Elem(), textUnmarshaler) {
			if n.Kind != yaml.ScalarNode {
				d.addf(n, path, "want base64 text, got %s", describe(n))
				return nil
			}
			if _, err := base64.StdEncoding.DecodeString(n.Value); err != nil {
				d.addf(n, path, "want base64 text, got %s", describe(n))
			}
			return n.Value
		}
		return d.sequence(n, t, path, -1)
	case reflect.Array:
		return d.sequence(n, t, path, t.Len())
	default:
		return d.scalar(n, t, path)
	}
}

// unmarshaler checks n with t's own UnmarshalJSON.
func (d *decoder) unmarshaler(n *yaml.Node, t reflect.Type, path string) any {
	g := d.generic(n, path)
	raw, err := json.Marshal(g)
	if err != nil {
		d.addf(n, path, "%v", err)
		return nil
	}
	for t.Kind() == reflect.Pointer && !t.Implements(jsonUnmarshaler) {
		t = t.Elem()
	}
	var u json.Unmarshaler
	if t.Kind() == reflect.Pointer {
		u = reflect.New(t.Elem()).Interface().(json.Unmarshaler)
	} else {
		u = reflect.New(t).Interface().(json.Unmarshaler)
	}
	if err := u.UnmarshalJSON(raw); err != nil {
		d.addf(n, path, "%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return json.RawMessage(raw)
}

// scalar checks a string, number or bool.
func (d *decoder) scalar(n *yaml.Node, t reflect.Type, path string) any {
	var want string
	switch t.Kind() {
	case reflect.String:
		want = "a string"
	case reflect.Bool:
		want = "true or false"
	case reflect.Float32, reflect.Float64:
		want = "a number"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		want = "an integer"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		want = "a non-negative integer"
	default:
		d.addf(n, path, "cannot decode into the Go type %v", t)
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		d.addf(n, path, "want %s, got %s", want, describe(n))
		return nil
	}
	tag := n.ShortTag()
	switch t.Kind() {
	case reflect.String:
		return n.Value // any scalar's text: version: 1.10 is "1.10"
	case reflect.Bool:
		var b bool
		if tag != "!!bool" || n.Decode(&b) != nil {
			d.addf(n, path, "want %s, got %s", want, describe(n))
		}
		return b
	case reflect.Float32, reflect.Float64:
		var f float64
		if tag != "!!int" && tag != "!!float" || n.Decode(&f) != nil {
			d.addf(n, path, "want %s, got %s", want, describe(n))
			return nil
		}
		if math.IsInf(f, 0) || math.IsNaN(f) || t.Kind() == reflect.Float32 && math.Abs(f) > math.MaxFloat32 {
			d.addf(n, path, "want a finite number that fits in %v, got %s", t, n.Value)
			return nil
		}
		return json.Number(strconv.FormatFloat(f, 'g', -1, 64))
	}
	if tag != "!!int" {
		d.addf(n, path, "want %s, got %s", want, describe(n))
		return nil
	}
	bits := t.Bits()
	if t.Kind() >= reflect.Uint {
		var u uint64
		if err := n.Decode(&u); err != nil || bits < 64 && u >= 1<<bits {
			d.addf(n, path, "want an integer from 0 to %d, got %s", uint64(math.MaxUint64)>>(64-bits), n.Value)
			return nil
		}
		return json.Number(strconv.FormatUint(u, 10))
	}
	var i int64
	if err := n.Decode(&i); err != nil || bits < 64 && (i < -1<<(bits-1) || i >= 1<<(bits-1)) {
		d.addf(n, path, "want an integer from %d to %d, got %s", int64(-1)<<(bits-1), int64(math.MaxInt64)>>(64-bits), n.Value)
		return nil
	}
	return json.Number(strconv.FormatInt(i, 10))
}

// pair is one key and value of a mapping.
type pair struct{ key, value *yaml.Node }

// pairs returns a mapping's keys and values, with merge keys (<<)
// expanded: a key written in the mapping overrides a merged one, and an
// earlier merged mapping overrides a later one. It reports keys that are
// not scalars and keys written twice.
func (d *decoder) pairs(n *yaml.Node, path string) []pair {
	var own, merged []pair
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "<<" && (k.Tag == "" || k.Tag == "!" || k.ShortTag() == "!!merge") {
			merged = append(merged, d.merge(v, path)...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.addf(k, path, "want a plain key, got %s", describe(k))
			continue
		}
		if first, ok := seen[k.Value]; ok {
			d.addf(k, join(path, k.Value), "set twice; first at line %d", first.Line)
			continue
		}
		seen[k.Value] = k
		own = append(own, pair{k, v})
	}
	for _, p := range merged {
		if _, ok := seen[p.key.Value]; !ok {
			seen[p.key.Value] = p.key
			own = append(own, p)
		}
	}
	return own
}

// merge returns the pairs a merge key's value brings: a mapping, or a list
// of them.
func (d *decoder) merge(v *yaml.Node, path string) []pair {
	v, ok := d.resolve(v)
	if !ok {
		return nil
	}
	switch v.Kind {
	case yaml.MappingNode:
		return d.pairs(v, path)
	case yaml.SequenceNode:
		var out []pair
		seen := map[string]bool{}
		for _, m := range v.Content {
			if m, _ = d.resolve(m); m.Kind != yaml.MappingNode {
				d.addf(m, path, "a merge key (<<) wants a mapping or a list of them, got %s", describe(m))
				continue
			}
			for _, p := range d.pairs(m, path) {
				if !seen[p.key.Value] {
					seen[p.key.Value] = true
					out = append(out, p)
				}
			}
		}
		return out
	}
	d.addf(v, path, "a merge key (<<) wants a mapping or a list of them, got %s", describe(v))
	return nil
}

// object checks a mapping against a struct's fields.
func (d *decoder) object(n *yaml.Node, t reflect.Type, path string) any {
	fs := cachedFields(t)
	if n.Kind != yaml.MappingNode {
		d.addf(n, path, "want a mapping with the fields %s, got %s", names(fs.list, 6), describe(n))
		return nil
	}
	out := map[string]any{}
	for _, p := range d.pairs(n, path) {
		name := p.key.Value
		at := join(path, name)
		f, ok := fs.byName[name]
		if !ok {
			d.addf(p.key, at, "unknown field, %s", suggest(name, fs.list))
			continue
		}
		v, ok := d.resolve(p.value)
		if !ok {
			continue
		}
		if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null" {
			continue // unset
		}
		if f.quoted {
			out[name] = d.quoted(v, f.typ, at)
			continue
		}
		out[name] = d.value(v, f.typ, at)
	}
	return out
}

// quoted checks a field tagged `json:",string"`: its scalar is decoded
// from a JSON string.
func (d *decoder) quoted(n *yaml.Node, t reflect.Type, path string) any {
	v := d.value(n, t, path)
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return string(b)
}

// mapping checks a mapping against a map type.
func (d *decoder) mapping(n *yaml.Node, t reflect.Type, path string) any {
	if n.Kind != yaml.MappingNode {
		d.addf(n, path, "want a mapping, got %s", describe(n))
		return nil
	}
	kt := t.Key()
	switch {
	case kt.Kind() == reflect.String, implements(kt, textUnmarshaler):
	case kt.Kind() >= reflect.Int && kt.Kind() <= reflect.Uintptr:
	default:
		d.addf(n, path, "cannot decode into the Go map type %v", t)
		return nil
	}
	out := map[string]any{}
	for _, p := range d.pairs(n, path) {
		at := join(path, p.key.Value)
		switch {
		case implements(kt, textUnmarshaler):
			k := kt
			for k.Kind() == reflect.Pointer {
				k = k.Elem()
			}
			if err := reflect.New(k).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(p.key.Value)); err != nil {
				d.addf(p.key, at, "bad key: %v", err)
			}
		case kt.Kind() >= reflect.Int && kt.Kind() <= reflect.Int64:
			if _, err := strconv.ParseInt(p.key.Value, 10, kt.Bits()); err != nil {
				d.addf(p.key, at, "want an integer key, got %s", describe(p.key))
			}
		case kt.Kind() >= reflect.Uint && kt.Kind() <= reflect.Uintptr:
			if _, err := strconv.ParseUint(p.key.Value, 10, kt.Bits()); err != nil {
				d.addf(p.key, at, "want a non-negative integer key, got %s", describe(p.key))
			}
		}
		out[p.key.Value] = d.value(p.value, t.Elem(), at)
	}
	return out
}

// sequence checks a list against a slice type, or an array type of n
// elements when n >= 0.
func (d *decoder) sequence(n *yaml.Node, t reflect.Type, path string, max int) any {
	if n.Kind != yaml.SequenceNode {
		d.addf(n, path, "want a list, got %s", describe(n))
		return nil
	}
	if max >= 0 && len(n.Content) > max {
		d.addf(n, path, "want at most %d values, got %d", max, len(n.Content))
	}
	out := make([]any, 0, len(n.Content))
	for i, e := range n.Content {
		out = append(out, d.value(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i)))
	}
	return out
}

// generic returns the JSON form of n without a Go type to follow, as for
// an interface{} or a type with its own UnmarshalJSON.
func (d *decoder) generic(n *yaml.Node, path string) any {
	n, ok := d.resolve(n)
	if !ok {
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		out := map[string]any{}
		for _, p := range d.pairs(n, path) {
			out[p.key.Value] = d.generic(p.value, join(path, p.key.Value))
		}
		return out
	case yaml.SequenceNode:
		out := make([]any, 0, len(n.Content))
		for i, e := range n.Content {
			out = append(out, d.generic(e, fmt.Sprintf("%s[%d]", path, i)))
		}
		return out
	case yaml.ScalarNode:
	default:
		d.addf(n, path, "want a value, got %s", describe(n))
		return nil
	}
	switch tag := n.ShortTag(); tag {
	case "!!null":
		return nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			d.addf(n, path, "want true or false, got %s", describe(n))
		}
		return b
	case "!!int":
		var i any
		if err := n.Decode(&i); err != nil {
			d.addf(n, path, "%v", err)
			return nil
		}
		switch i := i.(type) {
		case int:
			return json.Number(strconv.Itoa(i))
		case int64:
			return json.Number(strconv.FormatInt(i, 10))
		case uint64:
			return json.Number(strconv.FormatUint(i, 10))
		}
		d.addf(n, path, "the integer %s is out of range", n.Value)
		return nil
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			d.addf(n, path, "want a finite number, got %s", describe(n))
			return nil
		}
		return json.Number(strconv.FormatFloat(f, 'g', -1, 64))
	case "!!str", "!!timestamp", "!!binary":
		return n.Value
	default:
		d.addf(n, path, "the YAML tag %s is not supported", n.Tag)
		return nil
	}
}

// describe names what a node holds, for "got …".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	s := n.Value
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	if n.ShortTag() == "!!str" {
		return strconv.Quote(s)
	}
	return s
}

// join appends a key to a field path.
func join(path, key string) string {
	if key == "" || strings.ContainsAny(key, ".[]\"' \t\n") {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}
