package sockecs

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/ecs/ecscheck"
	"github.com/sockpipe/sockpipe/internal/record"
	"github.com/sockpipe/sockpipe/internal/revdns/dnstest"
	"github.com/sockpipe/sockpipe/internal/sockdump"
	"github.com/sockpipe/sockpipe/internal/sockproc"
	"github.com/sockpipe/sockpipe/internal/sockresolve"
	"github.com/sockpipe/sockpipe/internal/version"
)

// TestIntegrationMetricbeatDropIn runs sockdump --interval | sockproc |
// sockresolve | sockecs over real sockets and checks the fields where
// Metricbeat's documents are easy to miss: a dual-stack listener's IPv4
// client (dotted addresses in an ipv6 document), a time-wait socket and a
// listener whose process is not found (Metricbeat's state names in
// error.code), root's names from a passwd file without root, an empty DNS
// answer, the period of the dumps, the agent; and, under --strict-ecs, no
// system.socket.direction (an alias in Metricbeat's fields).
func TestIntegrationMetricbeatDropIn(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: sockproc reports a process not found only when it can see every process")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ln6, err := net.Listen("tcp", "[::]:0")
	if err != nil {
		t.Skip("no IPv6:", err)
	}
	defer ln6.Close()
	lnTW, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lnTW.Close()
	port6, portTW := ln6.Addr().(*net.TCPAddr).Port, lnTW.Addr().(*net.TCPAddr).Port

	// An IPv4 client of the dual-stack listener, open for the whole run.
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln6.Accept(); err == nil {
			accepted <- c
		}
	}()
	c4, err := net.Dial("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port6)))
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	select {
	case s := <-accepted:
		defer s.Close()
	case <-ctx.Done():
		t.Fatal("no connection accepted")
	}
	// A connection that the client closes first: its socket is left in
	// time-wait, without an inode.
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		s, err := lnTW.Accept()
		if err != nil {
			return
		}
		io.Copy(io.Discard, s)
		s.Close()
	}()
	ctw, err := net.Dial("tcp4", lnTW.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctw.Close()
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("the time-wait connection did not close")
	}

	// No process can be found in an empty proc directory; the passwd
	// file has no root.
	dir := t.TempDir()
	procDir, passwd := filepath.Join(dir, "proc"), filepath.Join(dir, "passwd")
	if err := os.Mkdir(procDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(passwd, []byte("nobody:x:65534:65534:Nobody:/:/bin/false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dns := dnstest.Start(t)
	dns.SetDefault(func(netip.Addr) dnstest.Answer { return dnstest.Answer{} }) // an empty answer

	ours := func(p uint16) bool { return int(p) == port6 || int(p) == portTW }
	tap := func(_ context.Context, _ []string, stdin io.Reader, stdout, _ io.Writer) error {
		sc := bufio.NewScanner(stdin)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			r, err := codec.Decode(sc.Bytes())
			if err != nil {
				return err
			}
			if r.Type == record.TypeSocket && (r.Transport != record.TransportTCP || !ours(r.Local.Port) && !ours(r.Remote.Port)) {
				continue
			}
			if _, err := stdout.Write(append(sc.Bytes(), '\n')); err != nil {
				return err
			}
		}
		return sc.Err()
	}
	records := runStages(t, ctx, []stageRun{
		{"sockdump", sockdump.Run, []string{"--interval", "100ms", "--count", "2"}},
		{"tap", tap, nil},
		{"sockproc", sockproc.Run, []string{"--proc", procDir, "--passwd", passwd}},
		{"sockresolve", sockresolve.Run, []string{"--server", dns.Addr, "--timeout", "2s"}},
	})

	notFound := regexp.MustCompile(`^process not found\. inode=[1-9][0-9]*, tcp_state=LISTEN$`)
	for _, strict := range []bool{false, true} {
		var args []string
		if strict {
			args = []string{"--strict-ecs"}
		}
		var out, errb bytes.Buffer
		if err := Run(ctx, args, bytes.NewReader(records), &out, &errb); err != nil || errb.Len() > 0 {
			t.Fatalf("sockecs %v: %v %s", args, err, errb.String())
		}
		seen := map[string]bool{}
		for _, doc := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
			f, err := ecscheck.Flatten([]byte(doc))
			if err != nil {
				t.Fatalf("sockecs %v: %v in %s", args, err, doc)
			}
			fail := func(what string) { t.Errorf("sockecs %v: %s in %s", args, what, doc) }
			if f["metricset.period"] != float64(100) {
				fail("metricset.period is not 100")
			}
			if f["agent.type"] != "sockpipe" || f["agent.version"] != version.String() {
				fail("agent.type and agent.version are not sockpipe and " + version.String())
			}
			if strings.Contains(doc, "::ffff:") {
				fail("an IPv4-mapped address")
			}
			if _, ok := f["system.socket.direction"]; ok {
				fail("system.socket.direction")
			}
			code, _ := f["error.code"].(string)
			local, _ := f["system.socket.local.port"].(float64)
			remote, _ := f["system.socket.remote.port"].(float64)
			switch {
			case int(local) == port6 && remote == 0:
				seen["listener"] = true
				if !notFound.MatchString(code) {
					fail("the listener's error.code is not Metricbeat's")
				}
				if strict && f["system.socket.listening"] != true {
					fail("no system.socket.listening")
				}
			case int(local) == port6:
				seen["mapped"] = true
				if f["network.type"] != "ipv6" || f["system.socket.local.ip"] != "127.0.0.1" || f["system.socket.remote.ip"] != "127.0.0.1" ||
					f["source.ip"] != "127.0.0.1" || f["destination.ip"] != "127.0.0.1" {
					fail("the dual-stack listener's IPv4 client is not dotted in an ipv6 document")
				}
				if strict && f["server.ip"] != "127.0.0.1" {
					fail("server.ip is not dotted")
				}
			case int(remote) == portTW && code == "process has exited. inode=0, tcp_state=TIME-WAIT":
				seen["time-wait"] = true
				if f["user.name"] != "root" || f["user.full_name"] != "root" {
					fail("root is not root")
				}
			}
			if remote != 0 && f["system.socket.remote.host_error"] != "empty dns response" {
				fail("host_error is not Metricbeat's for an empty answer")
			}
		}
		t.Logf("sockecs %v: %d documents checked: %v", args, strings.Count(out.String(), "\n"), seen)
		for _, want := range []string{"listener", "mapped", "time-wait"} {
			if !seen[want] {
				t.Errorf("sockecs %v: no %s document in\n%s", args, want, out.String())
			}
		}
	}
}
