package codec

import (
	"bytes"

	"github.com/sockpipe/sockpipe/internal/record"
)

// Tail is the members of a record from one on, in the encoder's order,
// which is the order of the stages that add them: sockdump's members,
// then sockdiff's, then sockproc's. A stage that only adds members of its
// own, and later ones, can write a record as the line it read with those
// members appended (EncodeTail), instead of encoding all of it.
type Tail struct{ from int }

// TailFrom returns the tail that begins with the member name. It panics
// when the record has no such member.
func TailFrom(name string) Tail {
	i, ok := recordTable.index[name]
	if !ok {
		panic("codec: no record member " + name)
	}
	return Tail{i}
}

// FreeOf reports whether a line, as decoded into r, holds none of the
// tail's members, so that EncodeTail may append them to it, nor members
// that this version does not know, which the encoder writes last. It says
// no to a line that held a null anywhere (nulls: Decoder.Nulls), which may
// be one of them.
func (t Tail) FreeOf(r *record.Record, nulls bool) bool {
	if nulls || len(r.Extra) > 0 {
		return false
	}
	ms := recordTable.members
	for i := t.from; i < len(ms); i++ {
		if ms[i].has(r) {
			return false
		}
	}
	return true
}

// EncodeTail returns line, a JSON object for which t.FreeOf held, with the
// tail's members that r has appended, followed by a newline: a record
// that the stage changed only in the tail's members, written without
// encoding the rest. Where line is as the encoder writes it and has no
// unknown members but in its own objects, the result is what Encode
// writes. The slice is valid until the next call.
func (e *Encoder) EncodeTail(line []byte, r *record.Record, t Tail) []byte {
	w := &e.w
	line = bytes.TrimSpace(line)
	w.b = append(w.b[:0], line[:len(line)-1]...) // without the closing brace
	encodeMembers(w, recordTable, r, t.from, len(bytes.TrimSpace(line[1:len(line)-1])))
	w.b = append(w.b, '}', '\n')
	return w.b
}

// hostFrom is the first of the members that sockresolve adds to an
// endpoint.
var hostFrom = endpointTable.index["host"]

// RemoteFree reports whether the remote end of r, decoded from line with
// its value at line[start:end] (Decoder.RemoteSpan), holds none of the
// members that sockresolve adds, nor members this version does not know,
// nor a null: then EncodeRemote may add them.
func RemoteFree(line []byte, start, end int, r *record.Record) bool {
	e := &r.Remote
	return e.Host == "" && e.ETLDPlusOne == "" && e.HostError == "" && len(e.Extra) == 0 &&
		0 <= start && start < end && end <= len(line) && line[start] == '{' && line[end-1] == '}' &&
		!bytes.Contains(line[start:end], []byte("null"))
}

// EncodeRemote returns line, for which RemoteFree held, with r's remote
// host, registered domain and host error put into the remote end's
// object, followed by a newline: a record that sockresolve changed only
// there, written without encoding the rest. Where line is as the encoder
// writes it, the result is what Encode writes. The slice is valid until
// the next call.
func (e *Encoder) EncodeRemote(line []byte, start, end int, r *record.Record) []byte {
	w := &e.w
	w.b = append(w.b[:0], line[:end-1]...) // without the remote end's closing brace
	encodeMembers(w, endpointTable, &r.Remote, hostFrom, len(bytes.TrimSpace(line[start+1:end-1])))
	w.b = append(w.b, line[end-1:]...)
	w.b = append(w.b, '\n')
	return w.b
}
