package sockdiff

import (
	"net"
	"os"
	"testing"
	"time"

	"github.com/sockpipe/sockpipe/internal/record"
)

// TestIntegrationShortLivedUDP runs the real sockdump --udp --events into
// sockdiff --closed and, between its first and second dump, makes UDP
// exchanges on loopback (IPv4 and, when the host has it, IPv6) whose
// sockets live a few milliseconds: a server socket bound but not
// connected, and a client socket connected to it. No dump sees them; each
// socket must be in sockdiff's output all the same, opened (short-lived)
// and closed once, with transport udp and the test's namespace, and
// nothing may wait for a time-wait twin.
func TestIntegrationShortLivedUDP(t *testing.T) {
	const (
		rounds   = 40
		interval = 3 * time.Second
	)
	// sockdump --interval D --udp --events | sockdiff --closed. The events
	// are kept all: the ports of the churn are known only after it.
	p := startEvents(t, interval, func(r *record.Record) bool {
		return r.Transport == record.TransportUDP
	}, "--udp")
	ports := map[uint16]bool{} // the ports of the churn
	churnStart := time.Now()

	// The churn: each round a bound server socket and a client connected
	// to it, one datagram each way, closed after a few milliseconds.
	type exchange struct{ server, client record.Key }
	var done []exchange
	for i := range rounds {
		network, ip, fam := "udp4", net.IPv4(127, 0, 0, 1), record.FamilyIPv4
		if i%2 == 1 {
			network, ip, fam = "udp6", net.IPv6loopback, record.FamilyIPv6
		}
		srv, err := net.ListenUDP(network, &net.UDPAddr{IP: ip})
		if err != nil {
			if fam == record.FamilyIPv6 {
				continue // no IPv6 loopback
			}
			t.Fatal(err)
		}
		cl, err := net.DialUDP(network, nil, srv.LocalAddr().(*net.UDPAddr))
		if err != nil {
			srv.Close()
			t.Fatal(err)
		}
		srv.SetDeadline(time.Now().Add(5 * time.Second))
		cl.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 16)
		_, err = cl.Write([]byte("ping"))
		if err == nil {
			var from *net.UDPAddr
			if _, from, err = srv.ReadFromUDP(buf); err == nil {
				if _, err = srv.WriteToUDP([]byte("pong"), from); err == nil {
					_, err = cl.Read(buf)
				}
			}
		}
		if err != nil {
			t.Fatalf("exchange %d: %v", i, err)
		}
		sa, ca := srv.LocalAddr().(*net.UDPAddr), cl.LocalAddr().(*net.UDPAddr)
		time.Sleep(2 * time.Millisecond)
		cl.Close()
		srv.Close()
		anyIP := "0.0.0.0"
		if fam == record.FamilyIPv6 {
			anyIP = "::"
		}
		ns := ownNetNS()
		done = append(done, exchange{
			server: record.Key{NetNS: ns, Transport: record.TransportUDP, Family: fam, LocalIP: sa.IP.String(), LocalPort: uint16(sa.Port), RemoteIP: anyIP},
			client: record.Key{NetNS: ns, Transport: record.TransportUDP, Family: fam, LocalIP: ca.IP.String(), LocalPort: uint16(ca.Port), RemoteIP: sa.IP.String(), RemotePort: uint16(sa.Port)},
		})
		ports[uint16(sa.Port)], ports[uint16(ca.Port)] = true, true
	}
	p.churnEnded(t)

	// Wait for the second snapshot and every event expected, then stop.
	mine := func(events []*record.Record) []*record.Record {
		var rs []*record.Record
		for _, r := range events {
			// Other tests' sockets may take a port of this one's once it
			// is free: those that the owner table knows are told apart.
			if (ports[r.Local.Port] || ports[r.Remote.Port]) && (r.Owner == nil || r.Owner.PID == os.Getpid()) {
				rs = append(rs, r)
			}
		}
		return rs
	}
	want := 4 * len(done)
	events, snapshots := p.finish(t, churnStart, func(events []*record.Record) bool { return len(mine(events)) >= want })
	second := snapshots[1].Time

	got := byEvent(mine(events))
	check := func(k record.Key) {
		t.Helper()
		for _, ev := range []string{record.EventOpened, record.EventClosed} {
			rs := got[evKey{k, ev}]
			delete(got, evKey{k, ev})
			if len(rs) != 1 {
				t.Errorf("%v: %d %s events, want 1", k, len(rs), ev)
				continue
			}
			r := rs[0]
			if !r.ShortLived || r.Time.Before(churnStart) || r.Time.After(second) || !r.FirstSeen.IsZero() {
				t.Errorf("%v: %s event %s, want short-lived, between the dumps", k, ev, show(rs))
			}
			if ev == record.EventClosed && !r.LastSeen.Equal(r.Time) {
				t.Errorf("%v: closed at %v, last seen %v", k, r.Time, r.LastSeen)
			}
		}
	}
	for _, x := range done {
		check(x.server)
		check(x.client)
	}
	for k, rs := range got {
		t.Errorf("unexpected %s event: %s", k.ev, show(rs))
	}
	t.Logf("%d exchanges, %d events, %d snapshots; sockdump's stderr: %q", len(done), len(mine(events)), len(snapshots), p.dumpErr.String())
}
