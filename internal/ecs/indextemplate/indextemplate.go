// Package indextemplate builds the Elasticsearch index template of the
// metrics-system.socket-* data stream from field definitions in the format
// of ECS's flat field list (ecs_flat.yml), and checks documents against a
// template, as Elasticsearch would map them, without an Elasticsearch.
//
// The template (examples/shipping/index-template.json, written by
// go generate from testdata/ecs/ecs_flat.yml, the copy of the ECS entries
// the documents use, testdata/ecs/custom_fields.yml and agent.hostname)
// maps every field the documents carry with the type its definition gives:
// ip for addresses, long for ports, counters and durations, date for
// times, boolean for flags, keyword (ignore_above 1024, as ECS says) for
// the rest, and the types ECS itself chose where it chose others:
// constant_keyword for data_stream.*, wildcard for process.command_line,
// match_only_text for error.message and ECS's .text multi-fields. Those
// are what Elastic's own ECS templates and integrations use, so queries
// and dashboards written for ECS data work unchanged; they need
// Elasticsearch's default distribution (free basic licence; OpenSearch
// has neither) and exist since 7.14. The template targets Elasticsearch
// 8.7 and later, 9.x included: ignore_missing_component_templates is
// from 8.7.
//
// The mapping is "dynamic": "false": a field the template does not know (one
// a user adds with jq between the stages, or that a shipper such as
// Filebeat adds) is kept in _source but not indexed, so a document is
// never refused for it (as "strict" would, losing the whole document) and
// no field is typed by guessing from the first value seen (as "true"
// would; a later document of another type would then be refused). Such a
// field can be searched with a runtime field, or mapped by adding it to
// the template.
//
// # The checker
//
// Checker.Check reports, for one document, every leaf that Elasticsearch
// would refuse or not index under the template. Its rules:
//
//   - The document is a JSON object. Keys are split at dots, as
//     Elasticsearch reads "a.b" as a within b; every leaf must have a
//     mapping (dynamic false would keep an unmapped one unindexed).
//   - An object value needs an object mapping (properties), a leaf value
//     a leaf mapping; arrays hold values of the field's type (arrays of
//     arrays are flattened, as Elasticsearch does); null and [] hold no
//     value and are accepted.
//   - keyword, constant_keyword, wildcard, text and match_only_text take
//     a string (Elasticsearch would also turn a number or a boolean into
//     one: the checker is stricter). A keyword longer than its
//     ignore_above (in UTF-16 code units, as Elasticsearch counts) is not
//     indexed: reported. A constant_keyword takes one value across the
//     documents given to one Checker (one index).
//   - long takes a JSON number written as a decimal integer from -2^63 to
//     2^63-1 (Elasticsearch would also truncate 1.5 and parse "15": the
//     checker is stricter).
//   - ip takes a string that is an IPv4 or IPv6 address, without an IPv6
//     zone (%eth0).
//   - date takes what the default format strict_date_optional_time||
//     epoch_millis parses: a string yyyy, yyyy-MM, yyyy-MM-dd, then
//     optionally THH, THH:mm, THH:mm:ss with a fraction of 1 to 9 digits,
//     then optionally Z or an offset ±HH, ±HHmm, ±HH:mm, with every part
//     in range; or an integer (a JSON number or a string of digits,
//     optionally signed), milliseconds since the epoch.
//   - boolean takes true or false (Elasticsearch would also take the
//     strings "true", "false" and "": the checker is stricter).
//   - Any other type is reported as not checked, so a type added to the
//     generator without a rule here fails the tests.
//
// Validate checks the template's JSON against the shape that
// PUT _index_template/NAME takes, with the same types.
package indextemplate

//go:generate go run ./gen -root ../../..

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/sockpipe/sockpipe/internal/codec"
)

// The template's name, the data streams it applies to and its priority.
const (
	Name    = "metrics-system.socket"
	Pattern = "metrics-system.socket-*"
	// Priority is above the built-in metrics template (metrics-*-*, 100)
	// and the same as Fleet gives an integration's data stream template:
	// Elasticsearch refuses a second template of the same priority whose
	// patterns overlap, rather than picking one silently.
	Priority = 200
)

// ComposedOf are the component templates the template uses, each one
// listed in ignore_missing_component_templates too, so that the template
// installs where one is missing: metrics@settings (built into recent 8.x
// and 9.x releases; older 8.x ones name it metrics-settings) gives the
// metrics lifecycle policy and compression that the built-in metrics
// template would have given;
// metrics-system.socket@custom is where a user adds settings and mappings
// of their own, as Fleet's templates allow.
var ComposedOf = []string{"metrics@settings", "metrics-system.socket@custom"}

// Path is where the template is written, from the top of the module.
const Path = "examples/shipping/index-template.json"

// Sources are the field definitions the template is built from, from the
// top of the module.
var Sources = []string{"testdata/ecs/ecs_flat.yml", "testdata/ecs/custom_fields.yml"}

// beatsFields are the fields the documents carry that neither ECS nor
// custom_fields.yml defines, with the type of Beats' own definitions:
// agent.hostname, which the default documents write for Metricbeat
// compatibility and ECS no longer defines. It stays out of
// custom_fields.yml because the validation reports it as not ECS.
var beatsFields = []def{{Name: "agent.hostname", Type: "keyword", IgnoreAbove: 1024}}

// Template is an index template, as PUT _index_template/NAME takes it.
type Template struct {
	IndexPatterns             []string          `json:"index_patterns"`
	DataStream                map[string]any    `json:"data_stream"`
	Priority                  int               `json:"priority"`
	ComposedOf                []string          `json:"composed_of,omitempty"`
	IgnoreMissingComponentTpl []string          `json:"ignore_missing_component_templates,omitempty"`
	Template                  Body              `json:"template"`
	Meta                      map[string]string `json:"_meta,omitempty"`
}

// Body is the template's index configuration.
type Body struct {
	Mappings Mappings `json:"mappings"`
}

// Mappings are the index's mappings.
type Mappings struct {
	Dynamic    string               `json:"dynamic"`
	Properties map[string]*Property `json:"properties"`
}

// Property is the mapping of one field: a leaf (Type, with its
// parameters and multi-fields) or an object (Properties).
type Property struct {
	Type        string               `json:"type,omitempty"`
	IgnoreAbove int                  `json:"ignore_above,omitempty"`
	Fields      map[string]*Property `json:"fields,omitempty"`
	Properties  map[string]*Property `json:"properties,omitempty"`
}

// def is the part of a field definition the template uses.
type def struct {
	Name        string `yaml:"flat_name"`
	Type        string `yaml:"type"`
	IgnoreAbove int    `yaml:"ignore_above"`
	MultiFields []struct {
		Name string `yaml:"name"`
		Type string `yaml:"type"`
	} `yaml:"multi_fields"`
}

// leafTypes are the field types the generator writes and the checker
// knows.
var leafTypes = []string{"boolean", "constant_keyword", "date", "ip", "keyword", "long", "match_only_text", "text", "wildcard"}

// keywordish are the types that take ignore_above.
var keywordish = []string{"keyword"}

// Load reads field definition files (ecs_flat.yml's format) and builds the
// template for that ECS version; a field defined twice is an error.
func Load(ecsVersion string, paths ...string) (*Template, error) {
	var all [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		all = append(all, b)
	}
	t, err := Build(ecsVersion, all...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", strings.Join(paths, ", "), err)
	}
	return t, nil
}

// Build builds the template from the contents of field definition files,
// and the Beats fields. (The ECS version is given, not imported from
// internal/ecs, so that its tests can use this package.)
func Build(ecsVersion string, files ...[]byte) (*Template, error) {
	defs := map[string]def{}
	add := func(name string, d def) error {
		if _, dup := defs[name]; dup {
			return fmt.Errorf("%s is defined twice", name)
		}
		if d.Name == "" {
			d.Name = name
		}
		if d.Name != name {
			return fmt.Errorf("%s: flat_name %q", name, d.Name)
		}
		defs[name] = d
		return nil
	}
	for _, f := range files {
		m := map[string]def{}
		if err := yaml.Unmarshal(f, &m); err != nil {
			return nil, fmt.Errorf("field definitions: %w", err)
		}
		for name, d := range m {
			if err := add(name, d); err != nil {
				return nil, err
			}
		}
	}
	for _, d := range beatsFields {
		if err := add(d.Name, d); err != nil {
			return nil, err
		}
	}
	names := make([]string, 0, len(defs))
	for n := range defs {
		names = append(names, n)
	}
	sort.Strings(names)
	root := map[string]*Property{}
	for _, name := range names {
		d := defs[name]
		if !slices.Contains(leafTypes, d.Type) {
			return nil, fmt.Errorf("%s: type %q has no rule in the checker", name, d.Type)
		}
		p := &Property{Type: d.Type}
		if slices.Contains(keywordish, d.Type) {
			p.IgnoreAbove = d.IgnoreAbove
		}
		for _, mf := range d.MultiFields {
			if !slices.Contains(leafTypes, mf.Type) || mf.Name == "" {
				return nil, fmt.Errorf("%s: multi-field %q of type %q", name, mf.Name, mf.Type)
			}
			if p.Fields == nil {
				p.Fields = map[string]*Property{}
			}
			p.Fields[mf.Name] = &Property{Type: mf.Type}
		}
		if err := place(root, strings.Split(name, "."), p); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return &Template{
		IndexPatterns:             []string{Pattern},
		DataStream:                map[string]any{},
		Priority:                  Priority,
		ComposedOf:                ComposedOf,
		IgnoreMissingComponentTpl: ComposedOf,
		Template:                  Body{Mappings: Mappings{Dynamic: "false", Properties: root}},
		Meta: map[string]string{
			"description": "sockpipe's ECS documents of TCP and UDP sockets (sockecs), as Metricbeat's system/socket metricset writes them",
			"ecs_version": ecsVersion,
			"managed_by":  "sockpipe",
		},
	}, nil
}

// place puts a leaf at its dotted path, making the objects above it.
func place(props map[string]*Property, path []string, p *Property) error {
	for i, seg := range path {
		if seg == "" {
			return fmt.Errorf("an empty name segment")
		}
		if i == len(path)-1 {
			if _, ok := props[seg]; ok {
				return fmt.Errorf("both a field and an object")
			}
			props[seg] = p
			return nil
		}
		o, ok := props[seg]
		if !ok {
			o = &Property{Properties: map[string]*Property{}}
			props[seg] = o
		}
		if o.Properties == nil {
			return fmt.Errorf("%s is a field, not an object", strings.Join(path[:i+1], "."))
		}
		props = o.Properties
	}
	return nil
}

// JSON is the template as the file holds it: indented, keys sorted, with
// a final newline.
func (t *Template) JSON() ([]byte, error) {
	b, err := codec.MarshalIndent(t, "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
