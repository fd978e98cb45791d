package netnsdump

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A fixture /proc: processes sharing a namespace are hard links of one
// file, as they share one nsfs inode.
func TestFindNamespacesFixture(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	proc, pins := filepath.Join(root, "proc"), filepath.Join(root, "netns")
	mk := func(path string) uint64 {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, nil, 0o444); err != nil {
			t.Fatal(err)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	link := func(old, path string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Link(old, path); err != nil {
			t.Fatal(err)
		}
	}
	host := mk(proc + "/1/ns/net")
	link(proc+"/1/ns/net", proc+"/20/ns/net")
	ctr := mk(proc + "/300/ns/net")
	link(proc+"/300/ns/net", proc+"/4000/ns/net")
	os.MkdirAll(proc+"/self/ns", 0o755) // not a pid
	os.MkdirAll(proc+"/sys", 0o755)
	os.MkdirAll(proc+"/55", 0o755) // exited: no ns/net
	mk(pins + "/not-a-namespace")  // a regular file, not nsfs: ignored

	got, denied, err := findNamespaces(proc, []string{pins, filepath.Join(root, "missing")})
	if err != nil || len(denied) != 0 {
		t.Fatalf("findNamespaces: %v, %d denied", err, denied)
	}
	want := []nsFile{{host, proc + "/1/ns/net", proc + "/1"}, {ctr, proc + "/300/ns/net", proc + "/300"}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(nsFile{})); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// On the real /proc, sockdump's own namespace is among those found, and
// namespace files are told from other files.
func TestFindNamespacesProc(t *testing.T) {
	t.Parallel()
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/self/ns/net", &st); err != nil {
		t.Skip("no /proc/self/ns/net:", err)
	}
	// A pin of the namespace (a symbolic link stands for the bind mount
	// that ip netns makes) is found first, and the process gives its proc.
	pins := t.TempDir()
	if err := os.Symlink(fmt.Sprintf("/proc/%d/ns/net", os.Getpid()), pins+"/self"); err != nil {
		t.Fatal(err)
	}
	found, _, err := findNamespaces("/proc", []string{pins})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) == 0 || found[0].ino != st.Ino || found[0].path != pins+"/self" || found[0].proc == "" {
		t.Errorf("own namespace net:[%d], pinned at %s/self, not first with a process in %v", st.Ino, pins, found)
	}
	if !isNetNS("/proc/self/ns/net") || isNetNS("/proc/self/ns/mnt") || isNetNS("/etc/hostname") || isNetNS("/nonexistent") {
		t.Error("isNetNS does not tell network namespaces from other files")
	}
}

func TestDeniedMessage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		pids   []int
		ptrace bool
		want   string
	}{
		{"one, held", []int{1}, true, "could not read the network namespace of process 1 (permission denied)"},
		{"two, not held", []int{1, 42}, false, "could not read the network namespace of processes 1, 42 (permission denied; reading other users' /proc/PID/ns/net needs CAP_SYS_PTRACE)"},
		{"many", []int{1, 2, 3, 4, 5}, true, "could not read the network namespace of processes 1, 2, 3 and 2 more (permission denied)"},
	} {
		if got := deniedMessage(tc.pids, tc.ptrace); got != tc.want {
			t.Errorf("%s: deniedMessage = %q, want %q", tc.name, got, tc.want)
		}
	}
}
