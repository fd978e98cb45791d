package codec

import (
	"bytes"
	"time"
	"unsafe"

	"github.com/sockpipe/sockpipe/internal/record"
)

// The schema of the record, written once: one table a JSON object, one
// member a row, naming the member, how to decode it, how to encode it and
// when it is written. The encoder writes the members in table order; the
// decoder finds them by name. A new field of record.Record is one row here
// (TestEveryFieldRoundTrips fails until it has one).

// member is one known member of an object of Go type T.
type member[T any] struct {
	name   string
	key    string                       // ,"name":
	quoted string                       // "name":
	dec    func(d *decoder, v *T) error // the value, at d.pos; null included
	enc    func(w *writer, v *T)        // the value
	has    func(v *T) bool              // whether the member is written
	// span makes the decoder keep where the value is in the line, for a
	// top-level member (Decoder.RemoteSpan).
	span bool
}

// table is the members of one object type, and where it keeps the members
// it does not know.
type table[T any] struct {
	members []member[T]
	extra   func(v *T) *[]record.Field
	index   map[string]int
	// slots finds a member by a hash of its name, cheaper than the
	// map: slots[hash(name, seed)] is its index + 1, 0 for none. Nil
	// when no seed tried separates the names (then index is used).
	slots []uint8
	seed  uint
}

const slotBits = 7

// predict is how many members on from the last one the decoder tries
// first, by comparing their quoted names with the line's bytes.
const predict = 4

func slotOf(name []byte, seed uint) uint {
	n := uint(len(name))
	if n == 0 {
		return 0
	}
	h := n*seed + uint(name[0])*(seed>>8|1) + uint(name[n-1])*31 + uint(name[n/2])*7
	return (h ^ h>>slotBits) & (1<<slotBits - 1)
}

// lookup returns the index of the member of that name, or -1.
func (t *table[T]) lookup(name []byte) int {
	if t.slots == nil {
		if i, ok := t.index[string(name)]; ok {
			return i
		}
		return -1
	}
	i := int(t.slots[slotOf(name, t.seed)]) - 1
	if i >= 0 && t.members[i].name == string(name) {
		return i
	}
	return -1
}

func newTable[T any](extra func(*T) *[]record.Field, ms ...member[T]) *table[T] {
	t := &table[T]{members: ms, extra: extra, index: make(map[string]int, len(ms))}
	for i := range ms {
		m := &ms[i]
		m.key = `,"` + m.name + `":`
		m.quoted = m.key[1:]
		if _, dup := t.index[m.name]; dup {
			panic("codec: member " + m.name + " twice in a table")
		}
		t.index[m.name] = i
	}
seeds:
	for seed := uint(1); seed < 1<<16; seed++ {
		slots := make([]uint8, 1<<slotBits)
		for i, m := range ms {
			h := slotOf([]byte(m.name), seed)
			if slots[h] != 0 {
				continue seeds
			}
			slots[h] = uint8(i + 1)
		}
		t.slots, t.seed = slots, seed
		break
	}
	return t
}

// Members by kind. Each takes the field's accessor; a null value sets the
// field to its zero value, and the zero value is not written unless the
// row says otherwise (always, or its own has).

func str[T any](name string, f func(*T) *string) member[T] {
	return member[T]{
		name: name,
		dec:  func(d *decoder, v *T) error { return d.str(f(v)) },
		enc:  func(w *writer, v *T) { w.str(*f(v)) },
		has:  func(v *T) bool { return *f(v) != "" },
	}
}

func tim[T any](name string, f func(*T) *time.Time) member[T] {
	return member[T]{
		name: name,
		dec:  func(d *decoder, v *T) error { return d.time(f(v)) },
		enc:  func(w *writer, v *T) { w.time(*f(v)) },
		has:  func(v *T) bool { return !f(v).IsZero() },
	}
}

type unsigned interface{ ~uint16 | ~uint32 | ~uint64 }

func uns[T any, U unsigned](name string, f func(*T) *U) member[T] {
	max := uint64(^U(0))
	return member[T]{
		name: name,
		dec: func(d *decoder, v *T) error {
			n, _, err := d.uint(max)
			if err == nil {
				*f(v) = U(n)
			}
			return err
		},
		enc: func(w *writer, v *T) { w.uint(uint64(*f(v))) },
		has: func(v *T) bool { return *f(v) != 0 },
	}
}

type signed interface{ ~int | ~int64 }

func sig[T any, I signed](name string, f func(*T) *I) member[T] {
	return member[T]{
		name: name,
		dec: func(d *decoder, v *T) error {
			n, err := d.int()
			if err == nil {
				*f(v) = I(n)
			}
			return err
		},
		enc: func(w *writer, v *T) { w.int(int64(*f(v))) },
		has: func(v *T) bool { return *f(v) != 0 },
	}
}

func boolean[T any](name string, f func(*T) *bool) member[T] {
	return member[T]{
		name: name,
		dec:  func(d *decoder, v *T) error { return d.bool(f(v)) },
		enc:  func(w *writer, v *T) { w.bool(*f(v)) },
		has:  func(v *T) bool { return *f(v) },
	}
}

func strs[T any](name string, f func(*T) *[]string) member[T] {
	return member[T]{
		name: name,
		dec:  func(d *decoder, v *T) error { return d.strs(f(v)) },
		enc:  func(w *writer, v *T) { w.strs(*f(v)) },
		has:  func(v *T) bool { return *f(v) != nil },
	}
}

// obj is a nested object held by value, written when any of its fields is.
func obj[T, S any](name string, t *table[S], f func(*T) *S, has func(*S) bool) member[T] {
	return member[T]{
		name: name,
		dec: func(d *decoder, v *T) error {
			p := f(v)
			var zero S
			*p = zero
			return decodeObject(d, t, p)
		},
		enc: func(w *writer, v *T) { encodeObject(w, t, f(v)) },
		has: func(v *T) bool { return has(f(v)) },
	}
}

// ptr is a nested object held by pointer, written when not nil.
func ptr[T, S any](name string, t *table[S], f func(*T) **S) member[T] {
	return member[T]{
		name: name,
		dec: func(d *decoder, v *T) error {
			p := f(v)
			*p = nil
			if d.null() {
				return nil
			}
			s := new(S)
			*p = s
			return decodeObject(d, t, s)
		},
		enc: func(w *writer, v *T) { encodeObject(w, t, *f(v)) },
		has: func(v *T) bool { return *f(v) != nil },
	}
}

// shared is ptr for a member whose objects a decoder that shares objects
// (Decoder.Share) keeps, in its cache slot: a value of the same bytes as
// one decoded before is that object again, not decoded. A stream of
// records repeats its processes and users, though not one after another
// (a dump lists sockets in the order of the kernel's hash tables).
func shared[T, S any](name string, slot int, t *table[S], f func(*T) **S) member[T] {
	m := ptr(name, t, f)
	plainEnc := m.enc
	m.enc = func(w *writer, v *T) {
		s := *f(v)
		if w.memo == nil || s == nil {
			plainEnc(w, v)
			return
		}
		c := &w.memo[slot][(uint64(uintptr(unsafe.Pointer(s)))*0x9E3779B97F4A7C15)>>(64-memoBits)]
		if c.obj == any(s) {
			w.b = append(w.b, c.text...)
			return
		}
		start := len(w.b)
		plainEnc(w, v)
		c.obj, c.text = s, append(c.text[:0], w.b[start:]...)
	}
	plain := m.dec
	m.dec = func(d *decoder, v *T) error {
		if !d.share {
			return plain(d, v)
		}
		start := d.pos
		// Two slots for each hash, the one filled last first: the
		// cached bytes are one whole object, so a value that begins
		// with them is that object.
		set := d.shared[slot][shareIndex(d.buf[start:]):][:2]
		for i := range set {
			if c := &set[i]; c.val != nil && bytes.HasPrefix(d.buf[start:], c.raw) {
				*f(v) = c.val.(*S)
				d.pos += len(c.raw)
				d.nulls = d.nulls || c.nulls
				return nil
			}
		}
		nulls := d.nulls
		d.nulls = false
		err := plain(d, v)
		objNulls := d.nulls
		d.nulls = nulls || objNulls
		if err != nil {
			return err
		}
		if s := *f(v); s != nil && d.pos-start <= maxShared {
			set[0], set[1] = set[1], set[0]
			set[0].raw, set[0].val, set[0].nulls = append(set[0].raw[:0], d.buf[start:d.pos]...), s, objNulls
		}
		return nil
	}
	return m
}

// maxShared bounds the objects that a decoder shares; shareSlots is how
// many of each member it keeps, two to each hash of their first bytes.
const (
	maxShared  = 4 << 10
	shareBits  = 9
	shareSlots = 1 << shareBits
	shareBytes = 48 // enough to tell processes by their pid, users by id
)

func shareIndex(b []byte) int {
	b = b[:min(len(b), shareBytes)]
	h := hashBytes(b)
	if len(b) > 24 {
		// The first, middle and last words of 48 bytes leave out the
		// pid of a process from a long name: the next words count too.
		h ^= hashBytes(b[8:24])
	}
	return int(h>>(64-shareBits)) &^ 1
}

// spanned makes the decoder keep where a top-level member's value is.
func spanned[T any](m member[T]) member[T] {
	m.span = true
	return m
}

// always makes a member written even when it is zero.
func always[T any](m member[T]) member[T] {
	m.has = func(*T) bool { return true }
	return m
}

// when makes a member written when has says so.
func when[T any](m member[T], has func(*T) bool) member[T] {
	m.has = has
	return m
}

var endpointTable = newTable(func(e *record.Endpoint) *[]record.Field { return &e.Extra },
	str("ip", func(e *record.Endpoint) *string { return &e.IP }),
	always(uns("port", func(e *record.Endpoint) *uint16 { return &e.Port })),
	str("host", func(e *record.Endpoint) *string { return &e.Host }),
	str("etld_plus_one", func(e *record.Endpoint) *string { return &e.ETLDPlusOne }),
	str("host_error", func(e *record.Endpoint) *string { return &e.HostError }),
)

func endpointSet(e *record.Endpoint) bool {
	return e.IP != "" || e.Port != 0 || e.Host != "" || e.ETLDPlusOne != "" || e.HostError != "" || len(e.Extra) > 0
}

var ownerTable = newTable(func(o *record.Owner) *[]record.Field { return &o.Extra },
	sig("pid", func(o *record.Owner) *int { return &o.PID }),
	str("name", func(o *record.Owner) *string { return &o.Name }),
	always(uns("uid", func(o *record.Owner) *uint32 { return &o.UID })),
	// The table records a process's gid; a listener's owner has none.
	when(uns("gid", func(o *record.Owner) *uint32 { return &o.GID }), func(o *record.Owner) bool { return o.PID != 0 || o.GID != 0 }),
	uns("cgroup_id", func(o *record.Owner) *uint64 { return &o.CgroupID }),
	tim("start", func(o *record.Owner) *time.Time { return &o.Start }),
	str("via", func(o *record.Owner) *string { return &o.Via }),
	uns("inode", func(o *record.Owner) *uint64 { return &o.Inode }),
)

var tcpInfoTable = newTable(func(t *record.TCPInfo) *[]record.Field { return &t.Extra },
	always(uns("bytes_acked", func(t *record.TCPInfo) *uint64 { return &t.BytesAcked })),
	always(uns("bytes_received", func(t *record.TCPInfo) *uint64 { return &t.BytesReceived })),
	always(uns("bytes_sent", func(t *record.TCPInfo) *uint64 { return &t.BytesSent })),
	always(uns("bytes_retrans", func(t *record.TCPInfo) *uint64 { return &t.BytesRetrans })),
	always(uns("segs_out", func(t *record.TCPInfo) *uint32 { return &t.SegsOut })),
	always(uns("segs_in", func(t *record.TCPInfo) *uint32 { return &t.SegsIn })),
	always(uns("total_retrans", func(t *record.TCPInfo) *uint32 { return &t.TotalRetrans })),
	always(uns("rtt_us", func(t *record.TCPInfo) *uint32 { return &t.RTTMicros })),
)

var processTable = newTable(func(p *record.Process) *[]record.Field { return &p.Extra },
	always(sig("pid", func(p *record.Process) *int { return &p.PID })),
	sig("ppid", func(p *record.Process) *int { return &p.PPID }),
	str("name", func(p *record.Process) *string { return &p.Name }),
	str("executable", func(p *record.Process) *string { return &p.Executable }),
	strs("args", func(p *record.Process) *[]string { return &p.Args }),
	str("cmdline", func(p *record.Process) *string { return &p.Cmdline }),
	tim("start", func(p *record.Process) *time.Time { return &p.Start }),
)

var userTable = newTable(func(u *record.User) *[]record.Field { return &u.Extra },
	always(str("id", func(u *record.User) *string { return &u.ID })),
	str("name", func(u *record.User) *string { return &u.Name }),
	str("full_name", func(u *record.User) *string { return &u.FullName }),
)

var containerTable = newTable(func(c *record.Container) *[]record.Field { return &c.Extra },
	str("id", func(c *record.Container) *string { return &c.ID }),
)

func snapshotOr(f func(r *record.Record) bool) func(r *record.Record) bool {
	return func(r *record.Record) bool { return r.Type == record.TypeSnapshot || f(r) }
}

type rec = record.Record

var recordTable = newTable(func(r *rec) *[]record.Field { return &r.Extra },
	str("type", func(r *rec) *string { return &r.Type }),
	tim("time", func(r *rec) *time.Time { return &r.Time }),
	// Snapshot members: a snapshot always says its schema, socket count
	// and duration.
	when(sig("schema", func(r *rec) *int { return &r.Schema }), snapshotOr(func(r *rec) bool { return r.Schema != 0 })),
	when(sig("sockets", func(r *rec) *int { return &r.Sockets }), snapshotOr(func(r *rec) bool { return r.Sockets != 0 })),
	when(sig("duration_ns", func(r *rec) *time.Duration { return &r.Duration }), snapshotOr(func(r *rec) bool { return r.Duration != 0 })),
	sig("interval_ns", func(r *rec) *time.Duration { return &r.Interval }),
	sig("event_overflows", func(r *rec) *int { return &r.EventOverflows }),
	sig("namespaces", func(r *rec) *int { return &r.Namespaces }),
	sig("namespaces_skipped", func(r *rec) *int { return &r.NamespacesSkipped }),
	// Socket members.
	str("family", func(r *rec) *string { return &r.Family }),
	str("transport", func(r *rec) *string { return &r.Transport }),
	str("state", func(r *rec) *string { return &r.State }),
	obj("local", endpointTable, func(r *rec) *record.Endpoint { return &r.Local }, endpointSet),
	spanned(obj("remote", endpointTable, func(r *rec) *record.Endpoint { return &r.Remote }, endpointSet)),
	str("direction", func(r *rec) *string { return &r.Direction }),
	// A socket always says its inode, 0 once closing.
	when(uns("inode", func(r *rec) *uint64 { return &r.Inode }), func(r *rec) bool {
		return r.Type == record.TypeSocket || r.Type == record.TypeDestroyed || r.Inode != 0
	}),
	member[rec]{
		name: "uid",
		dec: func(d *decoder, r *rec) error {
			n, null, err := d.uint(1<<32 - 1)
			if err == nil {
				r.UID, r.HasUID = uint32(n), !null
			}
			return err
		},
		enc: func(w *writer, r *rec) { w.uint(uint64(r.UID)) },
		has: func(r *rec) bool { return r.HasUID },
	},
	uns("cookie", func(r *rec) *uint64 { return &r.Cookie }),
	uns("netns", func(r *rec) *uint64 { return &r.NetNS }),
	ptr("owner", ownerTable, func(r *rec) **record.Owner { return &r.Owner }),
	ptr("tcp_info", tcpInfoTable, func(r *rec) **record.TCPInfo { return &r.Info }),
	// Event members (sockdiff).
	str("event", func(r *rec) *string { return &r.Event }),
	boolean("short_lived", func(r *rec) *bool { return &r.ShortLived }),
	tim("first_seen", func(r *rec) *time.Time { return &r.FirstSeen }),
	tim("last_seen", func(r *rec) *time.Time { return &r.LastSeen }),
	// Enrichment (sockproc).
	shared("process", 0, processTable, func(r *rec) **record.Process { return &r.Process }),
	str("process_error", func(r *rec) *string { return &r.ProcessError }),
	shared("user", 1, userTable, func(r *rec) **record.User { return &r.User }),
	shared("container", 2, containerTable, func(r *rec) **record.Container { return &r.Container }),
)
