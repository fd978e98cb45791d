package sockecs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/record"
)

// enrichedRecords returns n socket records, as NDJSON, with every field
// that sockdump, sockdiff, sockproc and sockresolve write, and a snapshot
// record after them.
func enrichedRecords(n int) []byte {
	enc := codec.NewEncoder()
	var buf bytes.Buffer
	for i := range n {
		r := &record.Record{
			Type: record.TypeSocket, Time: t0, Family: record.FamilyIPv4, Transport: record.TransportTCP,
			State: "established", Direction: record.DirectionEgress, Inode: uint64(100000 + i), UID: 1000, HasUID: true,
			Cookie: uint64(i + 1), NetNS: 4026531840, Event: record.EventOpened,
			Local: record.Endpoint{IP: "10.0.0.5", Port: uint16(10000 + i%50000)},
			Remote: record.Endpoint{
				IP: fmt.Sprintf("192.0.%d.%d", i/250%250, i%250+1), Port: 443,
				Host: fmt.Sprintf("edge-%d.cdn.example.com.", i%1000), ETLDPlusOne: "example.com.",
			},
			Process: &record.Process{
				PID: 4000 + i%100, PPID: 1, Name: "java", Executable: "/usr/lib/jvm/java-21/bin/java",
				Args:    []string{"/usr/lib/jvm/java-21/bin/java", "-Xmx4g", "-jar", "/opt/app/app.jar", "--server.port=8080"},
				Cmdline: "/usr/lib/jvm/java-21/bin/java -Xmx4g -jar /opt/app/app.jar --server.port=8080",
				Start:   t0.Add(-time.Hour),
			},
			User: &record.User{ID: "1000", Name: "app", FullName: "Application Service"},
		}
		buf.Write(enc.Encode(r))
	}
	fmt.Fprintf(&buf, `{"type":"snapshot","time":%q,"schema":1,"sockets":%d,"duration_ns":1000000}`+"\n", t0.Format(time.RFC3339Nano), n)
	return buf.Bytes()
}

// BenchmarkRun runs the whole program (decode, build, encode, write) over
// 100k records with every enrichment, the output of one sockdump snapshot
// of 100k sockets after every later stage. Each op is one snapshot.
func BenchmarkRun(b *testing.B) {
	const n = 100_000
	in := enrichedRecords(n)
	for _, args := range [][]string{nil, {"--strict-ecs"}, {"--bulk"}} {
		b.Run(fmt.Sprint(args), func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				if err := fixedEnv.Run(context.Background(), args, bytes.NewReader(in), io.Discard, io.Discard); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "docs/s")
			b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/snapshot")
		})
	}
}

// BenchmarkWriter measures building and encoding alone, one document per
// op, for a record with every enrichment.
func BenchmarkWriter(b *testing.B) {
	in := enrichedRecords(1)
	line, _, _ := bytes.Cut(in, []byte("\n"))
	r, err := codec.Decode(line)
	if err != nil {
		b.Fatal(err)
	}
	w := Writer{Now: fixedEnv.Now}
	b.ReportAllocs()
	for b.Loop() {
		w.Append(r)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "docs/s")
}
