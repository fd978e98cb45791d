package sockfiles

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/sockpipe/sockpipe/internal/proctable"
	"github.com/sockpipe/sockpipe/internal/testprog"
)

// readlinkInodes returns the socket inodes of pid's descriptors, by fd,
// as /proc/PID/fd tells them.
func readlinkInodes(t *testing.T, pid int) map[int]uint64 {
	t.Helper()
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]uint64{}
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if ino, ok := proctable.ParseSocketLink([]byte(link)); ok {
			fd, _ := strconv.Atoi(e.Name())
			out[fd] = ino
		}
	}
	return out
}

// TestIntegrationList checks the iterator against /proc/PID/fd for two
// processes that hold TCP and UDP sockets, one of them as nobody, and for
// this test process.
func TestIntegrationList(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("the iterator needs root")
	}
	bin := testprog.Build(t, "github.com/sockpipe/sockpipe/internal/testprog/sockfix")
	args := []string{"-tcp", "127.0.0.1:0", "-udp", "127.0.0.1:0"}
	kids := []*testprog.Fixture{
		testprog.StartFixture(t, testprog.NetNS{}, bin, args...),
		testprog.StartFixtureAsNobody(t, bin, args...),
	}
	l, err := Open("")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := map[int]map[int]uint64{}
	n := 0
	if err := l.List(func(f File) {
		n++
		if got[f.PID] == nil {
			got[f.PID] = map[int]uint64{}
		}
		got[f.PID][f.FD] = f.Inode
	}); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{kids[0].PID, kids[1].PID, os.Getpid()} {
		want := readlinkInodes(t, pid)
		if pid != os.Getpid() && len(want) < 3 {
			t.Fatalf("pid %d holds %d sockets, want at least 3", pid, len(want))
		}
		if !mapsEqual(got[pid], want) {
			t.Errorf("pid %d: iterator %v, /proc %v", pid, got[pid], want)
		}
	}
	// Every process's, the same on a second pass.
	n2 := 0
	if err := l.List(func(File) { n2++ }); err != nil || n2 < n-100 || n2 > n+100 {
		t.Errorf("second pass: %d files (%v), first %d", n2, err, n)
	}
}

func mapsEqual(a, b map[int]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestUnprivileged checks that, without privileges, Open says so.
func TestUnprivileged(t *testing.T) {
	if os.Getuid() != 0 {
		if _, err := Open(""); !errors.Is(err, ErrPermission) && !errors.Is(err, ErrPidNamespace) {
			t.Errorf("Open: %v, want %v", err, ErrPermission)
		}
		return
	}
	bin := testprog.CopySelf(t, "sockfiles-nobody")
	cmd := exec.Command(bin, "-test.run", "^TestUnprivileged$")
	testprog.AsNobody(t, cmd)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("as nobody: %v\n%s", err, out)
	}
}

func entries(fs ...File) []byte {
	var b []byte
	for _, f := range fs {
		b = binary.NativeEndian.AppendUint32(b, uint32(f.PID))
		b = binary.NativeEndian.AppendUint32(b, uint32(f.FD))
		b = binary.NativeEndian.AppendUint64(b, f.Inode)
	}
	return b
}

// oneByte reads one byte at a time, as a reader of a pipe may.
type oneByte struct{ r *bytes.Reader }

func (o oneByte) Read(p []byte) (int, error) { return o.r.Read(p[:min(1, len(p))]) }

func TestDecode(t *testing.T) {
	want := []File{{1, 3, 100}, {1, 4, 101}, {4242, 7, 1 << 40}}
	for name, r := range map[string]func(b []byte) interface {
		Read([]byte) (int, error)
	}{
		"whole":    func(b []byte) interface{ Read([]byte) (int, error) } { return bytes.NewReader(b) },
		"one byte": func(b []byte) interface{ Read([]byte) (int, error) } { return oneByte{bytes.NewReader(b)} },
	} {
		var got []File
		if err := Decode(r(entries(want...)), func(f File) { got = append(got, f) }); err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: %v %v, want %v", name, got, err, want)
		}
	}
	if err := Decode(bytes.NewReader(entries(want...)[:20]), func(File) {}); err == nil {
		t.Error("a torn entry: no error")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(entries(File{1, 3, 100}, File{2, 0, 5}))
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		err := Decode(bytes.NewReader(b), func(File) { n++ })
		if (err == nil) != (len(b)%entrySize == 0) || n != len(b)/entrySize {
			t.Fatalf("%d bytes: %d files, %v", len(b), n, err)
		}
	})
}
