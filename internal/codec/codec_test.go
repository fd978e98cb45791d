package codec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sockpipe/sockpipe/internal/record"
)

// Real lines, as the stages write them.
var (
	sockdumpLine = `{"type":"socket","time":"2026-11-26T04:34:58.609946165Z","family":"ipv4","transport":"tcp","state":"listening","local":{"ip":"0.0.0.0","port":2024},"remote":{"ip":"0.0.0.0","port":0},"direction":"listening","inode":1088,"uid":0,"cookie":1,"netns":4026531833}`
	snapshotLine = `{"type":"snapshot","time":"2026-11-26T04:34:58.623988142Z","schema":1,"sockets":4,"duration_ns":740889}`
	enrichedLine = `{"type":"socket","time":"2026-11-26T04:34:58.609946165Z","family":"ipv6","transport":"tcp","state":"established","local":{"ip":"::ffff:127.0.0.1","port":8080},"remote":{"ip":"::ffff:127.0.0.1","port":51234,"host":"localhost.","geo":{"city":"Oslo"}},"direction":"ingress","inode":77,"uid":1000,"cookie":9,"event":"opened","first_seen":"2026-11-26T04:34:58.609946165Z","last_seen":"2026-11-26T04:34:59.609946165Z","process":{"pid":42,"ppid":1,"name":"nginx","executable":"/usr/sbin/nginx","args":["nginx","-g","daemon off;"],"cmdline":"nginx -g daemon off;","start":"2026-11-26T04:00:00Z","container":"abc"},"user":{"id":"1000","name":"jaime","full_name":"Jaime \"J\" Soriano <j@example.com>"},"tag":[1,2,{"x":null}]}`
	destroyLine  = `{"type":"destroyed","time":"2026-11-26T04:35:00.5Z","family":"ipv4","transport":"tcp","state":"closed","local":{"ip":"127.0.0.1","port":40000},"remote":{"ip":"127.0.0.1","port":80},"direction":"egress","inode":0,"cookie":77,"netns":4026531833,"tcp_info":{"bytes_acked":10,"bytes_received":20,"bytes_sent":10,"bytes_retrans":0,"segs_out":4,"segs_in":3,"total_retrans":0,"rtt_us":35}}`
	shortLine    = `{"type":"socket","time":"2026-11-26T04:35:00.5Z","family":"ipv4","transport":"tcp","state":"closed","local":{"ip":"127.0.0.1","port":40000},"remote":{"ip":"127.0.0.1","port":80},"direction":"egress","inode":0,"tcp_info":{"bytes_acked":10,"bytes_received":20,"bytes_sent":10,"bytes_retrans":0,"segs_out":4,"segs_in":3,"total_retrans":0,"rtt_us":35},"event":"opened","short_lived":true,"process_error":"process has exited. inode=0, tcp_state=closed"}`
	lostLine     = `{"type":"snapshot","time":"2026-11-26T04:34:58.623988142Z","schema":1,"sockets":4,"duration_ns":740889,"interval_ns":1000000000,"event_overflows":3}`
	udpLine      = `{"type":"socket","time":"2026-11-26T04:35:00Z","family":"ipv6","transport":"udp","state":"established","local":{"ip":"fd00::2","port":5353},"remote":{"ip":"fd00::1","port":53},"direction":"egress","inode":88,"uid":0,"cookie":5,"netns":4026532301,"process":{"pid":7,"name":"dig"},"user":{"id":"0"},"container":{"id":"3b1f0c2a9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a","runtime":"docker"}}`
	nsSnapLine   = `{"type":"snapshot","time":"2026-11-26T04:34:58.623988142Z","schema":1,"sockets":4,"duration_ns":740889,"namespaces":21,"namespaces_skipped":2}`
	listenerLine = `{"type":"destroyed","time":"2026-11-26T04:35:00.5Z","family":"ipv4","transport":"tcp","state":"closed","local":{"ip":"127.0.0.1","port":80},"remote":{"ip":"127.0.0.1","port":40000},"direction":"ingress","inode":0,"cookie":78,"owner":{"uid":33,"via":"listener","inode":5150}}`
	ownedLine    = `{"type":"destroyed","time":"2026-11-26T04:35:00.5Z","family":"ipv4","transport":"tcp","state":"closed","local":{"ip":"127.0.0.1","port":40000},"remote":{"ip":"127.0.0.1","port":80},"direction":"egress","inode":0,"cookie":77,"netns":4026531833,"owner":{"pid":4242,"name":"curl","uid":65534,"gid":65534,"cgroup_id":1,"start":"2026-11-26T04:34:58.61Z","via":"connect","x":1}}`
	closedLine   = `{"type":"socket","time":"2026-11-26T04:35:00Z","family":"ipv4","transport":"tcp","state":"time-wait","local":{"ip":"127.0.0.1","port":1},"remote":{"ip":"127.0.0.1","port":2},"direction":"egress","inode":0,"event":"closed","process_error":"process has exited. inode=0, tcp_state=time-wait"}`
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	enc := NewEncoder()
	for _, line := range []string{sockdumpLine, snapshotLine, enrichedLine, closedLine, destroyLine, shortLine, lostLine, udpLine, nsSnapLine, ownedLine, listenerLine} {
		r, err := Decode([]byte(line))
		if err != nil {
			t.Fatalf("Decode(%s): %v", line, err)
		}
		got := strings.TrimSuffix(string(enc.Encode(r)), "\n")
		if diff := cmp.Diff(line, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}

func TestDecodeFields(t *testing.T) {
	t.Parallel()
	r, err := Decode([]byte(enrichedLine))
	if err != nil {
		t.Fatal(err)
	}
	if r.Type != record.TypeSocket || r.Family != "ipv6" || r.Local.Port != 8080 || r.Remote.Host != "localhost." {
		t.Errorf("decoded %+v", r)
	}
	if !r.HasUID || r.UID != 1000 || r.Inode != 77 || r.Cookie != 9 {
		t.Errorf("numbers: uid %d (%v) inode %d cookie %d", r.UID, r.HasUID, r.Inode, r.Cookie)
	}
	if r.Process == nil || r.Process.PID != 42 || len(r.Process.Args) != 3 || r.Process.Start != time.Date(2026, 11, 26, 4, 0, 0, 0, time.UTC) {
		t.Errorf("process %+v", r.Process)
	}
	wantExtra := []record.Field{{Key: "tag", Value: []byte(`[1,2,{"x":null}]`)}}
	if diff := cmp.Diff(wantExtra, r.Extra); diff != "" {
		t.Errorf("extra (-want +got):\n%s", diff)
	}
	if got := string(r.Remote.Extra[0].Value); got != `{"city":"Oslo"}` {
		t.Errorf("remote extra %s", got)
	}
}

func TestDecodeNullIsAbsent(t *testing.T) {
	t.Parallel()
	r, err := Decode([]byte(`{"type":"socket","uid":null,"process":null,"user":null,"local":null,"inode":null}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.HasUID || r.Process != nil || r.User != nil || r.Local.IP != "" {
		t.Errorf("null members not absent: %+v", r)
	}
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ name, line, want string }{
		{"empty", ``, "not a JSON object"},
		{"array", `[1]`, "not a JSON object"},
		{"string", `"socket"`, "not a JSON object"},
		{"truncated", `{"type":"socket","local":{"ip":"1`, "invalid JSON"},
		{"trailing", `{"type":"socket"} {}`, "trailing data"},
		{"port type", `{"type":"socket","local":{"port":"80"}}`, `"local.port": want a number`},
		{"port range", `{"type":"socket","local":{"port":65536}}`, "out of range"},
		{"negative inode", `{"type":"socket","inode":-1}`, "non-negative integer"},
		{"float uid", `{"type":"socket","uid":1.5}`, "non-negative integer"},
		{"uid range", `{"type":"socket","uid":4294967296}`, "out of range"},
		{"bad time", `{"type":"socket","time":"yesterday"}`, "RFC 3339"},
		{"args type", `{"type":"socket","process":{"args":[1]}}`, "array of strings"},
		{"type type", `{"type":1}`, "want a string"},
		{"bad extra", `{"type":"socket","x":tru}`, "invalid JSON"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.line))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Decode(%s) = %v, want an error containing %q", tt.line, err, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		line string
		ok   bool
	}{
		{sockdumpLine, true},
		{snapshotLine, true},
		{`{"type":"something-else"}`, true},
		{`{"time":"2026-11-26T04:35:00Z"}`, false},
		{`{"type":"socket","time":"2026-11-26T04:35:00Z","family":"ipx","local":{"ip":"1"},"remote":{"ip":"2"}}`, false},
		{`{"type":"socket","time":"2026-11-26T04:35:00Z","family":"ipv4","remote":{"ip":"2"}}`, false},
		{`{"type":"socket","family":"ipv4","local":{"ip":"1"},"remote":{"ip":"2"}}`, false},
		{`{"type":"snapshot"}`, false},
	} {
		r, err := Decode([]byte(tt.line))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Validate(); (err == nil) != tt.ok {
			t.Errorf("Validate(%s) = %v, want ok=%v", tt.line, err, tt.ok)
		}
	}
}

func TestEncodeEscapes(t *testing.T) {
	t.Parallel()
	r := &record.Record{Type: record.TypeSocket, Family: "ipv4", State: "weird\"state", Local: record.Endpoint{IP: "1.2.3.4"},
		Process: &record.Process{Name: "a\x00b<\xff>", Args: []string{"x\ny"}}}
	line := NewEncoder().Encode(r)
	if !Valid(line) {
		t.Fatalf("invalid JSON: %s", line)
	}
	back, err := Decode(line)
	if err != nil {
		t.Fatal(err)
	}
	if back.State != r.State || back.Process.Args[0] != "x\ny" {
		t.Errorf("escaping lost data: %s", line)
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{sockdumpLine, snapshotLine, enrichedLine, closedLine, destroyLine, shortLine, lostLine, ownedLine, listenerLine, udpLine, nsSnapLine, `{}`, `{"type":null}`, `{"local":{"port":1e3}}`} {
		f.Add([]byte(s))
	}
	enc := NewEncoder()
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := Decode(line)
		if err != nil {
			return
		}
		_ = r.Validate()
		out := enc.Encode(r)
		if !Valid(out) {
			t.Fatalf("encoded invalid JSON %q from %q", out, line)
		}
		r2, err := Decode(out)
		if err != nil {
			t.Fatalf("re-decode of %q: %v", out, err)
		}
		if out2 := enc.Encode(r2); string(out2) != string(out) {
			t.Fatalf("not stable:\n%s\n%s", out, out2)
		}
	})
}

// cpuTime reports the process's CPU time per op beside the wall time, which
// a loaded machine inflates.
func cpuTime(b *testing.B) func() {
	b.Helper()
	var start syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &start)
	return func() {
		var end syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &end)
		ns := end.Utime.Nano() + end.Stime.Nano() - start.Utime.Nano() - start.Stime.Nano()
		b.ReportMetric(float64(ns)/float64(b.N), "cpu-ns/op")
	}
}

// BenchmarkDecode decodes an enriched record, as the late stages read it.
func BenchmarkDecode(b *testing.B) {
	line := []byte(enrichedLine)
	b.ReportAllocs()
	defer cpuTime(b)()
	for b.Loop() {
		if _, err := Decode(line); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeSocket decodes a socket record as sockdump writes it into
// a record that the caller reuses.
func BenchmarkDecodeSocket(b *testing.B) {
	line := []byte(sockdumpLine)
	var r record.Record
	dec := NewDecoder()
	b.ReportAllocs()
	b.SetBytes(int64(len(line)))
	defer cpuTime(b)()
	for b.Loop() {
		if err := dec.DecodeInto(line, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	r, _ := Decode([]byte(sockdumpLine))
	enc := NewEncoder()
	b.ReportAllocs()
	defer cpuTime(b)()
	for b.Loop() {
		enc.Encode(r)
	}
}

func BenchmarkEncodeEnriched(b *testing.B) {
	r, _ := Decode([]byte(enrichedLine))
	enc := NewEncoder()
	b.ReportAllocs()
	defer cpuTime(b)()
	for b.Loop() {
		enc.Encode(r)
	}
}

// TestDecoderShare checks that a sharing decoder gives a record the
// process, user and container of the record before when their bytes are
// the same, a new one when not, and the same records as a decoder that
// does not share.
func TestDecoderShare(t *testing.T) {
	lines := []string{
		enrichedLine,
		strings.Replace(enrichedLine, `"cookie":9`, `"cookie":10`, 1),
		strings.Replace(enrichedLine, `"pid":42`, `"pid":43`, 1),
		udpLine,
		strings.Replace(udpLine, `"inode":88`, `"inode":89`, 1),
		`{"type":"socket","process":null,"user":{"id":"1"}}`,
	}
	share, plain := NewDecoder(), NewDecoder()
	share.Share()
	var got []*record.Record
	enc := NewEncoder()
	for _, l := range lines {
		var a, b record.Record
		if err := share.DecodeInto([]byte(l), &a); err != nil {
			t.Fatal(err)
		}
		if err := plain.DecodeInto([]byte(l), &b); err != nil {
			t.Fatal(err)
		}
		if x, y := string(enc.Encode(&a)), string(NewEncoder().Encode(&b)); x != y {
			t.Errorf("shared %s\nplain %s", x, y)
		}
		got = append(got, &a)
	}
	if got[0].Process != got[1].Process || got[0].User != got[1].User {
		t.Error("the same process and user bytes: not shared")
	}
	if got[1].Process == got[2].Process || got[2].User != got[1].User {
		t.Error("another pid: the same process; or the same user not shared")
	}
	if got[3].Container != got[4].Container || got[3].Process != got[4].Process {
		t.Error("the same container and process: not shared")
	}
	if got[5].Process != nil || got[5].User == got[4].User {
		t.Errorf("null process or another user: %+v %+v", got[5].Process, got[5].User)
	}
}

// holdsNull reports whether line, read by encoding/json, holds a null
// value anywhere.
func holdsNull(line []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(line))
	for range len(line) + 1 {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		if tok == nil {
			return true
		}
	}
	return false
}

// FuzzShare checks that a sharing decoder, fed a line twice (the second
// time from what it kept), decodes what a plain decoder does.
func FuzzShare(f *testing.F) {
	for _, l := range []string{enrichedLine, udpLine, ownedLine, `{"process":{"pid":1},"process":{"pid":2}}`, `{"user":{"id":"1"}}`} {
		f.Add([]byte(l))
	}
	f.Add([]byte(`{"type":"socket","process":{"pid":1,"name":null},"user":{"id":"0","name":"null"}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		var want record.Record
		plain := NewDecoder()
		werr := plain.DecodeInto(line, &want)
		if werr == nil {
			// Nulls tells whether the line holds a null value, as
			// encoding/json reads it.
			if plain.Nulls() != holdsNull(line) {
				t.Fatalf("Nulls() = %v for %s", plain.Nulls(), line)
			}
		}
		share := NewDecoder()
		share.Share()
		for i := range 2 {
			var got record.Record
			err := share.DecodeInto(line, &got)
			if (err == nil) != (werr == nil) {
				t.Fatalf("pass %d: error %v, plain %v", i, err, werr)
			}
			if err == nil && share.Nulls() != plain.Nulls() {
				t.Fatalf("pass %d: Nulls() = %v, plain %v", i, share.Nulls(), plain.Nulls())
			}
			if err == nil {
				if a, b := string(NewEncoder().Encode(&got)), string(NewEncoder().Encode(&want)); a != b {
					t.Fatalf("pass %d:\n%s\nplain\n%s", i, a, b)
				}
			}
		}
	})
}

// pipelineLine is a record as it reaches sockecs: sockdump's, sockdiff's
// and sockproc's members and sockresolve's name.
const pipelineLine = `{"type":"socket","time":"2026-12-07T12:58:40.191230593Z","family":"ipv4","transport":"tcp","state":"established","local":{"ip":"127.0.0.1","port":43819},"remote":{"ip":"127.0.0.1","port":51234,"host":"localhost."},"direction":"ingress","inode":4774504,"uid":1000,"cookie":2603393,"netns":4026531833,"event":"existing","first_seen":"2026-12-07T12:58:40.191230593Z","process":{"pid":11536,"ppid":11139,"name":"java","executable":"/usr/lib/jvm/java-21/bin/java","args":["/usr/lib/jvm/java-21/bin/java","-Xmx4g","-jar","/opt/app/app.jar"],"cmdline":"/usr/lib/jvm/java-21/bin/java -Xmx4g -jar /opt/app/app.jar","start":"2026-12-07T12:13:01.32Z"},"user":{"id":"1000","name":"app","full_name":"Application Service"}}`

// BenchmarkDecodePipeline decodes records as sockecs does, of 100
// processes: with a sharing decoder, as the stages that do not change
// processes use, and without.
func BenchmarkDecodePipeline(b *testing.B) {
	lines := make([][]byte, 100)
	for i := range lines {
		lines[i] = []byte(strings.Replace(pipelineLine, `"pid":11536`, fmt.Sprintf(`"pid":%d`, 11000+i), 1))
	}
	for _, share := range []bool{false, true} {
		b.Run(fmt.Sprintf("share=%v", share), func(b *testing.B) {
			dec := NewDecoder()
			if share {
				dec.Share()
			}
			var r record.Record
			b.SetBytes(int64(len(pipelineLine)))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := dec.DecodeInto(lines[i%len(lines)], &r); err != nil {
					b.Fatal(err)
				}
				i += 7
			}
		})
	}
}

// TestRememberShared checks that an encoder that remembers shared objects
// writes what one that does not writes, over more objects than it has
// slots for, each written many times.
func TestRememberShared(t *testing.T) {
	base, err := Decode([]byte(enrichedLine))
	if err != nil {
		t.Fatal(err)
	}
	var procs []*record.Process
	var users []*record.User
	for i := range 1000 {
		p := *base.Process
		p.PID, p.Args = i+1, []string{"prog", strconv.Itoa(i)}
		procs = append(procs, &p)
		users = append(users, &record.User{ID: strconv.Itoa(i % 300), Name: "u" + strconv.Itoa(i%300)})
	}
	plain, memo := NewEncoder(), NewEncoder()
	memo.RememberShared()
	for i := range 20000 {
		r := *base
		r.Process, r.User = procs[(i*7919)%len(procs)], users[(i*104729)%len(users)]
		if i%5 == 0 {
			r.Container = &record.Container{ID: strconv.Itoa(i)}
		}
		if want, got := string(plain.Encode(&r)), string(memo.Encode(&r)); got != want {
			t.Fatalf("record %d: remembering encoder wrote\n%s\nwant\n%s", i, got, want)
		}
	}
}
