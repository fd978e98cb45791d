package indextemplate

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strconv"

	"github.com/sockpipe/sockpipe/internal/codec"
)

// BuiltinMetricsPriority is the priority of Elasticsearch's built-in
// metrics template (index pattern metrics-*-*), which a template for a
// metrics data stream must exceed to be chosen.
const BuiltinMetricsPriority = 100

// The members each object of a PUT _index_template body may have
// (Elasticsearch refuses others); of the mappings, those a template of
// this package uses or may use.
var (
	topKeys        = []string{"_meta", "allow_auto_create", "composed_of", "data_stream", "deprecated", "ignore_missing_component_templates", "index_patterns", "priority", "template", "version"}
	dataStreamKeys = []string{"allow_custom_routing", "hidden"}
	bodyKeys       = []string{"aliases", "data_stream_options", "lifecycle", "mappings", "settings"}
	mappingKeys    = []string{"_meta", "_source", "date_detection", "dynamic", "dynamic_templates", "numeric_detection", "properties", "runtime", "subobjects"}
	propertyKeys   = []string{"fields", "ignore_above", "properties", "type"}
)

// Validate parses a template's JSON and checks that it has the shape that
// PUT _index_template/NAME takes, for a data stream named dataStream:
// only the members Elasticsearch knows; index_patterns that match the
// data stream; data_stream an object; priority an integer above the
// built-in metrics template's; composed_of and
// ignore_missing_component_templates lists of names; template.mappings
// with a dynamic setting Elasticsearch knows and properties whose every
// leaf has a type the checker knows (ignore_above on keywords only, a
// positive integer; multi-fields leaves), and whose objects have
// properties only. It returns every problem found, joined.
func Validate(data []byte, dataStream string) (*Template, error) {
	var v any
	if err := codec.UnmarshalNumbers(data, &v); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	top, ok := object(v, "(template)", topKeys, bad)
	if !ok {
		return nil, errors.Join(errs...)
	}
	t := &Template{}
	t.IndexPatterns = strs(top["index_patterns"], "index_patterns", bad)
	if len(t.IndexPatterns) == 0 {
		bad("index_patterns: none")
	}
	matched := false
	for _, p := range t.IndexPatterns {
		if ok, err := path.Match(p, dataStream); err == nil && ok {
			matched = true
		}
	}
	if !matched {
		bad("index_patterns %q: none matches %s", t.IndexPatterns, dataStream)
	}
	if ds, ok := object(top["data_stream"], "data_stream", dataStreamKeys, bad); ok {
		t.DataStream = ds
	}
	if n, ok := top["priority"].(codec.Number); !ok {
		bad("priority: want an integer")
	} else if p, err := strconv.ParseInt(string(n), 10, 32); err != nil || p <= BuiltinMetricsPriority {
		bad("priority %s: want an integer above %d, the built-in metrics-*-* template's", n, BuiltinMetricsPriority)
	} else {
		t.Priority = int(p)
	}
	if c, ok := top["composed_of"]; ok {
		t.ComposedOf = strs(c, "composed_of", bad)
	}
	if c, ok := top["ignore_missing_component_templates"]; ok {
		t.IgnoreMissingComponentTpl = strs(c, "ignore_missing_component_templates", bad)
	}
	if m, ok := top["_meta"]; ok {
		if _, ok := m.(map[string]any); !ok {
			bad("_meta: want an object")
		}
	}
	body, ok := object(top["template"], "template", bodyKeys, bad)
	if ok {
		mappings, ok := object(body["mappings"], "template.mappings", mappingKeys, bad)
		if ok {
			switch d := mappings["dynamic"].(type) {
			case bool:
				t.Template.Mappings.Dynamic = strconv.FormatBool(d)
			case string:
				if !slices.Contains([]string{"true", "false", "strict", "runtime"}, d) {
					bad("template.mappings.dynamic %q: want true, false, strict or runtime", d)
				}
				t.Template.Mappings.Dynamic = d
			case nil:
				t.Template.Mappings.Dynamic = "true"
			default:
				bad("template.mappings.dynamic: want a boolean or a string")
			}
			t.Template.Mappings.Properties = properties(mappings["properties"], "template.mappings.properties", false, bad)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return t, nil
}

// object returns v as an object whose members are all in keys.
func object(v any, name string, keys []string, bad func(string, ...any)) (map[string]any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		bad("%s: want an object", name)
		return nil, false
	}
	var unknown []string
	for k := range m {
		if !slices.Contains(keys, k) {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		bad("%s: unknown member %q", name, k)
	}
	return m, true
}

func strs(v any, name string, bad func(string, ...any)) []string {
	a, ok := v.([]any)
	if !ok {
		bad("%s: want an array of strings", name)
		return nil
	}
	var out []string
	for _, e := range a {
		s, ok := e.(string)
		if !ok || s == "" {
			bad("%s: %s is not a name", name, show(e))
			continue
		}
		out = append(out, s)
	}
	return out
}

// properties parses the properties of an object (or, with leaves, the
// multi-fields of a field).
func properties(v any, name string, leaves bool, bad func(string, ...any)) map[string]*Property {
	m, ok := v.(map[string]any)
	if !ok {
		bad("%s: want an object", name)
		return nil
	}
	out := map[string]*Property{}
	for k, pv := range m {
		pname := name + "." + k
		pm, ok := object(pv, pname, propertyKeys, bad)
		if !ok {
			continue
		}
		p := &Property{}
		typ, hasType := pm["type"]
		if hasType {
			s, ok := typ.(string)
			if !ok {
				bad("%s.type: want a string", pname)
			}
			p.Type = s
		}
		if sub, ok := pm["properties"]; ok {
			if leaves {
				bad("%s: a multi-field cannot be an object", pname)
				continue
			}
			if p.Type != "" && p.Type != "object" {
				bad("%s: properties under type %q", pname, p.Type)
			}
			if _, ok := pm["fields"]; ok {
				bad("%s: an object cannot have multi-fields", pname)
			}
			if _, ok := pm["ignore_above"]; ok {
				bad("%s: ignore_above on an object", pname)
			}
			p.Type = ""
			p.Properties = properties(sub, pname+".properties", false, bad)
			if p.Properties == nil {
				p.Properties = map[string]*Property{}
			}
			out[k] = p
			continue
		}
		if !slices.Contains(leafTypes, p.Type) {
			bad("%s: type %q: want one of %v", pname, p.Type, leafTypes)
		}
		if ia, ok := pm["ignore_above"]; ok {
			n, isNum := ia.(codec.Number)
			i, err := strconv.ParseInt(string(n), 10, 32)
			switch {
			case !slices.Contains(keywordish, p.Type):
				bad("%s: ignore_above on type %q", pname, p.Type)
			case !isNum || err != nil || i <= 0:
				bad("%s.ignore_above: want a positive integer", pname)
			default:
				p.IgnoreAbove = int(i)
			}
		}
		if f, ok := pm["fields"]; ok {
			if leaves {
				bad("%s: a multi-field cannot have multi-fields", pname)
			} else {
				p.Fields = properties(f, pname+".fields", true, bad)
			}
		}
		out[k] = p
	}
	return out
}
