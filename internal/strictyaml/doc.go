// Package strictyaml decodes a YAML (or JSON) file into a Go value by the
// value's json tags, strictly, and reports every problem in the file at
// once, each with its line, column and field path.
//
// It is for kiln's own files (the worker config, the schedule file): their
// Go structs and json tags stay the one definition of their fields, as
// with sigs.k8s.io/yaml, but an operator's mistakes are all named in one
// go, where they are:
//
//	kiln.yaml:4:3: local.maxParalel: unknown field, did you mean "maxParallel"?
//	kiln.yaml:9:14: phases.base.timeout: want a duration like 90s or 10m, got "10 seconds"
//	kiln.yaml:11:5: phases.image.pipelinefile: unknown field, did you mean "pipelineFile"? (names are case-sensitive)
//
// Unmarshal parses the file with go.yaml.in/yaml/v3 into a node tree and
// walks it against the target type by reflection, following
// encoding/json's rules for which fields exist: json tag names (a field
// without a tag goes by its Go name), `json:"-"` and unexported fields
// left out, embedded structs' fields promoted. What the walk checks:
//
//   - a key must be a field's name exactly, case included, and appear once
//     in its mapping; an unknown key gets the nearest known name as a
//     suggestion when one is close, or the list of known names;
//   - a value must have its field's shape: a mapping for a struct or a
//     map, a list for a slice, a plain scalar for a string (any scalar's
//     text is taken, so version: 1.10 is "1.10"), an integer that fits
//     for an int, true or false for a bool;
//   - a type with its own UnmarshalJSON (or UnmarshalText) is handed the
//     value as JSON, and its error is reported at the value's line, so
//     such types (a Duration, resource.Quantity) say what they want;
//   - one document per file; YAML anchors, aliases and merge keys (<<)
//     work; a null value (key: with nothing after it) leaves a field unset.
//
// Only when there is no problem is the value decoded, by encoding/json
// from the JSON form of the same tree, so the result is what
// json.Unmarshal gives for that JSON.
package strictyaml
