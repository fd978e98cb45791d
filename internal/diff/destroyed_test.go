package diff

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sockpipe/sockpipe/internal/record"
)

func TestDestroyed(t *testing.T) {
	t.Parallel()
	// A client's connection: egress, closed actively, so a time-wait twin
	// stays after its socket is destroyed.
	cl := conn{"ipv4", "10.0.0.1", "10.0.0.4", 40000, 443, 0, ""}
	tests := []struct {
		name  string
		steps []step
		want  []ev
		// what is left at the end
		len, tombs int
		counts     DestroyedCounts
	}{{
		name: "seen, then destroyed: closed at once, at the exact end",
		steps: []step{
			sockc(0, a, "established", 2), sockc(0, b, "established", 3), snap(0),
			destroyed(1, a, 2),
			sockc(2, b, "established", 3), snap(2),
			snap(3),
		},
		want: []ev{
			{"existing", a.String(), "established", 2, 0, 0, -1},
			{"existing", b.String(), "established", 3, 0, 0, -1},
			{"closed", a.String(), "established", 2, 1, 0, 1},
			{"closed", b.String(), "established", 3, 3, 0, 2},
		},
		counts: DestroyedCounts{Closed: 1},
	}, {
		name: "never seen: short-lived opened and closed, then forgotten",
		steps: []step{
			sockc(0, a, "established", 2), snap(0),
			destroyed(1, b, 30),
			sockc(2, a, "established", 2), snap(2),
			sockc(3, a, "established", 2), snap(3),
		},
		want: []ev{
			{"existing", a.String(), "established", 2, 0, 0, -1},
			{"opened+short", b.String(), "closed", 0, 1, -1, -1},
			{"closed+short", b.String(), "closed", 0, 1, -1, 1},
		},
		len: 1, counts: DestroyedCounts{ShortLived: 1},
	}, {
		name: "the time-wait twin after the destroy is neither opened nor closed",
		steps: []step{
			sockc(0, lis, "listening", 1), snap(0),
			sockc(1, lis, "listening", 1), sockc(1, cl, "established", 5), snap(1),
			destroyed(2, cl, 5),
			sockc(3, lis, "listening", 1), sockc(3, cl, "time-wait", 0), snap(3),
			sockc(4, lis, "listening", 1), sockc(4, cl, "time-wait", 0), snap(4),
			sockc(5, lis, "listening", 1), snap(5),
			sockc(6, lis, "listening", 1), snap(6),
		},
		want: []ev{
			{"existing", lis.String(), "listening", 1, 0, 0, -1},
			{"opened", cl.String(), "established", 5, 1, 1, -1},
			{"closed", cl.String(), "established", 5, 2, 1, 2},
		},
		len: 1, counts: DestroyedCounts{Closed: 1},
	}, {
		name: "the twin of a short-lived connection is not opened",
		steps: []step{
			snap(0),
			destroyed(1, cl, 5),
			sockc(2, cl, "time-wait", 0), snap(2),
			sockc(3, cl, "fin-wait-2", 0), snap(3),
		},
		want: []ev{
			{"opened+short", cl.String(), "closed", 0, 1, -1, -1},
			{"closed+short", cl.String(), "closed", 0, 1, -1, 1},
		},
		tombs: 1, counts: DestroyedCounts{ShortLived: 1},
	}, {
		name: "the twin listed before the destroy notification arrives",
		steps: []step{
			sockc(0, cl, "established", 5), snap(0),
			sockc(1, cl, "time-wait", 0), snap(1),
			destroyed(1, cl, 5),
			sockc(2, cl, "time-wait", 0), snap(2),
			snap(3),
		},
		want: []ev{
			{"existing", cl.String(), "established", 5, 0, 0, -1},
			{"closed", cl.String(), "time-wait", 0, 1, 0, 1},
		},
		counts: DestroyedCounts{Closed: 1},
	}, {
		name: "a new connection on an ended 4-tuple is opened",
		steps: []step{
			sockc(0, a, "established", 2), snap(0),
			destroyed(1, a, 2),
			sockc(2, a, "syn-recv", 0), snap(2),
			sockc(3, a, "established", 9), snap(3),
			snap(4),
		},
		want: []ev{
			{"existing", a.String(), "established", 2, 0, 0, -1},
			{"closed", a.String(), "established", 2, 1, 0, 1},
			{"opened", a.String(), "syn-recv", 0, 2, 2, -1},
			{"closed", a.String(), "established", 9, 4, 2, 3},
		},
		counts: DestroyedCounts{Closed: 1},
	}, {
		name: "a socket listed by a dump that began before the destroy is the same connection",
		steps: []step{
			snap(0),
			destroyed(5, a, 2),
			sockc(4, a, "established", 2), snap(4),
		},
		want: []ev{
			{"opened+short", a.String(), "closed", 0, 5, -1, -1},
			{"closed+short", a.String(), "closed", 0, 5, -1, 5},
		},
		tombs: 1, counts: DestroyedCounts{ShortLived: 1},
	}, {
		name: "a destroy that arrives after the snapshot that found the connection gone",
		steps: []step{
			sockc(0, a, "established", 2), snap(0),
			destroyed(0, b, 40), // the state knows of destroy notifications
			snap(1),
			destroyed(2, a, 2), // its owner closed it late; the cookie tells
			wiped(2, a, 2),
		},
		want: []ev{
			{"existing", a.String(), "established", 2, 0, 0, -1},
			{"opened+short", b.String(), "closed", 0, 0, -1, -1},
			{"closed+short", b.String(), "closed", 0, 0, -1, 0},
			{"closed", a.String(), "established", 2, 1, 0, 0},
		},
		counts: DestroyedCounts{ShortLived: 1, Duplicate: 2},
	}, {
		name: "a wiped record is matched by its cookie",
		steps: []step{
			sockc(0, lis, "listening", 1), sockc(0, a, "established", 2), sockc(0, c, "established", 7), snap(0),
			wiped(1, a, 2),
			wiped(1, lis, 1), // a listener closed
			sockc(2, c, "established", 8), snap(2),
			wiped(3, c, 8), // cookie changed since the first sighting
		},
		want: []ev{
			{"existing", lis.String(), "listening", 1, 0, 0, -1},
			{"existing", a.String(), "established", 2, 0, 0, -1},
			{"existing", c.String(), "established", 7, 0, 0, -1},
			{"closed", a.String(), "established", 2, 1, 0, 1},
			{"closed", lis.String(), "listening", 1, 1, 0, 1},
			{"closed", c.String(), "established", 8, 3, 0, 3},
		},
		tombs: 1, counts: DestroyedCounts{Closed: 3},
	}, {
		name: "a wiped record that matches nothing is dropped",
		steps: []step{
			sockc(0, a, "established", 2), snap(0),
			wiped(1, b, 77),
			wiped(1, b, 0),
			sockc(2, a, "established", 2), snap(2),
		},
		want: []ev{
			{"existing", a.String(), "established", 2, 0, 0, -1},
		},
		len: 1, counts: DestroyedCounts{Unidentified: 2},
	}, {
		name: "duplicates report nothing",
		steps: []step{
			sockc(0, a, "established", 2), snap(0),
			destroyed(1, a, 2), destroyed(1, a, 2), wiped(1, a, 2),
			destroyed(1, b, 30), destroyed(1, b, 30), wiped(1, b, 30),
			destroyed(2, b, 31), // another socket: a new connection
		},
		want: []ev{
			{"existing", a.String(), "established", 2, 0, 0, -1},
			{"closed", a.String(), "established", 2, 1, 0, 1},
			{"opened+short", b.String(), "closed", 0, 1, -1, -1},
			{"closed+short", b.String(), "closed", 0, 1, -1, 1},
			{"opened+short", b.String(), "closed", 0, 2, -1, -1},
			{"closed+short", b.String(), "closed", 0, 2, -1, 2},
		},
		tombs: 2, counts: DestroyedCounts{Closed: 1, ShortLived: 2, Duplicate: 4},
	}, {
		name: "before any complete snapshot: a known socket is closed, an unknown one short-lived",
		steps: []step{
			sockc(0, a, "established", 2),
			destroyed(1, a, 2),
			destroyed(1, b, 30),
			cut(),
			sockc(2, a, "time-wait", 0), sockc(2, c, "established", 4), snap(2),
		},
		want: []ev{
			{"existing", a.String(), "established", 2, 0, 0, -1},
			{"closed", a.String(), "established", 2, 1, 0, 1},
			{"opened+short", b.String(), "closed", 0, 1, -1, -1},
			{"closed+short", b.String(), "closed", 0, 1, -1, 1},
			{"existing", c.String(), "established", 4, 2, 2, -1},
		},
		len: 1, tombs: 1, counts: DestroyedCounts{Closed: 1, ShortLived: 1},
	}, {
		name: "a destroy in one namespace ends the connection of that namespace only",
		steps: []step{
			sockc(0, lo.in(1), "established", 2), sockc(0, lo.in(2), "established", 3), snap(0),
			destroyed(1, lo.in(2), 3),
			sockc(2, lo.in(1), "established", 2), snap(2),
			destroyed(3, lo.in(3), 9),
			sockc(4, lo.in(1), "established", 2), snap(4),
		},
		want: []ev{
			{"existing", lo.in(1).String(), "established", 2, 0, 0, -1},
			{"existing", lo.in(2).String(), "established", 3, 0, 0, -1},
			{"closed", lo.in(2).String(), "established", 3, 1, 0, 1},
			{"opened+short", lo.in(3).String(), "closed", 0, 3, -1, -1},
			{"closed+short", lo.in(3).String(), "closed", 0, 3, -1, 3},
		},
		len: 1, counts: DestroyedCounts{Closed: 1, ShortLived: 1},
	}, {
		name: "a wiped destroy matches a cookie of its own namespace only",
		steps: []step{
			// Kernels before 5.12 number sockets per namespace: two
			// namespaces may both have a socket of cookie 5.
			sockc(0, a.in(1), "established", 5), sockc(0, b.in(2), "established", 5), snap(0),
			wiped(1, b.in(2), 5),
			wiped(1, b.in(3), 5),
			wiped(1, b.in(2), 5),
			sockc(2, a.in(1), "established", 5), snap(2),
		},
		want: []ev{
			{"existing", a.in(1).String(), "established", 5, 0, 0, -1},
			{"existing", b.in(2).String(), "established", 5, 0, 0, -1},
			{"closed", b.in(2).String(), "established", 5, 1, 0, 1},
		},
		len: 1, counts: DestroyedCounts{Closed: 1, Unidentified: 1, Duplicate: 1},
	}, {
		name: "a late destroy is known by its cookie in its namespace",
		steps: []step{
			sockc(0, a.in(1), "established", 5), sockc(0, b.in(2), "established", 6), snap(0),
			destroyed(1, c, 30), // destroy notifications are on
			sockc(2, b.in(2), "established", 6), snap(2),
			// a.in(1) found gone by snapshot 2; its destroy comes late,
			// while another namespace's connection of cookie 5 is new.
			destroyed(3, a.in(1), 5),
			destroyed(3, lo.in(2), 5),
		},
		want: []ev{
			{"existing", a.in(1).String(), "established", 5, 0, 0, -1},
			{"existing", b.in(2).String(), "established", 6, 0, 0, -1},
			{"opened+short", c.String(), "closed", 0, 1, -1, -1},
			{"closed+short", c.String(), "closed", 0, 1, -1, 1},
			{"closed", a.in(1).String(), "established", 5, 2, 0, 0},
			{"opened+short", lo.in(2).String(), "closed", 0, 3, -1, -1},
			{"closed+short", lo.in(2).String(), "closed", 0, 3, -1, 3},
		},
		len: 1, tombs: 1, counts: DestroyedCounts{ShortLived: 2, Duplicate: 1},
	}, {
		name: "UDP: a connected socket that no snapshot held is short-lived",
		steps: []step{
			sockc(0, lo, "established", 2), snap(0),
			destroyed(1, lo.udp(), 30),
			sockc(2, lo, "established", 2), snap(2),
		},
		want: []ev{
			{"existing", lo.String(), "established", 2, 0, 0, -1},
			{"opened+short", lo.udp().String(), "closed", 0, 1, -1, -1},
			{"closed+short", lo.udp().String(), "closed", 0, 1, -1, 1},
		},
		len: 1, counts: DestroyedCounts{ShortLived: 1},
	}, {
		name: "UDP: an unconnected socket that no snapshot held is short-lived, a TCP one of remote port 0 unidentified",
		steps: []step{
			sockc(0, lis, "listening", 1), snap(0),
			destroyed(1, udpLis, 30),
			destroyed(1, udpLis, 30),
			destroyed(1, conn{"ipv4", "0.0.0.0", "0.0.0.0", 5353, 0, 0, ""}, 31),
			sockc(2, lis, "listening", 1), snap(2),
		},
		want: []ev{
			{"existing", lis.String(), "listening", 1, 0, 0, -1},
			{"opened+short", udpLis.String(), "closed", 0, 1, -1, -1},
			{"closed+short", udpLis.String(), "closed", 0, 1, -1, 1},
		},
		len: 1, counts: DestroyedCounts{ShortLived: 1, Duplicate: 1, Unidentified: 1},
	}, {
		name: "UDP: an unconnected socket that a snapshot held is closed, by cookie or by addresses",
		steps: []step{
			sockc(0, udpLis, "closed", 7), sockc(0, udpLis.in(2), "closed", 8), snap(0),
			destroyed(1, udpLis, 7),
			destroyed(1, udpLis.in(2), 0), // no cookie: by its addresses
			snap(2),
		},
		want: []ev{
			{"existing", udpLis.String(), "closed", 7, 0, 0, -1},
			{"existing", udpLis.in(2).String(), "closed", 8, 0, 0, -1},
			{"closed", udpLis.String(), "closed", 7, 1, 0, 1},
			{"closed", udpLis.in(2).String(), "closed", 8, 1, 0, 1},
		},
		counts: DestroyedCounts{Closed: 2},
	}, {
		name: "UDP has no time-wait twin: a socket after the destroy is a new connection",
		steps: []step{
			sockc(0, lo, "established", 2), sockc(0, lo.udp(), "established", 3), snap(0),
			destroyed(1, lo, 2),
			destroyed(1, lo.udp(), 3),
			sockc(2, lo, "time-wait", 0), sockc(2, lo.udp(), "time-wait", 0), snap(2),
			sockc(3, lo.udp(), "fin-wait-2", 0), snap(3),
		},
		want: []ev{
			{"existing", lo.String(), "established", 2, 0, 0, -1},
			{"existing", lo.udp().String(), "established", 3, 0, 0, -1},
			{"closed", lo.String(), "established", 2, 1, 0, 1},
			{"closed", lo.udp().String(), "established", 3, 1, 0, 1},
			{"opened", lo.udp().String(), "time-wait", 0, 2, 2, -1},
		},
		len: 1, counts: DestroyedCounts{Closed: 2},
	}, {
		name: "UDP: a socket of a dump that began before the destroy is what remains of it",
		steps: []step{
			sockc(0, lo.udp(), "established", 3), snap(0),
			sockc(1, lo.udp(), "established", 3),
			destroyed(2, lo.udp(), 3),
			snap(1),
			snap(3),
		},
		want: []ev{
			{"existing", lo.udp().String(), "established", 3, 0, 0, -1},
			{"closed", lo.udp().String(), "established", 3, 2, 0, 2},
		},
		counts: DestroyedCounts{Closed: 1},
	}, {
		name: "UDP: the destroy of one of the sockets that share a key (SO_REUSEPORT) is not the end",
		steps: []step{
			sockc(0, udpLis, "closed", 7), sockc(0, udpLis, "closed", 8), snap(0),
			destroyed(1, udpLis, 8), // the socket of the last record seen
			destroyed(1, udpLis, 9), // another
			sockc(2, udpLis, "closed", 7), snap(2),
			// Alone now: its destroy is the end.
			destroyed(3, udpLis, 7),
			snap(4),
		},
		want: []ev{
			{"existing", udpLis.String(), "closed", 7, 0, 0, -1},
			{"closed", udpLis.String(), "closed", 7, 3, 0, 3},
		},
		counts: DestroyedCounts{Closed: 1, Shared: 2},
	}, {
		name: "TCP: a destroyed listener of an SO_REUSEPORT group is not the end of the group",
		steps: []step{
			sockc(0, lis, "listening", 1), sockc(0, lis, "listening", 2), snap(0),
			wiped(1, lis, 2),
			sockc(2, lis, "listening", 1), snap(2),
			snap(3),
		},
		want: []ev{
			{"existing", lis.String(), "listening", 1, 0, 0, -1},
			{"closed", lis.String(), "listening", 1, 3, 0, 2},
		},
		counts: DestroyedCounts{Shared: 1},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := New()
			got := play(t, s, tt.steps)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			if s.Len() != tt.len || s.Tombstones() != tt.tombs {
				t.Errorf("Len %d Tombstones %d, want %d %d", s.Len(), s.Tombstones(), tt.len, tt.tombs)
			}
			if diff := cmp.Diff(tt.counts, s.Counts()); diff != "" {
				t.Errorf("counts (-want +got):\n%s", diff)
			}
			// The same through a save and load after every step.
			s2 := New()
			var got2 []ev
			for _, st := range tt.steps {
				got2 = append(got2, play(t, s2, []step{st})...)
				if st.sock == nil && st.destroyed == nil {
					var buf bytes.Buffer
					if err := s2.Encode(&buf, at(0)); err != nil {
						t.Fatal(err)
					}
					var err error
					if s2, err = Decode(&buf); err != nil {
						t.Fatal(err)
					}
				}
			}
			// The cookies of connections found gone are not saved.
			if !strings.Contains(tt.name, "late destroy") && !strings.Contains(tt.name, "a destroy that arrives after") {
				if diff := cmp.Diff(tt.want, got2); diff != "" {
					t.Errorf("events with save and load (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// TestDestroyedEvents checks the records of the events: counters, times,
// what a short-lived connection is made of.
func TestDestroyedEvents(t *testing.T) {
	t.Parallel()
	s := New()
	play(t, s, []step{sockc(0, a, "established", 2), snap(0)})
	_, cl, o, err := s.Destroyed(destroyed(1, a, 2).destroyed)
	if err != nil || o != Closed {
		t.Fatalf("Destroyed = %v, %v", o, err)
	}
	want := &record.Record{
		Type: record.TypeSocket, Time: at(1), Family: "ipv4", Transport: "tcp", State: "established",
		Local: record.Endpoint{IP: a.lip, Port: a.lport}, Remote: record.Endpoint{IP: a.rip, Port: a.rpt},
		Inode: 2, Cookie: 2, Event: record.EventClosed, FirstSeen: at(0), LastSeen: at(1),
		Info: &record.TCPInfo{BytesAcked: 2, BytesReceived: 4},
	}
	if diff := cmp.Diff(want, cl); diff != "" {
		t.Errorf("closed (-want +got):\n%s", diff)
	}
	d := destroyed(2, b, 30).destroyed
	op, cl, o, err := s.Destroyed(d)
	if err != nil || o != ShortLived {
		t.Fatalf("Destroyed = %v, %v", o, err)
	}
	want = &record.Record{
		Type: record.TypeSocket, Time: at(2), Family: "ipv4", Transport: "tcp", State: "closed",
		Local: record.Endpoint{IP: b.lip, Port: b.lport}, Remote: record.Endpoint{IP: b.rip, Port: b.rpt},
		Direction: "ingress", Cookie: 30, Event: record.EventOpened, ShortLived: true,
		Info: &record.TCPInfo{BytesAcked: 30, BytesReceived: 60},
	}
	if diff := cmp.Diff(want, op); diff != "" {
		t.Errorf("opened (-want +got):\n%s", diff)
	}
	want.Event, want.LastSeen = record.EventClosed, at(2)
	if diff := cmp.Diff(want, cl); diff != "" {
		t.Errorf("closed (-want +got):\n%s", diff)
	}
	d.Info.BytesAcked = 99
	if op.Info.BytesAcked != 30 || cl.Info.BytesAcked != 30 {
		t.Error("the events share the destroyed record's counters")
	}
}

// TestDestroyedUDPEvents checks that a short-lived UDP connection's events
// keep its transport and namespace.
func TestDestroyedUDPEvents(t *testing.T) {
	t.Parallel()
	s := New()
	play(t, s, []step{snap(0)})
	d := destroyed(1, udpLis.in(4026532301), 30).destroyed
	d.State, d.Direction, d.Info = "closed", record.DirectionListening, nil
	op, cl, o, err := s.Destroyed(d)
	if err != nil || o != ShortLived {
		t.Fatalf("Destroyed = %v, %v", o, err)
	}
	want := &record.Record{
		Type: record.TypeSocket, Time: at(1), Family: "ipv4", Transport: "udp", State: "closed",
		Local: record.Endpoint{IP: "0.0.0.0", Port: 5353}, Remote: record.Endpoint{IP: "0.0.0.0"},
		Direction: "listening", Cookie: 30, NetNS: 4026532301, Event: record.EventOpened, ShortLived: true,
	}
	if diff := cmp.Diff(want, op); diff != "" {
		t.Errorf("opened (-want +got):\n%s", diff)
	}
	want.Event, want.LastSeen = record.EventClosed, at(1)
	if diff := cmp.Diff(want, cl); diff != "" {
		t.Errorf("closed (-want +got):\n%s", diff)
	}
	// The tombstone keeps both: the same socket in the next dump, which
	// began before the destroy, is what remains of it.
	got := play(t, s, []step{sockc(0, udpLis.in(4026532301), "closed", 30), snap(2), snap(3)})
	if len(got) != 0 || s.Len()+s.Tombstones() != 0 {
		t.Errorf("after the destroy: events %v, %d connections, %d tombstones", got, s.Len(), s.Tombstones())
	}
}

func TestRawCookie(t *testing.T) {
	t.Parallel()
	for line, want := range map[string]uint64{
		`{"type":"socket","cookie":42}`:                           42,
		`{"type":"socket","local":{"cookie":1},"cookie":7,"x":1}`: 7,
		`{"type":"socket","tag":"\"cookie\":5"}`:                  0,
		`{"type":"socket","x":{"cookie":5}}`:                      0,
		`{"cookie":18446744073709551615}`:                         1<<64 - 1,
		`{"cookie":18446744073709551616}`:                         0,
		`{"cookie`:                                                0,
		``:                                                        0,
	} {
		if got := rawCookie([]byte(line)); got != want {
			t.Errorf("rawCookie(%s) = %d, want %d", line, got, want)
		}
	}
}

func FuzzRawCookie(f *testing.F) {
	f.Add([]byte(`{"type":"socket","time":"2026-11-26T04:30:00Z","cookie":4242,"netns":1}`))
	f.Add([]byte(`{"a":["\\",{"cookie":1}],"cookie":2}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		rawCookie(line)
	})
}
