package ownertable

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockpipe/sockpipe/internal/record"
	"github.com/sockpipe/sockpipe/internal/testprog"
)

// The test binary doubles as the child that makes sockets: with
// OWNERTABLE_CHILD set it runs child and exits.
func TestMain(m *testing.M) {
	if mode := os.Getenv("OWNERTABLE_CHILD"); mode != "" {
		if err := child(mode, os.Getenv("OWNERTABLE_ADDR")); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child makes one socket, prints "PID COOKIE [ADDR]" and holds it until
// its standard input closes. Modes: connect (to addr), listen (then
// accepts one connection and prints the accepted one's cookie on a
// second line), udp.
func child(mode, addr string) error {
	var conn syscall.Conn
	switch mode {
	case "connect":
		c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
		if err != nil {
			return err
		}
		conn = c.(*net.TCPConn)
	case "listen":
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		lc, err := cookie(l.(*net.TCPListener))
		if err != nil {
			return err
		}
		fmt.Printf("%d %d %s\n", os.Getpid(), lc, l.Addr())
		l.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
		c, err := l.Accept()
		if err != nil {
			return err
		}
		conn = c.(*net.TCPConn)
	case "udp":
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		conn = c.(*net.UDPConn)
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	c, err := cookie(conn)
	if err != nil {
		return err
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		fmt.Printf("%d %d %s\n", os.Getpid(), c, tc.LocalAddr())
	} else {
		fmt.Printf("%d %d\n", os.Getpid(), c)
	}
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// cookie returns the socket cookie of a connection.
func cookie(c syscall.Conn) (uint64, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		v    uint64
		gerr error
	)
	if err := rc.Control(func(fd uintptr) {
		v, gerr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE)
	}); err != nil {
		return 0, err
	}
	return v, gerr
}

// proc is a running child.
type proc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

// start runs the child of mode under the name comm, as nobody when asked.
func start(t *testing.T, bin, mode, addr string, nobody bool) *proc {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "OWNERTABLE_CHILD="+mode, "OWNERTABLE_ADDR="+addr)
	cmd.Stderr = os.Stderr
	if nobody {
		testprog.AsNobody(t, cmd)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	t.Cleanup(p.stop)
	return p
}

func (p *proc) stop() {
	if p.stdin != nil {
		p.stdin.Close()
		p.cmd.Wait()
		p.stdin = nil
	}
}

// line reads the child's next line: its pid, a cookie and the rest.
func (p *proc) line(t *testing.T) (pid int, cookie uint64, rest string) {
	t.Helper()
	if !p.out.Scan() {
		t.Fatalf("child ended early: %v", p.out.Err())
	}
	f := strings.Fields(p.out.Text())
	pid, _ = strconv.Atoi(f[0])
	cookie, _ = strconv.ParseUint(f[1], 10, 64)
	if len(f) > 2 {
		rest = f[2]
	}
	return pid, cookie, rest
}

// openTable opens a table for a test, which needs root.
func openTable(t *testing.T, opts Options) *Table {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to load BPF programs")
	}
	tab, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { tab.Close() })
	return tab
}

// startTime is the start of a process as /proc/PID/stat gives it, in the
// table's terms.
func startTime(t *testing.T, pid int) time.Time {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ticks, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	boot, err := bootTime("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	return boot.Add(time.Duration(ticks) * (time.Second / userHZ)).UTC()
}

func mustLookup(t *testing.T, tab *Table, cookie uint64) record.Owner {
	t.Helper()
	o, err := tab.Lookup(cookie)
	if err != nil {
		t.Fatalf("Lookup(%d): %v", cookie, err)
	}
	if o == nil {
		t.Fatalf("Lookup(%d): not in the table", cookie)
	}
	return *o
}

// TestConnectAndAccept: both ends of a connection made by two child
// processes get their own process, and the accepted one the listener's.
func TestConnectAndAccept(t *testing.T) {
	tab := openTable(t, Options{})
	bin := testprog.CopySelf(t, "owner-child")
	server := start(t, bin, "listen", "", false)
	spid, lcookie, addr := server.line(t)
	client := start(t, bin, "connect", addr, true)
	cpid, ccookie, caddr := client.line(t)
	_, acookie, _ := server.line(t)

	// The connecting end's addresses, as it was established.
	_, conn, err := tab.LookupConn(ccookie)
	if err != nil {
		t.Fatal(err)
	}
	if conn.Local.String() != caddr || conn.Remote.String() != addr {
		t.Errorf("client's addresses %v, want %s -> %s", conn, caddr, addr)
	}
	if _, conn, _ := tab.LookupConn(acookie); conn != (Conn{}) {
		t.Errorf("accepted end's addresses %v, want none", conn)
	}

	for _, c := range []struct {
		what   string
		cookie uint64
		pid    int
		uid    uint32
		via    string
	}{
		{"listener", lcookie, spid, 0, record.OwnerListen},
		{"client", ccookie, cpid, testprog.Nobody, record.OwnerConnect},
		{"accepted", acookie, spid, 0, record.OwnerAccept},
	} {
		o := mustLookup(t, tab, c.cookie)
		if o.PID != c.pid || o.Name != "owner-child" || o.UID != c.uid || o.GID != c.uid || o.Via != c.via {
			t.Errorf("%s: owner %+v, want pid %d, name owner-child, uid and gid %d, via %s", c.what, o, c.pid, c.uid, c.via)
		}
		if want := startTime(t, c.pid); !o.Start.Equal(want) {
			t.Errorf("%s: start %v, want %v as in /proc/%d/stat", c.what, o.Start, want, c.pid)
		}
		if o.CgroupID == 0 {
			t.Errorf("%s: no cgroup id", c.what)
		}
	}
}

// TestUDPWithCgroup2: with a cgroup v2 hierarchy (mounted here on a
// temporary directory, in whose root every process is), the creator of a
// UDP socket is recorded.
func TestUDPWithCgroup2(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to mount cgroup2 and load BPF programs")
	}
	dir := t.TempDir()
	if err := unix.Mount("none", dir, "cgroup2", 0, ""); err != nil {
		t.Skipf("cannot mount cgroup2: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	tab := openTable(t, Options{Cgroup: dir})
	if tab.Warning != nil {
		t.Fatalf("warning: %v", tab.Warning)
	}
	bin := testprog.CopySelf(t, "owner-udp")
	p := start(t, bin, "udp", "", true)
	pid, c, _ := p.line(t)
	o := mustLookup(t, tab, c)
	if o.PID != pid || o.Name != "owner-udp" || o.UID != testprog.Nobody || o.Via != record.OwnerCreate {
		t.Errorf("owner %+v, want pid %d, name owner-udp, uid %d, via create", o, pid, testprog.Nobody)
	}
}

// TestNoCgroup2: without a cgroup v2 hierarchy the table still covers
// TCP, and says that UDP is not.
func TestNoCgroup2(t *testing.T) {
	tab := openTable(t, Options{Cgroup: t.TempDir()}) // not a cgroup
	if tab.Warning == nil || !strings.Contains(tab.Warning.Error(), "UDP sockets get no owner") {
		t.Errorf("warning %v, want one about UDP", tab.Warning)
	}
	l, c, _ := testprog.TCPPair(t)
	_ = l
	ck, err := cookie(c.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	if o := mustLookup(t, tab, ck); o.PID != os.Getpid() {
		t.Errorf("owner %+v, want pid %d", o, os.Getpid())
	}
}

// TestUnprivileged: without the privileges, Open says which it needs.
func TestUnprivileged(t *testing.T) {
	if os.Getuid() != 0 {
		if _, err := Open(Options{}); !errors.Is(err, ErrPermission) {
			t.Errorf("Open: %v, want %v", err, ErrPermission)
		}
		return
	}
	bin := testprog.CopySelf(t, "owner-nobody")
	cmd := exec.Command(bin, "-test.run", "^TestUnprivileged$")
	testprog.AsNobody(t, cmd)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("as nobody: %v\n%s", err, out)
	}
}

func TestLookupMissing(t *testing.T) {
	tab := openTable(t, Options{Cgroup: t.TempDir()})
	for _, c := range []uint64{0, 1 << 62} {
		if o, err := tab.Lookup(c); o != nil || err != nil {
			t.Errorf("Lookup(%d) = %v, %v; want nothing", c, o, err)
		}
	}
}

func value(pid, uid, gid, via uint32, cg, start uint64, comm string) []byte {
	b := make([]byte, valueSize)
	e := binary.NativeEndian
	e.PutUint32(b[0:], pid)
	e.PutUint32(b[4:], uid)
	e.PutUint32(b[8:], gid)
	e.PutUint32(b[12:], via)
	e.PutUint64(b[16:], cg)
	e.PutUint64(b[24:], start)
	copy(b[32:], comm)
	return b
}

// withConn sets the addresses of a value.
func withConn(b []byte, family, lport, rport uint16, laddr, raddr []byte) []byte {
	e := binary.NativeEndian
	e.PutUint16(b[48:], family)
	e.PutUint16(b[50:], lport)
	e.PutUint16(b[52:], rport)
	copy(b[56:72], laddr)
	copy(b[72:88], raddr)
	return b
}

func TestDecodeConn(t *testing.T) {
	v6 := netip.MustParseAddr("2001:db8::1").As16()
	for _, c := range []struct {
		b    []byte
		want string
	}{
		{withConn(value(1, 0, 0, viaConnect, 0, 0, "x"), 2, 40000, 80, []byte{127, 0, 0, 3}, []byte{127, 0, 0, 2}), "{127.0.0.3:40000 127.0.0.2:80}"},
		{withConn(value(1, 0, 0, viaConnect, 0, 0, "x"), 10, 40000, 443, v6[:], v6[:]), "{[2001:db8::1]:40000 [2001:db8::1]:443}"},
		{value(1, 0, 0, viaConnect, 0, 0, "x"), "{invalid AddrPort invalid AddrPort}"},
		{withConn(value(1, 0, 0, viaConnect, 0, 0, "x"), 2, 0, 80, nil, nil), "{invalid AddrPort invalid AddrPort}"},
		{withConn(value(1, 0, 0, viaConnect, 0, 0, "x"), 7, 1, 1, nil, nil), "{invalid AddrPort invalid AddrPort}"},
		{nil, "{invalid AddrPort invalid AddrPort}"},
	} {
		if got := fmt.Sprint(DecodeConn(c.b)); got != c.want {
			t.Errorf("DecodeConn = %s, want %s", got, c.want)
		}
	}
}

func TestDecode(t *testing.T) {
	boot := time.Unix(1_700_000_000, 0)
	o, err := Decode(value(42, 1000, 100, viaAccept, 7, 12_345_678_901, "nginx"), boot)
	if err != nil {
		t.Fatal(err)
	}
	want := record.Owner{PID: 42, Name: "nginx", UID: 1000, GID: 100, CgroupID: 7,
		Start: boot.Add(12_340 * time.Millisecond).UTC(), Via: record.OwnerAccept}
	if o.PID != want.PID || o.Name != want.Name || o.UID != want.UID || o.GID != want.GID ||
		o.CgroupID != want.CgroupID || !o.Start.Equal(want.Start) || o.Via != want.Via {
		t.Errorf("Decode = %+v, want %+v", o, want)
	}
	for _, b := range [][]byte{nil, make([]byte, valueSize), value(1, 0, 0, 9, 0, 0, "x"), value(1<<31, 0, 0, 1, 0, 0, "x")} {
		if _, err := Decode(b, boot); err == nil {
			t.Errorf("Decode(%x): no error", b)
		}
	}
	// A name of 16 bytes with no terminator, and invalid UTF-8.
	o, err = Decode(value(1, 0, 0, viaConnect, 0, 0, "0123456789abcdef"), boot)
	if err != nil || o.Name != "0123456789abcdef" {
		t.Errorf("Decode: %q, %v", o.Name, err)
	}
	o, _ = Decode(value(1, 0, 0, viaConnect, 0, 0, "a\xffb"), boot)
	if o.Name != "a\uFFFDb" {
		t.Errorf("Decode: %q", o.Name)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(value(42, 1000, 100, viaAccept, 7, 12_345_678_901, "nginx"))
	f.Add(value(1, 0, 0, viaConnect, 0, 0, "0123456789abcdef"))
	f.Add(value(1, 0, 0, viaCreate, 0, 0, "a\xffb"))
	f.Add([]byte{})
	boot := time.Unix(1_700_000_000, 0)
	f.Add(withConn(value(1, 0, 0, viaConnect, 0, 0, "curl"), 2, 40000, 80, []byte{127, 0, 0, 1}, []byte{127, 0, 0, 2}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if c := DecodeConn(b); c != (Conn{}) && (!c.Local.IsValid() || !c.Remote.IsValid() || c.Local.Port() == 0 || c.Remote.Port() == 0) {
			t.Errorf("DecodeConn(%x) = %v", b, c)
		}
		o, err := Decode(b, boot)
		if err != nil {
			return
		}
		if o.PID < 0 || o.Via == "" || len(o.Name) > 16*3 {
			t.Errorf("Decode(%x) = %+v", b, o)
		}
	})
}

func TestCgroup2Root(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"36 25 0:31 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n", "/sys/fs/cgroup"},
		{"36 25 0:31 / /tmp/a\\040b rw - cgroup2 none rw\n37 25 0:32 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n", "/sys/fs/cgroup/unified"},
		{"36 25 0:31 / /tmp/a\\040b rw shared:9 - cgroup2 none rw\n", "/tmp/a b"},
		{"36 25 0:31 /sub /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", ""},
		{"30 25 0:26 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n", ""},
		{"garbage\n\n", ""},
	} {
		got, err := cgroup2Root(c.in)
		if got != c.want || (err == nil) != (c.want != "") {
			t.Errorf("cgroup2Root(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func FuzzCgroup2Root(f *testing.F) {
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		f.Add(string(b))
	}
	f.Add("36 25 0:31 / /tmp/a\\040b rw shared:9 - cgroup2 none rw\n")
	f.Fuzz(func(t *testing.T, s string) {
		cgroup2Root(s)
	})
}

// TestFresh: Fresh names the sockets recorded since its last call, once.
func TestFresh(t *testing.T) {
	tab := openTable(t, Options{})
	if err := tab.Fresh(func(uint64) {}); err != nil { // what came before
		t.Fatal(err)
	}
	l, c, s := testprog.TCPPair(t)
	want := map[uint64]string{}
	for what, x := range map[string]syscall.Conn{"listener": l.(*net.TCPListener), "client": c.(*net.TCPConn), "server": s.(*net.TCPConn)} {
		k, err := cookie(x)
		if err != nil {
			t.Fatal(err)
		}
		want[k] = what
	}
	got := map[uint64]bool{}
	if err := tab.Fresh(func(k uint64) { got[k] = true }); err != nil {
		t.Fatal(err)
	}
	for k, what := range want {
		if !got[k] {
			t.Errorf("%s (cookie %d) not fresh: %v", what, k, got)
		}
	}
	again := 0
	if err := tab.Fresh(func(k uint64) {
		if _, ok := want[k]; ok {
			again++
		}
	}); err != nil {
		t.Fatal(err)
	}
	if again != 0 {
		t.Errorf("%d sockets fresh twice", again)
	}
}
