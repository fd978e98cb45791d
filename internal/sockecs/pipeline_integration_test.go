package sockecs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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
// sockdump | sockdiff --closed | sockproc | sockresolve | sockecs, while
// loopback connections open and close between dumps, and validates every
// document: no ECS finding with --strict-ecs, only the documented
// departures by default.
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
			case 4:
				reset(c1)
				reset(c2)
			}
		}
		return sc.Err()
	}

	stages := []struct {
		run  cli.RunFunc
		args []string
	}{
		{sockdump.Run, []string{"--interval", "100ms", "--count", "6"}},
		{tap, nil},
		{sockdiff.Run, []string{"--closed"}},
		{sockproc.Run, nil},
		{sockresolve.Run, []string{"--server", "127.0.0.1:1", "--timeout", "200ms"}},
	}
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
			// Whatever the stage left unread must not block the one before.
			if r, ok := stdin.(*io.PipeReader); ok {
				r.CloseWithError(errors.New("next stage ended"))
			}
		}(in)
		in = pr
	}
	records, err := io.ReadAll(in)
	wg.Wait()
	for i, e := range errs {
		if e != nil {
			t.Errorf("stage %d: %v\n%s", i, e, stderrs[i].String())
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	if err != nil {
		t.Fatal(err)
	}

	s := schema(t)
	departures := map[string]bool{
		"agent.hostname: " + ecscheck.NotInECS:                               true,
		"network.direction: " + ecscheck.NotExpected + `: "listening"`:       true,
		"network.iana_number: " + ecscheck.IANAMismatch + `: "4" for "tcp"`:  true,
		"network.iana_number: " + ecscheck.IANAMismatch + `: "41" for "tcp"`: true,
	}
	for _, args := range [][]string{{"--strict-ecs"}, nil} {
		var out, errb bytes.Buffer
		if err := Run(ctx, args, bytes.NewReader(records), &out, &errb); err != nil || errb.Len() > 0 {
			t.Fatalf("sockecs %v: %v %s", args, err, errb.String())
		}
		docs := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		seen := map[string]bool{}
		for _, doc := range docs {
			for _, f := range s.Check([]byte(doc)) {
				if args != nil || !departures[f.String()] {
					t.Errorf("sockecs %v: %s\nin %s", args, f, doc)
				}
			}
			for _, want := range []string{`"action":"existing_socket"`, `"action":"socket_opened"`, `"action":"socket_closed"`,
				`"direction":"listening"`, `"direction":"ingress"`, `"direction":"egress"`,
				`"ip":"::ffff:127.0.0.1"`, `"ip":"::1"`, `"process":{`, `"host_error":`, `"user":{`} {
				if strings.Contains(doc, want) {
					seen[want] = true
				}
			}
		}
		for _, want := range []string{`"action":"existing_socket"`, `"action":"socket_opened"`, `"action":"socket_closed"`,
			`"direction":"listening"`, `"direction":"ingress"`, `"direction":"egress"`, `"ip":"::ffff:127.0.0.1"`, `"ip":"::1"`,
			`"process":{`, `"host_error":`, `"user":{`} {
			if !seen[want] {
				t.Errorf("sockecs %v: no document with %s", args, want)
			}
		}
		t.Logf("sockecs %v: %d documents checked", args, len(docs))
	}
}
