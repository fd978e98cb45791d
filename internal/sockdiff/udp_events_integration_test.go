package sockdiff

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/record"
	"github.com/sockpipe/sockpipe/internal/sockdump"
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
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dumpCtx, stopDump := context.WithCancel(ctx)
	defer stopDump()

	// sockdump --interval D --udp --events | sockdiff --closed
	dumpR, dumpW := io.Pipe()
	diffR, diffW := io.Pipe()
	var dumpErr bytes.Buffer
	dumped := make(chan error, 1)
	go func() {
		err := sockdump.Run(dumpCtx, []string{"--interval", interval.String(), "--udp", "--events"}, nil, dumpW, &dumpErr)
		dumpW.CloseWithError(err)
		dumped <- err
	}()
	var diffErr bytes.Buffer
	diffed := make(chan error, 1)
	go func() {
		c := config{closed: true, saveInterval: time.Hour, now: time.Now}
		err := run(ctx, c, dumpR, diffW, &diffErr)
		diffW.CloseWithError(err)
		dumpR.CloseWithError(errors.New("sockdiff ended"))
		diffed <- err
	}()

	var (
		mu        sync.Mutex
		ports     = map[uint16]bool{} // the ports of the churn
		events    []*record.Record
		snapshots []*record.Record
	)
	first := make(chan struct{})
	read := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(diffR)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			r, err := codec.Decode(sc.Bytes())
			if err != nil {
				read <- fmt.Errorf("output line %q: %v", sc.Bytes(), err)
				return
			}
			mu.Lock()
			switch r.Type {
			case record.TypeSnapshot:
				snapshots = append(snapshots, r)
				if len(snapshots) == 1 {
					close(first)
				}
			case record.TypeSocket:
				// Kept all: the ports are known only after the churn.
				if r.Transport == record.TransportUDP {
					events = append(events, r)
				}
			}
			mu.Unlock()
		}
		read <- sc.Err()
	}()
	select {
	case <-first:
	case err := <-dumped:
		var ee *cli.ExitError
		if errors.As(err, &ee) && ee.Code == sockdump.ExitUnsupported {
			t.Skipf("the kernel cannot dump UDP sockets: %v", err)
		}
		t.Fatalf("sockdump ended before its first snapshot: %v; %s", err, dumpErr.String())
	case err := <-read:
		t.Fatalf("no first snapshot: %v; sockdump: %s; sockdiff: %s", err, dumpErr.String(), diffErr.String())
	case <-ctx.Done():
		t.Fatal("no first snapshot")
	}
	if strings.Contains(dumpErr.String(), "no destroy notifications") {
		t.Skipf("the kernel refuses destroy notifications: %s", dumpErr.String())
	}
	mu.Lock()
	firstAt, firstDump := time.Now(), snapshots[0].Duration
	mu.Unlock()
	if firstDump > interval/4 {
		t.Skipf("the first dump took %v: the host is too busy for the churn to fit between two dumps", firstDump)
	}
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
		mu.Lock()
		ports[uint16(sa.Port)], ports[uint16(ca.Port)] = true, true
		mu.Unlock()
	}
	if d := time.Since(firstAt); d > interval/2 {
		t.Skipf("the churn ended %v after the first snapshot: the host is too busy for it to fit between two dumps", d)
	}

	// Wait for the second snapshot and every event expected, then stop.
	mine := func() []*record.Record {
		var rs []*record.Record
		for _, r := range events {
			if ports[r.Local.Port] || ports[r.Remote.Port] {
				rs = append(rs, r)
			}
		}
		return rs
	}
	want := 4 * len(done)
	deadline := time.Now().Add(3 * interval)
	for {
		mu.Lock()
		n, snaps := len(mine()), len(snapshots)
		mu.Unlock()
		if (n >= want && snaps >= 2) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopDump()
	for _, ch := range []chan error{dumped, diffed, read} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("pipeline: %v; sockdump: %s; sockdiff: %s", err, dumpErr.String(), diffErr.String())
			}
		case <-ctx.Done():
			t.Fatal("the pipeline did not end")
		}
	}
	if diffErr.Len() > 0 {
		t.Errorf("sockdiff stderr: %s", diffErr.String())
	}
	if len(snapshots) < 2 {
		t.Fatalf("%d snapshots, want at least 2; sockdump: %s", len(snapshots), dumpErr.String())
	}
	for _, sn := range snapshots {
		if sn.EventOverflows > 0 {
			t.Skipf("the kernel dropped destroy notifications (%d overflows): the host is too busy for this test", sn.EventOverflows)
		}
	}
	second := snapshots[1].Time
	if !second.After(churnStart) {
		t.Fatalf("the second dump began at %v, before the churn (%v)", second, churnStart)
	}

	type evKey struct {
		k  record.Key
		ev string
	}
	got := map[evKey][]*record.Record{}
	for _, r := range mine() {
		got[evKey{r.Key(), r.Event}] = append(got[evKey{r.Key(), r.Event}], r)
	}
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
	t.Logf("%d exchanges, %d events, %d snapshots; sockdump's stderr: %q", len(done), len(mine()), len(snapshots), dumpErr.String())
}
