package sockecs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/ecs/ecscheck"
	"github.com/sockpipe/sockpipe/internal/record"
	"github.com/sockpipe/sockpipe/internal/sockdiff"
	"github.com/sockpipe/sockpipe/internal/sockdump"
	"github.com/sockpipe/sockpipe/internal/sockproc"
	"github.com/sockpipe/sockpipe/internal/sockresolve"
)

// TestIntegrationPipeline runs the whole pipeline on the real kernel,
// sockdump --udp | sockdiff --closed | sockproc | sockresolve | sockecs,
// while loopback TCP connections and UDP sockets open and close between
// dumps, and validates every document: no ECS finding with --strict-ecs,
// only the documented departures by default.
func TestIntegrationPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()

	// A dual-stack listener: IPv4 clients arrive as IPv4-mapped addresses.
	ln6, err := net.Listen("tcp", "[::]:0")
	if err != nil {
		t.Skip("no IPv6:", err)
	}
	defer ln6.Close()
	ln4, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln4.Close()
	var accepted []net.Conn
	var mu sync.Mutex
	for _, ln := range []net.Listener{ln4, ln6} {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				accepted = append(accepted, c)
				mu.Unlock()
			}
		}()
	}
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range accepted {
			c.Close()
		}
	}()
	dial := func(addr string) net.Conn {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Error(err)
			return nil
		}
		return c
	}
	// reset closes a connection with RST, so that no TIME_WAIT twin
	// keeps it in the next dumps; the peer's socket goes too.
	reset := func(c net.Conn) {
		if c != nil {
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
		}
	}
	port4, port6 := ln4.Addr().(*net.TCPAddr).Port, ln6.Addr().(*net.TCPAddr).Port
	udp := newUDPSockets(t)
	// Existing before the first dump; one of them closes later.
	early := dial(ln4.Addr().String())
	closing := dial(net.JoinHostPort("::1", strconv.Itoa(port6)))
	if t.Failed() {
		t.FailNow()
	}
	defer early.Close()
	var c1, c2 net.Conn
	defer func() {
		for _, c := range []net.Conn{c1, c2} {
			if c != nil {
				c.Close()
			}
		}
	}()

	// tap keeps this test's sockets (the host may hold many others) and
	// the snapshot records, and acts between dumps: after the first
	// snapshot it opens two connections (one IPv4 to the dual-stack
	// listener) and closes one; after the fourth it closes the new ones.
	tap := func(_ context.Context, _ []string, stdin io.Reader, stdout, _ io.Writer) error {
		sc := bufio.NewScanner(stdin)
		sc.Buffer(nil, 1<<20)
		snapshots := 0
		for sc.Scan() {
			r, err := codec.Decode(sc.Bytes())
			if err != nil {
				return err
			}
			ours := func(p uint16) bool { return int(p) == port4 || int(p) == port6 }
			if r.Transport == record.TransportUDP {
				ours = udp.ours
			}
			if r.Type == record.TypeSocket && !ours(r.Local.Port) && !ours(r.Remote.Port) {
				continue
			}
			if _, err := stdout.Write(append(sc.Bytes(), '\n')); err != nil {
				return err
			}
			if r.Type != record.TypeSnapshot {
				continue
			}
			switch snapshots++; snapshots {
			case 1:
				c1 = dial(net.JoinHostPort("127.0.0.1", strconv.Itoa(port6)))
				c2 = dial(ln4.Addr().String())
				reset(closing)
				udp.open(t)
			case 4:
				reset(c1)
				reset(c2)
				udp.close()
			}
		}
		return sc.Err()
	}

	records := runStages(t, ctx, []stageRun{
		{"sockdump", sockdump.Run, []string{"--udp", "--interval", "100ms", "--count", "6"}},
		{"tap", tap, nil},
		{"sockdiff", sockdiff.Run, []string{"--closed"}},
		{"sockproc", sockproc.Run, nil},
		{"sockresolve", sockresolve.Run, []string{"--server", "127.0.0.1:1", "--timeout", "200ms"}},
	})

	s := schema(t)
	netns := ownNetNS(t)
	for _, args := range [][]string{{"--strict-ecs"}, nil} {
		var out, errb bytes.Buffer
		if err := Run(ctx, args, bytes.NewReader(records), &out, &errb); err != nil || errb.Len() > 0 {
			t.Fatalf("sockecs %v: %v %s", args, err, errb.String())
		}
		docs := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		seen := map[string]bool{}
		udpSeen := map[string]bool{}
		for _, doc := range docs {
			f, err := ecscheck.Flatten([]byte(doc))
			if err != nil {
				t.Fatalf("sockecs %v: %v in %s", args, err, doc)
			}
			// sockdump --interval 100ms, through sockdiff: every
			// document, the first dump's too.
			if got := f["metricset.period"]; got != float64(100) {
				t.Errorf("sockecs %v: metricset.period %v, want 100, in %s", args, got, doc)
			}
			if got := f["system.socket.netns"]; got != float64(netns) {
				t.Errorf("sockecs %v: system.socket.netns %v, want %d, in %s", args, got, netns, doc)
			}
			if f["network.transport"] == record.TransportUDP {
				udpSeen[udp.describe(t, f, doc)] = true
			}
			for _, f := range s.Check([]byte(doc)) {
				if args != nil || !departures[f.String()] {
					t.Errorf("sockecs %v: %s\nin %s", args, f, doc)
				}
			}
			for _, want := range []string{`"action":"existing_socket"`, `"action":"socket_opened"`, `"action":"socket_closed"`,
				`"direction":"listening"`, `"direction":"ingress"`, `"direction":"egress"`,
				`"ip":"::1"`, `"process":{`, `"host_error":`, `"user":{`} {
				if strings.Contains(doc, want) {
					seen[want] = true
				}
			}
			// A dual-stack listener's IPv4 peer is written dotted, as
			// Metricbeat writes it, in an ipv6 document.
			if strings.Contains(doc, "::ffff:") {
				t.Errorf("sockecs %v: an IPv4-mapped address in %s", args, doc)
			}
			if f["network.type"] == record.FamilyIPv6 && f["system.socket.remote.ip"] == "127.0.0.1" {
				seen["mapped"] = true
			}
			if f["system.socket.listening"] == true {
				seen[`"direction":"listening"`] = true
			}
		}
		for _, want := range []string{`"action":"existing_socket"`, `"action":"socket_opened"`, `"action":"socket_closed"`,
			`"direction":"listening"`, `"direction":"ingress"`, `"direction":"egress"`, "mapped", `"ip":"::1"`,
			`"process":{`, `"host_error":`, `"user":{`} {
			if !seen[want] {
				t.Errorf("sockecs %v: no document with %s", args, want)
			}
		}
		for _, want := range udp.want {
			if !udpSeen[want] {
				t.Errorf("sockecs %v: no UDP document %s; have %v", args, want, udpSeen)
			}
		}
		t.Logf("sockecs %v: %d documents checked, UDP: %v", args, len(docs), udpSeen)
	}
}

// udpSockets are the UDP sockets of the pipeline test, on loopback: an
// unconnected one on IPv4 and one on IPv6 (listening), a connected IPv6
// client of the latter (egress) and a connected socket on the listener's
// own address and port (ingress, as a server that connects a socket per
// peer does); after the first dump a connected IPv4 client opens, and
// after the fourth it closes.
type udpSockets struct {
	srv4, srv6, cli6, peer6, cli4 *net.UDPConn
	ports                         map[int]bool
	pid                           int
	// want are the documents that must come out, by describe.
	want []string
}

// reusePort lets two sockets share the IPv6 listener's address and port.
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return serr
}

func newUDPSockets(t *testing.T) *udpSockets {
	t.Helper()
	u := &udpSockets{ports: map[int]bool{}, pid: os.Getpid()}
	var err error
	if u.srv4, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.srv4.Close() })
	lc := net.ListenConfig{Control: reusePort}
	pc, err := lc.ListenPacket(context.Background(), "udp6", "[::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	u.srv6 = pc.(*net.UDPConn)
	t.Cleanup(func() { u.srv6.Close() })
	if u.cli6, err = net.DialUDP("udp6", nil, u.srv6.LocalAddr().(*net.UDPAddr)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.cli6.Close() })
	d := net.Dialer{LocalAddr: u.srv6.LocalAddr(), Control: reusePort}
	c, err := d.Dial("udp6", u.cli6.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	u.peer6 = c.(*net.UDPConn)
	t.Cleanup(func() { u.peer6.Close() })
	for _, c := range []*net.UDPConn{u.srv4, u.srv6, u.cli6} {
		u.ports[c.LocalAddr().(*net.UDPAddr).Port] = true
	}
	u.want = []string{
		"ipv4 listening existing_socket process",
		"ipv6 listening existing_socket process",
		"ipv6 egress existing_socket process",
		"ipv6 ingress existing_socket process",
		"ipv4 egress socket_opened process",
		"ipv4 egress socket_closed",
	}
	return u
}

// open opens the IPv4 client; its port becomes one of the test's.
func (u *udpSockets) open(t *testing.T) {
	c, err := net.DialUDP("udp4", nil, u.srv4.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Error(err)
		return
	}
	u.ports[c.LocalAddr().(*net.UDPAddr).Port] = true
	u.cli4 = c
}

func (u *udpSockets) close() {
	if u.cli4 != nil {
		u.cli4.Close()
	}
}

func (u *udpSockets) ours(p uint16) bool { return u.ports[int(p)] }

// describe names a UDP document by family, direction, action and, but
// for closed sockets, whether it has this process; it checks what every UDP document must hold.
func (u *udpSockets) describe(t *testing.T, f map[string]any, doc string) string {
	t.Helper()
	dir, _ := f["network.direction"].(string)
	if dir == "" {
		if f["system.socket.listening"] == true {
			dir = record.DirectionListening
		}
	}
	if iana := f["network.iana_number"]; iana != "17" && iana != "4" && iana != "41" {
		t.Errorf("iana_number %v in %s", iana, doc)
	}
	if f["system.socket.tcp_info.bytes_acked"] != nil {
		t.Errorf("tcp_info in a UDP document: %s", doc)
	}
	s := fmt.Sprintf("%v %s %v", f["network.type"], dir, f["event.action"])
	// A closed socket's process is whatever sockproc still knows.
	if f["process.pid"] == float64(u.pid) && f["event.action"] != "socket_closed" {
		s += " process"
	}
	return s
}

// ownNetNS is the inode of this process's network namespace.
func ownNetNS(t *testing.T) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// departures are the findings the default mode may have: where
// Metricbeat's documents depart from ECS.
var departures = map[string]bool{
	"agent.hostname: " + ecscheck.NotInECS:                               true,
	"network.direction: " + ecscheck.NotExpected + `: "listening"`:       true,
	"network.iana_number: " + ecscheck.IANAMismatch + `: "4" for "tcp"`:  true,
	"network.iana_number: " + ecscheck.IANAMismatch + `: "41" for "tcp"`: true,
	"network.iana_number: " + ecscheck.IANAMismatch + `: "4" for "udp"`:  true,
	"network.iana_number: " + ecscheck.IANAMismatch + `: "41" for "udp"`: true,
}

// stageRun is one stage of a pipeline run in-process.
type stageRun struct {
	name string
	run  cli.RunFunc
	args []string
}

// runStages runs the stages as a pipeline on empty input and returns the
// last one's output.
func runStages(t *testing.T, ctx context.Context, stages []stageRun) []byte {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var in io.Reader = strings.NewReader("")
	var wg sync.WaitGroup
	errs := make([]error, len(stages))
	stderrs := make([]bytes.Buffer, len(stages))
	for i, s := range stages {
		pr, pw := io.Pipe()
		wg.Add(1)
		go func(stdin io.Reader) {
			defer wg.Done()
			errs[i] = s.run(ctx, s.args, stdin, pw, &stderrs[i])
			pw.CloseWithError(errs[i])
			if errs[i] != nil {
				cancel()
			}
			if r, ok := stdin.(*io.PipeReader); ok {
				r.CloseWithError(errors.New("next stage ended"))
			}
		}(in)
		in = pr
	}
	out, err := io.ReadAll(in)
	wg.Wait()
	for i, e := range errs {
		if e != nil {
			t.Errorf("%s: %v\n%s", stages[i].name, e, stderrs[i].String())
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}
