package sockdump

import (
	"bytes"
	"context"
	"io"
	"os"
	"testing"
)

// The benchmarks below run the whole program once per iteration, as a
// "sockdump" command would, minus the process start: finding and entering
// the namespaces, the first dump into empty slices, and the encoding. They
// measure what is there: run them beside examples/bench/netns.sh's
// populations (SOCKPIPE_BENCH_PROFILE=DIR makes it run them with a CPU
// profile), e.g.
//
//	SOCKPIPE_BENCH_NETNS=/run/netns/NAME go test -run '^$' \
//	    -bench 'Run(All)?NetNS' -cpuprofile cpu.prof ./internal/sockdump
//
// They report the sockets of each dump and the time per socket.

// BenchmarkRunAllNetNS runs "sockdump --all-netns": every network
// namespace of the host. Entering them needs root.
func BenchmarkRunAllNetNS(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("entering other network namespaces needs root")
	}
	benchRun(b, "--all-netns")
}

// BenchmarkRunNetNS runs "sockdump --netns $SOCKPIPE_BENCH_NETNS": one
// namespace, such as /run/netns/NAME.
func BenchmarkRunNetNS(b *testing.B) {
	path := os.Getenv("SOCKPIPE_BENCH_NETNS")
	if path == "" {
		b.Skip("set SOCKPIPE_BENCH_NETNS to a network namespace file, e.g. /run/netns/NAME")
	}
	benchRun(b, "--netns", path)
}

func benchRun(b *testing.B, args ...string) {
	var out lineCounter
	for b.Loop() {
		out = 0
		if err := Run(context.Background(), args, nil, &out, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	sockets := float64(out - 1) // all but the snapshot record
	b.ReportMetric(sockets, "sockets")
	if sockets > 0 {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/sockets, "ns/socket")
	}
}

// lineCounter counts the lines written to it.
type lineCounter int

func (c *lineCounter) Write(p []byte) (int, error) {
	*c += lineCounter(bytes.Count(p, []byte{'\n'}))
	return len(p), nil
}
