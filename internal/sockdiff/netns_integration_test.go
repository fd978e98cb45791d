package sockdiff

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/record"
	"github.com/sockpipe/sockpipe/internal/sockdump"
	"github.com/sockpipe/sockpipe/internal/testprog"
)

// The fixed addresses of the sockets that holdArgs makes sockfix hold,
// the same in every namespace.
const (
	holdServer = 8080
	holdClient = 45000
)

// holdArgs makes sockfix hold, on fixed loopback ports, a TCP listener on
// 127.0.0.1:8080 and a connection to it from 127.0.0.1:45000 (both ends),
// an unconnected UDP socket on 127.0.0.1:8080 and two UDP sockets
// connected to each other on the same two addresses: in TCP and in UDP,
// the same 4-tuples. When it ends, it closes the TCP connection
// abortively: no TIME_WAIT is left.
var holdArgs = []string{
	"-from", fmt.Sprintf("127.0.0.1:%d", holdClient),
	"-tcp", fmt.Sprintf("127.0.0.1:%d", holdServer),
	"-udp", fmt.Sprintf("127.0.0.1:%d", holdServer),
}

// holdKeys returns the keys of the sockets of holdArgs in the namespace of
// inode ns, by name.
func holdKeys(ns uint64) map[string]record.Key {
	k := func(transport string, lport uint16, rip string, rport uint16) record.Key {
		return record.Key{
			NetNS: ns, Transport: transport, Family: record.FamilyIPv4,
			LocalIP: "127.0.0.1", LocalPort: lport, RemoteIP: rip, RemotePort: rport,
		}
	}
	return map[string]record.Key{
		"tcp listener": k(record.TransportTCP, holdServer, "0.0.0.0", 0),
		"tcp server":   k(record.TransportTCP, holdServer, "127.0.0.1", holdClient),
		"tcp client":   k(record.TransportTCP, holdClient, "127.0.0.1", holdServer),
		"udp bound":    k(record.TransportUDP, holdServer, "0.0.0.0", 0),
		"udp server":   k(record.TransportUDP, holdServer, "127.0.0.1", holdClient),
		"udp client":   k(record.TransportUDP, holdClient, "127.0.0.1", holdServer),
	}
}

// TestIntegrationNamespaces holds the same sockets (a TCP listener, both
// ends of a TCP connection, an unconnected UDP socket and two UDP sockets
// connected to each other on the same addresses as the TCP ones), with
// sockfix, in two network namespaces, dumps
// every namespace with the real sockdump --all-netns --udp, and follows
// them through three cron runs sharing a state file: namespace 1 holds its
// sockets throughout, namespace 2 only in the second dump. Each
// connection must be reported once per namespace, with that namespace's
// netns and its transport: existing in namespace 1 on the first run and
// never again; opened in namespace 2 on the second, and closed on the
// third with its own first and last seen.
func TestIntegrationNamespaces(t *testing.T) {
	fix := testprog.Build(t, "github.com/sockpipe/sockpipe/internal/testprog/sockfix")
	ns1, ns2 := testprog.NewNetNS(t), testprog.NewNetNS(t)
	keys1, keys2 := holdKeys(ns1.Ino), holdKeys(ns2.Ino)
	path := filepath.Join(t.TempDir(), "state")
	dumpAll := func() []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var out, errb bytes.Buffer
		if err := sockdump.Run(ctx, []string{"--all-netns", "--udp"}, nil, &out, &errb); err != nil {
			t.Fatalf("sockdump --all-netns --udp: %v\n%s", err, errb.String())
		}
		if errb.Len() > 0 {
			// Namespaces of other tests may come and go meanwhile.
			t.Logf("sockdump stderr: %s", errb.String())
		}
		return out.Bytes()
	}
	// byName returns the events of each connection of keys, by name, and
	// fails on any event of the namespace of keys that is not one of them.
	byName := func(evs []*record.Record, keys map[string]record.Key) map[string][]*record.Record {
		t.Helper()
		names := make(map[record.Key]string, len(keys))
		var ns uint64
		for name, k := range keys {
			names[k], ns = name, k.NetNS
		}
		got := map[string][]*record.Record{}
		for _, r := range evs {
			if name, ok := names[r.Key()]; ok {
				got[name] = append(got[name], r)
			} else if r.NetNS == ns {
				t.Errorf("an event of namespace %d that holds no such socket: %+v", ns, r)
			}
		}
		return got
	}

	testprog.StartFixture(t, ns1, fix, holdArgs...)
	evs := diffEvents(t, path, dumpAll())
	got1, got2 := byName(evs, keys1), byName(evs, keys2)
	for name, k := range keys1 {
		if rs := got1[name]; len(rs) != 1 || rs[0].Event != record.EventExisting || rs[0].NetNS != ns1.Ino || rs[0].Key() != k {
			t.Errorf("first run: %s of namespace 1: %s, want one existing", name, show(rs))
		}
	}
	if len(got2) != 0 {
		t.Errorf("first run: events of namespace 2, which holds nothing yet: %v", got2)
	}
	for name, dir := range map[string]string{"tcp listener": record.DirectionListening, "tcp server": record.DirectionIngress, "tcp client": record.DirectionEgress} {
		if rs := got1[name]; len(rs) == 1 && rs[0].Direction != dir {
			t.Errorf("first run: %s has direction %q, want %q", name, rs[0].Direction, dir)
		}
	}

	f2 := testprog.StartFixture(t, ns2, fix, holdArgs...)
	evs = diffEvents(t, path, dumpAll())
	got1, got2 = byName(evs, keys1), byName(evs, keys2)
	if len(got1) != 0 {
		t.Errorf("second run: events of namespace 1, which changed nothing: %v", got1)
	}
	var seen time.Time
	for name, k := range keys2 {
		rs := got2[name]
		if len(rs) != 1 || rs[0].Event != record.EventOpened || rs[0].NetNS != ns2.Ino || rs[0].Key() != k || !rs[0].FirstSeen.Equal(rs[0].Time) {
			t.Errorf("second run: %s of namespace 2: %s, want one opened", name, show(rs))
			continue
		}
		seen = rs[0].Time
	}

	f2.Stop()
	evs = diffEvents(t, path, dumpAll())
	got1, got2 = byName(evs, keys1), byName(evs, keys2)
	if len(got1) != 0 {
		t.Errorf("third run: events of namespace 1, which changed nothing: %v", got1)
	}
	for name, k := range keys2 {
		rs := got2[name]
		if len(rs) != 1 || rs[0].Event != record.EventClosed || rs[0].NetNS != ns2.Ino || rs[0].Key() != k ||
			!rs[0].FirstSeen.Equal(seen) || !rs[0].LastSeen.Equal(seen) || !rs[0].Time.After(seen) {
			t.Errorf("third run: %s of namespace 2: %s, want one closed, first and last seen %v", name, show(rs), seen)
		}
	}
}

// show prints events for a test failure.
func show(rs []*record.Record) string {
	if len(rs) == 0 {
		return "no event"
	}
	var b strings.Builder
	enc := codec.NewEncoder()
	for _, r := range rs {
		b.Write(enc.Encode(r))
	}
	return b.String()
}
