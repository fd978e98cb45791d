package codec

import (
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/sockpipe/sockpipe/internal/record"
)

// Encoder writes records as JSON lines into a reusable buffer. It is not
// safe for concurrent use; each goroutine needs its own.
type Encoder struct {
	w writer
}

// NewEncoder returns an encoder.
func NewEncoder() *Encoder {
	return &Encoder{w: writer{b: make([]byte, 0, 512)}}
}

// RememberShared makes the encoder keep the JSON of the last process,
// user and container objects it wrote, by their address, and write it
// again for the same object rather than encode it: for a stage whose
// records share such objects (a process's sockets) and that never
// changes one once written.
func (e *Encoder) RememberShared() {
	if e.w.memo == nil {
		e.w.memo = new([sharedMembers][memoSlots]memoEntry)
	}
}

// sharedMembers is how many members are shared (see shared); memoSlots
// how many objects of each the encoder remembers, by their address.
const (
	sharedMembers = 3
	memoBits      = 8
	memoSlots     = 1 << memoBits // by Fibonacci hashing of the address: objects of one size come at a stride
)

type memoEntry struct {
	obj  any // the object, which this keeps alive: its address stays its own
	text []byte
}

// Encode returns r as one JSON object followed by a newline. The slice is
// valid until the next call.
func (e *Encoder) Encode(r *record.Record) []byte {
	w := &e.w
	w.b = w.b[:0]
	encodeObject(w, recordTable, r)
	w.b = append(w.b, '\n')
	return w.b
}

type writer struct {
	b []byte
	// The last time written and its JSON text: the records of one
	// snapshot share their time, and formatting it is not free.
	lastTime time.Time
	lastText []byte
	memo     *[sharedMembers][memoSlots]memoEntry // see Encoder.RememberShared
}

// encodeObject writes v as an object of table t: its members in table
// order, then the members it does not know, in the order they came.
func encodeObject[T any](w *writer, t *table[T], v *T) {
	w.b = append(w.b, '{')
	n := encodeMembers(w, t, v, 0, 0)
	for _, f := range *t.extra(v) {
		if n > 0 {
			w.b = append(w.b, ',')
		}
		n++
		w.str(f.Key)
		w.b = append(w.b, ':')
		w.b = append(w.b, f.Value...)
	}
	w.b = append(w.b, '}')
}

// encodeMembers writes the members of v from t's member from on, after n
// members already written, and returns the count.
func encodeMembers[T any](w *writer, t *table[T], v *T, from, n int) int {
	for i := from; i < len(t.members); i++ {
		m := &t.members[i]
		if !m.has(v) {
			continue
		}
		// The names of the schema need no escaping.
		if n > 0 {
			w.b = append(w.b, m.key...)
		} else {
			w.b = append(w.b, m.key[1:]...)
		}
		n++
		m.enc(w, v)
	}
	return n
}

func (w *writer) str(s string) { w.b = AppendString(w.b, s) }

func (w *writer) uint(n uint64) { w.b = strconv.AppendUint(w.b, n, 10) }

func (w *writer) int(n int64) { w.b = strconv.AppendInt(w.b, n, 10) }

func (w *writer) bool(v bool) { w.b = strconv.AppendBool(w.b, v) }

func (w *writer) strs(a []string) {
	w.b = append(w.b, '[')
	for i, s := range a {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.str(s)
	}
	w.b = append(w.b, ']')
}

func (w *writer) time(t time.Time) {
	if w.lastText != nil && t.Equal(w.lastTime) {
		w.b = append(w.b, w.lastText...)
		return
	}
	start := len(w.b)
	w.b = append(w.b, '"')
	w.b = t.UTC().AppendFormat(w.b, time.RFC3339Nano)
	w.b = append(w.b, '"')
	w.lastTime = t
	w.lastText = append(w.lastText[:0], w.b[start:]...)
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string, escaped as the encoder escapes:
// '"', '\\' and control characters (\n, \r and \t by name, the rest as
// \u00XX); invalid UTF-8 becomes \ufffd, as encoding/json writes it. '<',
// '>' and '&' are left as they are.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := PlainLen(s); i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError || size != 1 {
				i += size
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
