package proctable

import (
	"os"
	"strconv"
	"syscall"
	"testing"
)

// openSockets opens n sockets (n/2 socket pairs) in this process.
func openSockets(tb testing.TB, n int) {
	tb.Helper()
	for i := 0; i < n/2; i++ {
		fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { syscall.Close(fds[0]); syscall.Close(fds[1]) })
	}
}

func BenchmarkSocketInodes(b *testing.B) {
	const n = 2000
	openSockets(b, n)
	dir := "/proc/" + strconv.Itoa(os.Getpid()) + "/fd"
	var s fdScanner
	b.ResetTimer()
	for b.Loop() {
		inodes, _, err := s.socketInodes(dir)
		if err != nil || len(inodes) < n {
			b.Fatal(len(inodes), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/fd")
}

func BenchmarkReadlinkPath(b *testing.B) {
	const n = 2000
	openSockets(b, n)
	dir := "/proc/" + strconv.Itoa(os.Getpid()) + "/fd"
	b.ResetTimer()
	for b.Loop() {
		d, _ := os.Open(dir)
		names, _ := d.Readdirnames(-1)
		d.Close()
		k := 0
		for _, nm := range names {
			t, err := os.Readlink(dir + "/" + nm)
			if err == nil && len(t) > 7 && t[:7] == "socket:" {
				k++
			}
		}
		if k < n {
			b.Fatal(k)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/fd")
}

// BenchmarkWalk walks the real /proc once per iteration: run it beside a
// population (examples/bench/sockproc.sh, or internal/bench/sockhold) to
// see the cost at scale.
func BenchmarkWalk(b *testing.B) {
	for _, workers := range []int{1, 2, 4} {
		b.Run("workers="+strconv.Itoa(workers), func(b *testing.B) {
			tab, err := New("")
			if err != nil {
				b.Skip(err)
			}
			tab.Workers = workers
			for b.Loop() {
				tab.walk()
			}
			s := tab.Stats()
			b.ReportMetric(float64(s.FDLinks)/float64(s.Walks), "links/walk")
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(s.FDLinks), "ns/link")
		})
	}
}

// BenchmarkLookupHit is the cost of attributing a socket that the index
// already holds, within one snapshot.
func BenchmarkLookupHit(b *testing.B) {
	root := b.TempDir()
	os.WriteFile(root+"/stat", []byte("btime 1700000000\n"), 0o644)
	os.MkdirAll(root+"/100/fd", 0o755)
	os.WriteFile(root+"/100/stat", []byte("100 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0\n"), 0o644)
	for i := 0; i < 1000; i++ {
		os.Symlink("socket:["+strconv.Itoa(i+1)+"]", root+"/100/fd/"+strconv.Itoa(i))
	}
	tab, err := New(root)
	if err != nil {
		b.Fatal(err)
	}
	now := tab.Now()
	if tab.Lookup(1, now, true) == nil {
		b.Fatal("not found")
	}
	i := 0
	for b.Loop() {
		if tab.Lookup(uint64(i%1000+1), now, true) == nil {
			b.Fatal("not found")
		}
		i++
	}
}

// BenchmarkDetails is what a process costs the first time one of its
// sockets is looked up, paid once per process: its executable, command
// line and cgroup, from the real /proc.
func BenchmarkDetails(b *testing.B) {
	tab, err := New("")
	if err != nil {
		b.Skip(err)
	}
	p := &proc{pid: os.Getpid(), ppid: os.Getppid(), comm: "bench", start: 1}
	for b.Loop() {
		p.rec = nil
		if r, _ := tab.details(p); r.Executable == "" {
			b.Fatal("no executable")
		}
	}
}

// BenchmarkStat is the read of /proc/PID/stat, for scale: the table reads
// it once per process in every walk.
func BenchmarkStat(b *testing.B) {
	path := "/proc/" + strconv.Itoa(os.Getpid()) + "/stat"
	for b.Loop() {
		if _, err := readStat(path); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCgroup is the part of BenchmarkDetails that finds the
// container: reading and parsing /proc/PID/cgroup.
func BenchmarkCgroup(b *testing.B) {
	path := "/proc/" + strconv.Itoa(os.Getpid()) + "/cgroup"
	for b.Loop() {
		readContainer(path)
	}
}
