package diff

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/record"
)

var t0 = time.Date(2026, 11, 26, 4, 30, 0, 0, time.UTC)

// at returns the time of second n of a test.
func at(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

// step is one input of a test: a socket, the end of a snapshot, or the end
// of input mid-snapshot.
type step struct {
	sock       *record.Record
	end        int // snapshot record at second end, when sock is nil and not cut
	cut        bool
	destroyed  *record.Record // a destroyed record
	noClosedCB bool           // end the snapshot without asking for closed events
}

// conn is a connection of the tests, written "ipv4 10.0.0.1:22 10.0.0.2:5000",
// followed by " udp" for UDP and " ns=N" for network namespace N but 0.
type conn struct {
	fam        string
	lip, rip   string
	lport, rpt uint16
	ns         uint64 // network namespace
	tr         string // transport; "" is TCP
}

// in returns c in network namespace ns.
func (c conn) in(ns uint64) conn { c.ns = ns; return c }

// udp returns c in UDP.
func (c conn) udp() conn { c.tr = record.TransportUDP; return c }

// transport returns the transport of c as sockdump writes it.
func (c conn) transport() string {
	if c.tr == "" {
		return record.TransportTCP
	}
	return c.tr
}

func sock(sec int, c conn, state string, inode uint64) step {
	return step{sock: &record.Record{
		Type: record.TypeSocket, Time: at(sec), Family: c.fam, Transport: c.transport(),
		State: state, Local: record.Endpoint{IP: c.lip, Port: c.lport},
		Remote: record.Endpoint{IP: c.rip, Port: c.rpt}, Inode: inode, NetNS: c.ns,
	}}
}

// sockc is sock with a socket cookie, the same number as the inode.
func sockc(sec int, c conn, state string, inode uint64) step {
	st := sock(sec, c, state, inode)
	st.sock.Cookie = inode
	return st
}

// destroyed is a destroyed record of c at second sec, of socket cookie
// cookie.
func destroyed(sec int, c conn, cookie uint64) step {
	return step{destroyed: &record.Record{
		Type: record.TypeDestroyed, Time: at(sec), Family: c.fam, Transport: c.transport(),
		State: "closed", Local: record.Endpoint{IP: c.lip, Port: c.lport},
		Remote: record.Endpoint{IP: c.rip, Port: c.rpt}, Direction: record.DirectionIngress, Cookie: cookie,
		NetNS: c.ns, Info: &record.TCPInfo{BytesAcked: cookie, BytesReceived: 2 * cookie},
	}}
}

// wiped is a destroyed record as the kernel gives it for a socket closed
// abortively by its owner: remote port 0, local address 0.0.0.0.
func wiped(sec int, c conn, cookie uint64) step {
	st := destroyed(sec, c, cookie)
	st.destroyed.Local.IP, st.destroyed.Remote.IP, st.destroyed.Remote.Port = "0.0.0.0", "0.0.0.0", 0
	st.destroyed.Info = nil
	return st
}

func snap(sec int) step         { return step{end: sec} }
func snapNoClosed(sec int) step { return step{end: sec, noClosedCB: true} }
func cut() step                 { return step{cut: true} }
func (c conn) String() string {
	s := fmt.Sprintf("%s %s:%d %s:%d", c.fam, c.lip, c.lport, c.rip, c.rpt)
	if c.tr != "" && c.tr != record.TransportTCP {
		s += " " + c.tr
	}
	if c.ns != 0 {
		s += fmt.Sprintf(" ns=%d", c.ns)
	}
	return s
}
func keyString(k record.Key) string {
	return conn{k.Family, k.LocalIP, k.RemoteIP, k.LocalPort, k.RemotePort, k.NetNS, k.Transport}.String()
}

// ev is an event as the tests compare it; times are seconds of the test,
// -1 when absent.
type ev struct {
	Event       string
	Conn        string
	State       string
	Inode       uint64
	Time        int
	First, Last int
}

func sec(t time.Time) int {
	if t.IsZero() {
		return -1
	}
	return int(t.Sub(t0) / time.Second)
}

// toEv makes the event of r comparable; a short-lived event is written
// "opened+short" or "closed+short".
func toEv(r *record.Record) ev {
	e := r.Event
	if r.ShortLived {
		e += "+short"
	}
	return ev{e, keyString(r.Key()), r.State, r.Inode, sec(r.Time), sec(r.FirstSeen), sec(r.LastSeen)}
}

// play runs the steps on s and returns the events, as sockdiff would write
// them.
func play(t testing.TB, s *State, steps []step) []ev {
	t.Helper()
	var got []ev
	enc := codec.NewEncoder()
	for _, st := range steps {
		switch {
		case st.sock != nil:
			raw := enc.Encode(st.sock)
			raw = raw[:len(raw)-1]
			// As sockdiff does: the bytes first, then the record.
			if s.Unchanged(raw) {
				continue
			}
			if e := s.Socket(st.sock, raw); e != "" {
				r := *st.sock
				r.Event, r.FirstSeen = e, r.Time
				got = append(got, toEv(&r))
			}
		case st.cut:
			s.Incomplete()
		case st.destroyed != nil:
			op, cl, _, err := s.Destroyed(st.destroyed)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range []*record.Record{op, cl} {
				if r != nil {
					got = append(got, toEv(r))
				}
			}
		default:
			var cb func(*record.Record) error
			if !st.noClosedCB {
				cb = func(r *record.Record) error { got = append(got, toEv(r)); return nil }
			}
			if err := s.EndSnapshot(at(st.end), cb); err != nil {
				t.Fatal(err)
			}
		}
	}
	return got
}

var (
	lis  = conn{"ipv4", "0.0.0.0", "0.0.0.0", 22, 0, 0, ""}
	a    = conn{"ipv4", "10.0.0.1", "10.0.0.2", 22, 5000, 0, ""}
	b    = conn{"ipv4", "10.0.0.1", "10.0.0.3", 22, 5001, 0, ""}
	c    = conn{"ipv4", "10.0.0.1", "10.0.0.4", 40000, 443, 0, ""}
	a6m  = conn{"ipv6", "::ffff:10.0.0.1", "::ffff:10.0.0.2", 22, 5000, 0, ""}
	a6s  = conn{"ipv6", "10.0.0.1", "10.0.0.2", 22, 5000, 0, ""} // same strings, other family
	tw1  = conn{"ipv4", "10.0.0.1", "10.0.0.9", 22, 6001, 0, ""}
	tw2  = conn{"ipv4", "10.0.0.1", "10.0.0.9", 22, 6002, 0, ""}
	ipv6 = conn{"ipv6", "2001:db8::1", "2001:db8::2", 443, 50000, 0, ""}
	// Loopback connections that two containers may both hold.
	lo  = conn{"ipv4", "127.0.0.1", "127.0.0.1", 80, 45000, 0, ""}
	str = conn{"ipv4", "not-an-address", "10.0.0.2", 1, 2, 0, ""} // keyed by its strings
	// An unconnected UDP socket.
	udpLis = conn{"ipv4", "0.0.0.0", "0.0.0.0", 5353, 0, 0, record.TransportUDP}
)

// noTransport is st with its record's transport left out, as records
// that predate UDP may be.
func noTransport(st step) step {
	r := *st.sock
	r.Transport = ""
	st.sock = &r
	return st
}

func TestDiff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		steps []step
		want  []ev
	}{{
		name: "first snapshot existing, then opened and closed",
		steps: []step{
			sock(0, lis, "listening", 1), sock(0, a, "established", 2), snap(0),
			sock(1, lis, "listening", 1), sock(1, b, "established", 3), snap(1),
			sock(2, lis, "listening", 1), sock(2, b, "established", 3), snap(2),
		},
		want: []ev{
			{"existing", lis.String(), "listening", 1, 0, 0, -1},
			{"existing", a.String(), "established", 2, 0, 0, -1},
			{"opened", b.String(), "established", 3, 1, 1, -1},
			{"closed", a.String(), "established", 2, 1, 0, 0},
		},
	}, {
		name: "state changes of one connection are one connection",
		steps: []step{
			sock(0, lis, "listening", 1), snap(0),
			sock(1, lis, "listening", 1), sock(1, a, "syn-recv", 0), snap(1),
			sock(2, lis, "listening", 1), sock(2, a, "established", 7), snap(2),
			sock(3, lis, "listening", 1), sock(3, a, "close-wait", 7), snap(3),
			sock(4, lis, "listening", 1), sock(4, a, "time-wait", 0), snap(4),
			sock(5, lis, "listening", 1), snap(5),
		},
		want: []ev{
			{"existing", lis.String(), "listening", 1, 0, 0, -1},
			// The event copies the first sighting; closed carries the last.
			{"opened", a.String(), "syn-recv", 0, 1, 1, -1},
			{"closed", a.String(), "time-wait", 0, 5, 1, 4},
		},
	}, {
		name: "a 4-tuple that comes back later is a new connection",
		steps: []step{
			sock(0, lis, "listening", 1), snap(0),
			sock(1, a, "established", 2), snap(1),
			snap(2),
			sock(3, a, "established", 9), snap(3),
			sock(4, a, "established", 9), snap(4),
		},
		want: []ev{
			{"existing", lis.String(), "listening", 1, 0, 0, -1},
			{"opened", a.String(), "established", 2, 1, 1, -1},
			{"closed", lis.String(), "listening", 1, 1, 0, 0},
			{"closed", a.String(), "established", 2, 2, 1, 1},
			{"opened", a.String(), "established", 9, 3, 3, -1},
		},
	}, {
		name: "IPv4 and IPv4-mapped IPv6 of the same numbers are different connections",
		steps: []step{
			sock(0, a, "established", 2), snap(0),
			sock(1, a, "established", 2), sock(1, a6m, "established", 3), sock(1, a6s, "established", 4), snap(1),
			sock(2, a6m, "established", 3), sock(2, a6s, "established", 4), snap(2),
		},
		want: []ev{
			{"existing", a.String(), "established", 2, 0, 0, -1},
			{"opened", a6m.String(), "established", 3, 1, 1, -1},
			{"opened", a6s.String(), "established", 4, 1, 1, -1},
			{"closed", a.String(), "established", 2, 2, 0, 1},
		},
	}, {
		name: "sockets with inode 0 are told apart by their 4-tuple",
		steps: []step{
			sock(0, tw1, "time-wait", 0), sock(0, tw2, "time-wait", 0), snap(0),
			sock(1, tw2, "time-wait", 0), sock(1, ipv6, "fin-wait-2", 0), snap(1),
			snap(2),
		},
		want: []ev{
			{"existing", tw1.String(), "time-wait", 0, 0, 0, -1},
			{"existing", tw2.String(), "time-wait", 0, 0, 0, -1},
			{"opened", ipv6.String(), "fin-wait-2", 0, 1, 1, -1},
			{"closed", tw1.String(), "time-wait", 0, 1, 0, 0},
			{"closed", tw2.String(), "time-wait", 0, 2, 0, 1},
			{"closed", ipv6.String(), "fin-wait-2", 0, 2, 1, 1},
		},
	}, {
		name: "an empty snapshot closes everything",
		steps: []step{
			sock(0, a, "established", 2), sock(0, b, "established", 3), snap(0),
			snap(1),
			sock(2, a, "established", 2), snap(2),
		},
		want: []ev{
			{"existing", a.String(), "established", 2, 0, 0, -1},
			{"existing", b.String(), "established", 3, 0, 0, -1},
			{"closed", a.String(), "established", 2, 1, 0, 0},
			{"closed", b.String(), "established", 3, 1, 0, 0},
			{"opened", a.String(), "established", 2, 2, 2, -1},
		},
	}, {
		name: "an empty first snapshot makes later sockets opened",
		steps: []step{
			snap(0),
			sock(1, a, "established", 2), snap(1),
		},
		want: []ev{
			{"opened", a.String(), "established", 2, 1, 1, -1},
		},
	}, {
		name: "a truncated snapshot reports nothing closed and merges what it held",
		steps: []step{
			sock(0, a, "established", 2), sock(0, b, "established", 3), snap(0),
			sock(1, a, "established", 2), sock(1, c, "syn-sent", 4), cut(),
			sock(2, a, "established", 2), snap(2),
		},
		want: []ev{
			{"existing", a.String(), "established", 2, 0, 0, -1},
			{"existing", b.String(), "established", 3, 0, 0, -1},
			{"opened", c.String(), "syn-sent", 4, 1, 1, -1},
			{"closed", b.String(), "established", 3, 2, 0, 0},
			{"closed", c.String(), "syn-sent", 4, 2, 1, 1},
		},
	}, {
		name: "a truncated first snapshot leaves the next one existing",
		steps: []step{
			sock(0, a, "established", 2), cut(),
			sock(1, a, "established", 2), sock(1, b, "established", 3), snap(1),
			sock(2, a, "established", 2), sock(2, b, "established", 3), sock(2, c, "established", 4), snap(2),
		},
		want: []ev{
			{"existing", a.String(), "established", 2, 0, 0, -1},
			{"existing", b.String(), "established", 3, 1, 1, -1},
			{"opened", c.String(), "established", 4, 2, 2, -1},
		},
	}, {
		name: "an empty cut changes nothing",
		steps: []step{
			sock(0, a, "established", 2), snap(0),
			cut(), cut(),
			snap(1),
		},
		want: []ev{
			{"existing", a.String(), "established", 2, 0, 0, -1},
			{"closed", a.String(), "established", 2, 1, 0, 0},
		},
	}, {
		name: "two network namespaces with the same 4-tuple are two connections",
		steps: []step{
			sock(0, lo.in(1), "established", 2), sock(0, lo.in(2), "established", 3), snap(0),
			sock(1, lo.in(1), "established", 2), snap(1),
			sock(2, lo.in(1), "established", 2), sock(2, lo.in(2), "established", 4), snap(2),
			sock(3, lo.in(2), "established", 4), snap(3),
			snap(4),
		},
		want: []ev{
			{"existing", lo.in(1).String(), "established", 2, 0, 0, -1},
			{"existing", lo.in(2).String(), "established", 3, 0, 0, -1},
			{"closed", lo.in(2).String(), "established", 3, 1, 0, 0},
			{"opened", lo.in(2).String(), "established", 4, 2, 2, -1},
			{"closed", lo.in(1).String(), "established", 2, 3, 0, 2},
			{"closed", lo.in(2).String(), "established", 4, 4, 2, 3},
		},
	}, {
		name: "namespace 0 (unknown) is a namespace of its own",
		steps: []step{
			sock(0, lo, "established", 2), snap(0),
			sock(1, lo.in(7), "established", 2), snap(1),
		},
		want: []ev{
			{"existing", lo.String(), "established", 2, 0, 0, -1},
			{"opened", lo.in(7).String(), "established", 2, 1, 1, -1},
			{"closed", lo.String(), "established", 2, 1, 0, 0},
		},
	}, {
		name: "keyed by strings, two namespaces are two connections too",
		steps: []step{
			sock(0, str.in(1), "established", 2), snap(0),
			sock(1, str.in(1), "established", 2), sock(1, str.in(2), "established", 3), snap(1),
			sock(2, str.in(2), "established", 3), snap(2),
		},
		want: []ev{
			{"existing", str.in(1).String(), "established", 2, 0, 0, -1},
			{"opened", str.in(2).String(), "established", 3, 1, 1, -1},
			{"closed", str.in(1).String(), "established", 2, 2, 0, 1},
		},
	}, {
		name: "TCP and UDP of the same addresses are two connections",
		steps: []step{
			sock(0, lo, "established", 2), sock(0, lo.udp(), "established", 3), snap(0),
			sock(1, lo.udp(), "established", 3), snap(1),
			sock(2, lo, "established", 5), sock(2, lo.udp(), "established", 3), snap(2),
		},
		want: []ev{
			{"existing", lo.String(), "established", 2, 0, 0, -1},
			{"existing", lo.udp().String(), "established", 3, 0, 0, -1},
			{"closed", lo.String(), "established", 2, 1, 0, 0},
			{"opened", lo.String(), "established", 5, 2, 2, -1},
		},
	}, {
		name: "a record without a transport is TCP",
		steps: []step{
			noTransport(sock(0, lo, "established", 2)), sock(0, lo.udp(), "established", 3), snap(0),
			sock(1, lo, "established", 2), sock(1, lo.udp(), "established", 3), snap(1),
			noTransport(sock(2, lo, "established", 2)), snap(2),
		},
		want: []ev{
			{"existing", lo.String(), "established", 2, 0, 0, -1},
			{"existing", lo.udp().String(), "established", 3, 0, 0, -1},
			{"closed", lo.udp().String(), "established", 3, 2, 0, 1},
		},
	}, {
		name: "a socket twice in one snapshot is one connection",
		steps: []step{
			sock(0, a, "established", 2), sock(0, a, "established", 2), snap(0),
			sock(1, a, "established", 2), sock(1, a, "fin-wait-1", 2), snap(1),
			snap(2),
		},
		want: []ev{
			{"existing", a.String(), "established", 2, 0, 0, -1},
			{"closed", a.String(), "fin-wait-1", 2, 2, 0, 1},
		},
	}, {
		name: "without a closed callback, gone connections are forgotten all the same",
		steps: []step{
			sock(0, a, "established", 2), snap(0),
			snapNoClosed(1),
			sock(2, a, "established", 5), snap(2),
		},
		want: []ev{
			{"existing", a.String(), "established", 2, 0, 0, -1},
			{"opened", a.String(), "established", 5, 2, 2, -1},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := play(t, New(), tt.steps)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDiffCounts(t *testing.T) {
	t.Parallel()
	s := New()
	play(t, s, []step{sock(0, a, "established", 2), sock(0, b, "established", 3)})
	if s.Pending() != 2 || s.Len() != 2 || s.Complete() {
		t.Errorf("mid-snapshot: Pending %d Len %d Complete %v, want 2 2 false", s.Pending(), s.Len(), s.Complete())
	}
	play(t, s, []step{snap(0), sock(1, a, "established", 2), snap(1)})
	if s.Pending() != 0 || s.Len() != 1 || !s.Complete() || !s.Snapshot().Equal(at(1)) {
		t.Errorf("after snapshots: Pending %d Len %d Complete %v Snapshot %v", s.Pending(), s.Len(), s.Complete(), s.Snapshot())
	}
	s.MarkClean()
	if s.Dirty() {
		t.Error("Dirty after MarkClean")
	}
	s.Incomplete()
	if s.Dirty() {
		t.Error("an empty Incomplete made the state dirty")
	}
}

// TestClosedCarriesExtra checks that a closed event is the last record as
// read, members unknown to the schema included.
func TestClosedCarriesExtra(t *testing.T) {
	t.Parallel()
	s := New()
	line := []byte(`{"type":"socket","time":"2026-11-26T04:30:00Z","family":"ipv4","state":"established","local":{"ip":"10.0.0.1","port":22,"zone":"x"},"remote":{"ip":"10.0.0.2","port":5000},"inode":2,"tag":{"a":[1,2]}}`)
	r, err := codec.Decode(line)
	if err != nil {
		t.Fatal(err)
	}
	s.Socket(r, line)
	s.EndSnapshot(at(0), nil)
	var got []byte
	err = s.EndSnapshot(at(1), func(r *record.Record) error { got = append(got, codec.NewEncoder().Encode(r)...); return nil })
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"socket","time":"2026-11-26T04:30:01Z","family":"ipv4","state":"established","local":{"ip":"10.0.0.1","port":22,"zone":"x"},"remote":{"ip":"10.0.0.2","port":5000},"inode":2,"event":"closed","first_seen":"2026-11-26T04:30:00Z","last_seen":"2026-11-26T04:30:00Z","tag":{"a":[1,2]}}` + "\n"
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("closed event (-want +got):\n%s", diff)
	}
}

func TestClosedCallbackError(t *testing.T) {
	t.Parallel()
	s := New()
	play(t, s, []step{sock(0, a, "established", 2), sock(0, b, "established", 3), snap(0)})
	boom := fmt.Errorf("boom")
	calls := 0
	err := s.EndSnapshot(at(1), func(*record.Record) error { calls++; return boom })
	if err != boom || calls != 1 {
		t.Errorf("EndSnapshot = %v after %d calls, want boom after 1", err, calls)
	}
	if s.Len() != 0 {
		t.Errorf("Len = %d after a failed report, want 0: forgetting goes on", s.Len())
	}
}

func TestUnchanged(t *testing.T) {
	t.Parallel()
	line := func(sec int, state string) []byte {
		st := sock(sec, a, state, 7)
		b := codec.NewEncoder().Encode(st.sock)
		return b[:len(b)-1]
	}
	setup := func() *State {
		s := New()
		for _, l := range [][]byte{line(0, "established")} {
			r, err := codec.Decode(l)
			if err != nil {
				t.Fatal(err)
			}
			s.Socket(r, l)
		}
		s.EndSnapshot(at(0), nil)
		return s
	}
	tests := []struct {
		name string
		line []byte
		want bool
	}{
		{"only the time differs", line(1, "established"), true},
		{"the same line", line(0, "established"), true},
		{"the state differs", line(1, "fin-wait-1"), false},
		{"other member order", []byte(`{"time":"2026-11-26T04:30:01Z","type":"socket","family":"ipv4","transport":"tcp","state":"established","local":{"ip":"10.0.0.1","port":22},"remote":{"ip":"10.0.0.2","port":5000},"inode":7}`), false},
		{"a bad time", bytes.Replace(line(1, "established"), []byte("2026-11-26T04:30:01Z"), []byte("2026-13-26T04:30:01Z"), 1), false},
		{"a zero time", bytes.Replace(line(1, "established"), []byte("2026-11-26T04:30:01Z"), []byte("0001-01-01T00:00:00Z"), 1), false},
		{"an escape in the time", bytes.Replace(line(1, "established"), []byte("2026-11-26T04:30:01Z"), []byte(`2026-11-26T04:30:01\u005a`), 1), false},
		{"no closing quote", []byte(`{"type":"socket","time":"2026`), false},
		{"not a socket", []byte(`{"type":"snapshot","time":"2026-11-26T04:30:01Z"}`), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := setup()
			s.MarkClean()
			if got := s.Unchanged(tt.line); got != tt.want {
				t.Fatalf("Unchanged = %v, want %v", got, tt.want)
			}
			if s.Dirty() != tt.want || s.Pending() != map[bool]int{true: 1, false: 0}[tt.want] {
				t.Errorf("Dirty %v Pending %d after Unchanged = %v", s.Dirty(), s.Pending(), tt.want)
			}
			if !tt.want {
				return
			}
			var got []ev
			s.EndSnapshot(at(2), nil)
			s.EndSnapshot(at(3), func(r *record.Record) error { got = append(got, toEv(r)); return nil })
			want := []ev{{"closed", a.String(), "established", 7, 3, 0, sec(timeOf(t, tt.line))}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("closed after Unchanged (-want +got):\n%s", diff)
			}
		})
	}
	// Without a prediction, nothing is unchanged.
	if New().Unchanged(line(0, "established")) {
		t.Error("Unchanged on an empty state")
	}
}

func timeOf(t *testing.T, line []byte) time.Time {
	r, err := codec.Decode(line)
	if err != nil {
		t.Fatal(err)
	}
	return r.Time
}
