package socktable

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockpipe/sockpipe/internal/inetdiag"
	"github.com/sockpipe/sockpipe/internal/record"
	"github.com/sockpipe/sockpipe/internal/testprog"
)

// fixtureEnv names what TestFixture holds when it runs as the fixture
// of the tests below, inside their network namespace.
const fixtureEnv = "SOCKTABLE_FIXTURE"

// TestFixture is no test of its own: run with SOCKTABLE_FIXTURE set (by
// startFixture, in a test's network namespace), it holds loopback TCP
// sockets until its standard input closes. Always: an MPTCP listener
// (Go's default) with a plain connection (its client's socket held by two
// descriptors) and an MPTCP one to it, accepted;
// plain listeners on ::1 and on :: with an IPv6 and an IPv4-mapped
// connection, accepted; UDP sockets, bound, connected and without a port. With "unaccepted", a connection that waits in a
// listener's accept queue; with "synq", a connection whose handshake left
// a request socket at its listener (TCP_DEFER_ACCEPT, no data sent); with
// "timewait", a connection that it closes first, left in TIME_WAIT.
func TestFixture(t *testing.T) {
	mode := os.Getenv(fixtureEnv)
	if mode == "" {
		t.Skip("the fixture of the integration tests")
	}
	if err := fixture(mode); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func fixture(mode string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var keep []io.Closer
	defer func() {
		for _, c := range keep {
			c.Close()
		}
	}()
	listen := func(network, addr string, mptcp bool) (net.Listener, error) {
		lc := net.ListenConfig{}
		lc.SetMultipathTCP(mptcp)
		l, err := lc.Listen(ctx, network, addr)
		if err == nil {
			keep = append(keep, l)
		}
		return l, err
	}
	connect := func(l net.Listener, network, addr string, mptcp, accept bool) error {
		d := net.Dialer{Timeout: 5 * time.Second}
		d.SetMultipathTCP(mptcp)
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return err
		}
		keep = append(keep, c)
		if !accept {
			return nil
		}
		l.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
		a, err := l.Accept()
		if err != nil {
			return err
		}
		keep = append(keep, a)
		return nil
	}
	port := func(l net.Listener) string { return strconv.Itoa(l.Addr().(*net.TCPAddr).Port) }

	lm, err := listen("tcp4", "127.0.0.1:0", true)
	if err != nil {
		return err
	}
	if err := connect(lm, "tcp4", lm.Addr().String(), false, true); err != nil {
		return err
	}
	// A second descriptor of that client's socket (File dups it): the
	// walk lists the socket once.
	dup, err := keep[len(keep)-2].(*net.TCPConn).File()
	if err != nil {
		return err
	}
	keep = append(keep, dup)
	if err := connect(lm, "tcp4", lm.Addr().String(), true, true); err != nil {
		return err
	}
	l6, err := listen("tcp6", "[::1]:0", false)
	if err != nil {
		return err
	}
	if err := connect(l6, "tcp6", l6.Addr().String(), false, true); err != nil {
		return err
	}
	ld, err := listen("tcp", "[::]:0", false)
	if err != nil {
		return err
	}
	if err := connect(ld, "tcp4", "127.0.0.1:"+port(ld), false, true); err != nil {
		return err
	}
	// UDP: a bound socket, one connected to it, one on ::1, and one
	// without a port, which no table holds.
	b4, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	keep = append(keep, b4)
	c4, err := net.Dial("udp4", b4.LocalAddr().String())
	if err != nil {
		return err
	}
	keep = append(keep, c4)
	b6, err := net.ListenPacket("udp6", "[::1]:0")
	if err != nil {
		return err
	}
	keep = append(keep, b6)
	unbound, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(unbound)
	// Raw sockets of the protocols of TCP and UDP, one connected: in no
	// table that a dump walks, and not in its counts.
	for _, proto := range []int{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
		raw, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		defer unix.Close(raw)
		if err := unix.Connect(raw, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return err
		}
	}
	if strings.Contains(mode, "unaccepted") {
		if err := connect(ld, "tcp4", "127.0.0.1:"+port(ld), false, false); err != nil {
			return err
		}
	}
	if strings.Contains(mode, "synq") {
		// With TCP_DEFER_ACCEPT, a handshake without data leaves a
		// request socket at the listener.
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 30)
			}); err != nil {
				return err
			}
			return serr
		}}
		lc.SetMultipathTCP(false)
		l, err := lc.Listen(ctx, "tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		keep = append(keep, l)
		if err := connect(l, "tcp4", l.Addr().String(), false, false); err != nil {
			return err
		}
	}
	if strings.Contains(mode, "timewait") {
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err := d.DialContext(ctx, "tcp6", l6.Addr().String())
		if err != nil {
			return err
		}
		l6.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
		a, err := l6.Accept()
		if err != nil {
			return err
		}
		// The client closes first: its end waits in TIME_WAIT once the
		// server's close reaches it.
		c.Close()
		a.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := a.Read(make([]byte, 1)); err != io.EOF {
			return fmt.Errorf("server end: %v, want EOF", err)
		}
		a.Close()
	}
	fmt.Println("ready", os.Getpid())
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// startFixture runs TestFixture in mode inside ns and returns its pid;
// it ends when the test does.
func startFixture(t *testing.T, ns testprog.NetNS, mode string) int {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns.Name, exe, "-test.run", "^TestFixture$")
	cmd.Env = append(os.Environ(), fixtureEnv+"="+mode)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line <- sc.Text()
			if strings.HasPrefix(sc.Text(), "ready ") {
				io.Copy(io.Discard, stdout)
				return
			}
		}
		close(line)
	}()
	for {
		select {
		case l, ok := <-line:
			if !ok {
				t.Fatal("the fixture ended before it was ready")
			}
			if pid, ok := strings.CutPrefix(l, "ready "); ok {
				n, err := strconv.Atoi(pid)
				if err != nil {
					t.Fatal(l)
				}
				return n
			}
			if strings.HasPrefix(l, "error") {
				t.Fatalf("fixture: %s", l)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the fixture is not ready after 30s")
		}
	}
}

// netlinkDump dumps ns's TCP and UDP sockets with netlink, as sockdump
// does, with the fields the walk does not give zeroed.
func netlinkDump(t *testing.T, ns testprog.NetNS) []inetdiag.Socket {
	t.Helper()
	return netlinkDumpStates(t, ns, inetdiag.ActiveStates, true)
}

// netlinkDumpStates is netlinkDump of the TCP sockets in the given
// states, and with udp of every UDP socket.
func netlinkDumpStates(t *testing.T, ns testprog.NetNS, states uint32, udp bool) []inetdiag.Socket {
	t.Helper()
	fd, err := unix.Open(ns.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	c, err := inetdiag.Dial(fd)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out []inetdiag.Socket
	add := func(s *inetdiag.Socket) error {
		d := *s
		d.Timer, d.Retrans, d.Expires, d.RQueue, d.WQueue, d.Info = 0, 0, 0, 0, 0, nil
		out = append(out, d)
		return nil
	}
	if err := c.Dump(inetdiag.AFUnspec, inetdiag.ProtoTCP, states, add); err != nil {
		t.Fatal(err)
	}
	for _, fam := range []uint8{inetdiag.AFInet, inetdiag.AFInet6} {
		if !udp {
			break
		}
		if err := c.Dump(fam, inetdiag.ProtoUDP, inetdiag.ActiveStates, add); err != nil {
			t.Fatal(err)
		}
	}
	sortSockets(out)
	return out
}

func sortSockets(s []inetdiag.Socket) {
	slices.SortFunc(s, func(a, b inetdiag.Socket) int {
		return cmp.Or(cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Inode, b.Inode), cmp.Compare(a.Cookie, b.Cookie),
			cmp.Compare(a.SrcPort, b.SrcPort), cmp.Compare(a.DstPort, b.DstPort), cmp.Compare(a.State, b.State))
	})
}

func openWalker(t *testing.T) *Walker {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("the walk and the test's network namespace need root")
	}
	w, err := Open()
	if err != nil {
		t.Skipf("the walk cannot load here: %v", err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// walkNS walks the host and returns ns's sockets, and whether they cover
// it, by the sockstat of the fixture pid: its TCP sockets, with the
// states to add, and its UDP ones (udpErr).
func walkNS(t *testing.T, w *Walker, ns testprog.NetNS, pid int) (socks []Socket, states uint32, err, udpErr error) {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/net", pid)
	before, err := ReadSockstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	all, err := w.Walk()
	if err != nil {
		t.Fatal(err)
	}
	after, err := ReadSockstat(dir)
	if err != nil {
		t.Fatal(err)
	}
	socks = slices.Clone(all[ns.Ino])
	states, err = Covered(socks, before, after)
	return socks, states, err, CoveredUDP(socks, before, after)
}

// TestIntegrationSameAsNetlink dumps the same population in a network
// namespace of the test's own with netlink and with the walk: every
// socket, every field the same.
func TestIntegrationSameAsNetlink(t *testing.T) {
	w := openWalker(t)
	ns := testprog.NewNetNS(t)
	pid := startFixture(t, ns, "plain")
	// The first dump makes the cookies of sockets that had none.
	first := netlinkDump(t, ns)
	socks, states, cerr, uerr := walkNS(t, w, ns, pid)
	want := netlinkDump(t, ns)
	if !slices.Equal(first, want) {
		t.Logf("the two netlink dumps differ:\n%v\n%v", first, want)
	}
	got := make([]inetdiag.Socket, len(socks))
	mptcp := 0
	for i := range socks {
		got[i] = socks[i].Inetdiag()
		if socks[i].MPTCP {
			mptcp++
		}
	}
	sortSockets(got)
	if !slices.Equal(got, want) {
		t.Errorf("walk (%d sockets):\n%s\nnetlink (%d):\n%s", len(got), lines(got), len(want), lines(want))
	}
	// TCP: 3 listeners, 4 connections with both ends; UDP: 3 sockets.
	if len(want) != 14 {
		t.Errorf("netlink lists %d sockets, want 14:\n%s", len(want), lines(want))
	}
	t.Logf("walk and netlink:\n%s", lines(got))
	if mptcp < 1 {
		t.Errorf("no socket found through an MPTCP socket (%d)", mptcp)
	}
	if cerr != nil || states != 0 {
		t.Errorf("not covered: %v, states %#x", cerr, states)
	}
	if uerr != nil {
		t.Errorf("UDP not covered: %v", uerr)
	}
}

// TestIntegrationNotCovered checks that a connection waiting to be
// accepted makes the namespace not covered, and that one in TIME_WAIT, or
// a request socket at a listener, makes it covered with that state to
// add: the walk's sockets and a netlink dump of that state alone are then
// what a whole dump lists.
func TestIntegrationNotCovered(t *testing.T) {
	w := openWalker(t)
	t.Run("unaccepted", func(t *testing.T) {
		ns := testprog.NewNetNS(t)
		pid := startFixture(t, ns, "unaccepted")
		netlinkDump(t, ns) // the cookies
		if socks, states, err, _ := walkNS(t, w, ns, pid); err == nil {
			t.Errorf("covered (states %#x) with %d sockets, netlink lists:\n%s", states, len(socks), lines(netlinkDump(t, ns)))
		} else {
			t.Logf("not covered: %v", err)
		}
	})
	// A request socket is asked for as TCP_NEW_SYN_RECV and described as
	// TCP_SYN_RECV.
	for _, c := range []struct {
		mode         string
		state, shown uint8
	}{{"timewait", StateTimeWait, StateTimeWait}, {"synq", StateNewSynRecv, 3}} {
		t.Run(c.mode, func(t *testing.T) { addedByState(t, w, c.mode, c.state, c.shown) })
	}
}

// addedByState checks that the fixture in mode leaves one socket in
// state that the walk does not see, and that a netlink dump of that state
// adds it (described in state shown).
func addedByState(t *testing.T, w *Walker, mode string, state, shown uint8) {
	t.Helper()
	ns := testprog.NewNetNS(t)
	pid := startFixture(t, ns, mode)
	netlinkDump(t, ns) // the cookies
	socks, states, err, _ := walkNS(t, w, ns, pid)
	if err != nil || states != 1<<state {
		t.Fatalf("%v, states %#x; want covered with the sockets in state %d to add", err, states, state)
	}
	want := netlinkDump(t, ns)
	got := netlinkDumpStates(t, ns, states, false)
	if len(got) != 1 || got[0].State != shown {
		t.Errorf("the dump of state %d:\n%s", state, lines(got))
	}
	for i := range socks {
		got = append(got, socks[i].Inetdiag())
	}
	sortSockets(got)
	if !slices.Equal(got, want) {
		t.Errorf("walk and state %d (%d sockets):\n%s\nnetlink (%d):\n%s", state, len(got), lines(got), len(want), lines(want))
	}
}

func lines(socks []inetdiag.Socket) string {
	var b strings.Builder
	for _, s := range socks {
		fmt.Fprintf(&b, "  %d %s %v:%d %v:%d if %d uid %d ino %d cookie %d\n",
			s.Protocol, record.StateName(s.State), s.Src, s.SrcPort, s.Dst, s.DstPort, s.Interface, s.UID, s.Inode, s.Cookie)
	}
	return b.String()
}
