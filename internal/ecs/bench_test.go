package ecs

import (
	"testing"

	"github.com/sockpipe/sockpipe/internal/record"
)

// BenchmarkBuild builds and encodes the document of a record with every
// enrichment (process, user, reverse DNS, container, namespace), in both
// modes.
func BenchmarkBuild(b *testing.B) {
	r := corpusRecord(families[0], record.DirectionIngress, record.EventOpened, withProcess|withHost|withUser|withContainer)
	r.Remote.Host, r.Remote.ETLDPlusOne = "edge-1.example.com.", "example.com."
	for _, o := range []Options{{Hostname: "web-1"}, {Strict: true, Hostname: "web-1"}} {
		name := "default"
		if o.Strict {
			name = "strict"
		}
		b.Run(name, func(b *testing.B) {
			var d Doc
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				d.Build(r, t0, &o)
				buf = d.AppendJSON(buf[:0])
			}
			b.SetBytes(int64(len(buf)))
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "docs/s")
		})
	}
}
