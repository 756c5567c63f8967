package strictyaml

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// duration is a type with its own UnmarshalJSON, as worker.Duration.
type duration struct{ time.Duration }

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) != nil {
		return fmt.Errorf("want a duration like 90s, got %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration like 90s, got %q", s)
	}
	d.Duration = v
	return nil
}

// level is a type with its own UnmarshalText.
type level string

func (l *level) UnmarshalText(b []byte) error {
	if s := string(b); s == "low" || s == "high" {
		*l = level(s)
		return nil
	}
	return fmt.Errorf("want low or high, got %q", b)
}

type Base struct {
	Kind string `json:"kind"`
	Note string `json:"note,omitempty"`
}

type item struct {
	Name  string `json:"name"`
	Count int    `json:"count,omitempty"`
}

type local struct {
	Dir         string `json:"dir,omitempty"`
	MaxParallel int    `json:"maxParallel,omitempty"`
}

type config struct {
	Base
	Name        string            `json:"name"`
	MaxParallel int               `json:"maxParallel,omitempty"`
	Small       int8              `json:"small,omitempty"`
	Unsigned    uint              `json:"unsigned,omitempty"`
	Ratio       float64           `json:"ratio,omitempty"`
	Enabled     bool              `json:"enabled,omitempty"`
	Timeout     duration          `json:"timeout,omitzero"`
	Backoff     *duration         `json:"backoff,omitempty"`
	Level       level             `json:"level,omitempty"`
	Local       *local            `json:"local,omitempty"`
	Items       []item            `json:"items,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Counts      map[int]int       `json:"counts,omitempty"`
	Extra       any               `json:"extra,omitempty"`
	Port        int               `json:"port,string,omitempty"`
	Data        []byte            `json:"data,omitempty"`
	Secret      string            `json:"-"`
	NoTag       string
	hidden      string
}

func TestUnmarshalDecodesAsEncodingJSON(t *testing.T) {
	for _, tc := range []struct{ name, yaml, json string }{
		{"all kinds", `
kind: k
note: n
name: "x"
maxParallel: 0x10
small: -128
unsigned: 7
ratio: 1.5
enabled: true
timeout: 90s
backoff: 1m
level: high
local: {dir: d, maxParallel: 2}
items:
- name: a
- {name: b, count: 3}
labels: {a.b: c, n: 1.10, t: true}
counts: {1: 2}
extra: {list: [1, x, null, 2.5], m: {k: v}}
port: 8080
data: aGk=
NoTag: plain
`, `{"kind":"k","note":"n","name":"x","maxParallel":16,"small":-128,"unsigned":7,"ratio":1.5,"enabled":true,
"timeout":"90s","backoff":"1m","level":"high","local":{"dir":"d","maxParallel":2},
"items":[{"name":"a"},{"name":"b","count":3}],"labels":{"a.b":"c","n":"1.10","t":"true"},"counts":{"1":2},
"extra":{"list":[1,"x",null,2.5],"m":{"k":"v"}},"port":"8080","data":"aGk=","NoTag":"plain"}`},
		{"null leaves a field unset", "name: x\nlocal:\ntimeout: ~\nitems: [null]\n", `{"name":"x","items":[null]}`},
		{"anchors and merge keys", `
items:
- &a {name: a, count: 1}
- *a
- <<: *a
  name: b
local:
  <<: [{dir: first}, {dir: second, maxParallel: 3}]
`, `{"items":[{"name":"a","count":1},{"name":"a","count":1},{"name":"b","count":1}],"local":{"dir":"first","maxParallel":3}}`},
		{"JSON", "{\"name\": \"x\",\n\t\"local\": {\"maxParallel\": 2}, \"items\": [{\"name\": \"a\"}]}", `{"name":"x","local":{"maxParallel":2},"items":[{"name":"a"}]}`},
		{"empty", "", `{}`},
		{"comments only", "# nothing\n", `{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got, want config
			if err := Unmarshal("f.yaml", []byte(tc.yaml), &got); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(tc.json), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestUnmarshalReportsEveryProblemWithPathAndLine(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown field, close", "local:\n  maxParalel: 4\n",
			`f.yaml:2:3: local.maxParalel: unknown field, did you mean "maxParallel"?`},
		{"unknown field, another case", "Name: x\nlocal: {maxparallel: 4}\n",
			`f.yaml:1:1: Name: unknown field, did you mean "name"? (names are case-sensitive)` + "\n" +
				`f.yaml:2:9: local.maxparallel: unknown field, did you mean "maxParallel"? (names are case-sensitive)`},
		{"unknown field, far", "local: {directory: x}\n",
			`f.yaml:1:9: local.directory: unknown field, want one of dir, maxParallel`},
		{"left-out fields are unknown", "Secret: s\nhidden: h\n",
			"f.yaml:1:1: Secret: unknown field, want one of kind, note, name, maxParallel, small, unsigned, ratio, enabled, timeout, backoff, level, local, items, labels, counts, extra, port, data, NoTag\n" +
				`f.yaml:2:1: hidden: unknown field, want one of kind, note, name, maxParallel, small, unsigned, ratio, enabled, timeout, backoff, level, local, items, labels, counts, extra, port, data, NoTag`},
		{"embedded struct's field", "kindd: x\n", `f.yaml:1:1: kindd: unknown field, did you mean "kind"?`},
		{"UnmarshalJSON's error", "timeout: 10 seconds\nbackoff: [1]\n",
			`f.yaml:1:10: timeout: want a duration like 90s, got "10 seconds"` + "\n" +
				`f.yaml:2:10: backoff: want a duration like 90s, got [1]`},
		{"UnmarshalText's error", "level: medium\n", `f.yaml:1:8: level: want low or high, got "medium"`},
		{"wrong scalars", "maxParallel: two\nsmall: 300\nunsigned: -1\nenabled: yes\nratio: x\nport: \"80\"\nname: [a]\ncounts: {x: 1}\ndata: '!!'\n",
			`f.yaml:1:14: maxParallel: want an integer, got "two"` + "\n" +
				`f.yaml:2:8: small: want an integer from -128 to 127, got 300` + "\n" +
				`f.yaml:3:11: unsigned: want an integer from 0 to 18446744073709551615, got -1` + "\n" +
				`f.yaml:4:10: enabled: want true or false, got "yes"` + "\n" +
				`f.yaml:5:8: ratio: want a number, got "x"` + "\n" +
				`f.yaml:6:7: port: want an integer, got "80"` + "\n" +
				`f.yaml:7:7: name: want a string, got a list` + "\n" +
				`f.yaml:8:10: counts.x: want an integer key, got "x"` + "\n" +
				`f.yaml:9:7: data: want base64 text, got "!!"`},
		{"quoted number and float for an int", "maxParallel: \"4\"\nsmall: 1.5\n",
			`f.yaml:1:14: maxParallel: want an integer, got "4"` + "\n" +
				`f.yaml:2:8: small: want an integer, got 1.5`},
		{"wrong shapes", "local: [dir]\nitems: {name: a}\nlabels: x\n",
			`f.yaml:1:8: local: want a mapping with the fields dir, maxParallel, got a list` + "\n" +
				`f.yaml:2:8: items: want a list, got a mapping` + "\n" +
				`f.yaml:3:9: labels: want a mapping, got "x"`},
		{"paths into lists and maps", "items:\n- name: a\n- nme: b\n  count: x\nlabels:\n  a.b: [c]\n",
			`f.yaml:3:3: items[1].nme: unknown field, did you mean "name"?` + "\n" +
				`f.yaml:4:10: items[1].count: want an integer, got "x"` + "\n" +
				`f.yaml:6:8: labels["a.b"]: want a string, got a list`},
		{"a key twice", "name: a\nlocal:\n  dir: x\n  dir: y\nname: b\n",
			`f.yaml:4:3: local.dir: set twice; first at line 3` + "\n" +
				`f.yaml:5:1: name: set twice; first at line 1`},
		{"not a mapping", "- a\n", `f.yaml:1:1: want a mapping with the fields kind, note, name, maxParallel, small, unsigned, … (19 in all), got a list`},
		{"two documents", "name: a\n---\nname: b\n", `f.yaml:2:1: a second YAML document; the file holds one (remove the ---)`},
		{"syntax error", "name: a\nlocal: {dir: x\nitems: []\n", "f.yaml:2: YAML syntax: did not find expected ',' or '}' (in what starts on this line)"},
		{"a tab", "name: a\nlocal:\n\tdir: x\n", "f.yaml:3: YAML syntax: found character that cannot start any token (a tab: YAML indents with spaces)"},
		{"syntax error from the scanner", "a: b\nc: d: e\n", "f.yaml:2: YAML syntax: mapping values are not allowed in this context"},
		{"YAML tags", "name: !env NAME\n", `f.yaml:1:7: name: the YAML tag !env is not supported`},
		{"JSON", "{\"name\": \"x\",\n \"local\": {\"maxParalel\": 2}, \"items\": [{\"name\": 1, \"count\": \"3\"}]}",
			`f.yaml:2:12: local.maxParalel: unknown field, did you mean "maxParallel"?` + "\n" +
				`f.yaml:2:61: items[0].count: want an integer, got "3"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config{Name: "unchanged"}
			err := Unmarshal("f.yaml", []byte(tc.yaml), &c)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error = %v (%T), want an *Error", err, err)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("error:\n%s\nwant:\n%s", got, tc.want)
			}
			if !reflect.DeepEqual(c, config{Name: "unchanged"}) {
				t.Errorf("the value was changed: %+v", c)
			}
		})
	}
}

func TestUnmarshalStopsAnAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 9; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	var v map[string]any
	err := Unmarshal("bomb.yaml", []byte(b.String()), &v)
	if err == nil || !strings.Contains(err.Error(), "expands to over") {
		t.Fatalf("error = %v, want one about the aliases", err)
	}
}

func TestErrorWithoutAName(t *testing.T) {
	err := Unmarshal("", []byte("nme: x\n"), &item{})
	if want := `line 1:1: nme: unknown field, did you mean "name"?`; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
}

func TestSuggest(t *testing.T) {
	fs := typeFields(reflect.TypeFor[struct {
		PipelineFile string `json:"pipelineFile"`
		PipelineRef  string `json:"pipelineRef"`
		Host         string `json:"host"`
		Port         int    `json:"port"`
		Parallelism  int    `json:"parallelism"`
	}]())
	for key, want := range map[string]string{
		"pipelinefile": `did you mean "pipelineFile"? (names are case-sensitive)`,
		"pipelineFiel": `did you mean "pipelineFile"?`,
		"paralelism":   `did you mean "parallelism"?`,
		"pipelineRf":   `did you mean "pipelineRef"?`,
		"prt":          `did you mean "port"?`,
		"url":          "want one of pipelineFile, pipelineRef, host, port, parallelism",
		"hostname":     "want one of pipelineFile, pipelineRef, host, port, parallelism",
	} {
		if got := suggest(key, fs); got != want {
			t.Errorf("suggest(%q) = %s, want %s", key, got, want)
		}
	}
}

func TestTypeFieldsFollowsEncodingJSON(t *testing.T) {
	type Inner struct {
		A string `json:"a"`
		B string `json:"b"`
		C string
	}
	type Other struct {
		A string `json:"a"`
		D string `json:"d"`
	}
	type outer struct {
		Inner
		*Other
		B string `json:"b"` // shallower: wins over Inner.B
		E string `json:"e,omitempty"`
	}
	var got []string
	for _, f := range typeFields(reflect.TypeFor[outer]()) {
		got = append(got, f.name)
	}
	// a is ambiguous (Inner.a and Other.a at one depth): encoding/json
	// drops it.
	if want := []string{"C", "d", "b", "e"}; !reflect.DeepEqual(got, want) {
		t.Errorf("fields = %v, want %v", got, want)
	}
	if err := Unmarshal("f.yaml", []byte("a: x\n"), &outer{}); err == nil {
		t.Error("an ambiguous field was accepted")
	}
	var o outer
	if err := Unmarshal("f.yaml", []byte("b: x\nd: y\nC: z\n"), &o); err != nil || o.B != "x" || o.Other == nil || o.D != "y" || o.C != "z" {
		t.Errorf("got %+v, %v", o, err)
	}
}
