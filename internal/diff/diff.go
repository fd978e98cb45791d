// Package diff decides what changed between snapshots of sockets: which
// connections are new and which are gone. It holds the state that a
// comparison needs, in memory or in a state file, and nothing else; reading
// and writing the stream is the sockdiff package's job.
//
// # Identity
//
// A connection is its record.Key: network namespace, transport, family,
// and local and remote address and port. Its state, inode and cookie may
// change from one snapshot to the next (syn-recv, established, time-wait;
// inode 0 while closing) and it stays one connection with one event. The
// same addresses and ports in two network namespaces (two containers that
// both hold 127.0.0.1:80 <-> 127.0.0.1:45000), in TCP and in UDP, or in
// IPv4 and in IPv4-mapped IPv6 are two connections. Sockets that share one
// key in a snapshot (SO_REUSEPORT listeners) are one connection, whose last
// record is the last of them. A record without a transport is TCP; one
// without a namespace is of namespace 0, which matches no other.
//
// # Events
//
//   - existing: a socket of the first complete snapshot that the state
//     sees, when nothing earlier is known (a first run). A socket record
//     gets it as soon as it is read.
//   - opened: a socket whose connection was not in the previous snapshot.
//     The event is the record of its first sighting, with first_seen.
//   - closed: a connection of the previous snapshot that is not in this
//     one, reported when the snapshot ends (its snapshot record arrives).
//     The event is the last record seen of it, with its time set to the
//     time of the snapshot that noticed it gone, and first_seen and
//     last_seen set to the first and last snapshot that held it.
//
// A connection that disappears from one snapshot and is back in a later
// one is closed, then opened again: a 4-tuple reused is a new connection.
//
// # Destroy notifications
//
// Between snapshots, Destroyed folds in the kernel's destroy notifications
// (destroyed records): a known connection is closed at once, at the
// destroy's time; an unknown one (born and gone between two snapshots) is
// opened and closed, marked short-lived. The connection then stays known
// as ended, a tombstone, until a complete snapshot no longer holds its
// key: its time-wait twin in later snapshots is what remains of it, not a
// new connection, and its going is not a second closed event. A
// notification of a TCP socket whose remote port the kernel wiped is
// matched by its socket cookie in its network namespace, through an index
// of the cookies of the known connections built when first needed; one
// that comes after a snapshot found its connection gone is known by its
// cookie too, for a while. The destroy of one of several sockets that
// shared a key in the last snapshot (SO_REUSEPORT) is not the end of their
// connection: a snapshot tells when that comes. See Destroyed.
//
// # Incomplete snapshots
//
// A snapshot that ends without its snapshot record (the input ended or was
// interrupted mid-dump, or it held bad lines) cannot tell what is gone:
// the sockets it did hold are merged into the state (new ones were reported
// as they were read), and no connection is reported closed. Connections
// that it lacked stay known until a complete snapshot lacks them too.
//
// # Cost
//
// Each connection costs one entry of 160 bytes, which holds its key, its
// place in a list and its last record (a plain socket record in a few
// fields, any other as its line), and a slot of 12 bytes in an open
// addressing table: about 190 bytes of heap in all (BenchmarkDiff's
// state-B/conn). Nothing is copied or rebuilt per snapshot: entries
// carry the generation of the last snapshot that held them, and the list
// keeps them in the order of their last sighting, so the connections that
// a snapshot lacks are the front of the list, found without a pass over
// everything known. Dumps list sockets in the order of the kernel's hash
// tables, which changes little from one dump to the next, so the list also
// predicts the next socket: a stable socket costs a key comparison rather
// than a map lookup (a cache miss, at 100k connections), and, through
// Unchanged, a socket whose line is the same as last time but for its time
// is not even decoded.
package diff

import (
	"bytes"
	"cmp"
	"fmt"
	"hash/maphash"
	"slices"
	"time"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/record"
)

// entry is one known connection.
type entry struct {
	rec   kept   // the last record seen of it
	first int64  // first sighting, Unix nanoseconds
	last  int64  // last sighting, Unix nanoseconds
	seq   uint64 // order of first sighting, so closed events come out in a stable order
	gen   uint32 // the last snapshot that held it
	// shared is set when more than one socket held the connection's key
	// in the last snapshot that held it (SO_REUSEPORT listeners, UDP
	// servers): the destroy of one of them is not the connection's end.
	shared bool
	// key is the connection's table key: ip when str is nil.
	ip  ipKey
	str *record.Key
	// prev and next link the list of entries, oldest sighting first.
	prev, next *entry
	// end is set for a connection whose end a destroy notification
	// already reported: a tombstone, kept so that what remains of the
	// connection (its time-wait twin) is not reported again.
	end *ending
}

// ending is the end of a connection, as its destroy notification told.
type ending struct {
	t      int64  // the destroy's time, Unix nanoseconds
	cookie uint64 // the destroyed socket's cookie
	// twin is set when the entry's record is one that an ended connection
	// may still show (time-wait or fin-wait-2): Unchanged may recognise it.
	twin bool
}

// netns returns the network namespace of e's connection.
func (e *entry) netns() uint64 {
	if e.str != nil {
		return e.str.NetNS
	}
	return e.ip.netns
}

func (e *entry) tkey() tkey { return tkey{ip: e.ip, str: e.str} }

// State is what is known of the connections of the previous snapshots. The
// zero value is not usable; call New. A State is not safe for concurrent use.
type State struct {
	conns table
	addrs addrMemos // for keyOf
	// front and back end the list of entries, ordered by last sighting:
	// the entries that the snapshot being read has seen are its suffix.
	front, back *entry
	// cursor is the prediction for the next socket: the entry that
	// followed the last one seen, in the previous snapshot.
	cursor *entry
	gen    uint32 // the snapshot being read
	seen   int    // entries whose gen is gen
	seq    uint64
	// complete is set once a complete snapshot has been seen, so that
	// new connections are "opened" rather than "existing".
	complete bool
	// snapshot is the time of the last complete snapshot.
	snapshot time.Time
	dirty    bool
	// The last time that Unchanged parsed, as text and as Unix
	// nanoseconds.
	timeText []byte
	timeNano int64
	timeOK   bool

	// Destroy notifications (see Destroyed).
	events   bool // a destroyed record was folded in
	tombs    int  // entries that are ended
	byCookie map[cookieKey]*entry
	// closedCookies remembers the socket cookies of the connections that
	// snapshots found gone, for a while, so that their late destroy
	// notifications are known for what they are.
	closedCookies cookieFIFO
	counts        DestroyedCounts
	enc           *codec.Encoder // for the records of short-lived connections
}

// New returns the state of a first run: nothing known.
func New() *State {
	return &State{conns: newTable(0), gen: 1}
}

// Len returns the number of known connections, not counting those whose
// end was already reported (Tombstones).
func (s *State) Len() int { return s.conns.len() - s.tombs }

// Tombstones returns the number of connections whose end a destroy
// notification reported and that are still remembered, until a complete
// snapshot no longer holds them.
func (s *State) Tombstones() int { return s.tombs }

// Complete reports whether a complete snapshot has been seen, so that new
// connections are opened rather than existing.
func (s *State) Complete() bool { return s.complete }

// Snapshot returns the time of the last complete snapshot, or the zero time.
func (s *State) Snapshot() time.Time { return s.snapshot }

// Dirty reports whether the state changed since it was created, loaded or
// last marked clean.
func (s *State) Dirty() bool { return s.dirty }

// MarkClean records that the state was saved.
func (s *State) MarkClean() { s.dirty = false }

// Socket records one socket of the snapshot being read: r is its decoded
// record and raw the line it was decoded from (copied; the caller may reuse
// it). It returns the event to report for it right away:
// record.EventExisting or record.EventOpened when its connection is new, or
// "" when the connection is known.
func (s *State) Socket(r *record.Record, raw []byte) string {
	s.dirty = true
	t := r.Time.UnixNano()
	k := keyOf(r, &s.addrs)
	e := s.cursor
	if e == nil || k.str != nil || e.str != nil || e.ip != k.ip {
		e, _ = s.conns.get(k)
	}
	if e != nil && e.end != nil && !remains(e, r, t) {
		// A new connection on the 4-tuple of one that ended.
		s.remove(e)
		e = nil
	}
	if e != nil {
		s.again(e, t)
		e.keep(r, raw)
		if e.end != nil {
			e.end.twin = twin(r)
		}
		if s.byCookie != nil && r.Cookie != 0 {
			s.byCookie[cookieKey{r.NetNS, r.Cookie}] = e
		}
		return ""
	}
	s.seq++
	e = &entry{first: t, last: t, seq: s.seq, gen: s.gen}
	s.add(k, e)
	e.keep(r, raw)
	s.seen++
	if s.byCookie != nil && r.Cookie != 0 {
		s.byCookie[cookieKey{r.NetNS, r.Cookie}] = e
	}
	// The cursor stays: a new socket is usually inserted among known ones.
	if s.complete {
		return record.EventOpened
	}
	return record.EventExisting
}

// again records a new sighting of the known connection e, at t; the
// caller updates its record.
func (s *State) again(e *entry, t int64) {
	if e.gen != s.gen {
		e.gen = s.gen
		s.seen++
		e.shared = false
	} else {
		e.shared = true // the second socket of the key in this snapshot
	}
	if t > e.last {
		e.last = t
	}
	s.cursor = e.next
	s.unlink(e)
	s.pushBack(e)
}

// Unchanged is Socket for a line recognised by its bytes alone, without
// decoding it: when line is, byte for byte but for its time, the last
// record of the connection predicted next (the one that followed the
// previous socket in the previous snapshot), it records the sighting as
// Socket would and returns true. Otherwise it changes nothing and returns
// false, and the caller decodes the line and calls Socket. In a stable
// dump, nearly every socket is unchanged, and costs a comparison of bytes.
//
// Only lines that begin as the codec writes them, with the type and then
// the time, are recognised; the time must be one that Decode accepts.
func (s *State) Unchanged(line []byte) bool {
	e := s.cursor
	if e == nil || (e.end != nil && !e.end.twin) {
		return false
	}
	if e.rec.sum == 0 {
		return false
	}
	tm, rest, ok := splitTime(line)
	if !ok || maphash.Bytes(lineSeed, rest) != e.rec.sum {
		return false
	}
	t, ok := s.parseTime(tm)
	if !ok {
		return false
	}
	s.dirty = true
	s.again(e, t)
	e.seenAgain(t, line)
	return true
}

// linePrefix is how the codec begins every socket line.
var linePrefix = []byte(`{"type":"socket","time":"`)

// splitTime splits a socket line as the codec writes it around the value
// of its time: the time's text and all that follows it, closing quote
// included.
func splitTime(line []byte) (tm, rest []byte, ok bool) {
	v, ok := bytes.CutPrefix(line, linePrefix)
	if !ok {
		return nil, nil, false
	}
	i := bytes.IndexByte(v, '"')
	if i < 0 || bytes.IndexByte(v[:i], '\\') >= 0 {
		return nil, nil, false
	}
	return v[:i], v[i:], true
}

// parseTime parses a time as the codec does (RFC 3339, not zero), keeping
// the last one: every socket of a snapshot has the same.
func (s *State) parseTime(b []byte) (int64, bool) {
	if s.timeOK && bytes.Equal(b, s.timeText) {
		return s.timeNano, true
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil || t.IsZero() {
		return 0, false
	}
	s.timeText = append(s.timeText[:0], b...)
	s.timeNano, s.timeOK = t.UnixNano(), true
	return s.timeNano, true
}

// add adds a new entry of key k at the back of the list.
func (s *State) add(k tkey, e *entry) {
	e.ip, e.str = k.ip, k.str
	s.conns.put(k, e)
	s.pushBack(e)
}

func (s *State) pushBack(e *entry) {
	e.prev, e.next = s.back, nil
	if s.back != nil {
		s.back.next = e
	} else {
		s.front = e
	}
	s.back = e
}

func (s *State) unlink(e *entry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		s.front = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		s.back = e.prev
	}
	e.prev, e.next = nil, nil
}

// remove forgets e.
func (s *State) remove(e *entry) {
	if s.cursor == e {
		s.cursor = e.next
	}
	s.unlink(e)
	s.conns.del(e.tkey())
	if e.gen == s.gen {
		s.seen--
	}
	if e.end != nil {
		s.tombs--
	}
}

// nextSnapshot starts the next snapshot, predicting that it begins as the
// list does.
func (s *State) nextSnapshot() {
	s.gen++
	s.seen = 0
	s.cursor = s.front
	s.dirty = true
}

// EndSnapshot ends the snapshot being read, whose snapshot record has time
// t: every known connection that it did not hold is forgotten and, when
// closed is not nil, passed to closed as a closed event, in the order in
// which the connections were first seen. Connections whose end a destroy
// notification reported are forgotten without an event. An error from
// closed stops the reporting but not the forgetting, and is returned.
func (s *State) EndSnapshot(t time.Time, closed func(*record.Record) error) error {
	var gone []*entry
	for s.front != nil && s.front.gen != s.gen {
		e := s.front
		s.remove(e)
		if e.end != nil {
			continue
		}
		if s.events {
			s.closedCookies.add(cookieKey{e.netns(), e.cookie()}, t.UnixNano())
		}
		if closed != nil {
			gone = append(gone, e)
		}
	}
	s.closedCookies.expire(t.UnixNano())
	s.nextSnapshot()
	s.complete = true
	s.snapshot = t
	if len(gone) == 0 {
		return nil
	}
	sortBySeq(gone)
	for _, e := range gone {
		ev, err := e.event(t)
		e.rec = kept{}
		if err != nil {
			return err
		}
		if err := closed(ev); err != nil {
			return err
		}
	}
	return nil
}

// Incomplete ends the snapshot being read without its snapshot record: its
// sockets stay merged into the state and nothing is reported closed. The
// next snapshot is compared with everything known.
func (s *State) Incomplete() {
	if s.seen == 0 {
		return // nothing was read of it; keep the generation
	}
	s.nextSnapshot()
}

// Pending returns how many sockets of the snapshot being read were
// recorded so far.
func (s *State) Pending() int { return s.seen }

// event returns the closed event of e, noticed at t.
func (e *entry) event(t time.Time) (*record.Record, error) {
	r, err := e.record()
	if err != nil {
		return nil, fmt.Errorf("closed connection: decoding its last record: %w", err)
	}
	r.Event = record.EventClosed
	r.Time = t
	r.FirstSeen = time.Unix(0, e.first).UTC()
	r.LastSeen = time.Unix(0, e.last).UTC()
	return r, nil
}

// sortBySeq sorts entries in the order of their first sighting.
func sortBySeq(es []*entry) {
	slices.SortFunc(es, func(a, b *entry) int { return cmp.Compare(a.seq, b.seq) })
}
