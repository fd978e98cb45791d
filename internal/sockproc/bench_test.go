package sockproc

import (
	"bytes"
	"context"
	"io"
	"os"
	"strings"
	"testing"
)

// BenchmarkRun is the cost of one socket record through sockproc, with
// its process in the index and its user in the cache: decode, look up,
// encode.
func BenchmarkRun(b *testing.B) {
	procRoot, passwd := fixture(b)
	var in strings.Builder
	const n = 10000
	for i := 0; i < n; i++ {
		in.WriteString(sockLine("established", 1001+i%2, 33, ""))
		in.WriteByte('\n')
	}
	in.WriteString(snapLine + "\n")
	data := []byte(in.String())
	e := Env{Privileged: func() (bool, error) { return true, nil }, SocketFiles: readFDLinks}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := e.Run(context.Background(), []string{"--proc", procRoot, "--passwd", passwd}, bytes.NewReader(data), io.Discard, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
}

// BenchmarkRunDump is sockproc from a cold start on a saved dump of this
// host, against the real /proc: one walk, then the details (and cgroup)
// of every process that holds a socket. Set SOCKPROC_BENCH_DUMP to the
// output of sockdump, taken while a population is held (see
// examples/bench/sockproc.sh); skipped otherwise.
func BenchmarkRunDump(b *testing.B) {
	path := os.Getenv("SOCKPROC_BENCH_DUMP")
	if path == "" {
		b.Skip("SOCKPROC_BENCH_DUMP not set")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	n := bytes.Count(data, []byte(`"type":"socket"`))
	e := Env{Privileged: func() (bool, error) { return true, nil }, SocketFiles: readFDLinks}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := e.Run(context.Background(), []string{"--passwd", "/dev/null"}, bytes.NewReader(data), io.Discard, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
}
