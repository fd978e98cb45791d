package diff

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/record"
)

// benchSockets returns n distinct established IPv4 sockets, as decoded
// records and as the lines sockdump writes.
func benchSockets(n int) ([]*record.Record, [][]byte) { return benchSocketsIn(n, 1) }

// benchSocketsIn is benchSockets spread over network namespaces: socket i
// is in namespace i%namespaces, and each namespace holds the same
// 4-tuples, as containers started from one image do.
func benchSocketsIn(n, namespaces int) ([]*record.Record, [][]byte) {
	recs := make([]*record.Record, n)
	raws := make([][]byte, n)
	enc := codec.NewEncoder()
	for i := range recs {
		j := i / namespaces
		r := &record.Record{
			Type: record.TypeSocket, Time: t0, Family: record.FamilyIPv4, Transport: record.TransportTCP,
			State:     "established",
			Local:     record.Endpoint{IP: "10.0.0.1", Port: uint16(1024 + j%60000)},
			Remote:    record.Endpoint{IP: fmt.Sprintf("10.%d.%d.%d", j>>16&255, j>>8&255, j&255), Port: 443},
			Direction: record.DirectionEgress, Inode: uint64(1_000_000 + i), UID: 1000, HasUID: true,
			Cookie: uint64(5_000_000 + i), NetNS: 4026531840 + uint64(i%namespaces),
		}
		recs[i] = r
		line := enc.Encode(r)
		raws[i] = append([]byte(nil), line[:len(line)-1]...)
	}
	return recs, raws
}

// BenchmarkDiff measures the cost of one snapshot of 100,000 sockets of
// which 1% are new and 1% gone since the previous snapshot (closed events
// built): the comparison alone, without reading, decoding or writing the
// stream. The modes:
//   - dump-order: the sockets in the same order every time, as the
//     kernel's hash tables list them, each offered to Unchanged first and
//     to Socket when it is not, as sockdiff does;
//   - dump-order-socket: the same, every socket through Socket (the cost
//     when every line has to be decoded, e.g. when its fields change);
//   - shuffled: a new order every time, the worst case for prediction;
//   - shuffled-20-netns: the same, over 20 network namespaces that hold
//     the same 5,000 4-tuples each (sockdump --all-netns on a container
//     host): keys that differ only by namespace.
func BenchmarkDiff(b *testing.B) {
	const (
		n      = 100_000
		change = n / 100
		ring   = 2 * n
	)
	recs1, raws1 := benchSockets(ring)
	recsNS, rawsNS := benchSocketsIn(ring, 20)
	rng := rand.New(rand.NewPCG(1, 2))
	perms := make([][]int, 4)
	for i := range perms {
		perms[i] = rng.Perm(n)
	}
	for _, mode := range []string{"dump-order", "dump-order-socket", "shuffled", "shuffled-20-netns"} {
		recs, raws := recs1, raws1
		if mode == "shuffled-20-netns" {
			recs, raws = recsNS, rawsNS
		}
		b.Run(mode, func(b *testing.B) {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			before := ms.HeapAlloc
			s := New()
			snapshot := func(i int) {
				start := i * change
				for j := range n {
					if mode == "shuffled" || mode == "shuffled-20-netns" {
						j = perms[i%len(perms)][j]
					}
					k := (start + j) % ring
					if mode != "dump-order-socket" && s.Unchanged(raws[k]) {
						continue
					}
					s.Socket(recs[k], raws[k])
				}
				closed := 0
				if err := s.EndSnapshot(t0.Add(time.Duration(i)*time.Second), func(*record.Record) error { closed++; return nil }); err != nil {
					b.Fatal(err)
				}
				if i > 0 && closed != change {
					b.Fatalf("snapshot %d: %d closed, want %d", i, closed, change)
				}
			}
			snapshot(0)
			runtime.GC()
			runtime.ReadMemStats(&ms)
			state := float64(ms.HeapAlloc-before) / n
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				snapshot(i + 1)
			}
			b.ReportMetric(state, "state-B/conn")
		})
	}
}

// BenchmarkEncodeState measures writing the state file of 100,000
// connections, the cost of each periodic save.
func BenchmarkEncodeState(b *testing.B) {
	const n = 100_000
	recs, raws := benchSockets(n)
	s := New()
	for i := range recs {
		s.Socket(recs[i], raws[i])
	}
	s.EndSnapshot(t0, nil)
	b.ReportAllocs()
	var w countWriter
	for range b.N {
		if err := s.Encode(&w, t0); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(w)/float64(b.N), "file-B")
}

// BenchmarkDecodeState measures reading the state file of 100,000
// connections, what each cron run of sockdiff --state pays first.
func BenchmarkDecodeState(b *testing.B) {
	const n = 100_000
	recs, raws := benchSockets(n)
	s := New()
	for i := range recs {
		s.Socket(recs[i], raws[i])
	}
	s.EndSnapshot(t0, nil)
	var file bytes.Buffer
	if err := s.Encode(&file, t0); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(file.Len()))
	b.ReportAllocs()
	for b.Loop() {
		got, err := Decode(bytes.NewReader(file.Bytes()))
		if err != nil || got.Len() != n {
			b.Fatal(err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(b.N)/n, "ns/conn")
}

type countWriter int64

func (w *countWriter) Write(p []byte) (int, error) { *w += countWriter(len(p)); return len(p), nil }

// BenchmarkDestroyed measures folding in one destroy notification, with
// 100,000 known connections: of a known connection (its closed event
// built), of one no snapshot held (short-lived: opened and closed events
// built), and a wiped one matched by its cookie (the index already built).
func BenchmarkDestroyed(b *testing.B) {
	const n = 100_000
	recs, raws := benchSockets(2 * n)
	destroyedOf := func(r *record.Record) *record.Record {
		d := *r
		d.Type, d.State, d.Inode, d.HasUID, d.UID = record.TypeDestroyed, "closed", 0, false, 0
		d.Info = &record.TCPInfo{BytesAcked: 100, BytesReceived: 2000, SegsOut: 5, SegsIn: 7}
		return &d
	}
	for _, mode := range []string{"known", "short-lived", "wiped"} {
		b.Run(mode, func(b *testing.B) {
			s := New()
			for i := range n {
				s.Socket(recs[i], raws[i])
			}
			s.EndSnapshot(t0, nil)
			ds := make([]*record.Record, 0, n)
			for i := range n {
				switch mode {
				case "known":
					ds = append(ds, destroyedOf(recs[i]))
				case "short-lived":
					ds = append(ds, destroyedOf(recs[n+i]))
				case "wiped":
					d := destroyedOf(recs[i])
					d.Local.IP, d.Remote.IP, d.Remote.Port, d.Info = "0.0.0.0", "0.0.0.0", 0, nil
					ds = append(ds, d)
				}
			}
			s.lookupCookie(cookieKey{c: 1}) // build the index
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i%n == 0 && i > 0 {
					b.StopTimer()
					s = New()
					for j := range n {
						s.Socket(recs[j], raws[j])
					}
					s.EndSnapshot(t0, nil)
					s.lookupCookie(cookieKey{c: 1})
					b.StartTimer()
				}
				if _, _, o, err := s.Destroyed(ds[i%n]); err != nil || o == Duplicate || o == Unidentified {
					b.Fatalf("%v, %v", o, err)
				}
			}
		})
	}
}
