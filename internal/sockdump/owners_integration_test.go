package sockdump

import (
	"bufio"
	"bytes"
	"context"
	"math"
	"net"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/record"
	"github.com/sockpipe/sockpipe/internal/testprog"
)

// TestIntegrationEventsOwners runs sockdump --events with its owner table
// and two child processes, one as root and one as nobody, born after the
// first dump: each holds a listener and a connection to it (both ends) and
// then exits, so that no dump ever sees its sockets. Every destroyed record
// of theirs names the child (pid, comm, uid, gid, start) and how the table
// learnt it: listen, connect, or accept (the listener's owner).
func TestIntegrationEventsOwners(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("the owner table needs root")
	}
	bin := testprog.Build(t, "github.com/sockpipe/sockpipe/internal/testprog/sockfix")
	lines, cancel, stop := runEvents(t)
	defer cancel()

	// -from: the connections close with RST, so that each end is
	// destroyed at once (no TIME_WAIT).
	args := []string{"-from", "127.0.0.1:0", "-tcp", "127.0.0.1:0"}
	kids := []*testprog.Fixture{
		testprog.StartFixture(t, testprog.NetNS{}, bin, args...),
		testprog.StartFixtureAsNobody(t, bin, args...),
	}
	uids := []uint32{0, testprog.Nobody}
	type end struct {
		kid int
		via string
	}
	ends := map[string]end{}       // by local and remote endpoint
	clients := map[string]string{} // the key of each client, by its local endpoint
	starts := make([]time.Time, len(kids))
	for i, f := range kids {
		starts[i] = procStart(t, f.PID)
		for _, s := range f.Socks {
			via := map[string]string{"listener": record.OwnerListen, "client": record.OwnerConnect, "server": record.OwnerAccept}[s.Role]
			remote := s.Remote
			if remote == "-" {
				remote = "0.0.0.0:0"
			}
			ends[s.Local+" "+remote] = end{i, via}
			if s.Role == "client" {
				clients[s.Local] = s.Local + " " + remote
			}
		}
		f.Stop()
	}

	got := map[string]*record.Record{}
	timeout := time.AfterFunc(10*time.Second, cancel)
	defer timeout.Stop()
	for len(got) < len(ends) && lines.Scan() {
		r, err := codec.Decode(lines.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if r.Type != record.TypeDestroyed {
			continue
		}
		k := endpoints(r.Local.IP, r.Local.Port, r.Remote.IP, r.Remote.Port)
		if _, ok := ends[k]; ok {
			got[k] = r
		} else if k, ok := clients[net.JoinHostPort(r.Local.IP, strconv.Itoa(int(r.Local.Port)))]; ok && r.Remote.Port == 0 {
			// A client reset by its own RST loses its remote end: found
			// by its local one.
			got[k] = r
		}
	}
	if stderr := stop(); stderr != "" {
		t.Errorf("stderr: %s", stderr)
	}
	for k, e := range ends {
		r := got[k]
		if r == nil {
			t.Errorf("%s (%s of child %d): no destroyed record", k, e.via, kids[e.kid].PID)
			continue
		}
		o := r.Owner
		want := kids[e.kid]
		if o == nil || o.PID != want.PID || o.Name != "sockfix" || o.UID != uids[e.kid] || o.GID != uids[e.kid] ||
			o.Via != e.via || o.Start.Sub(starts[e.kid]).Abs() > 10*time.Millisecond {
			t.Errorf("%s: owner %+v, want pid %d sockfix uid/gid %d via %s start %v", k, o, want.PID, uids[e.kid], e.via, starts[e.kid])
		}
	}
}

// procStart is when process pid started, as /proc/PID/stat says.
func procStart(t *testing.T, pid int) time.Time {
	t.Helper()
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		t.Fatal(err)
	}
	p, err := fs.Proc(pid)
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Stat()
	if err != nil {
		t.Fatal(err)
	}
	s, err := st.StartTime()
	if err != nil {
		t.Fatal(err)
	}
	sec, frac := math.Modf(s)
	return time.Unix(int64(sec), int64(frac*1e9))
}

// TestIntegrationEventsListenerOwner: a listener older than sockdump (so
// its owner table never saw it listen) accepts a connection that no dump
// sees; the destroyed record of the accepted end names the listener, by
// the inode and uid the first dump saw, with or without the table.
func TestIntegrationEventsListenerOwner(t *testing.T) {
	for _, args := range [][]string{nil, {"--no-owners"}} {
		t.Run(strings.Join(append([]string{"sockdump"}, args...), " "), func(t *testing.T) {
			l := listen(t, "tcp4", "127.0.0.1:0")
			lines, cancel, stop := runEvents(t, args...)
			defer cancel()
			c, s := connect(t, l, "tcp4", "127.0.0.1")
			sk := key(s.LocalAddr(), s.RemoteAddr())
			c.SetLinger(0) // the accepted end is reset: destroyed at once, addresses kept
			c.Close()
			s.Close()
			var server *record.Record
			timeout := time.AfterFunc(10*time.Second, cancel)
			defer timeout.Stop()
			for server == nil && lines.Scan() {
				r, err := codec.Decode(lines.Bytes())
				if err != nil {
					t.Fatal(err)
				}
				if r.Type == record.TypeDestroyed && endpoints(r.Local.IP, r.Local.Port, r.Remote.IP, r.Remote.Port) == sk {
					server = r
				}
			}
			stop()
			want := &record.Owner{UID: uint32(os.Getuid()), Via: record.OwnerListener, Inode: inodeOf(t, l)}
			if server == nil || server.Direction != record.DirectionIngress || !reflect.DeepEqual(server.Owner, want) {
				t.Errorf("accepted end %s: %+v, want owner %+v", sk, server, want)
			}
		})
	}
}

// TestIntegrationOwnersCapabilities: as an unprivileged user with only
// CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (what the systemd drop-in
// grants), sockdump --events loads the owner table and names the owners.
func TestIntegrationOwnersCapabilities(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a child as nobody with capabilities")
	}
	bin := testprog.Build(t, "github.com/sockpipe/sockpipe/cmd/sockdump")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--interval", "1h", "--events")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: testprog.Nobody, Gid: testprog.Nobody},
		AmbientCaps: []uintptr{unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_NET_ADMIN},
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	lines := bufio.NewScanner(out)
	lines.Buffer(nil, 1<<20)
	for lines.Scan() && !bytes.Contains(lines.Bytes(), []byte(`"type":"snapshot"`)) {
	}

	l := listen(t, "tcp4", "127.0.0.1:0") // after the table loaded
	c, s := connect(t, l, "tcp4", "127.0.0.1")
	sk := key(s.LocalAddr(), s.RemoteAddr())
	c.SetLinger(0)
	c.Close()
	s.Close()
	var server *record.Record
	for server == nil && lines.Scan() {
		r, err := codec.Decode(lines.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		if r.Type == record.TypeDestroyed && endpoints(r.Local.IP, r.Local.Port, r.Remote.IP, r.Remote.Port) == sk {
			server = r
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	if server == nil || server.Owner == nil || server.Owner.PID != os.Getpid() || server.Owner.Via != record.OwnerAccept {
		t.Errorf("accepted end %s: %+v, want the owner table's owner (this process, via accept); stderr: %s", sk, server, stderr.String())
	}
	if strings.Contains(stderr.String(), "no owner table") {
		t.Errorf("stderr: %s", stderr.String())
	}
}

// TestIntegrationNewSocketOwner: with the owner table, a socket that is
// new since the last dump carries its owner (its process may close it
// before sockproc looks), in the first dump that holds it (and perhaps the
// next), not later.
func TestIntegrationNewSocketOwner(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("the owner table needs root")
	}
	lines, cancel, stop := startRun(t, "--interval", "300ms", "--events")
	defer cancel()
	timeout := time.AfterFunc(20*time.Second, cancel)
	defer timeout.Stop()
	// nextDump returns the socket records of the next complete dump.
	nextDump := func() map[string]*record.Record {
		t.Helper()
		socks := map[string]*record.Record{}
		for lines.Scan() {
			r, err := codec.Decode(lines.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			switch r.Type {
			case record.TypeSnapshot:
				return socks
			case record.TypeSocket:
				socks[endpoints(r.Local.IP, r.Local.Port, r.Remote.IP, r.Remote.Port)] = r
			}
		}
		t.Fatal("sockdump ended")
		return nil
	}
	nextDump()
	l := listen(t, "tcp4", "127.0.0.1:0")
	c, s := connect(t, l, "tcp4", "127.0.0.1")
	ck, sk := key(c.LocalAddr(), c.RemoteAddr()), key(s.LocalAddr(), s.RemoteAddr())
	var first map[string]*record.Record
	for i := 0; i < 3 && (first == nil || first[ck] == nil); i++ {
		first = nextDump() // the dump under way may have missed them
	}
	for k, via := range map[string]string{ck: record.OwnerConnect, sk: record.OwnerAccept} {
		r := first[k]
		if r == nil || r.Inode == 0 || r.Owner == nil || r.Owner.PID != os.Getpid() || r.Owner.Via != via {
			t.Errorf("%s in the first dump that holds it: %+v, want its owner via %s", k, r, via)
		}
	}
	nextDump()
	later := nextDump()
	for _, k := range []string{ck, sk} {
		if r := later[k]; r == nil || r.Owner != nil {
			t.Errorf("%s in a later dump: %+v, want no owner", k, r)
		}
	}
	stop()
}
