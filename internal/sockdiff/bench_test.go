package sockdiff

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"
)

// snapshots is an input of endless snapshots of n sockets, 1% of them new
// in each, made on the fly from a ring of 2n pre-encoded lines.
type snapshots struct {
	lines [][]byte
	n     int
	snap  int // snapshot being written
	i     int // its next socket; n: its snapshot record
	buf   []byte
	limit int // snapshots to write
}

func newSnapshots(n, limit int) *snapshots {
	s := &snapshots{n: n, limit: limit}
	for i := range 2 * n {
		s.lines = append(s.lines, fmt.Appendf(nil, `{"type":"socket","time":"2026-11-26T04:30:00.123456789Z","family":"ipv4","transport":"tcp","state":"established","local":{"ip":"10.0.0.1","port":%d},"remote":{"ip":"10.%d.%d.%d","port":443},"direction":"egress","inode":%d,"uid":1000,"cookie":%d,"netns":4026531840}`+"\n",
			1024+i%60000, i>>16&255, i>>8&255, i&255, 1_000_000+i, 5_000_000+i))
	}
	return s
}

func (s *snapshots) Read(p []byte) (int, error) {
	for len(s.buf) < len(p) && s.snap < s.limit {
		if s.i < s.n {
			s.buf = append(s.buf, s.lines[(s.snap*s.n/100+s.i)%len(s.lines)]...)
			s.i++
			continue
		}
		s.buf = fmt.Appendf(s.buf, `{"type":"snapshot","time":%q,"schema":1,"sockets":%d,"duration_ns":150000000}`+"\n",
			time.Date(2026, 11, 26, 4, 30, s.snap, 0, time.UTC).Format(time.RFC3339Nano), s.n)
		s.snap, s.i = s.snap+1, 0
	}
	if len(s.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.buf)
	s.buf = s.buf[:copy(s.buf, s.buf[n:])]
	return n, nil
}

// BenchmarkRun measures the whole stage on 100,000 sockets a snapshot, 1%
// new and 1% gone each time, with --closed: reading, decoding, comparing
// and writing the events. One op is one snapshot; the first op also
// carries the first snapshot, whose 100,000 sockets are all "existing".
func BenchmarkRun(b *testing.B) {
	const n = 100_000
	in := newSnapshots(n, b.N+1)
	c := config{closed: true, lockTimeout: time.Second, saveInterval: time.Hour, now: time.Now}
	var errs countingWriter
	b.ReportAllocs()
	b.ResetTimer()
	if err := run(context.Background(), c, in, io.Discard, &errs); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if errs > 0 {
		b.Fatal("errors on stderr")
	}
}

type countingWriter int

func (w *countingWriter) Write(p []byte) (int, error) {
	*w += countingWriter(len(p))
	return len(p), nil
}

// BenchmarkFirstRun measures the first run of a cron job: one snapshot of
// 100,000 sockets, all new, each written as an "existing" event. One op is
// the whole run.
func BenchmarkFirstRun(b *testing.B) {
	const n = 100_000
	in, err := io.ReadAll(newSnapshots(n, 1))
	if err != nil {
		b.Fatal(err)
	}
	c := config{lockTimeout: time.Second, saveInterval: time.Hour, now: time.Now}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if err := run(context.Background(), c, bytes.NewReader(in), io.Discard, io.Discard); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(b.N)/n, "ns/socket")
}
