package strictyaml

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"
)

// field is a struct field as encoding/json sees it.
type field struct {
	name   string
	index  []int
	typ    reflect.Type
	tagged bool // named by its json tag
	quoted bool // `json:",string"`
}

type fields struct {
	list   []field // in declaration order
	byName map[string]field
}

var fieldCache sync.Map // reflect.Type → *fields

func cachedFields(t reflect.Type) *fields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(*fields)
	}
	list := typeFields(t)
	f := &fields{list: list, byName: make(map[string]field, len(list))}
	for _, x := range list {
		f.byName[x.name] = x
	}
	fieldCache.Store(t, f)
	return f
}

// typeFields returns the fields encoding/json decodes into t: json tag
// names, or Go names without a tag; `json:"-"` and unexported fields left
// out; the fields of embedded structs without a tag name promoted, the
// shallowest (then the tagged) winning a name, a name left out when that
// does not decide. It follows encoding/json's typeFields.
func typeFields(t reflect.Type) []field {
	type embedded struct {
		typ   reflect.Type
		index []int
	}
	var out []field
	next := []embedded{{typ: t}}
	visited := map[reflect.Type]bool{}
	for len(next) > 0 {
		current := next
		next = nil
		count := map[reflect.Type]int{}
		for _, e := range current {
			count[e.typ]++
		}
		for _, e := range current {
			if visited[e.typ] {
				continue
			}
			visited[e.typ] = true
			for i := range e.typ.NumField() {
				sf := e.typ.Field(i)
				ft := sf.Type
				if ft.Name() == "" && ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if sf.Anonymous {
					if !sf.IsExported() && ft.Kind() != reflect.Struct {
						continue
					}
				} else if !sf.IsExported() {
					continue
				}
				tag := sf.Tag.Get("json")
				if tag == "-" {
					continue
				}
				name, opts, _ := strings.Cut(tag, ",")
				index := append(slices.Clone(e.index), i)
				if name != "" || !sf.Anonymous || ft.Kind() != reflect.Struct {
					f := field{name: name, index: index, typ: sf.Type, tagged: name != ""}
					if name == "" {
						f.name = sf.Name
					}
					if slices.Contains(strings.Split(opts, ","), "string") {
						switch ft.Kind() {
						case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
							reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
							reflect.Float32, reflect.Float64, reflect.String:
							f.quoted = true
						}
					}
					out = append(out, f)
					if count[e.typ] > 1 {
						// The same struct embedded twice at one depth:
						// its fields are ambiguous, as in encoding/json.
						out = append(out, f)
					}
					continue
				}
				next = append(next, embedded{typ: ft, index: index})
			}
		}
	}
	// Dominance: per name, the shallowest field, then the tagged one.
	slices.SortStableFunc(out, func(a, b field) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		if c := len(a.index) - len(b.index); c != 0 {
			return c
		}
		if a.tagged != b.tagged {
			if a.tagged {
				return -1
			}
			return 1
		}
		return slices.Compare(a.index, b.index)
	})
	var kept []field
	for i := 0; i < len(out); {
		j := i + 1
		for j < len(out) && out[j].name == out[i].name {
			j++
		}
		group := out[i:j]
		i = j
		if len(group) > 1 && len(group[0].index) == len(group[1].index) && group[0].tagged == group[1].tagged {
			continue // ambiguous
		}
		kept = append(kept, group[0])
	}
	slices.SortFunc(kept, func(a, b field) int { return slices.Compare(a.index, b.index) })
	return kept
}

// names lists up to max field names, for a message.
func names(fs []field, max int) string {
	var b strings.Builder
	for i, f := range fs {
		if i == max {
			fmt.Fprintf(&b, ", … (%d in all)", len(fs))
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(f.name)
	}
	if len(fs) == 0 {
		return "(none)"
	}
	return b.String()
}

// suggest says what an unknown key may have meant: the known name it
// differs from only in case, or the nearest known name when it is close
// (an edit distance of about a quarter of its length), else the known
// names.
func suggest(key string, fs []field) string {
	best, bestDist := "", -1
	for _, f := range fs {
		if strings.EqualFold(f.name, key) {
			return fmt.Sprintf("did you mean %q? (names are case-sensitive)", f.name)
		}
		d := distance(strings.ToLower(key), strings.ToLower(f.name))
		if bestDist < 0 || d < bestDist {
			best, bestDist = f.name, d
		}
	}
	n := max(utf8.RuneCountInString(key), utf8.RuneCountInString(best))
	if bestDist >= 0 && bestDist <= max(1, (n+2)/4) {
		return fmt.Sprintf("did you mean %q?", best)
	}
	return "want one of " + names(fs, len(fs))
}

// distance is the Levenshtein distance between a and b, in runes.
func distance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
