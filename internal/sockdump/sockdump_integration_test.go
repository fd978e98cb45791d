package sockdump

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/netnsdump"
	"github.com/sockpipe/sockpipe/internal/record"
	"github.com/sockpipe/sockpipe/internal/testprog"
)

// inodeOf returns the socket inode of a connection or listener, from its
// /proc/self/fd link.
func inodeOf(t *testing.T, c syscall.Conn) uint64 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var link string
	rc.Control(func(fd uintptr) {
		link, err = os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	})
	if err != nil {
		t.Fatal(err)
	}
	var ino uint64
	if _, err := fmt.Sscanf(link, "socket:[%d]", &ino); err != nil {
		t.Fatalf("fd link %q: %v", link, err)
	}
	return ino
}

func listen(t *testing.T, network, addr string) *net.TCPListener {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("cannot listen on %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { l.Close() })
	return l.(*net.TCPListener)
}

// connect dials l's port on addr and returns both ends.
func connect(t *testing.T, l *net.TCPListener, network, addr string) (client, server *net.TCPConn) {
	t.Helper()
	port := l.Addr().(*net.TCPAddr).Port
	c, err := net.DialTimeout(network, net.JoinHostPort(addr, strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	l.SetDeadline(time.Now().Add(5 * time.Second))
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// snapshot dumps TCP sockets once and returns the socket records by local
// and remote endpoint, and the snapshot record.
func snapshot(t *testing.T) (map[string]*record.Record, *record.Record) {
	t.Helper()
	return parse(t, dumpOnce(t, netnsdump.TCP))
}

// dumpOnce dumps the sockets of protocols once, in process, and returns
// what the dump wrote.
func dumpOnce(t *testing.T, protocols []uint8) []byte {
	t.Helper()
	d, err := netnsdump.Open("", protocols)
	if err != nil {
		t.Fatal(err)
	}
	h := netnsdump.NewHost(d, "", netnsdump.Config{})
	defer h.Close()
	var buf bytes.Buffer
	if err := h.Snapshot(context.Background(), netnsdump.Lines(func(b []byte) error { buf.Write(b); return nil })); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func parse(t *testing.T, out []byte) (map[string]*record.Record, *record.Record) {
	t.Helper()
	socks := map[string]*record.Record{}
	var snap *record.Record
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		r, err := codec.Decode(sc.Bytes())
		if err != nil {
			t.Fatalf("bad line %q: %v", sc.Text(), err)
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("invalid record %q: %v", sc.Text(), err)
		}
		switch r.Type {
		case record.TypeSocket:
			socks[endpoints(r.Local.IP, r.Local.Port, r.Remote.IP, r.Remote.Port)] = r
		case record.TypeSnapshot:
			snap = r
		}
	}
	return socks, snap
}

func endpoints(lip string, lport uint16, rip string, rport uint16) string {
	return net.JoinHostPort(lip, strconv.Itoa(int(lport))) + " " + net.JoinHostPort(rip, strconv.Itoa(int(rport)))
}

func key(l, r net.Addr) string {
	la, ra := l.(*net.TCPAddr), r.(*net.TCPAddr)
	return endpoints(textOf(la.IP), uint16(la.Port), textOf(ra.IP), uint16(ra.Port))
}

// textOf prints an address as the kernel's family shows it: Go reports
// IPv4-mapped peers of a dual-stack socket as plain IPv4.
func textOf(ip net.IP) string { return ip.String() }

type want struct {
	name      string
	key       string
	family    string
	state     string
	direction string
	inode     uint64
}

func TestIntegrationDump(t *testing.T) {
	l4 := listen(t, "tcp4", "127.0.0.1:0")
	c4, s4 := connect(t, l4, "tcp4", "127.0.0.1")
	l6 := listen(t, "tcp6", "[::1]:0")
	c6, s6 := connect(t, l6, "tcp6", "::1")
	// A dual-stack listener on :: accepts an IPv4 client: the accepted
	// socket is IPv6 with IPv4-mapped addresses.
	lds := listen(t, "tcp", ":0")
	if lds.Addr().(*net.TCPAddr).IP.To4() != nil {
		t.Skip("no dual-stack listener on this host")
	}
	cds, sds := connect(t, lds, "tcp4", "127.0.0.1")
	dsPort := uint16(lds.Addr().(*net.TCPAddr).Port)
	cdsLocal := cds.LocalAddr().(*net.TCPAddr)

	// A connection closed actively by the client leaves its socket in
	// TIME_WAIT, with inode 0.
	ctw, stw := connect(t, l4, "tcp4", "127.0.0.1")
	twKey := key(ctw.LocalAddr(), ctw.RemoteAddr())
	ctw.Close()
	stw.Close()

	var socks map[string]*record.Record
	var snap *record.Record
	deadline := time.Now().Add(5 * time.Second)
	for {
		socks, snap = snapshot(t)
		if r := socks[twKey]; r != nil && r.State == "time-wait" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	l4a, l6a, ldsa := l4.Addr().(*net.TCPAddr), l6.Addr().(*net.TCPAddr), lds.Addr().(*net.TCPAddr)
	mappedServer := endpoints("::ffff:127.0.0.1", dsPort, "::ffff:127.0.0.1", uint16(cdsLocal.Port))
	wants := []want{
		{"ipv4 listener", endpoints("127.0.0.1", uint16(l4a.Port), "0.0.0.0", 0), "ipv4", "listening", "listening", inodeOf(t, l4)},
		{"ipv4 client", key(c4.LocalAddr(), c4.RemoteAddr()), "ipv4", "established", "egress", inodeOf(t, c4)},
		{"ipv4 server", key(s4.LocalAddr(), s4.RemoteAddr()), "ipv4", "established", "ingress", inodeOf(t, s4)},
		{"ipv6 listener", endpoints("::1", uint16(l6a.Port), "::", 0), "ipv6", "listening", "listening", inodeOf(t, l6)},
		{"ipv6 client", key(c6.LocalAddr(), c6.RemoteAddr()), "ipv6", "established", "egress", inodeOf(t, c6)},
		{"ipv6 server", key(s6.LocalAddr(), s6.RemoteAddr()), "ipv6", "established", "ingress", inodeOf(t, s6)},
		{"dual-stack listener", endpoints("::", uint16(ldsa.Port), "::", 0), "ipv6", "listening", "listening", inodeOf(t, lds)},
		{"ipv4 client of dual-stack", key(cds.LocalAddr(), cds.RemoteAddr()), "ipv4", "established", "egress", inodeOf(t, cds)},
		{"ipv4-mapped server", mappedServer, "ipv6", "established", "ingress", inodeOf(t, sds)},
		{"time-wait", twKey, "ipv4", "time-wait", "egress", 0},
	}
	uid := uint32(os.Getuid())
	for _, w := range wants {
		r := socks[w.key]
		if r == nil {
			t.Errorf("%s: %s not in the dump", w.name, w.key)
			continue
		}
		wantUID := uid
		if w.state == "time-wait" {
			wantUID = 0 // the kernel reports no owner for TIME_WAIT sockets
		}
		if r.Family != w.family || r.State != w.state || r.Direction != w.direction || r.Inode != w.inode ||
			!r.HasUID || r.UID != wantUID || r.Transport != "tcp" || r.Cookie == 0 || r.NetNS == 0 {
			t.Errorf("%s: got family %s state %s direction %s inode %d uid %d(%v) transport %s cookie %d netns %d;\nwant %s %s %s inode %d uid %d",
				w.name, r.Family, r.State, r.Direction, r.Inode, r.UID, r.HasUID, r.Transport, r.Cookie, r.NetNS,
				w.family, w.state, w.direction, w.inode, wantUID)
		}
	}
	if snap == nil || snap.Sockets != len(socks) || snap.Schema != record.SchemaVersion || snap.Duration <= 0 {
		t.Errorf("snapshot record %+v for %d sockets", snap, len(socks))
	}
	for _, r := range socks {
		if !r.Time.Equal(snap.Time) {
			t.Fatalf("socket time %v != snapshot time %v", r.Time, snap.Time)
		}
	}
}

// ssSocket is one line of "ss -tanHe".
type ssSocket struct {
	state, local, remote string
	uid, inode           uint64
}

var ssStates = map[string]string{
	"ESTAB": "established", "LISTEN": "listening", "UNCONN": "closed", "TIME-WAIT": "time-wait",
	"SYN-SENT": "syn-sent", "SYN-RECV": "syn-recv", "FIN-WAIT-1": "fin-wait-1", "FIN-WAIT-2": "fin-wait-2",
	"CLOSE-WAIT": "close-wait", "LAST-ACK": "last-ack", "CLOSING": "closing",
}

// ssEndpoint turns ss's "[::1]:80", "127.0.0.1:80" or "*:80" into ours.
func ssEndpoint(s string) string {
	i := strings.LastIndexByte(s, ':')
	host, port := s[:i], s[i+1:]
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if j := strings.IndexByte(host, '%'); j >= 0 {
		host = host[:j]
	}
	if port == "*" { // the peer of a listener
		port = "0"
	}
	if host == "*" { // ss's wildcard of a dual-stack listener
		host = "::"
	}
	return net.JoinHostPort(host, port)
}

// runSS runs ss with the protocol flag proto (-t, -u) and returns its
// sockets by local and remote end.
func runSS(t *testing.T, proto string) map[string]ssSocket {
	t.Helper()
	out, err := exec.Command("ss", proto+"anHe").Output()
	if err != nil {
		t.Skipf("ss %sanHe: %v", proto, err)
	}
	m := map[string]ssSocket{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		s := ssSocket{state: ssStates[f[0]], local: ssEndpoint(f[3]), remote: ssEndpoint(f[4])}
		for _, x := range f[5:] {
			if v, ok := strings.CutPrefix(x, "uid:"); ok {
				s.uid, _ = strconv.ParseUint(v, 10, 32)
			}
			if v, ok := strings.CutPrefix(x, "ino:"); ok {
				s.inode, _ = strconv.ParseUint(v, 10, 64)
			}
		}
		m[s.local+" "+s.remote] = s
	}
	return m
}

// TestIntegrationAgreesWithSS takes ss as the oracle for the sockets this
// test creates: both must agree on state, addresses, uid and inode.
func TestIntegrationAgreesWithSS(t *testing.T) {
	if _, err := exec.LookPath("ss"); err != nil {
		t.Skip("ss not installed")
	}
	l4 := listen(t, "tcp4", "127.0.0.1:0")
	l6 := listen(t, "tcp6", "[::1]:0")
	lds := listen(t, "tcp", ":0")
	var keys []string
	add := func(c net.Conn) { keys = append(keys, key(c.LocalAddr(), c.RemoteAddr())) }
	for i := 0; i < 5; i++ {
		c, s := connect(t, l4, "tcp4", "127.0.0.1")
		add(c)
		add(s)
		c, s = connect(t, l6, "tcp6", "::1")
		add(c)
		add(s)
		c, _ = connect(t, lds, "tcp4", "127.0.0.1")
		add(c)
	}
	ds := lds.Addr().(*net.TCPAddr).Port
	keys = append(keys, endpoints("127.0.0.1", uint16(l4.Addr().(*net.TCPAddr).Port), "0.0.0.0", 0),
		endpoints("::1", uint16(l6.Addr().(*net.TCPAddr).Port), "::", 0),
		endpoints("::", uint16(ds), "::", 0))

	// Sockets do not change between the two reads: the test holds them
	// all and none is closing.
	socks, _ := snapshot(t)
	ss := runSS(t, "-t")
	for _, k := range keys {
		r, o := socks[k], ss[k]
		if r == nil {
			t.Errorf("%s: not in sockdump's output", k)
			continue
		}
		if o.state == "" {
			t.Errorf("%s: not in ss's output", k)
			continue
		}
		if r.State != o.state || uint64(r.UID) != o.uid || r.Inode != o.inode {
			t.Errorf("%s: sockdump %s uid %d inode %d, ss %s uid %d inode %d", k, r.State, r.UID, r.Inode, o.state, o.uid, o.inode)
		}
	}
	// The IPv4 clients of the dual-stack listener are seen by ss too, with
	// their server ends as IPv4-mapped IPv6.
	n := 0
	for k, r := range socks {
		if r.Local.Port == uint16(ds) && r.Direction == "ingress" {
			n++
			if _, ok := ss[k]; !ok || !strings.HasPrefix(r.Local.IP, "::ffff:") {
				t.Errorf("mapped server end %s: in ss %v", k, ok)
			}
		}
	}
	if n != 5 {
		t.Errorf("%d ingress sockets on the dual-stack listener, want 5", n)
	}
}

// TestIntegrationUnprivileged runs sockdump as nobody: an unprivileged
// user sees every socket of the namespace, root's included, with the
// right owner.
func TestIntegrationUnprivileged(t *testing.T) {
	l := listen(t, "tcp4", "127.0.0.1:0")
	c, _ := connect(t, l, "tcp4", "127.0.0.1")
	out, _ := runNobody(t)
	socks, snap := parse(t, out)
	if snap == nil {
		t.Fatal("no snapshot record")
	}
	r := socks[key(c.LocalAddr(), c.RemoteAddr())]
	if r == nil || r.UID != 0 || r.Inode != inodeOf(t, c) {
		t.Errorf("root's socket as seen by nobody: %+v", r)
	}
}

// runNobody runs the built sockdump with args as nobody (the test is
// skipped when not root), fails the test if it fails, and returns its
// output and stderr.
func runNobody(t *testing.T, args ...string) (out []byte, stderr string) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to switch to nobody")
	}
	bin := testprog.Build(t, "github.com/sockpipe/sockpipe/cmd/sockdump")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	testprog.AsNobody(t, cmd)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sockdump %s as nobody: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out, errb.String()
}

// startRun runs sockdump with args in-process and returns its output
// lines, a cancel that ends the reading early (by timeout), and a stop
// that ends sockdump, fails the test if it failed, and returns its
// stderr. Stop may be called more than once; it is called when the test
// ends.
func startRun(t *testing.T, args ...string) (*bufio.Scanner, context.CancelFunc, func() string) {
	t.Helper()
	return startEnvRun(t, Env{}, args...)
}

// startEnvRun is startRun with the outside inputs of env.
func startEnvRun(t *testing.T, env Env, args ...string) (*bufio.Scanner, context.CancelFunc, func() string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- env.Run(ctx, args, nil, pw, &stderr)
		pw.Close()
	}()
	lines := bufio.NewScanner(pr)
	lines.Buffer(nil, 1<<20)
	var once sync.Once
	stop := func() string {
		once.Do(func() {
			cancel()
			go io.Copy(io.Discard, pr)
			if err := <-done; err != nil {
				t.Errorf("Run: %v; stderr %s", err, stderr.String())
			}
		})
		return stderr.String()
	}
	t.Cleanup(func() { stop() })
	return lines, cancel, stop
}

// runEvents runs sockdump --interval 1h --events and args in-process, as
// startRun does, and returns once the first snapshot is out (the
// subscription is in place then).
func runEvents(t *testing.T, args ...string) (*bufio.Scanner, context.CancelFunc, func() string) {
	t.Helper()
	return runEnvEvents(t, Env{}, args...)
}

// runEnvEvents is runEvents with the outside inputs of env.
func runEnvEvents(t *testing.T, env Env, args ...string) (*bufio.Scanner, context.CancelFunc, func() string) {
	t.Helper()
	lines, cancel, stop := startEnvRun(t, env, append([]string{"--interval", "1h", "--events"}, args...)...)
	for lines.Scan() {
		if strings.Contains(lines.Text(), `"type":"snapshot"`) {
			break
		}
	}
	return lines, cancel, stop
}

// TestIntegrationEvents runs sockdump --events and closes connections
// between two dumps: each appears as destroyed records, both ends, with
// addresses, direction and counters. The clients close with RST, which
// makes the kernel wipe their addresses; those that the last dump held get
// them back through their cookie, the others (as root) from the owner
// table.
func TestIntegrationEvents(t *testing.T) {
	l := listen(t, "tcp4", "127.0.0.1:0")
	lport := uint16(l.Addr().(*net.TCPAddr).Port)
	const n = 20
	type pair struct {
		c, s   *net.TCPConn
		dumped bool
	}
	var pairs []pair
	for i := 0; i < n/2; i++ { // held in the first dump
		c, s := connect(t, l, "tcp4", "127.0.0.1")
		pairs = append(pairs, pair{c, s, true})
	}

	lines, cancel, stop := runEvents(t)
	defer cancel()
	for i := n / 2; i < n; i++ { // born after the dump
		c, s := connect(t, l, "tcp4", "127.0.0.1")
		pairs = append(pairs, pair{c, s, false})
	}
	for _, p := range pairs {
		p.c.Write([]byte("hello"))
		buf := make([]byte, 5)
		io.ReadFull(p.s, buf)
		p.c.SetLinger(0) // RST: no TIME_WAIT twin
		p.c.Close()
		p.s.Close()
	}

	clientPorts := map[uint16]bool{}
	for _, p := range pairs {
		clientPorts[uint16(p.c.LocalAddr().(*net.TCPAddr).Port)] = true
	}
	var got []*record.Record
	timeout := time.AfterFunc(10*time.Second, cancel)
	defer timeout.Stop()
	for len(got) < 2*n && lines.Scan() {
		r, err := codec.Decode(lines.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if r.Type == record.TypeDestroyed && (r.Local.Port == lport || r.Remote.Port == lport) ||
			r.Type == record.TypeDestroyed && r.Remote.Port == 0 && clientPorts[r.Local.Port] {
			got = append(got, r)
		}
	}
	stderr := stop()
	byKey := map[string]*record.Record{}
	byLocalPort := map[uint16]*record.Record{}
	for _, r := range got {
		byKey[endpoints(r.Local.IP, r.Local.Port, r.Remote.IP, r.Remote.Port)] = r
		byLocalPort[r.Local.Port] = r
	}
	for _, p := range pairs {
		ck, sk := key(p.c.LocalAddr(), p.c.RemoteAddr()), key(p.s.LocalAddr(), p.s.RemoteAddr())
		s := byKey[sk]
		if s == nil || s.State != "closed" || s.Direction != "ingress" || s.HasUID || s.Inode != 0 || s.Cookie == 0 ||
			s.Info == nil || s.Info.BytesReceived != 5 {
			t.Errorf("server end %s: %+v", sk, s)
		}
		if p.dumped {
			if c := byKey[ck]; c == nil || c.Direction != "egress" || c.Info != nil {
				t.Errorf("client end %s, held by the dump: %+v", ck, c)
			}
			continue
		}
		c := byLocalPort[uint16(p.c.LocalAddr().(*net.TCPAddr).Port)]
		if os.Getuid() == 0 {
			// The owner table recorded its addresses when it connected.
			if c == nil || endpoints(c.Local.IP, c.Local.Port, c.Remote.IP, c.Remote.Port) != ck ||
				c.Info != nil || c.Owner == nil || c.Owner.Via != record.OwnerConnect || c.Direction != record.DirectionEgress {
				t.Errorf("client end %s, wiped by the kernel, its addresses from the owner table: %+v", ck, c)
			}
		} else if c == nil || c.Remote.Port != 0 || c.Info != nil {
			t.Errorf("client end %s, wiped by the kernel: %+v", ck, c)
		}
	}
	if stderr != "" {
		t.Errorf("stderr: %s", stderr)
	}
}

// TestIntegrationEventsUnprivileged: nobody may subscribe too; where the
// kernel refuses, sockdump says so once and goes on polling.
func TestIntegrationEventsUnprivileged(t *testing.T) {
	out, stderr := runNobody(t, "--interval", "10ms", "--count", "3", "--events")
	if n := bytes.Count(out, []byte(`"type":"snapshot"`)); n != 3 {
		t.Errorf("%d snapshots, want 3", n)
	}
	if n := bytes.Count(out, []byte(`"interval_ns":10000000`)); n != 3 {
		t.Errorf("%d snapshots say the 10ms period, want 3", n)
	}
	if n := strings.Count(stderr, "no owner table (loading BPF programs needs root"); n != 1 {
		t.Errorf("said %d times why there are no owners, want once: %s", n, stderr)
	}
	stderr = strings.Join(slices.DeleteFunc(strings.SplitAfter(stderr, "\n"), func(l string) bool { return strings.Contains(l, "no owner table") }), "")
	if s := stderr; s != "" && !strings.Contains(s, "going on with polling only") {
		t.Errorf("stderr: %s", s)
	}
}

// TestIntegrationEventsNewListener: a connection accepted by a listener
// that opened after the last dump is still ingress, and a listener that
// closes is reported as a listener. The listeners are read again for
// every notification that needs it, so no wait for the refresh limit.
func TestIntegrationEventsNewListener(t *testing.T) {
	lines, cancel, stop := runEnvEvents(t, Env{ListenerRefresh: time.Nanosecond})
	defer cancel()
	l := listen(t, "tcp4", "127.0.0.1:0")
	lport := uint16(l.Addr().(*net.TCPAddr).Port)
	c, s := connect(t, l, "tcp4", "127.0.0.1")
	sk := key(s.LocalAddr(), s.RemoteAddr())
	s.Close()
	c.Close()

	var server, listener *record.Record
	timeout := time.AfterFunc(10*time.Second, cancel)
	defer timeout.Stop()
	for (server == nil || listener == nil) && lines.Scan() {
		r, err := codec.Decode(lines.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if r.Type != record.TypeDestroyed || r.Local.Port != lport {
			continue
		}
		if endpoints(r.Local.IP, r.Local.Port, r.Remote.IP, r.Remote.Port) == sk {
			server = r
			l.Close() // now that its connection was reported
		} else if r.Remote.Port == 0 {
			listener = r
		}
	}
	stop()
	if server == nil || server.Direction != "ingress" {
		t.Errorf("server end of a connection to a new listener: %+v", server)
	}
	if listener == nil || listener.Direction != "listening" || listener.Info == nil {
		t.Errorf("closed listener: %+v", listener)
	}
}
