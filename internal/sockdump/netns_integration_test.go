package sockdump

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/inetdiag"
	"github.com/sockpipe/sockpipe/internal/record"
	"github.com/sockpipe/sockpipe/internal/testprog"
)

// sockID names a socket across namespaces: the namespace, transport and
// both ends as Go prints addresses.
type sockID struct {
	netns            uint64
	transport        string
	local, remote    string
	destroyedOrState string
}

func hostPort(ip string, port uint16) string {
	return net.JoinHostPort(ip, strconv.Itoa(int(port)))
}

// fixtureWant is what sockdump must say of a sockfix socket.
func fixtureWant(s testprog.Sock) (state, direction string) {
	switch s.Transport + " " + s.Role {
	case "tcp listener":
		return "listening", "listening"
	case "tcp client":
		return "established", "egress"
	case "tcp server":
		return "established", "ingress"
	case "tcp timewait":
		return "time-wait", "egress"
	case "udp bound":
		return "closed", "listening"
	case "udp client":
		return "established", "egress"
	case "udp server":
		return "established", "ingress"
	}
	panic("unknown sockfix socket " + s.Transport + " " + s.Role)
}

// remoteOf is the remote end a record gives a sockfix socket: the
// any-address of the socket's family and port 0 when it has none.
func remoteOf(s testprog.Sock) string {
	if s.Remote != "-" {
		return s.Remote
	}
	if strings.HasPrefix(s.Local, "[") {
		return "[::]:0"
	}
	return "0.0.0.0:0"
}

// TestIntegrationAllNetNS puts the same listener address and the same
// connections into two network namespaces, and a TIME_WAIT connection
// into a third that no process holds, and dumps with --all-netns --udp:
// every socket is found once, tagged with its namespace, with the
// direction decided by its own namespace's listeners.
func TestIntegrationAllNetNS(t *testing.T) {
	bin := testprog.Build(t, "github.com/sockpipe/sockpipe/internal/testprog/sockfix")
	a, b, pinned := testprog.NewNetNS(t), testprog.NewNetNS(t), testprog.NewNetNS(t)
	args := []string{"-tcp", "127.0.0.1:8080", "-udp", "127.0.0.1:5353", "-udp", "[::1]:5353"}
	fixtures := map[uint64]*testprog.Fixture{
		a.Ino: testprog.StartFixture(t, a, bin, args...),
		b.Ino: testprog.StartFixture(t, b, bin, args...),
	}
	out, err := exec.Command("ip", "netns", "exec", pinned.Name, bin, "-timewait", "127.0.0.1:8080").Output()
	if err != nil {
		t.Fatalf("sockfix -timewait: %v", err)
	}
	fs := strings.Fields(string(out))
	if len(fs) < 4 {
		t.Fatalf("sockfix -timewait said %q", out)
	}
	tw := testprog.Sock{Transport: fs[0], Role: fs[1], Local: fs[2], Remote: fs[3]}

	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Run(ctx, []string{"--all-netns", "--udp"}, nil, &stdout, &stderr); err != nil {
		t.Fatalf("Run: %v\n%s", err, stderr.String())
	}
	lines := strings.Count(stdout.String(), "\n")
	got := map[sockID][]*record.Record{}
	var snaps []*record.Record
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		r, err := codec.Decode(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if r.Type == record.TypeSnapshot {
			snaps = append(snaps, r)
			continue
		}
		id := sockID{r.NetNS, r.Transport, hostPort(r.Local.IP, r.Local.Port), hostPort(r.Remote.IP, r.Remote.Port), ""}
		got[id] = append(got[id], r)
	}
	if len(snaps) != 1 || snaps[0].Namespaces < 4 || snaps[0].Sockets != lines-1 {
		t.Errorf("snapshot records %+v (%d lines); want one, over at least 4 namespaces", snaps, lines)
	}
	check := func(ns uint64, s testprog.Sock) {
		t.Helper()
		id := sockID{ns, s.Transport, s.Local, remoteOf(s), ""}
		rs := got[id]
		if len(rs) != 1 {
			t.Errorf("netns %d, %v: %d records, want 1", ns, s, len(rs))
			return
		}
		state, dir := fixtureWant(s)
		if r := rs[0]; r.State != state || r.Direction != dir {
			t.Errorf("netns %d, %v: state %s direction %s, want %s %s", ns, s, r.State, r.Direction, state, dir)
		}
	}
	for ns, f := range fixtures {
		if len(f.Socks) != 9 {
			t.Fatalf("sockfix held %d sockets, want 9: %v", len(f.Socks), f.Socks)
		}
		for _, s := range f.Socks {
			check(ns, s)
		}
	}
	check(pinned.Ino, tw)
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if line != "" && !strings.Contains(line, "could not read the network namespace of") {
			t.Errorf("stderr: %s", line)
		}
	}
}

// TestIntegrationAllNetNSUnprivileged: nobody cannot enter other
// namespaces; sockdump dumps its own, names once each namespace it
// skipped and why, and counts them in the snapshot record.
func TestIntegrationAllNetNSUnprivileged(t *testing.T) {
	ns := testprog.NewNetNS(t)
	l := listen(t, "tcp4", "127.0.0.1:0")
	out, stderr := runNobody(t, "--all-netns", "--interval", "10ms", "--count", "3")
	socks, snap := parse(t, out)
	if snap == nil || snap.NamespacesSkipped < 1 || snap.Namespaces != 1 {
		t.Errorf("snapshot %+v; want 1 namespace dumped and the test's skipped", snap)
	}
	la := l.Addr().(*net.TCPAddr)
	if socks[endpoints("127.0.0.1", uint16(la.Port), "0.0.0.0", 0)] == nil {
		t.Errorf("own namespace's listener %v missing", la)
	}
	for _, r := range socks {
		if r.NetNS == ns.Ino {
			t.Errorf("a socket of the namespace nobody cannot enter: %+v", r)
		}
	}
	skip := fmt.Sprintf("skipped network namespace net:[%d] (%s)", ns.Ino, ns.Path)
	if n := strings.Count(stderr, skip); n != 1 || !strings.Contains(stderr, "CAP_SYS_ADMIN") {
		t.Errorf("stderr names the skipped namespace %d times, want once with the capability needed:\n%s", n, stderr)
	}
	// The walk of every namespace cannot load for nobody: said at most
	// once over three dumps (not at all while sockdump dumps only its own
	// namespace, where no walk is tried).
	walk := "cannot walk every namespace's sockets at once"
	if n := strings.Count(stderr, walk); n > 1 {
		t.Errorf("stderr says %d times that the walk cannot load, want once at most:\n%s", n, stderr)
	}
}

// TestIntegrationAllNetNSEvents: with --events, the destroy notifications
// of every namespace come, tagged with it, for TCP and UDP, with the
// direction of the last dump.
func TestIntegrationAllNetNSEvents(t *testing.T) {
	bin := testprog.Build(t, "github.com/sockpipe/sockpipe/internal/testprog/sockfix")
	// Several namespaces, dumped every 20 ms, whose sockets all go at
	// once: notifications arrive while namespaces are being dumped, and
	// must still get the direction of the dump that held their sockets.
	const n = 20
	want := map[sockID]bool{}
	inos := map[uint64]bool{}
	var fixtures []*testprog.Fixture
	for range n {
		ns := testprog.NewNetNS(t)
		inos[ns.Ino] = true
		f := testprog.StartFixture(t, ns, bin, "-tcp", "127.0.0.1:8080", "-udp", "[::1]:5353")
		fixtures = append(fixtures, f)
		for _, s := range f.Socks {
			_, dir := fixtureWant(s)
			want[sockID{ns.Ino, s.Transport, s.Local, remoteOf(s), dir}] = true
		}
	}
	lines, cancel, stop := runEvents(t, "--all-netns", "--udp", "--interval", "20ms")
	defer cancel()
	var wg sync.WaitGroup
	for _, f := range fixtures {
		wg.Add(1)
		go func() { defer wg.Done(); f.Stop() }()
	}
	wg.Wait()
	timeout := time.AfterFunc(10*time.Second, cancel)
	defer timeout.Stop()
	found := 0
	var got []sockID
	for found < len(want) && lines.Scan() {
		r, err := codec.Decode(lines.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if r.Type != record.TypeDestroyed || !inos[r.NetNS] {
			continue
		}
		id := sockID{r.NetNS, r.Transport, hostPort(r.Local.IP, r.Local.Port), hostPort(r.Remote.IP, r.Remote.Port), r.Direction}
		got = append(got, id)
		if want[id] {
			found++
		}
	}
	stderr := stop()
	if found != len(want) {
		t.Errorf("found %d of the %d destroyed sockets %v; got %v", found, len(want), want, got)
	}
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if line != "" && !strings.Contains(line, "could not read the network namespace of") {
			t.Errorf("stderr: %s", line)
		}
	}
}

// TestIntegrationEventsQuietEnd: a run that ends by --count says nothing
// of its subscriptions closing.
func TestIntegrationEventsQuietEnd(t *testing.T) {
	testprog.NewNetNS(t) // one namespace more to subscribe in and leave
	for _, args := range [][]string{
		{"--events", "--interval", "10ms", "--count", "2"},
		{"--events", "--udp", "--all-netns", "--interval", "10ms", "--count", "3"},
	} {
		var stdout, stderr bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := Run(ctx, args, nil, &stdout, &stderr)
		cancel()
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
			if line != "" && !strings.Contains(line, "could not read the network namespace of") {
				t.Errorf("%v: stderr: %s", args, line)
			}
		}
	}
}

// TestIntegrationUDPAgreesWithSS dumps bound and connected UDP sockets,
// IPv4 and IPv6, with --udp: ss -u must agree on state, uid and inode,
// and the direction follows the listener rule.
func TestIntegrationUDPAgreesWithSS(t *testing.T) {
	if _, err := exec.LookPath("ss"); err != nil {
		t.Skip("ss not installed")
	}
	bin := testprog.Build(t, "github.com/sockpipe/sockpipe/internal/testprog/sockfix")
	f := testprog.StartFixture(t, testprog.NetNS{}, bin, "-udp", "127.0.0.1:0", "-udp", "[::1]:0")
	out := dumpOnce(t, []uint8{inetdiag.ProtoTCP, inetdiag.ProtoUDP})
	socks := map[string]*record.Record{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		r, err := codec.Decode([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		if r.Type == record.TypeSocket && r.Transport == record.TransportUDP {
			socks[hostPort(r.Local.IP, r.Local.Port)+" "+hostPort(r.Remote.IP, r.Remote.Port)] = r
		}
	}
	ss := runSS(t, "-u")
	for _, s := range f.Socks {
		k := s.Local + " " + remoteOf(s)
		r, o := socks[k], ss[k]
		if r == nil || o.state == "" {
			t.Errorf("%v: sockdump %+v, ss %+v", s, r, o)
			continue
		}
		state, dir := fixtureWant(s)
		if r.State != state || r.Direction != dir || r.State != o.state || uint64(r.UID) != o.uid || r.Inode != o.inode {
			t.Errorf("%v: sockdump %s %s uid %d inode %d; ss %s uid %d inode %d; want %s %s",
				s, r.State, r.Direction, r.UID, r.Inode, o.state, o.uid, o.inode, state, dir)
		}
	}
}

// TestIntegrationAllNetNSGone: a namespace that nothing holds any more is
// dropped (its netlink socket closed, which lets the kernel free it) at
// the first dump that no longer finds it.
func TestIntegrationAllNetNSGone(t *testing.T) {
	bin := testprog.Build(t, "github.com/sockpipe/sockpipe/internal/testprog/sockfix")
	ns := testprog.NewNetNS(t)
	// A TIME_WAIT socket stays in the namespace for a minute without any
	// process: what a dump of it shows while sockdump holds it.
	out, err := exec.Command("ip", "netns", "exec", ns.Name, bin, "-timewait", "127.0.0.1:8080").Output()
	fs := strings.Fields(string(out))
	if err != nil || len(fs) < 4 {
		t.Fatalf("sockfix -timewait: %v: %s", err, out)
	}
	_, port, _ := net.SplitHostPort(fs[2])
	lines, cancel, stop := startRun(t, "--all-netns", "--interval", "20ms")
	timeout := time.AfterFunc(20*time.Second, cancel)
	defer timeout.Stop()
	// The namespace's inode may be given to a namespace made later (by
	// other tests): its TIME_WAIT socket tells it apart.
	tag := []byte(fmt.Sprintf(`"local":{"ip":"127.0.0.1","port":%s}`, port))
	nsTag := []byte(fmt.Sprintf(`"netns":%d`, ns.Ino))
	// dumps counts the snapshots since the namespace was deleted (-1:
	// not yet); held whether the current dump showed the namespace.
	dumps, held, seen := -1, false, false
	var heldAfter []int
	for lines.Scan() {
		line := lines.Bytes()
		switch {
		case bytes.Contains(line, tag) && bytes.Contains(line, nsTag):
			held, seen = true, true
		case bytes.Contains(line, []byte(`"type":"snapshot"`)):
			if dumps >= 0 {
				if held {
					heldAfter = append(heldAfter, dumps)
				}
				dumps++
			}
			if seen && dumps < 0 {
				if out, err := exec.Command("ip", "netns", "delete", ns.Name).CombinedOutput(); err != nil {
					t.Fatalf("ip netns delete: %v: %s", err, out)
				}
				dumps = 0
			}
			held = false
		}
		if dumps >= 10 {
			break
		}
	}
	if !seen || dumps < 10 {
		t.Fatalf("namespace seen %v, %d dumps after deleting it; stderr %s", seen, dumps, stop())
	}
	t.Logf("dumps that still held the deleted namespace: %v", heldAfter)
	// The first dump after the delete may have begun before it.
	if len(heldAfter) > 1 || len(heldAfter) > 0 && heldAfter[0] > 0 {
		t.Errorf("namespace still dumped in dumps %v after it was deleted; want it dropped at once", heldAfter)
	}
}

// TestIntegrationNetNSPath: --netns PATH dumps that namespace alone, its
// records tagged with it, and with --events its destroy notifications.
func TestIntegrationNetNSPath(t *testing.T) {
	bin := testprog.Build(t, "github.com/sockpipe/sockpipe/internal/testprog/sockfix")
	ns := testprog.NewNetNS(t)
	f := testprog.StartFixture(t, ns, bin, "-tcp", "127.0.0.1:8080", "-udp", "127.0.0.1:5353")
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Run(ctx, []string{"--netns", ns.Path, "--udp"}, nil, &stdout, &stderr); err != nil {
		t.Fatalf("Run: %v\n%s", err, stderr.String())
	}
	socks, snap := parse(t, stdout.Bytes())
	if snap == nil || snap.Sockets != len(f.Socks) || len(socks) != len(f.Socks) {
		t.Errorf("%d sockets (snapshot %+v), want the fixture's %d alone", len(socks), snap, len(f.Socks))
	}
	for _, r := range socks {
		if r.NetNS != ns.Ino {
			t.Errorf("record of netns %d, want %d: %+v", r.NetNS, ns.Ino, r)
		}
	}

	lines, cancelEv, stop := runEvents(t, "--netns", ns.Path, "--udp")
	defer cancelEv()
	f.Stop()
	timeout := time.AfterFunc(10*time.Second, cancelEv)
	defer timeout.Stop()
	udp, tcp := 0, 0
	for (udp < 3 || tcp < 3) && lines.Scan() {
		r, err := codec.Decode(lines.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if r.Type != record.TypeDestroyed {
			continue
		}
		if r.NetNS != ns.Ino {
			t.Errorf("destroyed record of netns %d, want %d", r.NetNS, ns.Ino)
		}
		if r.Transport == record.TransportUDP {
			udp++
		} else {
			tcp++
		}
	}
	stop()
	if udp < 3 || tcp < 3 {
		t.Errorf("destroyed records: %d UDP, %d TCP; want the fixture's 3 and 3", udp, tcp)
	}
}
