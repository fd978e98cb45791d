package proctable

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sockpipe/sockpipe/internal/record"
	"github.com/sockpipe/sockpipe/internal/testprog"
)

const fixtureBoot = 1700000000 // btime of the fixture trees

// fixProc is one process of a fixture /proc tree.
type fixProc struct {
	pid, ppid int
	comm      string
	start     uint64 // clock ticks after boot
	exe       string
	args      []string
	fds       map[int]string // descriptor -> link target
	cgroup    string         // the cgroup file; none when empty
}

func statLine(p fixProc) string {
	return fmt.Sprintf("%d (%s) S %d %d %d 0 -1 4194560 120 0 0 0 3 1 0 0 20 0 1 0 %d 1234567 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
		p.pid, p.comm, p.ppid, p.pid, p.pid, p.start)
}

// newFixture returns the root of a fake proc filesystem.
func newFixture(t *testing.T, procs ...fixProc) string {
	t.Helper()
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "stat"), []byte("cpu  1 2 3 4 5 6 7 8 9 10\nbtime "+strconv.Itoa(fixtureBoot)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Entries that are not processes must be ignored.
	for _, d := range []string{"sys", "net", "self"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range procs {
		writeProc(t, root, p)
	}
	return root
}

func writeProc(t *testing.T, root string, p fixProc) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(p.pid))
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "fd"), 0o755); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "stat"), []byte(statLine(p)), 0o644))
	cmdline := strings.Join(p.args, "\x00")
	if cmdline != "" {
		cmdline += "\x00"
	}
	must(os.WriteFile(filepath.Join(dir, "cmdline"), []byte(cmdline), 0o644))
	if p.exe != "" {
		must(os.Symlink(p.exe, filepath.Join(dir, "exe")))
	}
	for fd, target := range p.fds {
		must(os.Symlink(target, filepath.Join(dir, "fd", strconv.Itoa(fd))))
	}
	if p.cgroup != "" {
		must(os.WriteFile(filepath.Join(dir, "cgroup"), []byte(p.cgroup), 0o444))
	}
}

func sock(n uint64) string { return "socket:[" + strconv.FormatUint(n, 10) + "]" }

func startOf(ticks uint64) time.Time {
	return time.Unix(fixtureBoot, 0).Add(time.Duration(ticks) * 10 * time.Millisecond).UTC()
}

var (
	nginx = fixProc{pid: 100, ppid: 1, comm: "nginx", start: 500, exe: "/usr/sbin/nginx",
		args: []string{"nginx", "-g", "daemon off;"},
		fds:  map[int]string{0: "/dev/null", 1: "pipe:[77]", 3: sock(1001), 4: sock(1002), 5: "anon_inode:[eventpoll]"}}
	worker = fixProc{pid: 101, ppid: 100, comm: "nginx", start: 500, exe: "/usr/sbin/nginx",
		args: []string{"nginx: worker process"},
		fds:  map[int]string{3: sock(1001), 7: sock(2001)}}
	curl = fixProc{pid: 42, ppid: 7, comm: "curl (x) y", start: 900, exe: "/usr/bin/curl",
		args: []string{"curl", "-s", "http://127.0.0.1/"},
		fds:  map[int]string{5: sock(3001)}}
)

func nginxRecord() *record.Process {
	return &record.Process{PID: 100, PPID: 1, Name: "nginx", Executable: "/usr/sbin/nginx",
		Args: []string{"nginx", "-g", "daemon off;"}, Cmdline: "nginx -g daemon off;", Start: startOf(500)}
}

// clock is a settable clock for the table.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTable(t *testing.T, root string) (*Table, *clock) {
	t.Helper()
	tab, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	c := &clock{t: time.Date(2026, 11, 26, 5, 0, 0, 0, time.UTC)}
	tab.Now = c.now
	return tab, c
}

func TestLookup(t *testing.T) {
	t.Parallel()
	root := newFixture(t, nginx, worker, curl)
	tab, c := newTable(t, root)
	seen := c.t.Add(-time.Second)

	tests := []struct {
		name  string
		inode uint64
		want  *record.Process
	}{
		{"listener", 1002, nginxRecord()},
		{"shared after fork: the older process, then the lower pid", 1001, nginxRecord()},
		{"worker only", 2001, &record.Process{PID: 101, PPID: 100, Name: "nginx", Executable: "/usr/sbin/nginx",
			Args: []string{"nginx: worker process"}, Cmdline: "nginx: worker process", Start: startOf(500)}},
		{"name with parentheses and spaces", 3001, &record.Process{PID: 42, PPID: 7, Name: "curl (x) y", Executable: "/usr/bin/curl",
			Args: []string{"curl", "-s", "http://127.0.0.1/"}, Cmdline: "curl -s http://127.0.0.1/", Start: startOf(900)}},
		{"unknown inode", 9999, nil},
		{"inode 0", 0, nil},
	}
	for _, tt := range tests {
		got := tab.Lookup(tt.inode, seen, true)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: Lookup(%d) (-want +got):\n%s", tt.name, tt.inode, diff)
		}
	}
	s := tab.Stats()
	if s.Walks != 1 {
		t.Errorf("walks = %d, want 1 (one per snapshot): %v", s.Walks, s)
	}
	if s.FDDirs != 3 || s.FDLinks != 8 {
		t.Errorf("fd_dirs=%d fd_links=%d, want 3 and 8: %v", s.FDDirs, s.FDLinks, s)
	}
}

const (
	dockerID = "9e1987cf07ac408dc51d2803c828d32d4efea2ef46e426a60f143a8444b7f5ed"
	podID    = "8f2fa4fc6db8bfcb9d9943b00d25b8b24749b7903619cf2ca626f673d953b6c8"
)

// TestOwnerContainer finds the container of each process from its cgroup
// file, once per process, and again when the pid names another process.
func TestOwnerContainer(t *testing.T) {
	t.Parallel()
	inDocker := nginx
	inDocker.cgroup = "0::/system.slice/docker-" + dockerID + ".scope\n"
	onHost := curl
	onHost.cgroup = "0::/user.slice/user-1000.slice/session-2.scope\n"
	noFile := fixProc{pid: 7, ppid: 1, comm: "gone", start: 9, fds: map[int]string{3: sock(7001)}}
	root := newFixture(t, inDocker, worker, onHost, noFile)
	tab, c := newTable(t, root)
	seen := c.t.Add(-time.Second)

	tests := []struct {
		name  string
		inode uint64
		pid   int
		want  *record.Container
	}{
		{"in a container", 1002, 100, &record.Container{ID: dockerID}},
		{"same process, another socket", 1001, 100, &record.Container{ID: dockerID}},
		{"on the host", 3001, 42, nil},
		{"no cgroup file", 7001, 7, nil},
		{"not found", 9999, 0, nil},
	}
	for _, tt := range tests {
		p, ctr := tab.Owner(tt.inode, seen, true)
		gotPID := 0
		if p != nil {
			gotPID = p.PID
		}
		if gotPID != tt.pid {
			t.Errorf("%s: Owner(%d) process %+v, want pid %d", tt.name, tt.inode, p, tt.pid)
		}
		if diff := cmp.Diff(tt.want, ctr); diff != "" {
			t.Errorf("%s: Owner(%d) container (-want +got):\n%s", tt.name, tt.inode, diff)
		}
	}
	// The walk reads stat and cgroup of the 4 processes with sockets; the
	// details of the 3 found add three reads each (directory, exe, cmdline).
	if s := tab.Stats(); s.ProcFiles != 4*2+3*3 {
		t.Errorf("proc_files = %d, want %d: %v", s.ProcFiles, 4*2+3*3, s)
	}
	// Another walk reads no cgroup again.
	tab.EndSnapshot()
	before := tab.Stats()
	tab.Owner(5555, seen, true)
	if d := tab.Stats().Sub(before); d.Walks != 1 || d.ProcFiles != 4 {
		t.Errorf("second walk: %v, want 1 walk and 4 stat reads", d)
	}

	// The pid is reused by a process of a Kubernetes pod.
	reused := fixProc{pid: 100, ppid: 55, comm: "app", start: 80000, fds: map[int]string{3: sock(1002)},
		cgroup: "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod8a3f1f0c_3a4d_4b1e_9c57_2f6e0d9b7a11.slice/cri-containerd-" + podID + ".scope\n"}
	writeProc(t, root, reused)
	tab.EndSnapshot()
	if _, ctr := tab.Owner(1002, seen, true); !cmp.Equal(ctr, &record.Container{ID: podID}) {
		t.Errorf("after pid reuse: container %+v, want %s", ctr, podID)
	}
	// Lookup is Owner without the container.
	if p := tab.Lookup(1002, seen, true); p == nil || p.Name != "app" {
		t.Errorf("Lookup(1002) = %+v, want app", p)
	}
}

func TestSharedSocketOldestWins(t *testing.T) {
	t.Parallel()
	// The pid that wrapped around (5) started after the pid that holds the
	// socket since earlier (300): start time decides, not the pid.
	old := fixProc{pid: 300, ppid: 1, comm: "old", start: 100, fds: map[int]string{3: sock(7)}}
	young := fixProc{pid: 5, ppid: 300, comm: "young", start: 200, fds: map[int]string{3: sock(7)}}
	tab, c := newTable(t, newFixture(t, old, young))
	got := tab.Lookup(7, c.t.Add(-time.Second), true)
	if got == nil || got.PID != 300 {
		t.Fatalf("Lookup(7) = %+v, want pid 300", got)
	}
}

func TestWalkOncePerSnapshot(t *testing.T) {
	t.Parallel()
	root := newFixture(t, nginx)
	tab, c := newTable(t, root)
	seen := c.t.Add(-time.Second)

	// Quiet: no lookup, no read.
	tab.EndSnapshot()
	tab.EndSnapshot()
	if s := tab.Stats(); s != (Stats{}) {
		t.Fatalf("stats after quiet snapshots = %v, want zero", s)
	}

	for i := 0; i < 5; i++ {
		if p := tab.Lookup(5000+uint64(i), seen, true); p != nil {
			t.Fatalf("unknown inode found: %+v", p)
		}
	}
	if s := tab.Stats(); s.Walks != 1 || s.NotFound != 5 {
		t.Fatalf("after 5 unknown inodes in one snapshot: %v, want 1 walk", s)
	}

	// Known inodes in the next snapshot: the process is checked once
	// (one stat read), no walk.
	tab.Lookup(1001, seen, true)
	tab.EndSnapshot()
	before := tab.Stats()
	for i := 0; i < 10; i++ {
		if p := tab.Lookup(1001, seen, true); p == nil || p.PID != 100 {
			t.Fatalf("Lookup(1001) = %+v", p)
		}
	}
	d := tab.Stats().Sub(before)
	if d.Walks != 0 || d.ProcFiles != 1 || d.FDDirs != 0 || d.Hits != 10 {
		t.Fatalf("known inodes in a new snapshot: %v, want 10 hits, 1 stat read, no walk", d)
	}

	// A socket seen after the last walk began may walk again, even in the
	// same snapshot; one in the future may not.
	before = tab.Stats()
	c.t = c.t.Add(time.Minute)
	tab.Lookup(6000, c.t.Add(-time.Millisecond), true)
	tab.Lookup(6001, c.t.Add(time.Hour), true)
	tab.Lookup(6002, c.t.Add(-time.Hour), true)
	if d := tab.Stats().Sub(before); d.Walks != 1 {
		t.Fatalf("walks = %d, want 1 (socket seen after the walk of this snapshot): %v", d.Walks, d)
	}

	// mayWalk false never walks.
	tab.EndSnapshot()
	before = tab.Stats()
	tab.Lookup(7000, seen, false)
	if d := tab.Stats().Sub(before); d.Walks != 0 {
		t.Fatalf("walked with mayWalk false: %v", d)
	}
}

func TestPIDReuse(t *testing.T) {
	t.Parallel()
	root := newFixture(t, nginx)
	tab, c := newTable(t, root)
	seen := c.t.Add(-time.Second)
	if p := tab.Lookup(1001, seen, true); p == nil || p.Name != "nginx" {
		t.Fatalf("before reuse: %+v", p)
	}

	// nginx exits; pid 100 now names another process, which holds a new
	// socket and, through a passed descriptor, the old one.
	reused := fixProc{pid: 100, ppid: 55, comm: "sshd", start: 80000, exe: "/usr/sbin/sshd",
		args: []string{"sshd: alice"}, fds: map[int]string{3: sock(1001), 4: sock(4242)}}
	writeProc(t, root, reused)
	tab.EndSnapshot()

	want := &record.Process{PID: 100, PPID: 55, Name: "sshd", Executable: "/usr/sbin/sshd",
		Args: []string{"sshd: alice"}, Cmdline: "sshd: alice", Start: startOf(80000)}
	if diff := cmp.Diff(want, tab.Lookup(1001, seen, true)); diff != "" {
		t.Errorf("known inode after pid reuse (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, tab.Lookup(4242, seen, true)); diff != "" {
		t.Errorf("new inode after pid reuse (-want +got):\n%s", diff)
	}

	// The process exits: its sockets are no longer attributed.
	if err := os.RemoveAll(filepath.Join(root, "100")); err != nil {
		t.Fatal(err)
	}
	tab.EndSnapshot()
	if p := tab.Lookup(4242, seen, true); p != nil {
		t.Errorf("socket of an exited process attributed to %+v", p)
	}
}

func TestPPIDChange(t *testing.T) {
	t.Parallel()
	root := newFixture(t, worker)
	tab, c := newTable(t, root)
	seen := c.t.Add(-time.Second)
	if p := tab.Lookup(2001, seen, true); p == nil || p.PPID != 100 {
		t.Fatalf("Lookup = %+v", p)
	}
	// The parent exits; the worker is reparented to init.
	w := worker
	w.ppid = 1
	writeProc(t, root, w)
	tab.EndSnapshot()
	if p := tab.Lookup(2001, seen, true); p == nil || p.PPID != 1 {
		t.Fatalf("after reparenting: %+v, want ppid 1", p)
	}
}

// TestUnreadableFDDir checks that a process whose fd directory cannot be
// read is skipped silently while the others are found. Root reads any mode,
// so as root the test runs again as nobody.
func TestUnreadableFDDir(t *testing.T) {
	if os.Geteuid() == 0 {
		runAsNobody(t, "TestUnreadableFDDir")
		return
	}
	root := newFixture(t, nginx, curl)
	fd := filepath.Join(root, "100", "fd")
	if err := os.Chmod(fd, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(fd, 0o755) })
	if _, err := os.ReadDir(fd); err == nil {
		t.Skip("mode 000 directory still readable")
	}
	tab, c := newTable(t, root)
	seen := c.t.Add(-time.Second)
	if p := tab.Lookup(1001, seen, true); p != nil {
		t.Errorf("socket behind an unreadable fd dir attributed to %+v", p)
	}
	if p := tab.Lookup(3001, seen, true); p == nil || p.PID != 42 {
		t.Errorf("Lookup(3001) = %+v, want pid 42", p)
	}
}

// runAsNobody runs one test of a copy of this test binary as uid and gid
// 65534 and fails if it fails. The copy lives in a directory nobody may
// read, since the build directory may not be.
func runAsNobody(t *testing.T, name string) {
	t.Helper()
	bin := testprog.CopySelf(t, "test")
	dir := filepath.Dir(bin)
	cmd := exec.Command(bin, "-test.run=^"+name+"$", "-test.v", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TMPDIR=/tmp")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s as nobody: %v\n%s", name, err, out)
	}
	t.Logf("%s as nobody:\n%s", name, out)
}

func TestNewBadRoot(t *testing.T) {
	t.Parallel()
	if _, err := New(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("New of a missing root: no error")
	}
}

func TestParseSocketLink(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"socket:[12345]", 12345, true},
		{"socket:[0]", 0, true},
		{"socket:[18446744073709551615]", 1<<64 - 1, true},
		{"socket:[18446744073709551616]", 0, false},
		{"socket:[]", 0, false},
		{"socket:[12a]", 0, false},
		{"socket:[12", 0, false},
		{"pipe:[12]", 0, false},
		{"/tmp/socket:[1]", 0, false},
		{"anon_inode:[eventpoll]", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, ok := ParseSocketLink([]byte(tt.in))
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseSocketLink(%q) = %d, %v, want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseStat(t *testing.T) {
	t.Parallel()
	real, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Skip(err)
	}
	self, err := ParseStat(real)
	if err != nil || self.PID != os.Getpid() || self.PPID != os.Getppid() || self.Start == 0 {
		t.Errorf("ParseStat(/proc/self/stat) = %+v, %v; want pid %d ppid %d", self, err, os.Getpid(), os.Getppid())
	}

	tests := []struct {
		name    string
		in      string
		want    Stat
		wantErr bool
	}{
		{"fixture", statLine(curl), Stat{PID: 42, Comm: "curl (x) y", PPID: 7, Start: 900}, false},
		{"kernel thread", "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0",
			Stat{PID: 2, Comm: "kthreadd", PPID: 0, Start: 1}, false},
		{"empty name", "9 () S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 77 0", Stat{PID: 9, PPID: 1, Start: 77}, false},
		{"no name", "9 S 1", Stat{}, true},
		{"truncated", "9 (a) S 1 1 1", Stat{}, true},
		{"bad pid", "x (a) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 77 0", Stat{}, true},
		{"bad start", "9 (a) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 -7 0", Stat{}, true},
		{"empty", "", Stat{}, true},
	}
	for _, tt := range tests {
		got, err := ParseStat([]byte(tt.in))
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: ParseStat error = %v, want error %v", tt.name, err, tt.wantErr)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: ParseStat (-want +got):\n%s", tt.name, diff)
		}
	}
}

func FuzzParseStat(f *testing.F) {
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		f.Add(b)
	}
	if b, err := os.ReadFile("/proc/1/stat"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(statLine(curl)))
	f.Add([]byte("1 ((((( S 1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStat(b)
		if err == nil && len(s.Comm) > len(b) {
			t.Fatalf("name longer than the input: %q", s.Comm)
		}
	})
}

func FuzzParseSocketLink(f *testing.F) {
	for _, s := range []string{"socket:[12345]", "pipe:[1]", "socket:[]", "socket:[99999999999999999999]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, ok := ParseSocketLink(b)
		if ok && sock(n) != string(b) && !strings.HasPrefix(string(b), "socket:[0") {
			t.Fatalf("ParseSocketLink(%q) = %d, which formats as %q", b, n, sock(n))
		}
	})
}

func TestReadContainer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, data string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o444); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Longer than the read buffer, the v2 line last.
	var long strings.Builder
	for i := 0; long.Len() < 10000; i++ {
		fmt.Fprintf(&long, "%d:ctl%d:/a/very/deep/path/of/some/length/that/names/no/container/%d\n", i+1, i, i)
	}
	long.WriteString("0::/system.slice/docker-" + dockerID + ".scope\n")
	tests := []struct {
		name string
		path string
		want *record.Container
	}{
		{"short", write("short", "0::/docker/"+dockerID+"\n"), &record.Container{ID: dockerID}},
		{"longer than the buffer", write("long", long.String()), &record.Container{ID: dockerID}},
		{"exactly the buffer", write("exact", "0::/docker/"+dockerID+"\n"+strings.Repeat("x", 4096-76)), &record.Container{ID: dockerID}},
		{"host", write("host", "0::/init.scope\n"), nil},
		{"empty", write("empty", ""), nil},
		{"missing", filepath.Join(dir, "missing"), nil},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, readContainer(tt.path)); diff != "" {
			t.Errorf("%s: readContainer (-want +got):\n%s", tt.name, diff)
		}
	}
}

// TestSocketFiles checks that a table given SocketFiles finds the same
// processes as one that reads /proc/PID/fd, without reading a descriptor
// directory, and reads /proc again when SocketFiles fails.
func TestSocketFiles(t *testing.T) {
	t.Parallel()
	root := newFixture(t, nginx, worker, curl)
	lister := func(fn func(pid int, inode uint64)) error {
		for _, p := range []fixProc{nginx, worker, curl} {
			for _, target := range p.fds {
				if ino, ok := ParseSocketLink([]byte(target)); ok {
					fn(p.pid, ino)
				}
			}
		}
		return nil
	}
	tab, c := newTable(t, root)
	tab.SocketFiles = lister
	seen := c.t.Add(-time.Second)
	if diff := cmp.Diff(nginxRecord(), tab.Lookup(1001, seen, true)); diff != "" {
		t.Errorf("shared socket (-want +got):\n%s", diff)
	}
	if got := tab.Lookup(3001, seen, true); got == nil || got.PID != 42 {
		t.Errorf("curl's socket: %+v", got)
	}
	if s := tab.Stats(); s.Walks != 1 || s.FDDirs != 0 || s.FDLinks != 5 || tab.SocketFilesErr != nil {
		t.Errorf("stats %v, err %v: want one walk and no fd directory read", s, tab.SocketFilesErr)
	}

	failing, c2 := newTable(t, root)
	failing.SocketFiles = func(func(int, uint64)) error { return os.ErrPermission }
	if got := failing.Lookup(3001, c2.t.Add(-time.Second), true); got == nil || got.PID != 42 {
		t.Errorf("after a failing SocketFiles: %+v", got)
	}
	if s := failing.Stats(); s.FDDirs != 3 || failing.SocketFilesErr != os.ErrPermission {
		t.Errorf("after a failing SocketFiles: stats %v, err %v", s, failing.SocketFilesErr)
	}
}
