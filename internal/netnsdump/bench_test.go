package netnsdump

import (
	"context"
	"testing"
)

// BenchmarkSnapshot dumps the sockets of this host and encodes them: run
// it beside examples/bench/sockdump.sh's population (sockhold) to measure
// the cost at scale. It reports the sockets per dump.
func BenchmarkSnapshot(b *testing.B) {
	d, err := Open("", TCP)
	if err != nil {
		b.Skip("no sock_diag:", err)
	}
	h := NewHost(d, "", Config{})
	defer h.Close()
	var lines int
	out := Lines(func([]byte) error { lines++; return nil })
	for b.Loop() {
		lines = 0
		if err := h.Snapshot(context.Background(), out); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(lines-1), "sockets")
}
