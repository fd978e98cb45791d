package diff

import (
	"time"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/record"
)

// Outcome says what a destroyed record meant to the state.
type Outcome uint8

// Outcomes of Destroyed.
const (
	// Closed: the end of a known connection, reported at once.
	Closed Outcome = iota + 1
	// ShortLived: a connection that no snapshot held, born and destroyed
	// between two snapshots; reported opened, then closed.
	ShortLived
	// Duplicate: the end of a connection already reported, by an earlier
	// destroy notification or by a snapshot that found it gone.
	Duplicate
	// Unidentified: a socket whose addresses the kernel wiped (remote
	// port 0) and whose cookie matches no known connection; dropped.
	Unidentified
	// Shared: one of the sockets that share the key of a known
	// connection (SO_REUSEPORT); the connection lives on until a
	// snapshot no longer holds its key.
	Shared
)

func (o Outcome) String() string {
	switch o {
	case Closed:
		return "closed"
	case ShortLived:
		return "short-lived"
	case Duplicate:
		return "duplicate"
	case Unidentified:
		return "unidentified"
	case Shared:
		return "shared"
	}
	return "unknown"
}

// DestroyedCounts counts the destroyed records folded in, by outcome.
type DestroyedCounts struct {
	Closed, ShortLived, Duplicate, Unidentified, Shared int
}

// Counts returns the destroyed records folded in so far, by outcome.
func (s *State) Counts() DestroyedCounts { return s.counts }

// Destroyed folds in a destroyed record: a socket that the kernel
// destroyed at r.Time, as sockdump --events reports it between snapshots.
// It returns the events to report, which the caller writes in this order:
//
//   - a known connection (by its key, or by its cookie in its network
//     namespace when the remote port is 0): no opened, and its closed
//     event at once, the last record seen of it with time and last_seen
//     the destroy's time, first_seen its first sighting and tcp_info the
//     destroy's counters;
//   - an unknown connection: an opened event made of the destroyed record
//     (type socket, short_lived, time the destroy's, no first_seen), and
//     its closed event (the same, with last_seen the destroy's time);
//   - the end of a connection already reported, a TCP socket of remote
//     port 0 (wiped by the kernel, or a listener) that matches nothing, or
//     one of several sockets that shared a connection's key in the last
//     snapshot (SO_REUSEPORT listeners, UDP servers; the connection ends
//     when a snapshot no longer holds its key): no event.
//
// TCP and UDP are told apart only where TCP differs: a TCP socket of
// remote port 0 has lost its addresses, while a UDP one is a socket that
// is not connected, whose addresses are its own, so a UDP socket that no
// snapshot held is short-lived whether connected or not; and only TCP has
// time-wait twins.
//
// The connection is then remembered as ended (a tombstone) until a
// complete snapshot no longer holds its key: a socket of a later snapshot
// with that key in state time-wait or fin-wait-2 (the connection's
// time-wait twin; TCP only), or from a dump that began before the
// destroy, is what remains of it and reports nothing, now or when it goes;
// any other socket is a new connection.
//
// Before any complete snapshot the same holds: a connection of the partial
// snapshots read so far is closed, any other is short-lived (its destroy
// says it was alive after sockdiff started, and no snapshot saw it).
//
// r must be a valid destroyed record; it is not kept.
func (s *State) Destroyed(r *record.Record) (opened, closed *record.Record, o Outcome, err error) {
	s.events = true
	s.dirty = true
	t := r.Time.UnixNano()
	c := r.Cookie
	ck := cookieKey{r.NetNS, c}
	defer func() {
		switch o {
		case Closed:
			s.counts.Closed++
		case ShortLived:
			s.counts.ShortLived++
		case Duplicate:
			s.counts.Duplicate++
		case Unidentified:
			s.counts.Unidentified++
		case Shared:
			s.counts.Shared++
		}
	}()
	if s.closedCookies.has(ck) {
		return nil, nil, Duplicate, nil
	}
	if r.Remote.Port == 0 {
		// A TCP socket wiped by an abortive close, or a listener: only
		// the cookie tells which connection it was. A UDP socket that
		// is not connected: the cookie first, then its addresses, which
		// the kernel leaves as they were.
		e := s.lookupCookie(ck)
		switch {
		case e != nil && e.end != nil:
			return nil, nil, Duplicate, nil
		case e != nil && e.shared:
			return nil, nil, Shared, nil
		case e != nil:
			closed, err = s.end(e, r)
			return nil, closed, Closed, err
		case r.Transport != record.TransportUDP:
			return nil, nil, Unidentified, nil
		}
	}
	k := keyOf(r, &s.addrs)
	e, _ := s.conns.get(k)
	if e != nil && e.end == nil && e.shared {
		return nil, nil, Shared, nil
	}
	if e != nil && e.end == nil {
		closed, err = s.end(e, r)
		return nil, closed, Closed, err
	}
	if e != nil {
		if c == e.end.cookie && (c != 0 || t == e.end.t) {
			return nil, nil, Duplicate, nil
		}
		// Another socket on the 4-tuple of an ended connection: a new
		// connection, which replaces the tombstone.
		s.remove(e)
	}
	opened = s.shortLived(k, r)
	cl := *opened
	cl.Event = record.EventClosed
	cl.LastSeen = r.Time
	return opened, &cl, ShortLived, nil
}

// end reports the end of the known connection e, destroyed as r says, and
// keeps it as a tombstone.
func (s *State) end(e *entry, r *record.Record) (*record.Record, error) {
	t := r.Time.UnixNano()
	ev, err := e.event(r.Time)
	if err != nil {
		return nil, err
	}
	if t > e.last {
		ev.LastSeen = r.Time
	}
	if r.Info != nil {
		info := *r.Info
		ev.Info = &info
	}
	if ev.Owner == nil {
		ev.Owner = r.Owner
	}
	e.end = &ending{t: t, cookie: r.Cookie, twin: twin(ev)}
	s.tombs++
	if s.byCookie != nil && r.Cookie != 0 {
		s.byCookie[cookieKey{e.netns(), r.Cookie}] = e
	}
	return ev, nil
}

// shortLived remembers the connection of a destroyed record that no
// snapshot held, as ended, and returns its opened event.
func (s *State) shortLived(k tkey, r *record.Record) *record.Record {
	ev := *r
	ev.Type = record.TypeSocket
	ev.Event, ev.FirstSeen, ev.LastSeen, ev.ShortLived = "", time.Time{}, time.Time{}, false
	if r.Info != nil {
		info := *r.Info
		ev.Info = &info
	}
	if s.enc == nil {
		s.enc = codec.NewEncoder()
	}
	raw := s.enc.Encode(&ev)
	t := r.Time.UnixNano()
	s.seq++
	e := &entry{
		first: t, last: t, seq: s.seq,
		// Not held by the snapshot being read: the first complete
		// snapshot that does not hold it forgets it.
		gen: s.gen - 1,
		end: &ending{t: t, cookie: r.Cookie},
	}
	e.ip, e.str = k.ip, k.str
	e.keep(&ev, raw[:len(raw)-1])
	s.conns.put(k, e)
	s.pushFront(e)
	s.tombs++
	if s.byCookie != nil && r.Cookie != 0 {
		s.byCookie[cookieKey{r.NetNS, r.Cookie}] = e
	}
	ev.Event, ev.ShortLived = record.EventOpened, true
	return &ev
}

func (s *State) pushFront(e *entry) {
	e.prev, e.next = nil, s.front
	if s.front != nil {
		s.front.prev = e
	} else {
		s.back = e
	}
	s.front = e
}

// remains reports whether the socket r, seen at t, is what remains of the
// ended connection e rather than a new connection on its 4-tuple: a
// time-wait twin, or a socket listed by a dump that began before the
// destroy.
func remains(e *entry, r *record.Record, t int64) bool {
	return t <= e.end.t || twin(r)
}

// twin reports whether the socket r may be the time-wait twin of a
// destroyed connection: a TCP socket in a time-wait socket's substate,
// time-wait or fin-wait-2, as the kernel shows it. UDP has no time-wait:
// no UDP socket is a twin.
func twin(r *record.Record) bool {
	return (r.Transport == record.TransportTCP || r.Transport == "") &&
		(r.State == "time-wait" || r.State == "fin-wait-2")
}

// cookieKey is a socket cookie in its network namespace: kernels before
// 5.12 number the sockets of each namespace on their own.
type cookieKey struct {
	netns, c uint64
}

// lookupCookie returns the known connection whose last record, or whose
// destroy, has the socket cookie c, or nil. The index is built on first
// use, kept up to date by Socket and checked on every hit.
func (s *State) lookupCookie(c cookieKey) *entry {
	if c.c == 0 {
		return nil
	}
	if s.byCookie == nil || len(s.byCookie) > 2*s.conns.len()+4096 {
		s.byCookie = make(map[cookieKey]*entry, s.conns.len())
		for e := s.front; e != nil; e = e.next {
			if rc := e.cookie(); rc != 0 {
				s.byCookie[cookieKey{e.netns(), rc}] = e
			}
			if e.end != nil && e.end.cookie != 0 {
				s.byCookie[cookieKey{e.netns(), e.end.cookie}] = e
			}
		}
	}
	e := s.byCookie[c]
	if e == nil {
		return nil
	}
	if got, _ := s.conns.get(e.tkey()); got != e || e.netns() != c.netns ||
		!(e.cookie() == c.c || e.end != nil && e.end.cookie == c.c) {
		delete(s.byCookie, c)
		return nil
	}
	return e
}

// rawCookie returns the top-level "cookie" of a record line, or 0.
func rawCookie(line []byte) uint64 {
	depth := 0
	for i := 0; i < len(line); i++ {
		switch line[i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case '"':
			start := i + 1
			j := start
			for ; j < len(line) && line[j] != '"'; j++ {
				if line[j] == '\\' {
					j++
				}
			}
			if j >= len(line) {
				return 0
			}
			if depth == 1 && string(line[start:j]) == "cookie" && j+1 < len(line) && line[j+1] == ':' {
				var v uint64
				k := j + 2
				for ; k < len(line) && line[k] >= '0' && line[k] <= '9'; k++ {
					d := uint64(line[k] - '0')
					if v > (1<<64-1-d)/10 {
						return 0
					}
					v = v*10 + d
				}
				return v
			}
			i = j
		}
	}
	return 0
}

// Bounds of the memory of cookies of connections that snapshots found
// gone: a destroy notification comes when the socket is freed, which is
// when its owner closes it; a connection reset by its peer leaves the
// hash tables, and the snapshots, at once, while its owner may hold it for
// longer.
const (
	maxClosedCookies = 1 << 16
	closedCookieTTL  = int64(10 * time.Minute)
)

// cookieFIFO is a bounded set of cookies, oldest first out.
type cookieFIFO struct {
	set   map[cookieKey]struct{}
	queue []cookieAt
	head  int
}

type cookieAt struct {
	c cookieKey
	t int64
}

func (f *cookieFIFO) has(c cookieKey) bool {
	_, ok := f.set[c]
	return ok && c.c != 0
}

func (f *cookieFIFO) add(c cookieKey, t int64) {
	if c.c == 0 {
		return
	}
	if f.set == nil {
		f.set = make(map[cookieKey]struct{})
	}
	if _, ok := f.set[c]; ok {
		return
	}
	f.set[c] = struct{}{}
	f.queue = append(f.queue, cookieAt{c, t})
	for len(f.set) > maxClosedCookies {
		f.pop()
	}
}

// expire forgets the cookies older than closedCookieTTL at now.
func (f *cookieFIFO) expire(now int64) {
	for f.head < len(f.queue) && now-f.queue[f.head].t > closedCookieTTL {
		f.pop()
	}
	if f.head > 0 && f.head >= len(f.queue)/2 {
		f.queue = append(f.queue[:0], f.queue[f.head:]...)
		f.head = 0
	}
}

func (f *cookieFIFO) pop() {
	delete(f.set, f.queue[f.head].c)
	f.queue[f.head] = cookieAt{}
	f.head++
}
