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
