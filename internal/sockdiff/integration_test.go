package sockdiff

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/record"
	"github.com/sockpipe/sockpipe/internal/sockdump"
	"github.com/sockpipe/sockpipe/internal/testprog"
)

// dump runs the real sockdump once.
func dump(t *testing.T) []byte {
	t.Helper()
	var out, errb bytes.Buffer
	if err := sockdump.Run(context.Background(), nil, nil, &out, &errb); err != nil {
		t.Fatalf("sockdump: %v\n%s", err, errb.String())
	}
	return out.Bytes()
}

// diffEvents runs sockdiff --closed --state path on input and returns the
// events, in order.
func diffEvents(t *testing.T, path string, input []byte) []*record.Record {
	t.Helper()
	var out, errb bytes.Buffer
	c := config{closed: true, state: path, lockTimeout: 10 * time.Second, saveInterval: time.Hour, now: time.Now}
	if err := run(context.Background(), c, bytes.NewReader(input), &out, &errb); err != nil {
		t.Fatalf("sockdiff: %v\n%s", err, errb.String())
	}
	if errb.Len() > 0 {
		t.Errorf("sockdiff stderr: %s", errb.String())
	}
	var evs []*record.Record
	for _, line := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n")) {
		r, err := codec.Decode(line)
		if err != nil {
			t.Fatalf("output line %q: %v", line, err)
		}
		if r.Type == record.TypeSocket {
			evs = append(evs, r)
		}
	}
	return evs
}

// diffRun runs sockdiff --closed --state path on input and returns its
// events by connection.
func diffRun(t *testing.T, path string, input []byte) map[record.Key]*record.Record {
	t.Helper()
	evs := make(map[record.Key]*record.Record)
	for _, r := range diffEvents(t, path, input) {
		evs[r.Key()] = r
	}
	return evs
}

// key is the key of an IPv4 TCP connection of the test's own network
// namespace.
func key(local, remote net.Addr) record.Key {
	l, r := local.(*net.TCPAddr), remote.(*net.TCPAddr)
	return record.Key{
		NetNS: ownNetNS(), Transport: record.TransportTCP, Family: record.FamilyIPv4,
		LocalIP: l.IP.String(), LocalPort: uint16(l.Port), RemoteIP: r.IP.String(), RemotePort: uint16(r.Port),
	}
}

// ownNetNS is the inode of the test's network namespace, the "netns" that
// sockdump writes for it; 0 when unknown, as sockdump writes it then.
var ownNetNS = sync.OnceValue(func() uint64 {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &st); err != nil {
		return 0
	}
	return st.Ino
})

// TestIntegrationLoopback follows one real loopback connection through
// three cron runs sharing a state file: it opens (listener and both ends
// "opened"), then closes (listener and the passive end "closed"; the
// active end lives on in time-wait, the same connection, so no event).
func TestIntegrationLoopback(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	evs := diffRun(t, path, dump(t))
	for k, r := range evs {
		if r.Event != record.EventExisting {
			t.Errorf("first run: %v is %q, want existing", k, r.Event)
		}
	}

	l, c, s := testprog.TCPPair(t)
	lk := record.Key{
		NetNS: ownNetNS(), Transport: record.TransportTCP, Family: record.FamilyIPv4,
		LocalIP: "127.0.0.1", LocalPort: uint16(l.Addr().(*net.TCPAddr).Port), RemoteIP: "0.0.0.0",
	}
	ck, sk := key(c.LocalAddr(), c.RemoteAddr()), key(s.LocalAddr(), s.RemoteAddr())

	evs = diffRun(t, path, dump(t))
	for _, k := range []record.Key{lk, ck, sk} {
		if r := evs[k]; r == nil || r.Event != record.EventOpened || !r.FirstSeen.Equal(r.Time) {
			t.Errorf("second run: %v: %+v, want opened", k, r)
		}
	}
	for k, r := range evs {
		if r.Event == record.EventExisting {
			t.Errorf("second run: %v is existing", k)
		}
	}

	c.Close() // the active closer keeps the 4-tuple in time-wait
	s.Close()
	l.Close()
	var d []byte
	for i := 0; i < 100; i++ { // the passive end leaves last-ack at once on loopback
		d = dump(t)
		if !bytes.Contains(d, []byte(fmt.Sprintf(`"state":"last-ack","local":{"ip":"127.0.0.1","port":%d},"remote":{"ip":"127.0.0.1","port":%d}`, sk.LocalPort, sk.RemotePort))) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	evs = diffRun(t, path, d)
	for _, k := range []record.Key{lk, sk} {
		if r := evs[k]; r == nil || r.Event != record.EventClosed || r.FirstSeen.IsZero() || r.LastSeen.Before(r.FirstSeen) || !r.Time.After(r.LastSeen) {
			t.Errorf("third run: %v: %+v, want closed with first and last seen", k, r)
		}
	}
	if r := evs[ck]; r != nil {
		t.Errorf("third run: the time-wait end got an event: %+v", r)
	}
	if !bytes.Contains(d, []byte(fmt.Sprintf(`"state":"time-wait","local":{"ip":"127.0.0.1","port":%d}`, ck.LocalPort))) {
		t.Errorf("the active end is not in time-wait in the dump")
	}
}

// TestIntegrationUnprivileged runs sockdiff as nobody: it needs no
// privilege, only a state directory that it may write, and says clearly
// when it may not.
func TestIntegrationUnprivileged(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to switch to nobody")
	}
	const nobody = 65534
	bin := testprog.Build(t, "github.com/sockpipe/sockpipe/cmd/sockdiff")
	base := testprog.PublicDir(t)
	own := filepath.Join(base, "own")
	if err := os.Mkdir(own, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(own, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	input := stream(2)
	runAs := func(args ...string) (string, string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		cmd.Stdin = strings.NewReader(input)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}

	out, errs, code := runAs("--closed")
	if code != 0 || strings.Count(out, `"event"`) != 3 || errs != "" {
		t.Errorf("in memory: exit %d, stderr %q, stdout:\n%s", code, errs, out)
	}

	state := filepath.Join(own, "state")
	out, errs, code = runAs("--closed", "--state", state)
	if code != 0 || strings.Count(out, `"event"`) != 3 || errs != "" {
		t.Errorf("own state directory: exit %d, stderr %q, stdout:\n%s", code, errs, out)
	}
	fi, err := os.Stat(state)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != nobody || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file owner %d mode %v, want %d 0600", st.Uid, fi.Mode().Perm(), nobody)
	}

	out, errs, code = runAs("--state", filepath.Join(base, "state"))
	want := fmt.Sprintf("sockdiff: state file lock: open %s.lock: permission denied\n", filepath.Join(base, "state"))
	if code != 1 || errs != want || out != "" {
		t.Errorf("root's directory: exit %d, stderr %q (want %q), stdout:\n%s", code, errs, want, out)
	}
}
