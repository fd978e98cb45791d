package netnsdump

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sockpipe/sockpipe/internal/inetdiag"
	"github.com/sockpipe/sockpipe/internal/socktable"
	"github.com/sockpipe/sockpipe/internal/testprog"
)

// TestIntegrationWalk dumps the TCP and UDP sockets of a network
// namespace of the test's own with --all-netns twice, once with the walk
// and once with netlink only: the same socket records, but for their time. It is not parallel: it sets
// PinDirs, so that the host's other namespaces stay out.
func TestIntegrationWalk(t *testing.T) {
	ns := testprog.NewNetNS(t)
	bin := testprog.Build(t, "github.com/sockpipe/sockpipe/internal/testprog/sockfix")
	fix := testprog.StartFixture(t, ns, bin, "-tcp", "127.0.0.1:0", "-tcp", "[::1]:0", "-tcp", "[::]:0", "-udp", "127.0.0.1:0", "-udp", "[::1]:0")
	// A proc root of the fixture alone, and no pins: the namespaces are
	// the test's own and the fixture's.
	proc := t.TempDir()
	pid := fmt.Sprint(fix.PID)
	if err := os.Symlink(filepath.Join("/proc", pid), filepath.Join(proc, pid)); err != nil {
		t.Fatal(err)
	}
	pins := PinDirs
	PinDirs = nil
	defer func() { PinDirs = pins }()

	dump := func(noWalk bool) ([]string, []uint64, string) {
		tcpUDP := []uint8{inetdiag.ProtoTCP, inetdiag.ProtoUDP}
		d, err := Open("", tcpUDP)
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		h := NewHost(d, "", Config{Protocols: tcpUDP, All: true, ProcRoot: proc, NoWalk: noWalk, Stderr: &stderr})
		defer h.Close()
		h.walkMin = 2 // the test's namespace and the fixture's
		var recs []string
		// The first dump makes the cookies; the second may take the walk's.
		for i := range 2 {
			recs = recs[:0]
			if err := h.Snapshot(context.Background(), Lines(func(b []byte) error {
				var m map[string]any
				if err := json.Unmarshal(b, &m); err != nil {
					return err
				}
				if m["type"] != "socket" || m["netns"] != float64(ns.Ino) {
					return nil
				}
				delete(m, "time")
				b, err := json.Marshal(m)
				recs = append(recs, string(b))
				return err
			})); err != nil {
				t.Fatalf("snapshot %d: %v", i, err)
			}
		}
		slices.Sort(recs)
		return recs, slices.Clone(h.walkedNS), stderr.String()
	}
	compare := func(what string, want int) {
		t.Helper()
		netlink, walked, _ := dump(true)
		if len(walked) != 0 {
			t.Errorf("%s: NoWalk: walked %v", what, walked)
		}
		got, walked, stderr := dump(false)
		if !slices.Contains(walked, ns.Ino) {
			t.Errorf("%s: the walk did not cover net:[%d] (walked %v; stderr %q)", what, ns.Ino, walked, stderr)
		}
		t.Logf("%s: walk and netlink:\n%s", what, strings.Join(got, "\n"))
		if len(netlink) != want {
			t.Errorf("%s: netlink: %d records, want %d:\n%s", what, len(netlink), want, strings.Join(netlink, "\n"))
		}
		if !slices.Equal(got, netlink) {
			t.Errorf("%s: walk:\n%s\nnetlink:\n%s", what, strings.Join(got, "\n"), strings.Join(netlink, "\n"))
		}
	}
	// TCP: 3 listeners, 3 connections with both ends; UDP: 3 sockets
	// for each -udp.
	compare("held sockets", 15)
	// A connection closed by its client, which waits in TIME_WAIT: the
	// walk does not see it, a netlink dump of that state adds it. (Made
	// by a process of its own: a thread of the test that entered the
	// namespace could be the main one, whose namespace is the process's.)
	testprog.StartFixture(t, ns, bin, "-timewait", "127.0.0.1:0")
	compare("and a time-wait socket", 16)
}

// TestWalkCannotLoad: where the walk cannot load, the host says so once,
// and every namespace is left to netlink.
func TestWalkCannotLoad(t *testing.T) {
	open := openWalker
	openWalker = func() (*socktable.Walker, error) { return nil, socktable.ErrPermission }
	defer func() { openWalker = open }()
	var stderr bytes.Buffer
	h := &Host{c: Config{All: true, Stderr: &stderr}, walkMin: 2}
	for i := range 2 {
		h.nss = append(h.nss, &namespace{d: NewDumper(nil, uint64(i+1), TCP)})
	}
	for range 3 {
		h.walk()
		for _, n := range h.nss {
			if n.d.walkOK || n.d.walkUDP {
				t.Errorf("net:[%d] takes the walk's sockets", n.d.netns)
			}
		}
	}
	want := "sockdump: --all-netns: cannot walk every namespace's sockets at once (" + socktable.ErrPermission.Error() + "); dumping each namespace with netlink\n"
	if stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
}
