package indextemplate

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/sockpipe/sockpipe/internal/codec"
)

// Finding is one problem with one field of a document.
type Finding struct {
	Field   string // dotted field name
	Problem string
}

func (f Finding) String() string { return f.Field + ": " + f.Problem }

// NotMapped is the problem of a field the template has no mapping for.
const NotMapped = "no mapping in the template"

// Checker checks documents against a template's mappings. The documents
// given to one Checker are taken to go to one index, for the values of
// constant_keyword fields.
type Checker struct {
	props    map[string]*Property
	constant map[string]string
}

// NewChecker returns a checker of the template's mappings.
func NewChecker(t *Template) *Checker {
	return &Checker{props: t.Template.Mappings.Properties, constant: map[string]string{}}
}

// Check returns the findings of one JSON document, sorted.
func (c *Checker) Check(doc []byte) []Finding {
	var v any
	if err := codec.UnmarshalNumbers(doc, &v); err != nil {
		return []Finding{{"(document)", "invalid JSON: " + err.Error()}}
	}
	m, ok := v.(map[string]any)
	if !ok {
		return []Finding{{"(document)", "not a JSON object"}}
	}
	var out []Finding
	c.object("", c.props, m, &out)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Field != out[j].Field {
			return out[i].Field < out[j].Field
		}
		return out[i].Problem < out[j].Problem
	})
	return out
}

func (c *Checker) object(prefix string, props map[string]*Property, m map[string]any, out *[]Finding) {
	for k, v := range m {
		name := prefix + k
		p := &Property{Properties: props}
		for _, seg := range strings.Split(k, ".") {
			if seg == "" {
				*out = append(*out, Finding{name, "an empty name segment"})
				p = nil
				break
			}
			if p.Properties == nil {
				*out = append(*out, Finding{name, "under a field that is not an object"})
				p = nil
				break
			}
			if p = p.Properties[seg]; p == nil {
				*out = append(*out, Finding{name, NotMapped})
				break
			}
		}
		if p != nil {
			c.value(name, p, v, out)
		}
	}
}

func (c *Checker) value(name string, p *Property, v any, out *[]Finding) {
	switch v := v.(type) {
	case nil:
		return
	case []any:
		for _, e := range v {
			c.value(name, p, e, out)
		}
		return
	case map[string]any:
		if p.Properties == nil {
			*out = append(*out, Finding{name, "an object, but the template maps a " + p.Type})
			return
		}
		c.object(name+".", p.Properties, v, out)
		return
	}
	if p.Properties != nil {
		*out = append(*out, Finding{name, fmt.Sprintf("%s, but the template maps an object", show(v))})
		return
	}
	if problem := c.leaf(name, p, v); problem != "" {
		*out = append(*out, Finding{name, fmt.Sprintf("%s: %s", p.Type, problem)})
	}
}

// leaf returns what is wrong with v as a value of the mapping, or "".
func (c *Checker) leaf(name string, p *Property, v any) string {
	switch p.Type {
	case "keyword", "constant_keyword", "wildcard", "text", "match_only_text":
		s, ok := v.(string)
		if !ok {
			return "want a string, have " + show(v)
		}
		if p.IgnoreAbove > 0 && len(utf16.Encode([]rune(s))) > p.IgnoreAbove {
			return fmt.Sprintf("longer than ignore_above %d: not indexed", p.IgnoreAbove)
		}
		if p.Type == "constant_keyword" {
			if first, seen := c.constant[name]; seen && first != s {
				return fmt.Sprintf("%q, but another document of the index has %q", s, first)
			}
			c.constant[name] = s
		}
	case "long":
		n, ok := v.(codec.Number)
		if !ok {
			return "want a number, have " + show(v)
		}
		if _, err := strconv.ParseInt(string(n), 10, 64); err != nil {
			return "want an integer from -2^63 to 2^63-1, have " + string(n)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return "want true or false, have " + show(v)
		}
	case "ip":
		s, ok := v.(string)
		if !ok {
			return "want an address string, have " + show(v)
		}
		if _, err := netip.ParseAddr(s); err != nil || strings.Contains(s, "%") {
			return "not an IP address: " + show(v)
		}
	case "date":
		switch v := v.(type) {
		case codec.Number:
			if _, err := strconv.ParseInt(string(v), 10, 64); err != nil {
				return "not epoch_millis: " + string(v)
			}
		case string:
			if !isDate(v) {
				return "not strict_date_optional_time||epoch_millis: " + show(v)
			}
		default:
			return "want a date string or epoch_millis, have " + show(v)
		}
	default:
		return "type not checked"
	}
	return ""
}

// strict_date_optional_time: a date, then optionally a time, then
// optionally an offset.
var dateRE = regexp.MustCompile(`^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?` +
	`(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:[.,]\d{1,9})?)?)?)?` +
	`(Z|[+-](\d{2})(?::?(\d{2}))?)?$`)

var epochRE = regexp.MustCompile(`^[+-]?\d+$`)

func isDate(s string) bool {
	if epochRE.MatchString(s) {
		_, err := strconv.ParseInt(strings.TrimPrefix(s, "+"), 10, 64)
		return err == nil
	}
	m := dateRE.FindStringSubmatch(s)
	if m == nil {
		return false
	}
	// An offset needs a time before it, except in the date forms.
	if m[7] != "" && m[4] == "" {
		return false
	}
	num := func(i, def int) int {
		if m[i] == "" {
			return def
		}
		n, _ := strconv.Atoi(m[i])
		return n
	}
	year, month, day := num(1, 0), num(2, 1), num(3, 1)
	hour, minute, sec := num(4, 0), num(5, 0), num(6, 0)
	if month < 1 || month > 12 || hour > 23 || minute > 59 || sec > 59 || num(8, 0) > 18 || num(9, 0) > 59 {
		return false
	}
	t := time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC)
	return day >= 1 && t.Day() == day
}

func show(v any) string {
	b, err := codec.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// Fields returns the dotted names of every leaf the template maps (not
// their multi-fields), sorted.
func (t *Template) Fields() []string {
	var out []string
	var walk func(prefix string, props map[string]*Property)
	walk = func(prefix string, props map[string]*Property) {
		for k, p := range props {
			if p.Properties != nil {
				walk(prefix+k+".", p.Properties)
				continue
			}
			out = append(out, prefix+k)
		}
	}
	walk("", t.Template.Mappings.Properties)
	slices.Sort(out)
	return out
}
