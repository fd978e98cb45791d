package sockproc

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockpipe/sockpipe/internal/cgroup"
	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/proctable"
	"github.com/sockpipe/sockpipe/internal/record"
)

// hierarchy is a cgroup hierarchy mounted on this host, in which a test may
// create cgroups and move processes.
type hierarchy struct {
	name  string // "v2", or "v1 name=systemd"
	mount string // where it is mounted
	key   string // how /proc/PID/cgroup names it: "" for v2, "name=X" for v1
}

// hierarchies returns the cgroup v2 hierarchy and the named cgroup v1
// hierarchies (those without controllers: moving a process in them
// changes no limit) mounted at their root.
func hierarchies(t *testing.T) []hierarchy {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Skipf("mountinfo: %v", err)
	}
	defer f.Close()
	var hs []hierarchy
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		a, b := strings.Fields(pre), strings.Fields(post)
		if len(a) < 5 || len(b) < 3 || a[3] != "/" {
			continue
		}
		switch b[0] {
		case "cgroup2":
			if !seen[""] {
				seen[""] = true
				hs = append(hs, hierarchy{name: "v2", mount: a[4]})
			}
		case "cgroup":
			for _, o := range strings.Split(b[2], ",") {
				if strings.HasPrefix(o, "name=") && !seen[o] {
					seen[o] = true
					hs = append(hs, hierarchy{name: "v1 " + o, mount: a[4], key: o})
				}
			}
		}
	}
	return hs
}

// path returns the cgroup of pid in h, relative to h's root, from
// /proc/PID/cgroup.
func (h hierarchy) path(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		if h.key == "" && f[0] == "0" && f[1] == "" || h.key != "" && f[1] == h.key {
			return f[2], nil
		}
	}
	return "", fmt.Errorf("no %s line in /proc/%d/cgroup", h.name, pid)
}

// move moves pid (its whole thread group) into the cgroup at dir.
func move(dir string, pid int) error {
	return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
}

// randomID returns a container id: 64 random hex digits.
func randomID(t *testing.T) string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// TestIntegrationContainer places real processes holding loopback sockets
// in a cgroup whose path is a Docker container's
// (/sockpipe-test-PID.slice/docker-ID.scope), in each hierarchy the host
// lets a test create one, and checks that sockproc gives their sockets
// that container's id: run here, run in a PID namespace of its own with
// the host's /proc elsewhere (--proc, as in a container), and run as
// nobody for nobody's processes.
func TestIntegrationContainer(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups and move processes")
	}
	if ok, _ := proctable.Privileged(); !ok {
		t.Skip("root without CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH")
	}
	hs := hierarchies(t)
	if len(hs) == 0 {
		t.Skip("no cgroup v2 and no named cgroup v1 hierarchy mounted at its root")
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skip(err)
	}
	// A process left where this test runs is in this test's container,
	// if any (when the tests themselves run in one).
	selfID := cgroup.ContainerID(self)
	bin, passwd := helperBin(t)
	for _, h := range hs {
		t.Run(h.name, func(t *testing.T) {
			if h.key != "" && selfID != "" {
				t.Skipf("the cgroup v2 line already names container %s, and wins over v1", selfID)
			}
			testContainer(t, h, bin, passwd, selfID)
		})
	}
}

func testContainer(t *testing.T, h hierarchy, bin, passwd, selfID string) {
	origin, err := h.path(os.Getpid())
	if err != nil {
		t.Skip(err)
	}
	id, ownID := randomID(t), randomID(t)
	slice := filepath.Join(h.mount, "sockpipe-test-"+strconv.Itoa(os.Getpid())+".slice")
	dir := filepath.Join(slice, "docker-"+id+".scope")
	// The container that sockproc itself runs in, for the cgroup
	// namespace test.
	ownDir := filepath.Join(slice, "docker-"+ownID+".scope")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Skipf("cannot create a cgroup in %s: %v", h.mount, err)
	}
	// Runs last, after the helpers have been moved back and stopped.
	t.Cleanup(func() {
		for _, d := range []string{dir, ownDir, slice} {
			var err error
			for i := 0; i < 100; i++ {
				if err = os.Remove(d); err == nil || errors.Is(err, os.ErrNotExist) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("removing cgroup %s: %v", d, err)
			}
		}
	})

	if err := os.Mkdir(ownDir, 0o755); err != nil {
		t.Fatal(err)
	}

	holder := startChild(t, bin, nil, "hold", "in a container")
	nobody := startChild(t, bin, nobodyCred, "hold", "nobody in a container")
	host := startChild(t, bin, nil, "hold", "on the host")
	// A neighbour of sockproc in its own container.
	neighbour := startChild(t, bin, nil, "hold", "beside sockproc")
	for _, m := range []struct {
		c   *child
		dir string
	}{{holder, dir}, {nobody, dir}, {neighbour, ownDir}} {
		pid := m.c.cmd.Process.Pid
		if err := move(m.dir, pid); err != nil {
			t.Skipf("cannot move a process into %s: %v", m.dir, err)
		}
		// Runs before the helper is stopped.
		t.Cleanup(func() { move(filepath.Join(h.mount, origin), pid) })
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
		if err != nil || !strings.Contains(string(b), m.dir[len(slice):]) {
			t.Fatalf("/proc/%d/cgroup after the move: %q, %v", pid, b, err)
		}
	}
	lport, cport := holder.ready[0], holder.ready[1]
	nport, hport, oport := nobody.ready[0], host.ready[0], neighbour.ready[0]
	ports := map[int]bool{lport: true, cport: true, nport: true, hport: true, oport: true}
	recs := dump(t, ports)
	in := encode(recs)

	// check verifies the container of each helper's sockets; for root's
	// helpers only when attributed is true.
	check := func(t *testing.T, out []*record.Record, rootSeen bool, hostID, neighbourID string) {
		t.Helper()
		type want struct {
			what          string
			local, remote int
			pid           int
			id            string
		}
		wants := []want{{"nobody's listener", nport, 0, nobody.cmd.Process.Pid, id}}
		if rootSeen {
			wants = append(wants,
				want{"listener", lport, 0, holder.cmd.Process.Pid, id},
				want{"client", cport, lport, holder.cmd.Process.Pid, id},
				want{"accepted", lport, cport, holder.cmd.Process.Pid, id},
				want{"host listener", hport, 0, host.cmd.Process.Pid, hostID},
				want{"neighbour's listener", oport, 0, neighbour.cmd.Process.Pid, neighbourID})
		}
		for _, w := range wants {
			r := one(t, out, w.what, w.local, w.remote)
			if r.Process == nil || r.Process.PID != w.pid {
				t.Errorf("%s: process %+v, want pid %d", w.what, r.Process, w.pid)
				continue
			}
			got := ""
			if r.Container != nil {
				got = r.Container.ID
			}
			if got != w.id {
				t.Errorf("%s: container.id %q, want %q", w.what, got, w.id)
			}
		}
	}

	t.Run("here", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		if err := Run(context.Background(), []string{"--passwd", passwd}, bytes.NewReader(in), &stdout, &stderr); err != nil {
			t.Fatalf("run: %v\n%s", err, stderr.String())
		}
		check(t, decodeAll(t, stdout.Bytes()), true, selfID, ownID)
	})

	t.Run("own PID namespace, --proc", func(t *testing.T) {
		hostProc := t.TempDir()
		runNS := func(procArg string) []*record.Record {
			t.Helper()
			cmd := exec.Command(bin, "sockproc-hostproc", "--passwd", passwd, "--proc", procArg)
			cmd.Env = append(os.Environ(), "SOCKPROC_HELPER=sockproc-hostproc", "SOCKPROC_HOSTPROC="+hostProc)
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS}
			cmd.Stdin = bytes.NewReader(in)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Run(); err != nil {
				if strings.Contains(stderr.String(), "helper: namespace:") {
					t.Skipf("cannot set up the namespaces: %s", stderr.String())
				}
				t.Fatalf("sockproc in a PID namespace: %v\n%s", err, stderr.String())
			}
			return decodeAll(t, stdout.Bytes())
		}
		// The namespace's own /proc holds no process of the host.
		for _, r := range runNS("/proc") {
			if r.Process != nil || r.Container != nil {
				t.Fatalf("--proc /proc in a PID namespace of its own found %+v, %+v", r.Process, r.Container)
			}
		}
		check(t, runNS(hostProc), true, selfID, ownID)
	})

	// In a cgroup namespace of its own, rooted at its container's cgroup
	// (Docker's default under cgroup v2), sockproc reads other
	// containers' paths as "/../docker-ID.scope" and still names them;
	// its own container's processes are at "/" and get none.
	t.Run("private cgroup namespace", func(t *testing.T) {
		if selfID != "" {
			t.Skip("the tests run in a container: the host's processes would be named by a path outside the namespace")
		}
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		defer w.Close()
		cmd := exec.Command(bin, "sockproc-cgns", "--passwd", passwd)
		cmd.Env = append(os.Environ(), "SOCKPROC_HELPER=sockproc-cgns")
		cmd.ExtraFiles = []*os.File{r}
		cmd.Stdin = bytes.NewReader(in)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r.Close()
		pid := cmd.Process.Pid
		moveErr := move(ownDir, pid)
		if moveErr == nil {
			t.Cleanup(func() { move(filepath.Join(h.mount, origin), pid) })
		}
		if _, err := w.Write([]byte{'x'}); err != nil {
			t.Errorf("write: %v", err)
		}
		w.Close()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("sockproc in a cgroup namespace: %v\n%s", err, stderr.String())
		}
		if moveErr != nil {
			t.Fatalf("moving sockproc into %s: %v", ownDir, moveErr)
		}
		check(t, decodeAll(t, stdout.Bytes()), true, "", "")
	})

	t.Run("unprivileged", func(t *testing.T) {
		cmd := exec.Command(bin, "sockproc", "--passwd", passwd)
		cmd.Env = append(os.Environ(), "SOCKPROC_HELPER=sockproc")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobodyCred}
		cmd.Stdin = bytes.NewReader(in)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("sockproc as nobody: %v\n%s", err, stderr.String())
		}
		out := decodeAll(t, stdout.Bytes())
		check(t, out, false, "", "")
		// Root's processes are not seen: no process, no container.
		for _, c := range [][2]int{{lport, 0}, {cport, lport}, {hport, 0}} {
			if r := one(t, out, "root's socket", c[0], c[1]); r.Process != nil || r.Container != nil {
				t.Errorf("root's socket %d-%d as nobody: process %+v, container %+v", c[0], c[1], r.Process, r.Container)
			}
		}
	})
}

// helperCgroupNS runs sockproc in a cgroup namespace of its own, rooted at
// the cgroup it is in once the test has moved it: it waits for a byte on
// descriptor 3, then unshares its cgroup namespace and executes itself as
// the "sockproc" helper (a namespace unshared by one thread reaches the
// whole process only through exec).
func helperCgroupNS(args []string) {
	runtime.LockOSThread()
	var b [1]byte
	if _, err := os.NewFile(3, "ready").Read(b[:]); err != nil {
		die(err)
	}
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		die(err)
	}
	exe, err := os.Executable()
	if err != nil {
		die(err)
	}
	env := []string{"SOCKPROC_HELPER=sockproc"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SOCKPROC_HELPER=") {
			env = append(env, kv)
		}
	}
	die(syscall.Exec(exe, append([]string{exe, "sockproc"}, args...), env))
}

// helperHostProc runs sockproc the way it runs in a container without the
// host's PID namespace: started as pid 1 of new PID and mount namespaces,
// it mounts the host's /proc (still the one mounted) at $SOCKPROC_HOSTPROC
// and a /proc of its own PID namespace over /proc, then runs sockproc
// with args.
func helperHostProc(args []string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "helper: namespace:", err)
		os.Exit(3)
	}
	if err := syscall.Mount("none", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		fail(err)
	}
	if err := syscall.Mount("/proc", os.Getenv("SOCKPROC_HOSTPROC"), "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		fail(err)
	}
	if err := syscall.Mount("proc", "/proc", "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
		fail(err)
	}
	if os.Getpid() != 1 {
		fail(fmt.Errorf("pid %d, want 1 in a new PID namespace", os.Getpid()))
	}
	err := Run(context.Background(), args, os.Stdin, os.Stdout, os.Stderr)
	os.Exit(cli.Code("sockproc", err, os.Stderr))
}
