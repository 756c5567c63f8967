// Package flavour reads Garden Linux flavour files and expands them into
// flavours: one image variant each, a platform, an architecture and a list
// of features. It reads both formats Garden Linux used:
//
//   - 2021 flavours.yaml: named flavour_sets whose flavour_combinations
//     expand as the cross product architectures × platforms × modifiers;
//   - 2024 flavors.yaml: targets (platforms, each with a category) listing
//     explicit flavors, each with features, arch and
//     build/test/test-platform/publish flags.
//
// The two formats name flavours differently (see [Flavour.Name]): the 2021
// rule sorts the features, the 2024 rule is gl-flavors-parse's and keeps
// them in the file's order. [Select] filters flavours the way
// gl-flavors-parse's options do; [NoArch] and [ByArch] give its output
// forms.
//
// Expansion is pure and deterministic: the same file gives the same
// flavours in the same order (sorted by canonical name, [Flavour.Name]), so
// workflows may call it.
package flavour

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DefaultArch is the architecture of a 2024 flavor that names none, as in
// gl-flavors-parse.
const DefaultArch = "amd64"

// Flavour is one image variant.
type Flavour struct {
	// Platform is the target platform: aws, gcp, azure, ali, openstack,
	// vmware, kvm, metal, …
	Platform string `json:"platform"`
	// Arch is the CPU architecture: amd64 or arm64.
	Arch string `json:"arch"`
	// Features are the flavour's features. From a 2021 file (the
	// modifiers) they are sorted and without duplicates; from a 2024 file
	// they are exactly the file's list, in its order, which the name
	// follows. Names starting with "_" are flags such as _prod.
	Features []string `json:"features,omitempty"`
	// Build, Test, TestPlatform and Publish are the 2024 format's flags
	// (false when the file omits them); flavours from the 2021 format
	// build, test and publish.
	Build        bool `json:"build"`
	Test         bool `json:"test"`
	TestPlatform bool `json:"testPlatform"`
	Publish      bool `json:"publish"`
	// Category is the 2024 target's category (public-cloud, baremetal,
	// container, …), empty when the target has none. The 2021 format has
	// no categories.
	Category string `json:"category,omitempty"`
	// Format is the format the flavour was read from, which decides its
	// name: Format2024 for the 2024 format; empty (or Format2021) for the
	// 2021 format and for flavours built by hand.
	Format Format `json:"format,omitempty"`
}

// Name is the flavour's canonical name, as Garden Linux writes it.
//
// For the 2024 format (Format == Format2024) it is gl-flavors-parse's
// rule: "<platform>-" + "-<features joined by "-" in order>" (nothing when
// there are none) + "-<arch>", then every "--" replaced by "-" and after
// that every "-_" by "_". Nothing is sorted: features [gardener, _prod,
// _trustedboot] on aws amd64 give "aws-gardener_prod_trustedboot-amd64",
// [_prod, gardener] give "aws_prod-gardener-amd64", [_pxe] on metal gives
// "metal_pxe-amd64" and no features "container-amd64".
//
// Otherwise (2021 format) it is the platform, the plain features joined by
// "-", the flag features ("_prod") appended without a separator (after a
// "-" when there are only flags), and the architecture, each in the order
// of Features, which Parse sorts for the 2021 format:
// "aws-gardener_prod-amd64", "kvm-_prod-amd64", "metal-amd64".
func (f Flavour) Name() string {
	if f.Format == Format2024 {
		return f.name2024()
	}
	return f.name2021()
}

func (f Flavour) name2024() string {
	var b strings.Builder
	b.WriteString(f.Platform)
	b.WriteByte('-')
	if len(f.Features) > 0 {
		b.WriteByte('-')
		b.WriteString(strings.Join(f.Features, "-"))
	}
	b.WriteByte('-')
	b.WriteString(f.Arch)
	// Like Python's str.replace: each replacement once over the whole
	// string, non-overlapping occurrences from left to right.
	s := strings.ReplaceAll(b.String(), "--", "-")
	return strings.ReplaceAll(s, "-_", "_")
}

func (f Flavour) name2021() string {
	var b strings.Builder
	b.WriteString(f.Platform)
	var flags []string
	for _, ft := range f.Features {
		if strings.HasPrefix(ft, "_") {
			flags = append(flags, ft)
			continue
		}
		b.WriteByte('-')
		b.WriteString(ft)
	}
	if len(flags) > 0 && len(flags) == len(f.Features) {
		b.WriteByte('-') // only flags: "metal-_prod-amd64"
	}
	for _, fl := range flags {
		b.WriteString(fl)
	}
	b.WriteByte('-')
	b.WriteString(f.Arch)
	return b.String()
}

// Format is a flavour file's format.
type Format string

// The two formats.
const (
	Format2021 Format = "flavour_sets"
	Format2024 Format = "targets"
)

// File is a parsed flavour file.
type File struct {
	Format Format
	// Sets maps a 2021 flavour set's name to its flavours. For the 2024
	// format it holds one set, "all", with every flavor in the file.
	Sets map[string][]Flavour
}

// SetNames returns the file's set names, sorted.
func (f *File) SetNames() []string {
	names := make([]string, 0, len(f.Sets))
	for n := range f.Sets {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Set returns the flavours of the named set, sorted by name. The empty name
// means "all".
func (f *File) Set(name string) ([]Flavour, error) {
	if name == "" {
		name = "all"
	}
	fl, ok := f.Sets[name]
	if !ok {
		return nil, fmt.Errorf("flavour set %q not found; the file has %s", name, strings.Join(f.SetNames(), ", "))
	}
	return slices.Clone(fl), nil
}

// Buildable returns the flavours whose Build flag is set.
func Buildable(fl []Flavour) []Flavour {
	var out []Flavour
	for _, f := range fl {
		if f.Build {
			out = append(out, f)
		}
	}
	return out
}

// Parse reads a flavour file in either format, recognised by its top-level
// key. Errors name the line and the field. In the 2024 format a flavor
// without arch is DefaultArch and a missing flag is false, as in
// gl-flavors-parse; its features keep the file's order. Two flavours with
// the same name are an error.
func Parse(data []byte) (*File, error) {
	var top yaml.Node
	if err := yaml.Unmarshal(data, &top); err != nil {
		return nil, err
	}
	if len(top.Content) == 0 || top.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("line 1: a flavour file is a mapping with flavour_sets (2021) or targets (2024)")
	}
	m := top.Content[0]
	for i := 0; i < len(m.Content); i += 2 {
		switch m.Content[i].Value {
		case string(Format2021):
			return parse2021(data)
		case string(Format2024):
			return parse2024(data)
		}
	}
	return nil, fmt.Errorf("line %d: no flavour_sets (2021 format) or targets (2024 format) key", m.Line)
}

type file2021 struct {
	FlavourSets []struct {
		Name         string `yaml:"name"`
		Combinations []struct {
			Architectures []string   `yaml:"architectures"`
			Platforms     []string   `yaml:"platforms"`
			Modifiers     [][]string `yaml:"modifiers"`
			Fails         []string   `yaml:"fails"`
		} `yaml:"flavour_combinations"`
	} `yaml:"flavour_sets"`
}

type file2024 struct {
	Targets []struct {
		Name     string `yaml:"name"`
		Category string `yaml:"category"`
		Flavors  []struct {
			Features     []string `yaml:"features"`
			Arch         *string  `yaml:"arch"`
			Build        bool     `yaml:"build"`
			Test         bool     `yaml:"test"`
			TestPlatform bool     `yaml:"test-platform"`
			Publish      bool     `yaml:"publish"`
		} `yaml:"flavors"`
	} `yaml:"targets"`
}

func decodeStrict(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(v)
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err
	}
	// "line 5: field platform not found in type struct {…}": the Go type
	// says nothing to the file's author.
	msgs := make([]string, len(te.Errors))
	for i, m := range te.Errors {
		if j := strings.Index(m, " in type "); j >= 0 {
			m = m[:j]
		}
		msgs[i] = m
	}
	return errors.New(strings.Join(msgs, "; "))
}

func parse2021(data []byte) (*File, error) {
	var raw file2021
	if err := decodeStrict(data, &raw); err != nil {
		return nil, err
	}
	f := &File{Format: Format2021, Sets: map[string][]Flavour{}}
	for si, set := range raw.FlavourSets {
		path := fmt.Sprintf("flavour_sets[%d]", si)
		if set.Name == "" {
			return nil, fmt.Errorf("%s.name: required", path)
		}
		if _, dup := f.Sets[set.Name]; dup {
			return nil, fmt.Errorf("%s.name: set %q is defined twice", path, set.Name)
		}
		var fl []Flavour
		for ci, c := range set.Combinations {
			cpath := fmt.Sprintf("%s.flavour_combinations[%d]", path, ci)
			if len(c.Architectures) == 0 {
				return nil, fmt.Errorf("%s.architectures: at least one is required", cpath)
			}
			if len(c.Platforms) == 0 {
				return nil, fmt.Errorf("%s.platforms: at least one is required", cpath)
			}
			mods := c.Modifiers
			if len(mods) == 0 {
				mods = [][]string{nil} // no modifiers: one flavour per arch × platform
			}
			for _, arch := range c.Architectures {
				for _, platform := range c.Platforms {
					for _, m := range mods {
						fl = append(fl, Flavour{
							Platform: platform, Arch: arch, Features: sortedSet(m),
							Build: true, Test: true, TestPlatform: true, Publish: true,
						})
					}
				}
			}
		}
		sorted, err := sortUnique(fl, path)
		if err != nil {
			return nil, err
		}
		f.Sets[set.Name] = sorted
	}
	if len(f.Sets) == 0 {
		return nil, errors.New("flavour_sets: no sets")
	}
	return f, nil
}

func parse2024(data []byte) (*File, error) {
	var raw file2024
	if err := decodeStrict(data, &raw); err != nil {
		return nil, err
	}
	var fl []Flavour
	for ti, t := range raw.Targets {
		path := fmt.Sprintf("targets[%d]", ti)
		if t.Name == "" {
			return nil, fmt.Errorf("%s.name: required", path)
		}
		for fi, v := range t.Flavors {
			arch := DefaultArch
			if v.Arch != nil {
				if *v.Arch == "" {
					return nil, fmt.Errorf("%s.flavors[%d].arch: empty (target %s); write amd64 or arm64, or leave arch out for %s", path, fi, t.Name, DefaultArch)
				}
				arch = *v.Arch
			}
			var features []string // in the file's order: the name follows it
			if len(v.Features) > 0 {
				features = slices.Clone(v.Features)
			}
			fl = append(fl, Flavour{
				Platform: t.Name, Arch: arch, Features: features,
				Build: v.Build, Test: v.Test, TestPlatform: v.TestPlatform, Publish: v.Publish,
				Category: t.Category, Format: Format2024,
			})
		}
	}
	sorted, err := sortUnique(fl, "targets")
	if err != nil {
		return nil, err
	}
	return &File{Format: Format2024, Sets: map[string][]Flavour{"all": sorted}}, nil
}

func sortedSet(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}

// sortUnique sorts flavours by name and rejects duplicates.
func sortUnique(fl []Flavour, path string) ([]Flavour, error) {
	slices.SortFunc(fl, func(a, b Flavour) int { return strings.Compare(a.Name(), b.Name()) })
	for i := 1; i < len(fl); i++ {
		if fl[i].Name() == fl[i-1].Name() {
			return nil, fmt.Errorf("%s: flavour %s appears twice", path, fl[i].Name())
		}
	}
	return fl, nil
}
