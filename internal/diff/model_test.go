package diff

import (
	"bytes"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sockpipe/sockpipe/internal/record"
)

// model is the comparison done the obvious way: a map of what is known, a
// set of what this snapshot held, and a full pass at every snapshot. State
// must behave exactly like it.
type model struct {
	known    map[string]*modelConn
	seen     map[string]bool
	seq      int
	complete bool
	// Destroy notifications: whether one was seen, and the cookies (and
	// when), in their namespaces, of connections that snapshots found
	// gone since.
	events bool
	closed map[cookieKey]int
}

type modelConn struct {
	first, last int
	name        string // the connection as its last record spells it
	state       string
	inode       uint64 // also its cookie
	ns          uint64 // network namespace
	shared      bool   // more than one socket in the last snapshot that held it
	seq         int
	// A connection whose end a destroy reported: when, and its cookie.
	ended     bool
	endT      int
	endCookie uint64
}

func newModel() *model {
	return &model{known: map[string]*modelConn{}, seen: map[string]bool{}, closed: map[cookieKey]int{}}
}

func (m *model) socket(sec int, c conn, state string, inode uint64) []ev {
	k := canonical(c.String())
	again := m.seen[k]
	m.seen[k] = true
	twin := c.tr != record.TransportUDP && (state == "time-wait" || state == "fin-wait-2")
	if mc := m.known[k]; mc != nil && mc.ended && sec > mc.endT && !twin {
		delete(m.known, k) // a new connection on an ended 4-tuple
	}
	if mc := m.known[k]; mc != nil {
		mc.last = max(mc.last, sec)
		mc.name, mc.state, mc.inode, mc.shared = c.String(), state, inode, again
		return nil
	}
	m.seq++
	m.known[k] = &modelConn{first: sec, last: sec, name: c.String(), state: state, inode: inode, ns: c.ns, seq: m.seq}
	e := record.EventExisting
	if m.complete {
		e = record.EventOpened
	}
	return []ev{{e, c.String(), state, inode, sec, sec, -1}}
}

func (m *model) end(sec int) []ev {
	type gone struct {
		k string
		*modelConn
	}
	var gs []gone
	for k, mc := range m.known {
		if !m.seen[k] {
			delete(m.known, k)
			if mc.ended {
				continue
			}
			gs = append(gs, gone{mc.name, mc})
			if m.events && mc.inode != 0 {
				if _, ok := m.closed[cookieKey{mc.ns, mc.inode}]; !ok {
					m.closed[cookieKey{mc.ns, mc.inode}] = sec
				}
			}
		}
	}
	for c, t := range m.closed {
		if sec-t > 600 {
			delete(m.closed, c)
		}
	}
	slices.SortFunc(gs, func(a, b gone) int { return a.seq - b.seq })
	var evs []ev
	for _, g := range gs {
		evs = append(evs, ev{"closed", g.k, g.state, g.inode, sec, g.first, g.last})
	}
	m.seen = map[string]bool{}
	m.complete = true
	return evs
}

func (m *model) cut() { m.seen = map[string]bool{} }

// destroyed is a destroy notification of c, or of a socket with its
// remote port wiped (addresses 0.0.0.0, remote port 0), at sec.
func (m *model) destroyed(sec int, c conn, cookie uint64, wiped bool) []ev {
	m.events = true
	if wiped {
		c.lip, c.rip, c.rpt = "0.0.0.0", "0.0.0.0", 0
	}
	if _, ok := m.closed[cookieKey{c.ns, cookie}]; ok && cookie != 0 {
		return nil
	}
	closedEv := func(mc *modelConn) []ev {
		mc.ended, mc.endT, mc.endCookie = true, sec, cookie
		return []ev{{"closed", mc.name, mc.state, mc.inode, sec, mc.first, max(mc.last, sec)}}
	}
	if c.rpt == 0 {
		// By cookie, in its namespace; a UDP socket that is not
		// connected by its addresses after that.
		if cookie != 0 {
			for _, mc := range m.known {
				if mc.ns == c.ns && (mc.inode == cookie || mc.ended && mc.endCookie == cookie) {
					if mc.ended || mc.shared {
						return nil
					}
					return closedEv(mc)
				}
			}
		}
		if c.tr != record.TransportUDP {
			return nil
		}
	}
	k := canonical(c.String())
	if mc := m.known[k]; mc != nil {
		if !mc.ended && mc.shared {
			return nil
		}
		if !mc.ended {
			return closedEv(mc)
		}
		if mc.endCookie == cookie && (cookie != 0 || mc.endT == sec) {
			return nil
		}
	}
	m.seq++
	m.known[k] = &modelConn{first: sec, last: sec, name: c.String(), state: "closed", inode: 0, ns: c.ns, seq: m.seq, ended: true, endT: sec, endCookie: cookie}
	delete(m.seen, k)
	return []ev{{"opened+short", c.String(), "closed", 0, sec, -1, -1}, {"closed+short", c.String(), "closed", 0, sec, -1, sec}}
}

// load is what a save and load forget.
func (m *model) load() {
	m.events = false
	m.closed = map[cookieKey]int{}
}

// fuzzConns are the connections of FuzzDiffModel: few, so that they come
// and go, with both key kinds (compact and by strings), one 4-tuple in
// three namespaces and in TCP and UDP, and a UDP socket not connected.
var fuzzConns = []conn{
	lis, a, b, c, a6m, a6s, tw1, ipv6,
	{"ipv6", "2001:DB8::1", "2001:db8::2", 443, 50001, 0, ""}, // spelled two ways
	{"ipv6", "2001:db8::1", "2001:db8::2", 443, 50001, 0, ""},
	{"ipv4", "not-an-address", "10.0.0.2", 1, 2, 0, ""}, // keyed by its strings
	{"ipv4", "10.0.0.1", "fe80::1%eth0", 1, 2, 0, ""},
	a.in(1), a.in(2).udp(), a.udp(), udpLis,
}

var fuzzStates = []string{"syn-recv", "established", "time-wait", "listening"}

// FuzzDiffModel runs random sequences of sockets, snapshot ends, cut
// snapshots, destroy notifications and save/load round trips through State
// and through the model, and requires the same events.
func FuzzDiffModel(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 0xf0, 0, 1, 0xf0, 2, 3, 4, 0xf1, 5, 0xf0})
	f.Add([]byte{0, 1, 0xf0, 0xf2, 1, 0, 0xf0, 0xf3, 0x25, 0xf0, 0xf4, 8, 9, 0xf0, 10, 11, 0xf0, 0xf0})
	f.Add([]byte{0x10, 0x21, 0x32, 0xf0, 0x32, 0x21, 0x10, 0xf0, 0x10, 0xf0, 0xf1, 0x43, 0xf0})
	f.Add([]byte{0x11, 0x12, 0xf0, 0xf2, 0x01, 0xf8, 0x01, 0x26, 0xf0, 0xf9, 0x12, 0xf2, 0x05, 0xf0, 0x25, 0xf0, 0xf3, 0xf0, 0xf0})
	f.Add([]byte{0xf0, 0xf2, 0x03, 0x23, 0xf0, 0x13, 0xf0, 0xf9, 0x13, 0xf2, 0x03, 0xf0, 0xf0})
	// One 4-tuple in namespaces 0, 1 and 2 and in TCP and UDP: opened,
	// destroyed, wiped and gone one by one.
	f.Add([]byte{0x11, 0x1c, 0x1d, 0x1e, 0x1f, 0xf0, 0x11, 0x1d, 0x1e, 0xf2, 0x0c, 0xf0, 0x2c, 0x11, 0xf9, 0x0f, 0xf2, 0x0e, 0xf3, 0x1c, 0xf0, 0xf0})
	f.Add([]byte{0xf0, 0xf2, 0x0f, 0xf2, 0x0e, 0x1f, 0x2e, 0xf0, 0xf9, 0x0f, 0x1d, 0xf0, 0xf3, 0xf2, 0x0d, 0x2d, 0xf0})
	// Keys held twice in a snapshot (SO_REUSEPORT), then destroyed, saved
	// and loaded, held once.
	f.Add([]byte{0x0f, 0x1f, 0x00, 0x30, 0xf0, 0xf2, 0x0f, 0xf9, 0x30, 0xf3, 0xf2, 0x0f, 0x1f, 0xf0, 0xf2, 0x0f, 0xf0, 0xf0})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 2000 {
			return
		}
		s, m := New(), newModel()
		var got, want []ev
		sec := 0
		var lastCookie uint64
		for i, op := range ops {
			switch op {
			case 0xf0, 0xf5, 0xf6, 0xf7:
				sec++
				got = append(got, play(t, s, []step{snap(sec)})...)
				want = append(want, m.end(sec)...)
			case 0xf1:
				s.Incomplete()
				m.cut()
			case 0xf2, 0xf8, 0xf9:
				// A destroy notification: of a connection (with a new
				// cookie, or the same as the previous one: a duplicate),
				// or wiped, with the cookie of a socket.
				if op != 0xf8 {
					sec++
				}
				arg := ops[(i+1)%len(ops)]
				c := fuzzConns[int(arg)%len(fuzzConns)]
				cookie := uint64(1000 + i)
				if op == 0xf8 {
					cookie = lastCookie
				}
				lastCookie = cookie
				st := destroyed(sec, c, cookie)
				if op == 0xf9 {
					// The kernel wipes TCP sockets only: a UDP one is
					// a socket not connected, with a cookie of its own.
					if c.tr != record.TransportUDP {
						cookie = uint64(arg)
					}
					st = wiped(sec, c, cookie)
				}
				got = append(got, play(t, s, []step{st})...)
				want = append(want, m.destroyed(sec, c, cookie, op == 0xf9)...)
			case 0xf3:
				// Save and load: only between snapshots, as sockdiff does.
				s.Incomplete()
				m.cut()
				var buf bytes.Buffer
				if err := s.Encode(&buf, at(sec)); err != nil {
					t.Fatal(err)
				}
				var err error
				if s, err = Decode(&buf); err != nil {
					t.Fatalf("decoding what Encode wrote: %v", err)
				}
				m.load()
			case 0xf4:
				sec++
			default:
				c := fuzzConns[int(op&0x0f)%len(fuzzConns)]
				state := fuzzStates[int(op>>4)%len(fuzzStates)]
				got = append(got, play(t, s, []step{sockc(sec, c, state, uint64(op))})...)
				want = append(want, m.socket(sec, c, state, uint64(op))...)
			}
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("events (-model +State):\n%s", diff)
		}
		if n := s.Len() + s.Tombstones(); n != len(m.known) {
			t.Fatalf("State knows %d connections, the model %d", n, len(m.known))
		}
	})
}

// canonical spells the one IPv6 address of fuzzConns that has two
// spellings one way: State compares addresses, not strings.
func canonical(c string) string {
	return string(bytes.ReplaceAll([]byte(c), []byte("2001:DB8::1"), []byte("2001:db8::1")))
}
