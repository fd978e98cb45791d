// Package codec turns records into NDJSON lines and back. It is the only
// package of sockpipe that imports github.com/json-iterator/go: the library
// is archived upstream, so it stays behind this one small API (Marshal,
// Unmarshal and Valid, for values other than records).
//
// Records go through a scanner and a writer of this package, driven by the
// member tables of schema.go, the one description of the record's JSON.
// Members that the schema does not know are kept as raw JSON so they pass
// through unchanged. The decoder accepts exactly the JSON that
// encoding/json accepts, and decodes strings as it does.
package codec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	jsoniter "github.com/json-iterator/go"

	"github.com/sockpipe/sockpipe/internal/record"
)

var api = jsoniter.Config{EscapeHTML: false, ValidateJsonRawMessage: true}.Froze()

// Marshal encodes any value as compact JSON, as encoding/json would.
func Marshal(v any) ([]byte, error) { return api.Marshal(v) }

// Unmarshal decodes JSON into v, as encoding/json would.
func Unmarshal(data []byte, v any) error { return api.Unmarshal(data, v) }

// numbers keeps numbers as their text, and writes maps with sorted keys.
var numbers = jsoniter.Config{EscapeHTML: false, UseNumber: true, SortMapKeys: true}.Froze()

// Number is a JSON number as its text, which UnmarshalNumbers gives for
// numbers decoded into an any.
type Number = json.Number

// UnmarshalNumbers decodes JSON into v as Unmarshal does, but a number
// decoded into an any is a Number, its exact text, not a float64 (which
// holds integers exactly only up to 2^53).
func UnmarshalNumbers(data []byte, v any) error { return numbers.Unmarshal(data, v) }

// MarshalIndent encodes v as indented JSON, with the keys of maps sorted,
// for files that people read and diff.
func MarshalIndent(v any, indent string) ([]byte, error) {
	// json-iterator's own indentation breaks on pointers held in maps.
	b, err := numbers.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", indent); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// Valid reports whether data is one valid JSON value, and nothing else
// but white space. (json-iterator's Valid stops after the first value.)
func Valid(data []byte) bool { return json.Valid(data) }

// Decoder decodes records. It keeps a bounded cache of the short strings
// it has decoded (addresses, states, names), so that a stream of records
// costs no allocation for them. It is not safe for concurrent use.
type Decoder struct {
	d decoder
}

// NewDecoder returns a decoder.
func NewDecoder() *Decoder { return &Decoder{} }

// RemoteSpan returns where the value of the top-level "remote" member is
// in the line last decoded, when it had one: for EncodeRemote. Of a
// member given twice, the last.
func (dec *Decoder) RemoteSpan() (start, end int, ok bool) {
	r := dec.d.remote
	return r[0], r[1], r[1] > r[0]
}

// Nulls reports whether the line last decoded held a null, anywhere (but
// in a string): for Tail.FreeOf.
func (dec *Decoder) Nulls() bool { return dec.d.nulls }

// Share makes the decoder give records the same process, user or
// container object as the record before that held the same one, byte for
// byte, instead of a new copy: cheaper, for a stream that repeats them, but
// the objects are then shared between records, and must not be changed.
func (dec *Decoder) Share() {
	if !dec.d.share {
		dec.d.share, dec.d.shared = true, new([3][shareSlots]sharedObject)
	}
}

// DecodeInto parses one NDJSON line into r, which is reset first. See
// Decode.
func (dec *Decoder) DecodeInto(line []byte, r *record.Record) error {
	*r = record.Record{}
	d := &dec.d
	d.buf, d.pos, d.depth, d.path, d.remote, d.nulls = line, 0, 0, d.path[:0], [2]int{}, false
	defer func() { d.buf = nil }()
	d.ws()
	if d.pos >= len(d.buf) || d.buf[d.pos] != '{' {
		return &SyntaxError{Msg: "not a JSON object", Offset: d.pos}
	}
	if err := decodeObject(d, recordTable, r); err != nil {
		return err
	}
	d.ws()
	if d.pos != len(d.buf) {
		return &SyntaxError{Msg: "trailing data after the JSON object", Offset: d.pos}
	}
	return nil
}

var decoders = sync.Pool{New: func() any { return NewDecoder() }}

// Decode parses one NDJSON line into a record. Members of unknown names are
// kept in the Extra fields; null members count as absent, and of a member
// given twice the last counts. It fails on anything that is not a single
// JSON object or whose known members have the wrong JSON type. Decode does
// not call Validate.
func Decode(line []byte) (*record.Record, error) {
	r := new(record.Record)
	if err := DecodeInto(line, r); err != nil {
		return nil, err
	}
	return r, nil
}

// DecodeInto is Decode into a record that the caller provides; r is reset
// first.
func DecodeInto(line []byte, r *record.Record) error {
	dec := decoders.Get().(*Decoder)
	err := dec.DecodeInto(line, r)
	decoders.Put(dec)
	return err
}

// maxDepth is how deeply encoding/json lets values nest.
const maxDepth = 10000

// internMax is the size of the string cache; internLen, the longest
// string it holds.
const (
	internBits = 10
	internMax  = 1 << internBits
	internLen  = 64
)

type decoder struct {
	buf     []byte
	pos     int
	depth   int
	path    []string          // the member names down to the value being decoded
	scratch []byte            // unescaped strings
	intern  [internMax]string // direct-mapped by a hash of the bytes
	times   timeMemo
	// remote is where the value of the top-level "remote" member is in
	// buf, after a decode that found one.
	remote [2]int
	// nulls is set when the line held a null anywhere.
	nulls bool
	// share and shared: see Decoder.Share.
	share  bool
	shared *[3][shareSlots]sharedObject
}

type sharedObject struct {
	raw   []byte
	val   any
	nulls bool // raw holds a null
}

func (d *decoder) ws() {
	// Most calls find no space at all: one comparison says so.
	for d.pos < len(d.buf) && d.buf[d.pos] <= ' ' {
		switch d.buf[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *decoder) peek() byte {
	if d.pos < len(d.buf) {
		return d.buf[d.pos]
	}
	return 0
}

// syntax is an error in the JSON itself.
func (d *decoder) syntax(what string) error {
	if d.pos >= len(d.buf) {
		return &SyntaxError{Msg: "unexpected end of input", Offset: len(d.buf)}
	}
	return &SyntaxError{Msg: what, Offset: d.pos}
}

// SyntaxError is a line that is not valid JSON.
type SyntaxError struct {
	Msg    string // what is wrong
	Offset int    // where, in bytes from the start of the line
}

func (e *SyntaxError) Error() string {
	switch e.Msg {
	case "not a JSON object":
		return e.Msg
	case "trailing data after the JSON object":
		return fmt.Sprintf("%s at byte %d", e.Msg, e.Offset)
	case "unexpected end of input":
		return "invalid JSON: " + e.Msg
	}
	return fmt.Sprintf("invalid JSON: %s at byte %d", e.Msg, e.Offset)
}

// typeError is a known member of the wrong JSON type or range.
type typeError struct{ msg string }

func (e *typeError) Error() string { return e.msg }

// want is a known member of the wrong JSON type or range.
func (d *decoder) want(format string, args ...any) error {
	name := strings.Join(d.path, ".")
	return &typeError{fmt.Sprintf("%q: "+format, append([]any{name}, args...)...)}
}

// lit consumes the literal s.
func (d *decoder) lit(s string) error {
	if len(d.buf)-d.pos < len(s) || string(d.buf[d.pos:d.pos+len(s)]) != s {
		return d.syntax("invalid literal")
	}
	d.pos += len(s)
	return nil
}

// null consumes a null and reports whether there was one.
func (d *decoder) null() bool {
	if d.peek() == 'n' && d.lit("null") == nil {
		d.nulls = true
		return true
	}
	return false
}

// decodeObject decodes an object of table t into v; null leaves v as it is.
// A member of the wrong type is an error unless the object gives the
// member again, rightly: of a member given twice the last counts, as when
// encoding/json reads the object into a map.
func decodeObject[T any](d *decoder, t *table[T], v *T) error {
	var wrong []error // by member, when some member was of the wrong type
	if d.null() {
		return nil
	}
	if d.peek() != '{' {
		return d.want("want an object")
	}
	d.pos++
	if d.depth++; d.depth > maxDepth {
		return d.syntax("exceeded max depth")
	}
	d.ws()
	if d.peek() == '}' {
		d.pos++
		d.depth--
		return nil
	}
	next := 0 // the member expected next: members come in table order
	for {
		d.ws()
		if d.peek() != '"' {
			return d.syntax("want a member name")
		}
		// The encoder writes members in table order, so the name is
		// most often that of the next member or one after it: a match
		// of its quoted name and the colon, byte for byte, is the
		// member, as the full scan and lookup below would find it.
		var key []byte
		i := -1
		for j, end := next, min(next+predict, len(t.members)); j < end; j++ {
			q := t.members[j].quoted
			if len(d.buf)-d.pos >= len(q) && string(d.buf[d.pos:d.pos+len(q)]) == q {
				i, key = j, d.buf[d.pos+1:d.pos+len(q)-2]
				d.pos += len(q)
				break
			}
		}
		if i < 0 {
			var err error
			if key, err = d.stringBytes(); err != nil {
				return err
			}
			d.ws()
			if d.peek() != ':' {
				return d.syntax("want ':'")
			}
			d.pos++
			i = t.lookup(key)
		}
		d.ws()
		if i >= 0 {
			next = i + 1
			m := &t.members[i]
			d.path = append(d.path, m.name)
			start, depth := d.pos, d.depth
			err := m.dec(d, v)
			d.path = d.path[:len(d.path)-1]
			if _, ok := err.(*typeError); ok {
				if wrong == nil {
					wrong = make([]error, len(t.members))
				}
				wrong[i] = err
				d.pos, d.depth = start, depth
				err = d.skip()
			} else if wrong != nil {
				wrong[i] = nil
			}
			if err != nil {
				return err
			}
			if m.span && d.depth == 1 {
				d.remote = [2]int{start, d.pos}
			}
		} else {
			name := d.text(key)
			start := d.pos
			if err := d.skip(); err != nil {
				return err
			}
			ex := t.extra(v)
			if *ex == nil {
				*ex = make([]record.Field, 0, 2)
			}
			*ex = append(*ex, record.Field{Key: name, Value: append([]byte(nil), d.buf[start:d.pos]...)})
		}
		d.ws()
		switch d.peek() {
		case ',':
			d.pos++
		case '}':
			d.pos++
			d.depth--
			for _, err := range wrong {
				if err != nil {
					return err
				}
			}
			return nil
		default:
			return d.syntax("want ',' or '}'")
		}
	}
}

// skip consumes one value, checking it.
func (d *decoder) skip() error {
	switch c := d.peek(); {
	case c == '"':
		_, err := d.stringBytes()
		return err
	case c == '-' || '0' <= c && c <= '9':
		return d.number()
	case c == 't':
		return d.lit("true")
	case c == 'f':
		return d.lit("false")
	case c == 'n':
		d.nulls = true
		return d.lit("null")
	case c == '{' || c == '[':
		end := byte('}')
		if c == '[' {
			end = ']'
		}
		d.pos++
		if d.depth++; d.depth > maxDepth {
			return d.syntax("exceeded max depth")
		}
		d.ws()
		if d.peek() == end {
			d.pos++
			d.depth--
			return nil
		}
		for {
			d.ws()
			if c == '{' {
				if d.peek() != '"' {
					return d.syntax("want a member name")
				}
				if _, err := d.stringBytes(); err != nil {
					return err
				}
				d.ws()
				if d.peek() != ':' {
					return d.syntax("want ':'")
				}
				d.pos++
				d.ws()
			}
			if err := d.skip(); err != nil {
				return err
			}
			d.ws()
			switch d.peek() {
			case ',':
				d.pos++
			case end:
				d.pos++
				d.depth--
				return nil
			default:
				return d.syntax("want ',' or '" + string(end) + "'")
			}
		}
	}
	return d.syntax("want a value")
}

// number consumes a number, checking its syntax.
func (d *decoder) number() error {
	b, i := d.buf, d.pos
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		for i++; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
		}
	default:
		d.pos = i
		return d.syntax("invalid number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			d.pos = i
			return d.syntax("invalid number")
		}
		for ; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			d.pos = i
			return d.syntax("invalid number")
		}
		for ; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
		}
	}
	d.pos = i
	return nil
}

// stringBytes consumes a string and returns it unescaped. The slice is
// the input's or the scratch buffer's: valid until the next string.
func (d *decoder) stringBytes() ([]byte, error) {
	b := d.buf
	i := d.pos + 1
	i += PlainLen(b[i:])
	for i < len(b) {
		c := b[i]
		if c == '"' {
			s := b[d.pos+1 : i]
			d.pos = i + 1
			return s, nil
		}
		if c < 0x20 || c == '\\' || c >= utf8.RuneSelf {
			break
		}
		i++
	}
	return d.slowString(i)
}

// slowString unescapes a string from i on, as encoding/json does:
// invalid UTF-8 and lone surrogates become U+FFFD.
func (d *decoder) slowString(i int) ([]byte, error) {
	b := d.buf
	out := append(d.scratch[:0], b[d.pos+1:i]...)
	for {
		if i >= len(b) {
			d.pos = i
			return nil, d.syntax("unterminated string")
		}
		c := b[i]
		switch {
		case c == '"':
			d.pos = i + 1
			d.scratch = out
			return out, nil
		case c < 0x20:
			d.pos = i
			return nil, d.syntax("control character in string")
		case c == '\\':
			if i+1 >= len(b) {
				d.pos = i + 1
				return nil, d.syntax("unterminated string")
			}
			switch e := b[i+1]; e {
			case '"', '\\', '/':
				out = append(out, e)
				i += 2
			case 'b':
				out = append(out, '\b')
				i += 2
			case 'f':
				out = append(out, '\f')
				i += 2
			case 'n':
				out = append(out, '\n')
				i += 2
			case 'r':
				out = append(out, '\r')
				i += 2
			case 't':
				out = append(out, '\t')
				i += 2
			case 'u':
				r := hex4(b[i+2:])
				if r < 0 {
					d.pos = i
					return nil, d.syntax("invalid \\u escape")
				}
				i += 6
				if utf16.IsSurrogate(r) {
					r1 := rune(-1)
					if i+1 < len(b) && b[i] == '\\' && b[i+1] == 'u' {
						r1 = hex4(b[i+2:])
					}
					if dec := utf16.DecodeRune(r, r1); dec != unicode.ReplacementChar {
						i += 6
						r = dec
					} else {
						r = unicode.ReplacementChar
					}
				}
				out = utf8.AppendRune(out, r)
			default:
				d.pos = i
				return nil, d.syntax("invalid escape")
			}
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				out = utf8.AppendRune(out, r)
			} else {
				out = append(out, b[i:i+size]...)
			}
			i += size
		}
	}
}

// hex4 is the value of four hex digits at the start of b, or -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// text returns b as a string, from the cache when it is short.
func (d *decoder) text(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > internLen {
		return string(b)
	}
	slot := &d.intern[hashBytes(b)>>(64-internBits)]
	if *slot == string(b) {
		return *slot
	}
	*slot = string(b)
	return *slot
}

func (d *decoder) str(dst *string) error {
	switch d.peek() {
	case '"':
		b, err := d.stringBytes()
		if err != nil {
			return err
		}
		*dst = d.text(b)
		return nil
	case 'n':
		if d.null() {
			*dst = ""
			return nil
		}
	}
	return d.want("want a string")
}

// numberText consumes a number and returns its text, or says that the
// value is null or not a number.
func (d *decoder) numberText() (text []byte, null bool, err error) {
	c := d.peek()
	if c == 'n' && d.null() {
		return nil, true, nil
	}
	if c != '-' && (c < '0' || c > '9') {
		return nil, false, d.want("want a number")
	}
	start := d.pos
	if err := d.number(); err != nil {
		return nil, false, err
	}
	return d.buf[start:d.pos], false, nil
}

// uint decodes a non-negative integer of at most max; null is 0.
func (d *decoder) uint(max uint64) (n uint64, null bool, err error) {
	text, null, err := d.numberText()
	if err != nil || null {
		return 0, null, err
	}
	if len(text) <= 19 {
		for _, c := range text {
			if c < '0' || c > '9' {
				goto slow
			}
			n = n*10 + uint64(c-'0')
		}
		goto check
	}
slow:
	n, err = strconv.ParseUint(string(text), 10, 64)
	if err != nil {
		return 0, false, d.want("want a non-negative integer, got %s", text)
	}
check:
	if n > max {
		return 0, false, d.want("%d out of range", n)
	}
	return n, false, nil
}

// int decodes an integer; null is 0.
func (d *decoder) int() (int64, error) {
	text, null, err := d.numberText()
	if err != nil || null {
		return 0, err
	}
	if len(text) <= 18 {
		digits, neg := text, false
		if len(digits) > 0 && digits[0] == '-' {
			digits, neg = digits[1:], true
		}
		var n int64
		for _, c := range digits {
			if c < '0' || c > '9' {
				goto slow
			}
			n = n*10 + int64(c-'0')
		}
		if neg {
			n = -n
		}
		return n, nil
	}
slow:
	n, err := strconv.ParseInt(string(text), 10, 64)
	if err != nil {
		return 0, d.want("want an integer, got %s", text)
	}
	return n, nil
}

func (d *decoder) bool(dst *bool) error {
	switch d.peek() {
	case 't':
		*dst = true
		return d.lit("true")
	case 'f':
		*dst = false
		return d.lit("false")
	case 'n':
		if d.null() {
			*dst = false
			return nil
		}
	}
	return d.want("want true or false")
}

func (d *decoder) strs(dst *[]string) error {
	*dst = nil
	if d.null() {
		return nil
	}
	if d.peek() != '[' {
		return d.want("want an array of strings")
	}
	d.pos++
	if d.depth++; d.depth > maxDepth {
		return d.syntax("exceeded max depth")
	}
	a := make([]string, 0, 4)
	d.ws()
	if d.peek() == ']' {
		d.pos++
		d.depth--
		*dst = a
		return nil
	}
	for {
		d.ws()
		if d.peek() != '"' {
			return d.want("want an array of strings")
		}
		b, err := d.stringBytes()
		if err != nil {
			return err
		}
		a = append(a, d.text(b))
		d.ws()
		switch d.peek() {
		case ',':
			d.pos++
		case ']':
			d.pos++
			d.depth--
			*dst = a
			return nil
		default:
			return d.syntax("want ',' or ']'")
		}
	}
}

func (d *decoder) time(dst *time.Time) error {
	*dst = time.Time{}
	if d.null() {
		return nil
	}
	if d.peek() != '"' {
		return d.want("want an RFC 3339 time")
	}
	b, err := d.stringBytes()
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return nil
	}
	if t, ok := d.times.parse(b); ok {
		*dst = t
		return nil
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return d.want("want an RFC 3339 time, got %q", b)
	}
	*dst = t
	return nil
}

// parseTime parses the times the stages write, 2006-01-02T15:04:05Z with
// 0 to 9 digits of fraction, and says false for anything else, to be left
// to time.Parse.
func parseTime(b []byte) (time.Time, bool) {
	if len(b) < 20 || b[len(b)-1] != 'Z' || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	num := func(s []byte) int {
		n := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				return -1
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	year, month, day := num(b[0:4]), num(b[5:7]), num(b[8:10])
	hour, min, sec := num(b[11:13]), num(b[14:16]), num(b[17:19])
	if year < 0 || month < 1 || month > 12 || day < 1 || day > 28 && day > daysIn(month, year) ||
		hour < 0 || hour > 23 || min < 0 || min > 59 || sec < 0 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if frac := b[19 : len(b)-1]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return time.Time{}, false
		}
		n := num(frac[1:])
		if n < 0 {
			return time.Time{}, false
		}
		for i := len(frac) - 1; i < 9; i++ {
			n *= 10
		}
		nsec = n
	}
	return time.Date(year, time.Month(month), day, hour, min, sec, nsec, time.UTC), true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
