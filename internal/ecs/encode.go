package ecs

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

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
		d.add(Field{Name: name, Kind: Time, Int: t.UnixNano()})
	}
}

func (d *Doc) strs(name string, v []string) { d.add(Field{Name: name, Kind: Strings, Strs: v}) }

// flow is what one end of a connection sent, when known.
type flow struct {
	bytes, packets int64
	ok             bool
}

// endpoint adds obj.{bytes,domain,ip,packets,port,registered_domain};
// domains only in strict mode, bytes and packets when sent is known.
func (d *Doc) endpoint(obj string, e *record.Endpoint, domain, registered string, strict bool, sent flow) {
	n := endpointNames[obj]
	if sent.ok {
		d.long(n[4], sent.bytes)
	}
	if strict {
		d.str(n[0], domain)
	}
	d.str(n[1], docIP(e.IP))
	if sent.ok {
		d.long(n[5], sent.packets)
	}
	d.long(n[2], int64(e.Port))
	if strict && domain != "" {
		d.str(n[3], registered)
	}
}

var endpointNames = map[string][6]string{}

func init() {
	for _, obj := range []string{"client", "destination", "server", "source"} {
		endpointNames[obj] = [6]string{obj + ".domain", obj + ".ip", obj + ".port", obj + ".registered_domain", obj + ".bytes", obj + ".packets"}
	}
}

// TimeLayout is how dates are written: UTC, milliseconds, as Beats writes
// @timestamp.
const TimeLayout = "2006-01-02T15:04:05.000Z"

// AppendJSON appends the document as one compact JSON object, without a
// newline. Leaves whose names share a prefix become nested objects; the
// leaves of one object must be adjacent (Build keeps them sorted).
func (d *Doc) AppendJSON(b []byte) []byte {
	s := d.shapeOf()
	at := 0
	for i := 0; i < len(d.Fields); i++ {
		b = append(b, s.text[at:s.ends[i]]...)
		at = s.ends[i]
		if i == d.procFrom && d.proc != nil && d.procTo > i && d.procTo <= len(d.Fields) {
			// The process's fields, and the JSON between them, as
			// written for it before in this shape, or written now.
			c := &d.procs[addrSlot(unsafe.Pointer(d.proc))]
			last := d.procTo - 1
			if c.proc == d.proc && c.shape == s {
				b = append(b, c.text...)
			} else {
				start := len(b)
				b = d.appendValue(b, i)
				for j := i + 1; j <= last; j++ {
					b = append(b, s.text[at:s.ends[j]]...)
					at = s.ends[j]
					b = d.appendValue(b, j)
				}
				c.proc, c.shape, c.text = d.proc, s, append(c.text[:0], b[start:]...)
			}
			at, i = s.ends[last], last
			continue
		}
		b = d.appendValue(b, i)
	}
	return append(b, s.text[at:]...)
}

// addrSlot is the slot of an address among procSlots: Fibonacci hashing,
// since objects of one size are allocated at a constant stride.
func addrSlot(p unsafe.Pointer) int {
	return int((uint64(uintptr(p)) * 0x9E3779B97F4A7C15) >> (64 - procBits))
}

// appendValue appends the value of field i.
func (d *Doc) appendValue(b []byte, i int) []byte {
	f := &d.Fields[i]
	if f.Kind == Time {
		return d.appendTime(b, f.Int)
	}
	return f.appendValue(b)
}

// shape is the JSON around the values of a document of one sequence of
// field names: text is all of it, the value of field i goes at ends[i],
// and the rest of text closes the objects. The documents of a stream come
// in a few shapes, so that their structure is worked out once.
type shape struct {
	names []string
	text  []byte
	ends  []int
}

// shapeOf returns the shape of d's fields, from d's last few or made.
func (d *Doc) shapeOf() *shape {
shapes:
	for _, s := range d.shapes {
		if s == nil || len(s.names) != len(d.Fields) {
			continue
		}
		for i := range d.Fields {
			if d.Fields[i].Name != s.names[i] {
				continue shapes
			}
		}
		return s
	}
	s := makeShape(d.Fields)
	d.shapes[d.nextShape] = s
	d.nextShape = (d.nextShape + 1) % len(d.shapes)
	return s
}

func makeShape(fields []Field) *shape {
	s := &shape{names: make([]string, len(fields)), ends: make([]int, len(fields))}
	// The open objects are the dot-separated prefixes of the previous
	// leaf's name: prev[:ends[i]] (with its dot) for level i+1.
	var ends [8]int
	var more [9]bool // whether each level already has a member
	depth := 0
	prev := ""
	b := append([]byte(nil), '{')
	for i := range fields {
		name := fields[i].Name
		s.names[i] = name
		for depth > 0 && !strings.HasPrefix(name, prev[:ends[depth-1]]) {
			b = append(b, '}')
			depth--
		}
		start := 0
		if depth > 0 {
			start = ends[depth-1]
		}
		for depth < len(ends) {
			dot := strings.IndexByte(name[start:], '.')
			if dot < 0 {
				break
			}
			if more[depth] {
				b = append(b, ',')
			}
			more[depth] = true
			b = appendKey(b, name[start:start+dot])
			b = append(b, '{')
			start += dot + 1
			ends[depth] = start
			depth++
			more[depth] = false
		}
		if more[depth] {
			b = append(b, ',')
		}
		more[depth] = true
		b = appendKey(b, name[start:])
		s.ends[i] = len(b)
		prev = name
	}
	for ; depth > 0; depth-- {
		b = append(b, '}')
	}
	s.text = append(b, '}')
	return s
}

// appendTime appends a date. The last few are kept: the documents of a
// snapshot share their @timestamp and event.start, and a process its
// start.
func (d *Doc) appendTime(b []byte, ns int64) []byte {
	for i := range d.times {
		if c := &d.times[i]; c.text != nil && c.ns == ns {
			return append(b, c.text...)
		}
	}
	c := &d.times[d.nextTime]
	d.nextTime = (d.nextTime + 1) % len(d.times)
	c.text = append(c.text[:0], '"')
	c.text = appendMillis(c.text, ns)
	c.text = append(c.text, '"')
	c.ns = ns
	return append(b, c.text...)
}

// appendMillis appends ns as TimeLayout writes it.
func appendMillis(b []byte, ns int64) []byte {
	t := time.Unix(0, ns).UTC()
	y, mo, day := t.Date()
	if y < 0 || y > 9999 {
		return t.AppendFormat(b, TimeLayout)
	}
	h, mi, sec := t.Clock()
	ms := t.Nanosecond() / 1e6
	return append(b,
		byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+int(mo)/10), byte('0'+int(mo)%10), '-', byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+h/10), byte('0'+h%10), ':', byte('0'+mi/10), byte('0'+mi%10), ':', byte('0'+sec/10), byte('0'+sec%10), '.',
		byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
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
		b = appendMillis(b, f.Int)
		return append(b, '"')
	case Bool:
		if f.Int != 0 {
			return append(b, "true"...)
		}
		return append(b, "false"...)
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

// appendKey appends a member name and its colon. Names are the
// package's own constants: plain ASCII that needs no escaping.
func appendKey(b []byte, k string) []byte {
	b = append(b, '"')
	b = append(b, k...)
	return append(b, '"', ':')
}

// appendString appends s as a JSON string. Plain printable ASCII, nearly
// every value, is copied as is; anything else is escaped by the codec.
func appendString(b []byte, s string) []byte {
	if codec.PlainLen(s) < len(s) {
		if !utf8.ValidString(s) {
			// As encoding/json does: JSON text must be UTF-8.
			s = strings.ToValidUTF8(s, "\uFFFD")
		}
		return codec.AppendString(b, s)
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
