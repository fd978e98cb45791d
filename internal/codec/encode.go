package codec

import (
	"time"

	jsoniter "github.com/json-iterator/go"

	"github.com/sockpipe/sockpipe/internal/record"
)

// Encoder writes records as JSON lines into a reusable buffer. It is not
// safe for concurrent use; each goroutine needs its own.
type Encoder struct {
	s *jsoniter.Stream
	// The last time written and its JSON text: the records of one
	// snapshot share their time, and formatting it is not free.
	lastTime time.Time
	lastText []byte
}

// NewEncoder returns an encoder.
func NewEncoder() *Encoder {
	return &Encoder{s: jsoniter.NewStream(api, nil, 512)}
}

// Encode returns r as one JSON object followed by a newline. The slice is
// valid until the next call.
func (e *Encoder) Encode(r *record.Record) []byte {
	s := e.s
	s.SetBuffer(s.Buffer()[:0])
	w := objWriter{s: s, e: e}
	s.WriteObjectStart()
	w.str("type", r.Type)
	w.time("time", r.Time)
	switch r.Type {
	case record.TypeSnapshot:
		w.int("schema", int64(r.Schema))
		w.int("sockets", int64(r.Sockets))
		w.int("duration_ns", int64(r.Duration))
		if r.Interval != 0 {
			w.int("interval_ns", int64(r.Interval))
		}
		if r.EventOverflows != 0 {
			w.int("event_overflows", int64(r.EventOverflows))
		}
		if r.Namespaces != 0 {
			w.int("namespaces", int64(r.Namespaces))
		}
		if r.NamespacesSkipped != 0 {
			w.int("namespaces_skipped", int64(r.NamespacesSkipped))
		}
	default:
		w.safe("family", r.Family)
		w.safe("transport", r.Transport)
		w.safe("state", r.State)
		if r.Local.IP != "" || len(r.Local.Extra) > 0 {
			w.key("local")
			endpoint(s, &r.Local)
		}
		if r.Remote.IP != "" || len(r.Remote.Extra) > 0 {
			w.key("remote")
			endpoint(s, &r.Remote)
		}
		w.safe("direction", r.Direction)
		if r.Type == record.TypeSocket || r.Type == record.TypeDestroyed || r.Inode != 0 {
			w.uint("inode", r.Inode)
		}
		if r.HasUID {
			w.uint("uid", uint64(r.UID))
		}
		if r.Cookie != 0 {
			w.uint("cookie", r.Cookie)
		}
		if r.NetNS != 0 {
			w.uint("netns", r.NetNS)
		}
		if o := r.Owner; o != nil {
			w.key("owner")
			owner(s, o)
		}
		if ti := r.Info; ti != nil {
			w.key("tcp_info")
			tcpInfo(s, ti)
		}
		w.str("event", r.Event)
		if r.ShortLived {
			w.key("short_lived")
			w.s.WriteTrue()
		}
		w.time("first_seen", r.FirstSeen)
		w.time("last_seen", r.LastSeen)
		if p := r.Process; p != nil {
			w.key("process")
			process(s, p)
		}
		w.str("process_error", r.ProcessError)
		if u := r.User; u != nil {
			w.key("user")
			user(s, u)
		}
		if c := r.Container; c != nil {
			w.key("container")
			container(s, c)
		}
		if r.Schema != 0 {
			w.int("schema", int64(r.Schema))
		}
	}
	w.extra(r.Extra)
	s.WriteObjectEnd()
	s.WriteRaw("\n")
	return s.Buffer()
}

func endpoint(s *jsoniter.Stream, e *record.Endpoint) {
	w := objWriter{s: s}
	s.WriteObjectStart()
	w.safe("ip", e.IP)
	w.uint("port", uint64(e.Port))
	w.str("host", e.Host)
	w.str("etld_plus_one", e.ETLDPlusOne)
	w.str("host_error", e.HostError)
	w.extra(e.Extra)
	s.WriteObjectEnd()
}

func process(s *jsoniter.Stream, p *record.Process) {
	w := objWriter{s: s}
	s.WriteObjectStart()
	w.int("pid", int64(p.PID))
	if p.PPID != 0 {
		w.int("ppid", int64(p.PPID))
	}
	w.str("name", p.Name)
	w.str("executable", p.Executable)
	if p.Args != nil {
		w.key("args")
		s.WriteArrayStart()
		for i, a := range p.Args {
			if i > 0 {
				s.WriteMore()
			}
			s.WriteString(a)
		}
		s.WriteArrayEnd()
	}
	w.str("cmdline", p.Cmdline)
	w.time("start", p.Start)
	w.extra(p.Extra)
	s.WriteObjectEnd()
}

func tcpInfo(s *jsoniter.Stream, ti *record.TCPInfo) {
	w := objWriter{s: s}
	s.WriteObjectStart()
	w.uint("bytes_acked", ti.BytesAcked)
	w.uint("bytes_received", ti.BytesReceived)
	w.uint("bytes_sent", ti.BytesSent)
	w.uint("bytes_retrans", ti.BytesRetrans)
	w.uint("segs_out", uint64(ti.SegsOut))
	w.uint("segs_in", uint64(ti.SegsIn))
	w.uint("total_retrans", uint64(ti.TotalRetrans))
	w.uint("rtt_us", uint64(ti.RTTMicros))
	w.extra(ti.Extra)
	s.WriteObjectEnd()
}

func user(s *jsoniter.Stream, u *record.User) {
	w := objWriter{s: s}
	s.WriteObjectStart()
	w.key("id")
	s.WriteString(u.ID)
	w.str("name", u.Name)
	w.str("full_name", u.FullName)
	w.extra(u.Extra)
	s.WriteObjectEnd()
}

func owner(s *jsoniter.Stream, o *record.Owner) {
	w := objWriter{s: s}
	s.WriteObjectStart()
	if o.PID != 0 {
		w.int("pid", int64(o.PID))
	}
	w.str("name", o.Name)
	w.uint("uid", uint64(o.UID))
	if o.PID != 0 {
		// The table records a process's gid; a listener's owner has none.
		w.uint("gid", uint64(o.GID))
	}
	if o.CgroupID != 0 {
		w.uint("cgroup_id", o.CgroupID)
	}
	w.time("start", o.Start)
	w.str("via", o.Via)
	if o.Inode != 0 {
		w.uint("inode", o.Inode)
	}
	w.extra(o.Extra)
	s.WriteObjectEnd()
}

func container(s *jsoniter.Stream, c *record.Container) {
	w := objWriter{s: s}
	s.WriteObjectStart()
	w.str("id", c.ID)
	w.extra(c.Extra)
	s.WriteObjectEnd()
}

// objWriter writes the members of one object, with commas between them.
type objWriter struct {
	s    *jsoniter.Stream
	e    *Encoder // for the time cache; nil in nested objects
	more bool
}

// key writes a member name; the names of the schema need no escaping.
func (w *objWriter) key(k string) {
	if w.more {
		w.s.WriteRaw(`,"`)
	} else {
		w.s.WriteRaw(`"`)
	}
	w.more = true
	w.s.WriteRaw(k)
	w.s.WriteRaw(`":`)
}

// safe writes a string member whose value needs no escaping when it is
// made of the characters of addresses and names of the schema (letters,
// digits, '.', ':', '-', '_'); anything else goes through the escaper.
func (w *objWriter) safe(k, v string) {
	if v == "" {
		return
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == ':' || c == '-' || c == '_') {
			w.str(k, v)
			return
		}
	}
	w.key(k)
	w.s.WriteRaw(`"`)
	w.s.WriteRaw(v)
	w.s.WriteRaw(`"`)
}

func (w *objWriter) str(k, v string) {
	if v == "" {
		return
	}
	w.key(k)
	w.s.WriteString(v)
}

func (w *objWriter) int(k string, v int64) {
	w.key(k)
	w.s.WriteInt64(v)
}

func (w *objWriter) uint(k string, v uint64) {
	w.key(k)
	w.s.WriteUint64(v)
}

func (w *objWriter) time(k string, t time.Time) {
	if t.IsZero() {
		return
	}
	w.key(k)
	if w.e != nil && w.e.lastText != nil && t.Equal(w.e.lastTime) {
		w.s.Write(w.e.lastText)
		return
	}
	var buf [48]byte
	b := append(buf[:0], '"')
	b = t.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	w.s.Write(b)
	if w.e != nil {
		w.e.lastTime = t
		w.e.lastText = append(w.e.lastText[:0], b...)
	}
}

func (w *objWriter) extra(fs []record.Field) {
	for _, f := range fs {
		w.key(f.Key)
		w.s.Write(f.Value)
	}
}

// AppendString appends s as a JSON string, escaped as the encoder escapes.
func AppendString(dst []byte, s string) []byte {
	b, _ := api.Marshal(s)
	return append(dst, b...)
}
