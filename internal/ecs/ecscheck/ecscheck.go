// Package ecscheck validates JSON documents against ECS field definitions
// read from ECS's flat field list (generated/ecs/ecs_flat.yml, or a copy of
// some of its entries), and against definitions of a document's own
// (custom) fields written in the same format. Tests use it; no program
// links it.
//
// For every leaf of a document it checks that the field is defined (or
// lies under a custom namespace the caller allows), that its value has
// the field's type (ip, long, keyword, date, …), that it is an array
// exactly when ECS normalizes the field to an array, and that it takes one
// of the allowed or expected values where ECS lists them. It also checks
// what ties fields together: required fields, event.type values expected
// for the event.category, network.iana_number against network.transport,
// and event.duration against event.start and event.end.
package ecscheck

import (
	"fmt"
	"math"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sockpipe/sockpipe/internal/codec"
)

// Field is the part of an ECS field definition that the checks use.
type Field struct {
	Name           string         `yaml:"flat_name"`
	Type           string         `yaml:"type"`
	Normalize      []string       `yaml:"normalize"`
	AllowedValues  []AllowedValue `yaml:"allowed_values"`
	ExpectedValues []string       `yaml:"expected_values"`
	Required       bool           `yaml:"required"`
}

// AllowedValue is one value of a categorization field.
type AllowedValue struct {
	Name               string   `yaml:"name"`
	ExpectedEventTypes []string `yaml:"expected_event_types"`
}

// IsArray reports whether ECS normalizes the field to an array.
func (f *Field) IsArray() bool { return slices.Contains(f.Normalize, "array") }

// Schema is a set of field definitions.
type Schema struct {
	Fields map[string]*Field
	// Custom lists name prefixes (such as "system.socket.") whose fields
	// are the document's own and are not checked. Definitions of them,
	// loaded with the ECS ones, check them instead.
	Custom []string
}

// Load reads ecs_flat.yml files: ECS's, and files of custom fields in
// its format. A field defined in two files is an error.
func Load(paths ...string) (*Schema, error) {
	s := &Schema{Fields: map[string]*Field{}}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		o, err := Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		for name, f := range o.Fields {
			if _, dup := s.Fields[name]; dup {
				return nil, fmt.Errorf("%s: %s is defined twice", path, name)
			}
			s.Fields[name] = f
		}
	}
	return s, nil
}

// Parse parses the contents of an ecs_flat.yml file.
func Parse(data []byte) (*Schema, error) {
	fields := map[string]*Field{}
	if err := yaml.Unmarshal(data, &fields); err != nil {
		return nil, fmt.Errorf("ecs field definitions: %w", err)
	}
	for name, f := range fields {
		if f == nil || f.Type == "" {
			return nil, fmt.Errorf("ecs field definitions: %q has no type", name)
		}
		if f.Name == "" {
			f.Name = name
		}
	}
	return &Schema{Fields: fields}, nil
}

// Finding is one problem with one field of a document.
type Finding struct {
	Field   string // dotted field name
	Problem string // what is wrong, in words
}

func (f Finding) String() string { return f.Field + ": " + f.Problem }

// Problems that tests may want to recognize.
const (
	NotInECS        = "not an ECS field"
	NotExpected     = "not an expected value"
	NotAllowed      = "not an allowed value"
	IANAMismatch    = "not the IANA number of network.transport"
	NotExpectedType = "event.type not expected for the event.category"
)

// Check validates one JSON document and returns its findings, sorted.
func (s *Schema) Check(doc []byte) []Finding {
	flat, err := Flatten(doc)
	if err != nil {
		return []Finding{{Field: "(document)", Problem: err.Error()}}
	}
	var out []Finding
	add := func(field, format string, args ...any) {
		out = append(out, Finding{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	for name, f := range s.Fields {
		if _, ok := flat[name]; f.Required && !ok {
			add(name, "required field missing")
		}
	}
	for name, v := range flat {
		f, ok := s.Fields[name]
		if !ok {
			if !s.custom(name) {
				add(name, NotInECS)
			}
			continue
		}
		values, isArray := v.([]any)
		switch {
		case isArray && !f.IsArray():
			add(name, "an array, but ECS does not normalize it to one")
		case !isArray && f.IsArray():
			add(name, "ECS normalizes it to an array")
		}
		if !isArray {
			values = []any{v}
		}
		for _, v := range values {
			if problem := checkType(f.Type, v); problem != "" {
				add(name, "%s: %s", problem, show(v))
				continue
			}
			str, _ := v.(string)
			if len(f.AllowedValues) > 0 && !slices.ContainsFunc(f.AllowedValues, func(a AllowedValue) bool { return a.Name == str }) {
				add(name, "%s: %s", NotAllowed, show(v))
			}
			if len(f.ExpectedValues) > 0 && !slices.Contains(f.ExpectedValues, str) {
				add(name, "%s: %s", NotExpected, show(v))
			}
		}
	}
	out = append(out, s.crossChecks(flat)...)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Field != out[j].Field {
			return out[i].Field < out[j].Field
		}
		return out[i].Problem < out[j].Problem
	})
	return out
}

func (s *Schema) custom(name string) bool {
	for _, p := range s.Custom {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

var ianaNumbers = map[string]string{"tcp": "6", "udp": "17", "icmp": "1", "ipv6-icmp": "58", "sctp": "132"}

func (s *Schema) crossChecks(flat map[string]any) []Finding {
	var out []Finding
	// Every event.type must be expected for some event.category value.
	if cat, ok := s.Fields["event.category"]; ok {
		var expected []string
		for _, c := range strList(flat["event.category"]) {
			for _, a := range cat.AllowedValues {
				if a.Name == c {
					expected = append(expected, a.ExpectedEventTypes...)
				}
			}
		}
		for _, t := range strList(flat["event.type"]) {
			if flat["event.category"] != nil && !slices.Contains(expected, t) {
				out = append(out, Finding{"event.type", fmt.Sprintf("%s: %q", NotExpectedType, t)})
			}
		}
	}
	if n, ok := flat["network.iana_number"].(string); ok {
		if tr, ok := flat["network.transport"].(string); ok {
			if want, known := ianaNumbers[tr]; known && n != want {
				out = append(out, Finding{"network.iana_number", fmt.Sprintf("%s: %q for %q", IANAMismatch, n, tr)})
			}
		}
	}
	// ECS: when event.start and event.end are known, event.duration
	// should be their difference. Dates carry milliseconds, so allow one.
	start, okS := date(flat["event.start"])
	end, okE := date(flat["event.end"])
	dur, okD := flat["event.duration"].(float64)
	if okS && okE && okD {
		if diff := math.Abs(dur - float64(end.Sub(start))); diff > float64(time.Millisecond) {
			out = append(out, Finding{"event.duration", fmt.Sprintf("%v is not event.end - event.start (%v)", time.Duration(dur), end.Sub(start))})
		}
	}
	return out
}

func strList(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func date(v any) (time.Time, bool) {
	s, ok := v.(string)
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	return t, err == nil
}

// checkType returns what is wrong with v as a value of an ECS type, or "".
func checkType(typ string, v any) string {
	switch typ {
	case "keyword", "constant_keyword", "wildcard", "text", "match_only_text":
		if _, ok := v.(string); !ok {
			return "want a string"
		}
	case "long", "integer", "short", "byte", "unsigned_long":
		n, ok := v.(float64)
		if !ok || n != math.Trunc(n) {
			return "want an integer"
		}
		if typ != "long" && typ != "unsigned_long" && (n < math.MinInt32 || n > math.MaxInt32) {
			return "out of range"
		}
		if typ == "unsigned_long" && n < 0 {
			return "want a non-negative integer"
		}
	case "float", "double", "scaled_float", "half_float":
		if _, ok := v.(float64); !ok {
			return "want a number"
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return "want true or false"
		}
	case "ip":
		s, ok := v.(string)
		if !ok {
			return "want an IP address string"
		}
		if _, err := netip.ParseAddr(s); err != nil || strings.Contains(s, "%") {
			return "not an IP address"
		}
	case "date":
		if _, ok := date(v); !ok {
			return "want an RFC 3339 date"
		}
	case "object", "flattened", "nested":
		if _, ok := v.(map[string]any); !ok {
			return "want an object"
		}
	default:
		return "type " + typ + " is not checked"
	}
	return ""
}

func show(v any) string {
	b, err := codec.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// Flatten decodes a JSON object and returns its leaves by dotted name.
// Arrays are leaves ([]any); objects inside arrays are an error, as ECS
// fields of the kind that these documents use never hold them.
func Flatten(doc []byte) (map[string]any, error) {
	var m map[string]any
	if err := codec.Unmarshal(doc, &m); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	if m == nil {
		return nil, fmt.Errorf("not a JSON object")
	}
	out := map[string]any{}
	var walk func(prefix string, m map[string]any) error
	walk = func(prefix string, m map[string]any) error {
		for k, v := range m {
			name := prefix + k
			if _, dup := out[name]; dup {
				return fmt.Errorf("%s: given twice", name)
			}
			switch v := v.(type) {
			case map[string]any:
				if err := walk(name+".", v); err != nil {
					return err
				}
			case []any:
				for _, e := range v {
					if _, ok := e.(map[string]any); ok {
						return fmt.Errorf("%s: an object inside an array", name)
					}
				}
				out[name] = v
			default:
				out[name] = v
			}
		}
		return nil
	}
	if err := walk("", m); err != nil {
		return nil, err
	}
	return out, nil
}
