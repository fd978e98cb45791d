package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/testprog"
)

// nsDoc is what TestWatchAllNetNS compares of one document.
type nsDoc struct {
	NetNS     uint64
	Transport string
	Direction string
	Local     string
	Remote    string
	PID       int
}

// TestWatchAllNetNS runs examples/watch --all-netns --udp as the systemd
// drop-in examples/systemd/all-netns.conf does (nobody, with
// CAP_SYS_ADMIN, CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH), while two
// network namespaces hold the same TCP and UDP addresses: every socket
// comes out once, tagged with its namespace, with its direction, and with
// the process that holds it. Without CAP_SYS_ADMIN the namespaces are
// skipped, and said to be.
func TestWatchAllNetNS(t *testing.T) {
	tr := setup(t)
	uid, gid := nobody(t)
	fix := testprog.Build(t, "github.com/sockpipe/sockpipe/internal/testprog/sockfix")
	args := []string{"-tcp", "127.0.0.1:8080", "-udp", "127.0.0.1:5353", "-udp", "[::1]:5353"}
	var want []nsDoc
	nss := map[uint64]bool{}
	for range 2 {
		ns := testprog.NewNetNS(t)
		nss[ns.Ino] = true
		f := testprog.StartFixture(t, ns, fix, args...)
		for _, s := range f.Socks {
			d := nsDoc{NetNS: ns.Ino, Transport: s.Transport, Local: s.Local, PID: f.PID}
			switch s.Role {
			case "listener", "bound":
				d.Direction = "listening"
			case "client":
				d.Direction, d.Remote = "egress", s.Remote
			case "server":
				d.Direction, d.Remote = "ingress", s.Remote
			}
			want = append(want, d)
		}
	}

	run := func(t *testing.T, caps []uintptr) ([]nsDoc, string) {
		t.Helper()
		dir := privateDir(t, uid, gid)
		var stdout, stderr bytes.Buffer
		cmd := watchCmd(t, tr, nil, "--once", "--state-dir", filepath.Join(dir, "state"), "--all-netns", "--udp")
		cmd.Env = append(cmd.Env, "TMPDIR="+dir)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Credential:  &syscall.Credential{Uid: uid, Gid: gid},
			AmbientCaps: caps,
		}
		if err := cmd.Run(); err != nil {
			t.Fatalf("watch --all-netns as nobody: %v\nstderr:\n%s", err, stderr.String())
		}
		var got []nsDoc
		for _, line := range bytes.Split(bytes.TrimSpace(stdout.Bytes()), []byte("\n")) {
			var d struct {
				Network struct {
					Transport string `json:"transport"`
					Direction string `json:"direction"`
				} `json:"network"`
				Process *struct {
					PID int `json:"pid"`
				} `json:"process"`
				System struct {
					Socket struct {
						NetNS  uint64    `json:"netns"`
						Local  endpoint  `json:"local"`
						Remote *endpoint `json:"remote"`
					} `json:"socket"`
				} `json:"system"`
			}
			if err := codec.Unmarshal(line, &d); err != nil {
				t.Fatalf("bad document %q: %v", line, err)
			}
			s := d.System.Socket
			if !nss[s.NetNS] {
				continue
			}
			g := nsDoc{NetNS: s.NetNS, Transport: d.Network.Transport, Direction: d.Network.Direction,
				Local: net.JoinHostPort(s.Local.IP, strconv.Itoa(s.Local.Port))}
			if s.Remote != nil && s.Remote.Port != 0 {
				g.Remote = net.JoinHostPort(s.Remote.IP, strconv.Itoa(s.Remote.Port))
			}
			if d.Process != nil {
				g.PID = d.Process.PID
			}
			got = append(got, g)
		}
		return got, stderr.String()
	}
	less := func(a, b nsDoc) bool { return fmt.Sprint(a) < fmt.Sprint(b) }

	t.Run("with CAP_SYS_ADMIN", func(t *testing.T) {
		got, stderr := run(t, []uintptr{21 /* CAP_SYS_ADMIN */, 19 /* CAP_SYS_PTRACE */, 2 /* CAP_DAC_READ_SEARCH */})
		if diff := cmp.Diff(want, got, cmpopts.SortSlices(less)); diff != "" {
			t.Errorf("documents of the namespaces (-want +got):\n%s\nstderr:\n%s", diff, stderr)
		}
		if strings.Contains(stderr, "skipped network namespace") {
			t.Errorf("namespaces skipped with CAP_SYS_ADMIN:\n%s", stderr)
		}
	})
	t.Run("without", func(t *testing.T) {
		got, stderr := run(t, []uintptr{19, 2})
		if len(got) != 0 {
			t.Errorf("documents of namespaces nobody cannot enter: %+v", got)
		}
		for ino := range nss {
			if !strings.Contains(stderr, fmt.Sprintf("skipped network namespace net:[%d]", ino)) || !strings.Contains(stderr, "CAP_SYS_ADMIN") {
				t.Errorf("stderr does not name net:[%d] as skipped, for want of CAP_SYS_ADMIN:\n%s", ino, stderr)
			}
		}
	})
}

// TestSystemdAllNetNSDropIn checks examples/systemd/all-netns.conf: it
// turns on --all-netns and --udp with watch's variables, and adds to the
// units exactly what sockdump --all-netns needs beyond them: CAP_SYS_ADMIN
// (setns) and entering network namespaces.
func TestSystemdAllNetNSDropIn(t *testing.T) {
	help := watchHelp(t)
	b, err := os.ReadFile(filepath.Join(examples, "systemd", "all-netns.conf"))
	if err != nil {
		t.Fatal(err)
	}
	u, err := parseUnit(b)
	if err != nil {
		t.Fatal(err)
	}
	env := u.words("Service", "Environment")
	checkWatchEnv(t, "all-netns.conf", env, help)
	for _, w := range []string{"WATCH_ALL_NETNS=1", "WATCH_UDP=1"} {
		if !slices.Contains(env, w) {
			t.Errorf("Environment=%v lacks %s", env, w)
		}
	}
	for _, k := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
		if got := u.words("Service", k); !slices.Equal(got, []string{"CAP_SYS_ADMIN"}) {
			t.Errorf("%s=%v, want CAP_SYS_ADMIN added", k, got)
		}
	}
	if got := u.last("Service", "RestrictNamespaces"); got != "net" {
		t.Errorf("RestrictNamespaces=%q, want net (the unit's yes forbids setns)", got)
	}
}

// TestSystemdOwnersDropIn checks examples/systemd/owners.conf: it turns
// the owner table on and adds exactly what loading it needs (the
// capabilities that TestIntegrationOwnersCapabilities in internal/sockdump
// proves enough, and the bpf system call that the unit's filter denies).
func TestSystemdOwnersDropIn(t *testing.T) {
	help := watchHelp(t)
	b, err := os.ReadFile(filepath.Join(examples, "systemd", "owners.conf"))
	if err != nil {
		t.Fatal(err)
	}
	u, err := parseUnit(b)
	if err != nil {
		t.Fatal(err)
	}
	env := u.words("Service", "Environment")
	checkWatchEnv(t, "owners.conf", env, help)
	if !slices.Contains(env, "WATCH_OWNERS=1") {
		t.Errorf("Environment=%v lacks WATCH_OWNERS=1", env)
	}
	caps := []string{"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"}
	for _, k := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
		if got := u.words("Service", k); !slices.Equal(got, caps) {
			t.Errorf("%s=%v, want %v added", k, got, caps)
		}
	}
	if got := u.words("Service", "SystemCallFilter"); !slices.Equal(got, []string{"bpf"}) {
		t.Errorf("SystemCallFilter=%v, want bpf added (the unit denies @privileged)", got)
	}
}
