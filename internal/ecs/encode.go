package ecs

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/record"
)

func (d *Doc) add(f Field) { d.Fields = append(d.Fields, f) }

// str adds a string field, unless it is empty.
func (d *Doc) str(name, v string) {
	if v != "" {
		d.add(Field{Name: name, Kind: String, Str: v})
	}
}

func (d *Doc) long(name string, v int64) { d.add(Field{Name: name, Kind: Long, Int: v}) }

func (d *Doc) uintStr(name string, v uint64) {
	d.add(Field{Name: name, Kind: UintString, Int: int64(v)})
}

// time adds a date field, unless t is zero.
func (d *Doc) time(name string, t time.Time) {
	if !t.IsZero() {
		d.add(Field{Name: name, Kind: Time, Time: t})
	}
}

func (d *Doc) strs(name string, v []string) { d.add(Field{Name: name, Kind: Strings, Strs: v}) }

// endpoint adds obj.{domain,ip,port,registered_domain}; domains only in
// strict mode.
func (d *Doc) endpoint(obj string, e *record.Endpoint, domain, registered string, strict bool) {
	n := endpointNames[obj]
	if strict {
		d.str(n[0], domain)
	}
	d.str(n[1], e.IP)
	d.long(n[2], int64(e.Port))
	if strict && domain != "" {
		d.str(n[3], registered)
	}
}

var endpointNames = map[string][4]string{}

func init() {
	for _, obj := range []string{"client", "destination", "server", "source"} {
		endpointNames[obj] = [4]string{obj + ".domain", obj + ".ip", obj + ".port", obj + ".registered_domain"}
	}
}

// TimeLayout is how dates are written: UTC, milliseconds, as Beats writes
// @timestamp.
const TimeLayout = "2006-01-02T15:04:05.000Z"

// AppendJSON appends the document as one compact JSON object, without a
// newline. Leaves whose names share a prefix become nested objects; the
// leaves of one object must be adjacent (Build keeps them sorted).
func (d *Doc) AppendJSON(b []byte) []byte {
	var open [8]string // names of the objects open, outermost first
	var more [9]bool   // whether each level already has a member
	depth := 0
	b = append(b, '{')
	for i := range d.Fields {
		f := &d.Fields[i]
		name := f.Name
		// Keep the open objects that prefix this name.
		lvl := 0
		rest := name
		for lvl < depth {
			seg, tail, ok := strings.Cut(rest, ".")
			if !ok || seg != open[lvl] {
				break
			}
			rest = tail
			lvl++
		}
		for depth > lvl {
			b = append(b, '}')
			depth--
		}
		// Open the objects this name needs.
		for {
			seg, tail, ok := strings.Cut(rest, ".")
			if !ok || depth == len(open) {
				break
			}
			if more[depth] {
				b = append(b, ',')
			}
			more[depth] = true
			b = appendString(b, seg)
			b = append(b, ':', '{')
			open[depth] = seg
			depth++
			more[depth] = false
			rest = tail
		}
		if more[depth] {
			b = append(b, ',')
		}
		more[depth] = true
		b = appendString(b, rest)
		b = append(b, ':')
		b = f.appendValue(b)
	}
	for ; depth > 0; depth-- {
		b = append(b, '}')
	}
	return append(b, '}')
}

func (f *Field) appendValue(b []byte) []byte {
	switch f.Kind {
	case String:
		return appendString(b, f.Str)
	case Long:
		return strconv.AppendInt(b, f.Int, 10)
	case UintString:
		b = append(b, '"')
		b = strconv.AppendUint(b, uint64(f.Int), 10)
		return append(b, '"')
	case Time:
		b = append(b, '"')
		b = f.Time.UTC().AppendFormat(b, TimeLayout)
		return append(b, '"')
	case Strings:
		b = append(b, '[')
		for i, s := range f.Strs {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, s)
		}
		return append(b, ']')
	}
	return append(b, "null"...)
}

// appendString appends s as a JSON string. Plain printable ASCII, nearly
// every value, is copied as is; anything else is escaped by the codec.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			return codec.AppendString(b, s)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
