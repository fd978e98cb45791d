package diff

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/ndjson"
	"github.com/sockpipe/sockpipe/internal/record"
)

// The state file is NDJSON, so that jq can read it:
//
//	{"format":"sockdiff-state","version":1,"saved":"…","complete":true,"snapshot":"…","entries":2}
//	{"first_seen":"…","last_seen":"…","socket":{…the last socket record seen, as read…}}
//	{"first_seen":"…","last_seen":"…","ended":"…","end_cookie":7,"socket":{…}}
//	{"first_seen":"…","last_seen":"…","shared":true,"socket":{…}}
//	{"end":"sockdiff-state","entries":3}
//
// An entry with "ended" is a connection whose end a destroy notification
// already reported, at that time, for the socket of cookie end_cookie; it
// is kept until a complete snapshot no longer holds its 4-tuple. Readers
// of version 1 that do not know these members take it for a connection
// still open.
//
// An entry with "shared" is a connection whose key more than one socket
// held in the last snapshot that held it (SO_REUSEPORT); the destroy of one
// of them is not its end. Readers that do not know the member take the
// destroy of the socket of its record for the end of the connection.
//
// An entry's connection is the record.Key of its socket record: the
// record's "netns" and "transport" are the connection's network namespace
// and transport (no "transport" is TCP, no "netns" namespace 0). Files
// written when connections were told apart by family and 4-tuple alone
// have the same form, and load as their records say. A file may list one
// 4-tuple more than once, in different namespaces or transports; a reader
// that keys connections by 4-tuple alone refuses it (a connection listed
// twice) and starts afresh.
//
// The header names the format and its version; the trailer, with the same
// count, proves that the file is whole. A reader refuses a version it does
// not know.
const (
	// FileFormat is the "format" of a state file's header.
	FileFormat = "sockdiff-state"
	// FileVersion is the version of the state file format that this
	// package reads and writes.
	FileVersion = 1
)

// maxStateLine bounds one line of a state file: a socket record with room
// for fields that other stages or users added.
const maxStateLine = 1 << 20

type fileHeader struct {
	Format   string    `json:"format"`
	Version  int       `json:"version"`
	Saved    time.Time `json:"saved"`
	Complete bool      `json:"complete"`
	Snapshot time.Time `json:"snapshot"`
	Entries  int       `json:"entries"`
}

type fileEntry struct {
	FirstSeen time.Time  `json:"first_seen"`
	LastSeen  time.Time  `json:"last_seen"`
	Ended     *time.Time `json:"ended"`
	EndCookie uint64     `json:"end_cookie"`
	Shared    bool       `json:"shared"`
	Socket    rawJSON    `json:"socket"`
}

type fileTrailer struct {
	End     string `json:"end"`
	Entries int    `json:"entries"`
}

// rawJSON keeps a JSON value as it is in the input.
type rawJSON []byte

// UnmarshalJSON keeps a copy of data.
func (r *rawJSON) UnmarshalJSON(data []byte) error {
	*r = append((*r)[:0], data...)
	return nil
}

// Encode writes s as a state file, saved at now.
func (s *State) Encode(w io.Writer, now time.Time) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	h := fileHeader{
		Format:   FileFormat,
		Version:  FileVersion,
		Saved:    now.UTC(),
		Complete: s.complete,
		Snapshot: s.snapshot.UTC(),
		Entries:  s.conns.len(),
	}
	b, err := codec.Marshal(h)
	if err != nil {
		return err
	}
	bw.Write(b)
	bw.WriteByte('\n')
	// In the order of first sighting, which Decode keeps, so that closed
	// events come out in the same order whether or not the state was
	// saved and loaded between snapshots.
	es := make([]*entry, 0, s.conns.len())
	for e := s.front; e != nil; e = e.next {
		es = append(es, e)
	}
	sortBySeq(es)
	line := make([]byte, 0, 512)
	enc := codec.NewEncoder()
	var scratch record.Record
	text := make([]byte, 0, 96)
	for _, e := range es {
		sock := e.line(enc, &scratch, &text)
		line = append(line[:0], `{"first_seen":"`...)
		line = time.Unix(0, e.first).UTC().AppendFormat(line, time.RFC3339Nano)
		line = append(line, `","last_seen":"`...)
		line = time.Unix(0, e.last).UTC().AppendFormat(line, time.RFC3339Nano)
		if e.end != nil {
			line = append(line, `","ended":"`...)
			line = time.Unix(0, e.end.t).UTC().AppendFormat(line, time.RFC3339Nano)
			line = append(line, `","end_cookie":`...)
			line = strconv.AppendUint(line, e.end.cookie, 10)
			line = append(line, ',')
		} else {
			line = append(line, `",`...)
		}
		if e.shared {
			line = append(line, `"shared":true,`...)
		}
		line = append(line, `"socket":`...)
		line = append(line, sock...)
		line = append(line, "}\n"...)
		if _, err := bw.Write(line); err != nil {
			return err
		}
	}
	b, err = codec.Marshal(fileTrailer{End: FileFormat, Entries: s.conns.len()})
	if err != nil {
		return err
	}
	bw.Write(b)
	bw.WriteByte('\n')
	return bw.Flush()
}

// FileError says why a state file cannot be used: it is empty, truncated,
// corrupt or not a state file of a version this package reads. A caller
// reports it and starts afresh.
type FileError struct {
	Line int // 1-based line of the problem; 0 for the file as a whole
	Err  error
}

func (e *FileError) Error() string {
	if e.Line == 0 {
		return e.Err.Error()
	}
	return fmt.Sprintf("line %d: %v", e.Line, e.Err)
}

// Unwrap returns the cause.
func (e *FileError) Unwrap() error { return e.Err }

// Decode reads a state file. Anything but a whole state file of version
// FileVersion is a *FileError; errors of r are returned as they are.
func Decode(r io.Reader) (*State, error) {
	lr := ndjson.NewReader(r, maxStateLine)
	bad := func(err error) error { return &FileError{Line: lr.Line(), Err: err} }
	line, err := lr.Next()
	if err == io.EOF {
		return nil, &FileError{Err: errors.New("empty file")}
	}
	var le *ndjson.LineError
	if errors.As(err, &le) {
		return nil, &FileError{Line: le.Line, Err: le.Err}
	}
	if err != nil {
		return nil, err
	}
	var h fileHeader
	if err := codec.Unmarshal(line, &h); err != nil || h.Format != FileFormat {
		return nil, bad(fmt.Errorf("not a %s file", FileFormat))
	}
	if h.Version != FileVersion {
		return nil, bad(fmt.Errorf("%s version %d, this program reads version %d", FileFormat, h.Version, FileVersion))
	}
	if h.Entries < 0 {
		return nil, bad(fmt.Errorf("negative entry count %d", h.Entries))
	}
	s := New()
	s.complete = h.Complete
	s.snapshot = h.Snapshot
	s.conns = newTable(min(h.Entries, 1<<20))
	// Everything loaded was in the previous snapshot.
	s.gen = 1
	loaded := uint64(0)
	var fast entryParser
	dec := codec.NewDecoder()
	var sock record.Record // each entry's, kept by keep as it needs
	var fe fileEntry       // each entry's line, parsed (one, as it escapes)
	for {
		line, err := lr.Next()
		if err == io.EOF {
			return nil, bad(errors.New("truncated: no end line"))
		}
		if errors.As(err, &le) {
			return nil, &FileError{Line: le.Line, Err: le.Err}
		}
		if err != nil {
			return nil, err
		}
		if bytes.HasPrefix(line, []byte(`{"end"`)) {
			var t fileTrailer
			if err := codec.Unmarshal(line, &t); err != nil || t.End != FileFormat {
				return nil, bad(errors.New("bad end line"))
			}
			if t.Entries != s.conns.len() || h.Entries != s.conns.len() {
				return nil, bad(fmt.Errorf("%d entries read, header says %d, end line says %d", s.conns.len(), h.Entries, t.Entries))
			}
			if _, err := lr.Next(); err != io.EOF {
				return nil, bad(errors.New("data after the end line"))
			}
			s.cursor = s.front
			return s, nil
		}
		if !fast.parse(line, &fe) {
			fe = fileEntry{}
			if err := codec.Unmarshal(line, &fe); err != nil {
				return nil, bad(errors.New("not a state entry"))
			}
		}
		if err := checkTime(fe.FirstSeen); err != nil {
			return nil, bad(fmt.Errorf("first_seen: %w", err))
		}
		if err := checkTime(fe.LastSeen); err != nil {
			return nil, bad(fmt.Errorf("last_seen: %w", err))
		}
		if fe.LastSeen.Before(fe.FirstSeen) {
			return nil, bad(errors.New("last_seen before first_seen"))
		}
		rec := &sock
		err = dec.DecodeInto(fe.Socket, rec)
		if err == nil {
			err = rec.Validate()
		}
		if err == nil && rec.Type != record.TypeSocket {
			err = fmt.Errorf("record of type %q", rec.Type)
		}
		if err != nil {
			return nil, bad(fmt.Errorf("socket: %w", err))
		}
		k := keyOf(rec, &s.addrs)
		if _, dup := s.conns.get(k); dup {
			return nil, bad(errors.New("connection listed twice"))
		}
		loaded++
		e := &entry{
			first:  fe.FirstSeen.UnixNano(),
			last:   fe.LastSeen.UnixNano(),
			seq:    loaded,
			gen:    0,
			shared: fe.Shared,
		}
		if fe.Ended != nil {
			if err := checkTime(*fe.Ended); err != nil {
				return nil, bad(fmt.Errorf("ended: %w", err))
			}
			e.end = &ending{t: fe.Ended.UnixNano(), cookie: fe.EndCookie, twin: twin(rec)}
			s.tombs++
		}
		s.add(k, e)
		e.keep(rec, fe.Socket)
		s.seq = loaded
	}
}

// entryParser reads the entry lines that Encode writes, in their one
// spelling, several times faster than a general JSON decoder; parse
// returns false for any other, which is then decoded as JSON.
type entryParser struct {
	times timeCache
}

func (p *entryParser) parse(line []byte, fe *fileEntry) bool {
	*fe = fileEntry{}
	rest := bytes.TrimSpace(line)
	var ok bool
	if rest, ok = bytes.CutPrefix(rest, []byte(`{"first_seen":`)); !ok {
		return false
	}
	if fe.FirstSeen, rest, ok = p.times.cut(rest); !ok {
		return false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"last_seen":`)); !ok {
		return false
	}
	if fe.LastSeen, rest, ok = p.times.cut(rest); !ok {
		return false
	}
	if r, ok := bytes.CutPrefix(rest, []byte(`,"ended":`)); ok {
		var t time.Time
		if t, r, ok = p.times.cut(r); !ok {
			return false
		}
		fe.Ended = &t
		if r, ok = bytes.CutPrefix(r, []byte(`,"end_cookie":`)); !ok {
			return false
		}
		i := 0
		for i < len(r) && r[i] >= '0' && r[i] <= '9' {
			i++
		}
		c, err := strconv.ParseUint(string(r[:i]), 10, 64)
		if err != nil || (i > 1 && r[0] == '0') {
			return false
		}
		fe.EndCookie, rest = c, r[i:]
	}
	if r, ok := bytes.CutPrefix(rest, []byte(`,"shared":true`)); ok {
		fe.Shared, rest = true, r
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"socket":`)); !ok {
		return false
	}
	// The socket is the rest but for the closing brace; the caller's
	// decoder checks it, and its last character must close it.
	if len(rest) < 2 || rest[len(rest)-1] != '}' || rest[len(rest)-2] != '}' {
		return false
	}
	fe.Socket = rest[:len(rest)-1]
	return true
}

// timeCache parses the JSON strings of times, keeping the last few: the
// entries of a state file share a few times, those of its snapshots.
type timeCache struct {
	text [4][]byte
	t    [4]time.Time
	next int
}

// cut parses the JSON string of a time at the start of b, of the simple
// spelling Encode writes, and returns the rest of b.
func (c *timeCache) cut(b []byte) (time.Time, []byte, bool) {
	if len(b) < 2 || b[0] != '"' {
		return time.Time{}, nil, false
	}
	end := bytes.IndexByte(b[1:], '"')
	if end < 0 {
		return time.Time{}, nil, false
	}
	text, rest := b[1:1+end], b[2+end:]
	if bytes.IndexByte(text, '\\') >= 0 {
		return time.Time{}, nil, false
	}
	for i := range c.text {
		if c.text[i] != nil && bytes.Equal(c.text[i], text) {
			return c.t[i], rest, true
		}
	}
	var t time.Time
	if err := t.UnmarshalText(text); err != nil { // as the JSON decoder parses it
		return time.Time{}, nil, false
	}
	i := c.next
	c.next = (c.next + 1) % len(c.text)
	c.text[i], c.t[i] = append(c.text[i][:0], text...), t
	return t, rest, true
}

// checkTime rejects zero times and times that Unix nanoseconds cannot hold.
func checkTime(t time.Time) error {
	if t.IsZero() {
		return errors.New("missing")
	}
	// Unix nanoseconds span the years 1678 to 2262.
	if y := t.Year(); y < 1700 || y > 2200 {
		return errors.New("out of range")
	}
	return nil
}
