package codec

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/sockpipe/sockpipe/internal/record"
)

// TestEncodeTail checks that a sockdump line with sockdiff's and
// sockproc's members appended is what Encode writes for the whole record,
// and that FreeOf refuses lines that already hold a tail member.
func TestEncodeTail(t *testing.T) {
	enc, tailEnc := NewEncoder(), NewEncoder()
	dec := NewDecoder()
	for _, line := range []string{sockdumpLine, destroyLine, ownedLine, `{"type":"socket","time":"2026-11-26T04:35:00Z"}`} {
		r := new(record.Record)
		if err := dec.DecodeInto([]byte(line), r); err != nil {
			t.Fatal(err)
		}
		nulls := dec.Nulls()
		for _, c := range []struct {
			from string
			add  func(r *record.Record)
		}{
			{"event", func(r *record.Record) { r.Event, r.FirstSeen = record.EventOpened, r.Time }},
			{"event", func(r *record.Record) {}},
			{"process", func(r *record.Record) {
				r.Process = &record.Process{PID: 7, Name: "curl", Args: []string{"curl", "x"}, Start: time.Unix(5, 0)}
				r.User = &record.User{ID: "0", Name: "root"}
			}},
			{"process", func(r *record.Record) { r.ProcessError = "process has exited" }},
		} {
			tl := TailFrom(c.from)
			rr := *r
			if !tl.FreeOf(&rr, nulls) {
				t.Fatalf("%s: tail from %s not free", line, c.from)
			}
			c.add(&rr)
			want := string(enc.Encode(&rr))
			got := string(tailEnc.EncodeTail([]byte(line), &rr, tl))
			// Always the same record; the same bytes when the line
			// is as the encoder writes it, without unknown members.
			back, err := Decode([]byte(got))
			if err != nil || !json.Valid([]byte(got)) {
				t.Fatalf("EncodeTail wrote %s: %v", got, err)
			}
			if again := string(enc.Encode(back)); again != want {
				t.Errorf("EncodeTail from %s of\n%s\n= %s\nwhich is\n%s\nwant %s", c.from, line, got, again, want)
			}
			canonical := string(enc.Encode(r)) == line+"\n"
			if canonical && got != want {
				t.Errorf("EncodeTail from %s of\n%s\n= %s\nwant %s", c.from, line, got, want)
			}
		}
	}
	for _, line := range []string{enrichedLine, shortLine, `{"type":"socket","event":null}`} {
		r := new(record.Record)
		if err := dec.DecodeInto([]byte(line), r); err != nil {
			t.Fatal(err)
		}
		if TailFrom("event").FreeOf(r, dec.Nulls()) {
			t.Errorf("tail from event free in %s", line)
		}
	}
}

func BenchmarkEncodeTail(b *testing.B) {
	r, err := Decode([]byte(sockdumpLine))
	if err != nil {
		b.Fatal(err)
	}
	r.Event, r.FirstSeen = record.EventExisting, r.Time
	enc, tl := NewEncoder(), TailFrom("event")
	b.ReportAllocs()
	for b.Loop() {
		enc.EncodeTail([]byte(sockdumpLine), r, tl)
	}
}

// FuzzEncodeTail checks that, for any line that decodes and whose tail is
// free, the line with the tail appended decodes to the record it was
// written from.
func FuzzEncodeTail(f *testing.F) {
	for _, l := range []string{sockdumpLine, enrichedLine, destroyLine, shortLine, udpLine, listenerLine, ownedLine, closedLine, `{}`, ` {"type":"x"} `} {
		f.Add([]byte(l))
	}
	enc, tailEnc := NewEncoder(), NewEncoder()
	f.Fuzz(func(t *testing.T, line []byte) {
		dec := NewDecoder()
		r := new(record.Record)
		if err := dec.DecodeInto(line, r); err != nil {
			return
		}
		if start, end, ok := dec.RemoteSpan(); ok && RemoteFree(line, start, end, r) {
			rr := *r
			rr.Remote.Host, rr.Remote.HostError = "h.example.", "x"
			got := tailEnc.EncodeRemote(line, start, end, &rr)
			back, err := Decode(got)
			if err != nil {
				t.Fatalf("EncodeRemote wrote %q: %v", got, err)
			}
			if a, b := string(enc.Encode(back)), string(NewEncoder().Encode(&rr)); a != b {
				t.Fatalf("EncodeRemote of %q:\n%s\nis\n%s", line, a, b)
			}
		}
		for _, from := range []string{"event", "process"} {
			tl := TailFrom(from)
			rr := *r
			if !tl.FreeOf(&rr, dec.Nulls()) {
				continue
			}
			if from == "event" {
				rr.Event, rr.FirstSeen = record.EventOpened, time.Unix(1, 0)
			}
			rr.ProcessError = "gone"
			got := tailEnc.EncodeTail(line, &rr, tl)
			back, err := Decode(got)
			if err != nil {
				t.Fatalf("EncodeTail wrote %q: %v", got, err)
			}
			if a, b := string(enc.Encode(back)), string(NewEncoder().Encode(&rr)); a != b {
				t.Fatalf("EncodeTail of %q:\n%s\nis\n%s", line, a, b)
			}
		}
	})
}

// TestEncodeRemote checks that a line with sockresolve's members put into
// its remote end is what Encode writes for the whole record.
func TestEncodeRemote(t *testing.T) {
	enc, remEnc := NewEncoder(), NewEncoder()
	for _, line := range []string{sockdumpLine, destroyLine, ownedLine, udpLine,
		`{"type":"socket","remote":{"ip":"1.2.3.4","port":1},"remote":{"ip":"5.6.7.8","port":2}}`} {
		dec := NewDecoder()
		var r record.Record
		if err := dec.DecodeInto([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		start, end, ok := dec.RemoteSpan()
		if !ok || !RemoteFree([]byte(line), start, end, &r) {
			t.Fatalf("%s: remote at %d:%d (%v) not free", line, start, end, ok)
		}
		for _, set := range []func(e *record.Endpoint){
			func(e *record.Endpoint) { e.Host, e.ETLDPlusOne = "db.example.com.", "example.com." },
			func(e *record.Endpoint) { e.HostError = "no PTR record" },
			func(e *record.Endpoint) {},
		} {
			rr := r
			set(&rr.Remote)
			got := string(remEnc.EncodeRemote([]byte(line), start, end, &rr))
			want := string(enc.Encode(&rr))
			back, err := Decode([]byte(got))
			if err != nil {
				t.Fatalf("EncodeRemote wrote %s: %v", got, err)
			}
			if again := string(enc.Encode(back)); again != want {
				t.Errorf("EncodeRemote of\n%s\n= %s\nwant %s", line, again, want)
			}
			if string(enc.Encode(&r)) == line+"\n" && got != want {
				t.Errorf("EncodeRemote of canonical\n%s\n= %s\nwant %s", line, got, want)
			}
		}
	}
	for _, line := range []string{enrichedLine, `{"type":"socket","remote":{"ip":"1.2.3.4","host":null}}`} {
		dec := NewDecoder()
		var r record.Record
		if err := dec.DecodeInto([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if start, end, ok := dec.RemoteSpan(); ok && RemoteFree([]byte(line), start, end, &r) {
			t.Errorf("remote free in %s", line)
		}
	}
}
