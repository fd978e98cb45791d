package sockproc

import (
	"bytes"
	"context"
	"io"
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
	e := env{privileged: func() (bool, error) { return true, nil }}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := run(context.Background(), []string{"--proc", procRoot, "--passwd", passwd}, bytes.NewReader(data), io.Discard, io.Discard, e); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
}
