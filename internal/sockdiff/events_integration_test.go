package sockdiff

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/record"
	"github.com/sockpipe/sockpipe/internal/sockdump"
)

// TestIntegrationShortLived runs the real sockdump with --events into
// sockdiff --closed, and, between its first and second dump, opens and
// closes many loopback connections (IPv4 and IPv6) that live a few milliseconds each,
// some closed normally (the client's end stays in time-wait, so the
// second dump lists its twin), some closed abortively by the client
// (SO_LINGER 0: an RST, no twin). No dump sees them alive; each must be in
// sockdiff's output all the same, opened (short-lived) and closed once:
// both ends of a normal close; the server's end of an abortive one (the
// kernel wipes the addresses of the client's end, which no dump held, so
// it cannot be identified and is dropped).
func TestIntegrationShortLived(t *testing.T) {
	const (
		conns    = 300
		workers  = 6
		interval = 5 * time.Second
	)
	// An IPv4 and, when the host has it, an IPv6 loopback listener.
	var (
		targets []*net.TCPAddr
		lports  = map[uint16]bool{}
		serving sync.WaitGroup
	)
	for _, a := range [][2]string{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}} {
		l, err := net.Listen(a[0], a[1])
		if err != nil {
			if a[0] == "tcp6" {
				t.Logf("no IPv6 loopback: %v", err)
				continue
			}
			t.Fatal(err)
		}
		defer l.Close()
		targets = append(targets, l.Addr().(*net.TCPAddr))
		lports[uint16(l.Addr().(*net.TCPAddr).Port)] = true
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				serving.Add(1)
				go func() {
					defer serving.Done()
					defer c.Close()
					c.SetDeadline(time.Now().Add(10 * time.Second))
					buf := make([]byte, 64)
					for {
						if _, err := c.Read(buf); err != nil {
							return
						}
						c.Write([]byte("ok"))
					}
				}()
			}
		}()
	}

	// sockdump --interval D --events | sockdiff --closed; the first
	// snapshot record starts the churn.
	p := startEvents(t, interval, func(r *record.Record) bool {
		return lports[r.Local.Port] || lports[r.Remote.Port]
	})
	churnStart := time.Now()

	// The churn, well before the second dump.
	type churned struct {
		client, server record.Key
		rst            bool
	}
	done := make([]churned, conns)
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < conns; i += workers {
				// Half the connections IPv6, when there is a listener.
				c, err := net.DialTCP("tcp", nil, targets[(i/2)%len(targets)])
				if err != nil {
					errs <- err
					return
				}
				ck := tcpKey(c.LocalAddr(), c.RemoteAddr())
				sk := ck
				sk.LocalIP, sk.LocalPort, sk.RemoteIP, sk.RemotePort = ck.RemoteIP, ck.RemotePort, ck.LocalIP, ck.LocalPort
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write([]byte("hello")); err != nil {
					errs <- err
				}
				buf := make([]byte, 2)
				if _, err := io.ReadFull(c, buf); err != nil {
					errs <- err
				}
				time.Sleep(2 * time.Millisecond)
				rst := i%2 == 1
				if rst {
					c.SetLinger(0)
				}
				c.Close()
				done[i] = churned{ck, sk, rst}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("churn: %v", err)
	}
	serving.Wait()
	p.churnEnded(t)

	// Wait for the second snapshot and every event expected, then stop.
	// As root, sockdump's owner table gives a client end that reset its
	// connection its addresses back: it is reported too, without
	// tcp_info (the kernel wiped it).
	_, btfErr := os.Stat("/sys/kernel/btf/vmlinux")
	owners := os.Getuid() == 0 && btfErr == nil
	want := 0
	for _, c := range done {
		want += 2 // the server end's opened and closed
		if !c.rst || owners {
			want += 2
		}
	}
	events, snapshots := p.finish(t, churnStart, func(events []*record.Record) bool { return len(events) >= want+1 })

	// Every event, by connection and kind.
	for _, r := range events {
		if r.Remote.Port == 0 && r.Direction != record.DirectionListening {
			t.Errorf("an event with remote port 0: %+v", r)
		}
	}
	got := byEvent(events)
	second := snapshots[1].Time
	// The kernel may give a client port that a reset freed to a later
	// connection of the churn: such a 4-tuple has one event of each kind
	// per connection.
	uses := map[record.Key]int{}
	for _, c := range done {
		uses[c.server]++
		uses[c.client]++
	}
	check := func(k record.Key, direction string, rst, wiped bool) {
		t.Helper()
		for _, ev := range []string{record.EventOpened, record.EventClosed} {
			rs := got[evKey{k, ev}]
			if len(rs) == 0 || len(rs) > uses[k] {
				t.Errorf("%v: %d %s events, want 1 per connection of it, %d (rst %v)", k, len(rs), ev, uses[k], rst)
				continue
			}
			r := rs[0]
			if got[evKey{k, ev}] = rs[1:]; len(rs) == 1 {
				delete(got, evKey{k, ev})
			}
			if !r.ShortLived || r.Direction != direction || r.State != "closed" || uses[k] == 1 && (r.Info == nil) != wiped ||
				r.Time.Before(churnStart) || r.Time.After(second) || !r.FirstSeen.IsZero() {
				t.Errorf("%v: %s event %+v, want short-lived, %s, closed, with tcp_info unless wiped (%v), between the dumps", k, ev, r, direction, wiped)
				continue
			}
			if ev == record.EventClosed && !r.LastSeen.Equal(r.Time) {
				t.Errorf("%v: closed at %v, last seen %v", k, r.Time, r.LastSeen)
			}
			if direction == record.DirectionIngress && r.Info.BytesReceived < 5 {
				t.Errorf("%v: tcp_info %+v, want at least the 5 bytes received", k, r.Info)
			}
		}
	}
	if owners && strings.Contains(p.dumpErr.String(), "no owner table") {
		t.Fatalf("root, with BTF, and no owner table: %s", p.dumpErr.String())
	}
	for _, c := range done {
		check(c.server, record.DirectionIngress, c.rst, false)
		if !c.rst || owners {
			check(c.client, record.DirectionEgress, false, c.rst)
		}
	}
	// The rest: the listener's existing event, and nothing else (in
	// particular no event of a time-wait twin, nor of a wiped end).
	for k, rs := range got {
		if lports[k.k.LocalPort] && k.k.RemotePort == 0 && k.ev == record.EventExisting {
			continue
		}
		for _, r := range rs {
			t.Errorf("unexpected event: %+v", r)
		}
	}
	v6 := 0
	for _, r := range events {
		if r.Family == record.FamilyIPv6 {
			v6++
		}
	}
	t.Logf("%d connections, %d events (%d IPv6), %d snapshots; sockdump's stderr: %q", conns, len(events), v6, len(snapshots), p.dumpErr.String())
}

// tcpKey is the key of a TCP connection of either family in the test's
// own network namespace, its addresses as sockdump writes them.
func tcpKey(local, remote net.Addr) record.Key {
	l, r := local.(*net.TCPAddr), remote.(*net.TCPAddr)
	fam := record.FamilyIPv4
	if l.IP.To4() == nil {
		fam = record.FamilyIPv6
	}
	return record.Key{
		NetNS: ownNetNS(), Transport: record.TransportTCP, Family: fam,
		LocalIP: l.IP.String(), LocalPort: uint16(l.Port), RemoteIP: r.IP.String(), RemotePort: uint16(r.Port),
	}
}

// eventsPipeline is sockdump --interval D --events | sockdiff --closed,
// both run in process, and what comes out of it: the socket events it
// keeps and every snapshot record.
type eventsPipeline struct {
	ctx      context.Context
	interval time.Duration
	stopDump context.CancelFunc

	dumped, diffed, read chan error
	dumpErr, diffErr     bytes.Buffer

	mu        sync.Mutex
	events    []*record.Record
	snapshots []*record.Record
	firstAt   time.Time // when the first snapshot record came
}

// startEvents starts sockdump --interval interval --events args… into
// sockdiff --closed, keeps the socket events that keep accepts, and
// returns when the first snapshot record is out. The test fails when
// sockdiff passes a destroyed record on, and is skipped when the kernel
// refuses destroy notifications (or, with --udp, cannot dump UDP
// sockets), or when the first dump took more than a quarter of the
// interval: the host is too busy for a churn to fit between two dumps.
// Everything ends within 60 s.
func startEvents(t *testing.T, interval time.Duration, keep func(*record.Record) bool, args ...string) *eventsPipeline {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	// sockdump runs until every event is in, then is stopped.
	dumpCtx, stopDump := context.WithCancel(ctx)
	t.Cleanup(stopDump)
	p := &eventsPipeline{
		ctx: ctx, interval: interval, stopDump: stopDump,
		dumped: make(chan error, 1), diffed: make(chan error, 1), read: make(chan error, 1),
	}

	dumpR, dumpW := io.Pipe()
	diffR, diffW := io.Pipe()
	dumpArgs := append([]string{"--interval", interval.String(), "--events"}, args...)
	go func() {
		err := sockdump.Run(dumpCtx, dumpArgs, nil, dumpW, &p.dumpErr)
		dumpW.CloseWithError(err)
		p.dumped <- err
	}()
	go func() {
		c := config{closed: true, saveInterval: time.Hour, now: time.Now}
		err := run(ctx, c, dumpR, diffW, &p.diffErr)
		diffW.CloseWithError(err)
		dumpR.CloseWithError(errors.New("sockdiff ended"))
		p.diffed <- err
	}()

	first := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(diffR)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			r, err := codec.Decode(sc.Bytes())
			if err != nil {
				p.read <- fmt.Errorf("output line %q: %v", sc.Bytes(), err)
				return
			}
			p.mu.Lock()
			switch r.Type {
			case record.TypeSnapshot:
				p.snapshots = append(p.snapshots, r)
				if len(p.snapshots) == 1 {
					p.firstAt = time.Now()
					close(first)
				}
			case record.TypeSocket:
				if keep(r) {
					p.events = append(p.events, r)
				}
			case record.TypeDestroyed:
				p.read <- fmt.Errorf("sockdiff passed a destroyed record on: %s", sc.Bytes())
				p.mu.Unlock()
				return
			}
			p.mu.Unlock()
		}
		p.read <- sc.Err()
	}()

	select {
	case <-first:
	case err := <-p.dumped:
		var ee *cli.ExitError
		if slices.Contains(args, "--udp") && errors.As(err, &ee) && ee.Code == sockdump.ExitUnsupported {
			t.Skipf("the kernel cannot dump UDP sockets: %v", err)
		}
		t.Fatalf("sockdump ended before its first snapshot: %v; %s", err, p.dumpErr.String())
	case err := <-p.read:
		t.Fatalf("no first snapshot: %v; sockdump: %s; sockdiff: %s", err, p.dumpErr.String(), p.diffErr.String())
	case <-ctx.Done():
		t.Fatal("no first snapshot")
	}
	if strings.Contains(p.dumpErr.String(), "no destroy notifications") {
		t.Skipf("the kernel refuses destroy notifications: %s", p.dumpErr.String())
	}
	p.mu.Lock()
	firstDump := p.snapshots[0].Duration
	p.mu.Unlock()
	if firstDump > interval/4 {
		t.Skipf("the first dump took %v: the host is too busy for the churn to fit between two dumps", firstDump)
	}
	return p
}

// churnEnded skips the test when the churn, just ended, ended more than
// half an interval after the first snapshot: too late for it to fit
// between two dumps.
func (p *eventsPipeline) churnEnded(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	firstAt := p.firstAt
	p.mu.Unlock()
	if d := time.Since(firstAt); d > p.interval/2 {
		t.Skipf("the churn ended %v after the first snapshot: the host is too busy for it to fit between two dumps", d)
	}
}

// finish waits, for three intervals at most, for the second snapshot and
// until enough says the events kept are all in; then stops the pipeline
// and checks that it ended cleanly, that sockdiff said nothing on
// stderr, that there were two snapshots at least and that the second
// dump began after churnStart. The test is skipped when the kernel
// dropped destroy notifications.
func (p *eventsPipeline) finish(t *testing.T, churnStart time.Time, enough func(events []*record.Record) bool) (events, snapshots []*record.Record) {
	t.Helper()
	deadline := time.Now().Add(3 * p.interval)
	for {
		p.mu.Lock()
		done := enough(p.events) && len(p.snapshots) >= 2
		p.mu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.stopDump()
	for _, ch := range []chan error{p.dumped, p.diffed, p.read} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("pipeline: %v; sockdump: %s; sockdiff: %s", err, p.dumpErr.String(), p.diffErr.String())
			}
		case <-p.ctx.Done():
			t.Fatal("the pipeline did not end")
		}
	}
	if p.diffErr.Len() > 0 {
		t.Errorf("sockdiff stderr: %s", p.diffErr.String())
	}
	if len(p.snapshots) < 2 {
		t.Fatalf("%d snapshots, want at least 2; sockdump: %s", len(p.snapshots), p.dumpErr.String())
	}
	for _, sn := range p.snapshots {
		if sn.EventOverflows > 0 {
			t.Skipf("the kernel dropped destroy notifications (%d overflows): the host is too busy for this test", sn.EventOverflows)
		}
	}
	if second := p.snapshots[1].Time; !second.After(churnStart) {
		t.Fatalf("the second dump began at %v, before the churn (%v)", second, churnStart)
	}
	return p.events, p.snapshots
}

// evKey is a connection and one kind of event.
type evKey struct {
	k  record.Key
	ev string
}

// byEvent returns events by connection and kind.
func byEvent(events []*record.Record) map[evKey][]*record.Record {
	got := map[evKey][]*record.Record{}
	for _, r := range events {
		k := evKey{r.Key(), r.Event}
		got[k] = append(got[k], r)
	}
	return got
}
