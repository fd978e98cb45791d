package revdns

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sockpipe/sockpipe/internal/atomicfile"
)

var addrCmp = cmp.Comparer(func(x, y netip.Addr) bool { return x == y })

func TestCacheFileRoundTrip(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 26, 5, 0, 0, 123456789, time.UTC)
	s := Snapshot{
		Success: []Entry{
			{netip.MustParseAddr("192.0.2.1"), "a.example.com.", t0.Add(time.Minute)},
			{netip.MustParseAddr("2001:db8::1"), "v6.example.com.", t0.Add(time.Second)},
		},
		Failure: []Entry{{netip.MustParseAddr("192.0.2.9"), "no PTR record (NXDOMAIN)", t0.Add(30 * time.Second)}},
	}
	data := EncodeCache(s, t0)
	want := `{"format":"sockresolve-cache","version":1,"written":"2026-11-26T05:00:00.123456789Z",` +
		`"success":[{"ip":"192.0.2.1","host":"a.example.com.","expires":"2026-11-26T05:01:00.123456789Z"},` +
		`{"ip":"2001:db8::1","host":"v6.example.com.","expires":"2026-11-26T05:00:01.123456789Z"}],` +
		`"failure":[{"ip":"192.0.2.9","error":"no PTR record (NXDOMAIN)","expires":"2026-11-26T05:00:30.123456789Z"}]}` + "\n"
	if diff := cmp.Diff(want, string(data)); diff != "" {
		t.Errorf("EncodeCache (-want +got):\n%s", diff)
	}
	got, err := DecodeCache(data)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(s, got, addrCmp); diff != "" {
		t.Errorf("DecodeCache (-want +got):\n%s", diff)
	}
}

func TestDecodeCacheDamaged(t *testing.T) {
	t.Parallel()
	head := `{"format":"sockresolve-cache","version":1,`
	exp := `"expires":"2026-11-26T05:00:00Z"`
	tests := []struct {
		name, in, wantErr string
	}{
		{"empty", ``, "not the JSON expected"},
		{"truncated", head + `"success":[{"ip":"192.0.2.1"`, "not the JSON expected"},
		{"not an object", `[1,2]`, "not the JSON expected"},
		{"wrong type", head + `"success":{}}`, "not the JSON expected"},
		{"other format", `{"format":"x","version":1}`, `format "x", want "sockresolve-cache"`},
		{"future version", `{"format":"sockresolve-cache","version":2}`, "version 2, this program reads version 1"},
		{"bad ip", head + `"success":[{"ip":"300.1.1.1","host":"a.",` + exp + `}]}`, "success entry 1: bad ip"},
		{"bad expiry", head + `"success":[{"ip":"192.0.2.1","host":"a.","expires":"soon"}]}`, "success entry 1: bad expires"},
		{"hostile host", head + `"success":[{"ip":"192.0.2.1","host":"a\u001b[2J.",` + exp + `}]}`, "success entry 1: bad host"},
		{"host without dot", head + `"success":[{"ip":"192.0.2.1","host":"a.example",` + exp + `}]}`, "success entry 1: bad host"},
		{"error in success", head + `"success":[{"ip":"192.0.2.1","host":"a.","error":"x",` + exp + `}]}`, "success entry 1: an error in a success entry"},
		{"host in failure", head + `"failure":[{"ip":"192.0.2.1","host":"a.","error":"x",` + exp + `}]}`, "failure entry 1: a host in a failure entry"},
		{"empty error", head + `"failure":[{"ip":"192.0.2.1",` + exp + `}]}`, "failure entry 1: bad error"},
		{"control in error", head + `"failure":[{"ip":"192.0.2.1","error":"a\nb",` + exp + `}]}`, "failure entry 1: bad error"},
		{"long error", head + `"failure":[{"ip":"192.0.2.1","error":"` + strings.Repeat("x", 300) + `",` + exp + `}]}`, "failure entry 1: bad error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeCache([]byte(tt.in))
			if !errors.Is(err, ErrDamaged) || !strings.HasSuffix(err.Error(), tt.wantErr) {
				t.Errorf("got %v, want damaged: ...%s", err, tt.wantErr)
			}
		})
	}
}

// TestCacheFileTTLs checks that a loaded entry lives what was left of its
// TTL, and no longer than the TTL now configured.
func TestCacheFileTTLs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "cache")
	clk := newClock()
	t0 := clk.Now()
	cfg := Config{Lookuper: blocker{}, Workers: 1, SuccessTTL: time.Hour, FailureTTL: time.Hour, CacheSize: 10, Now: clk.Now}
	r := New(cfg)
	r.success.Put(netip.MustParseAddr("192.0.2.1"), "ten.example.", t0.Add(10*time.Second))
	r.success.Put(netip.MustParseAddr("192.0.2.2"), "hour.example.", t0.Add(time.Hour))
	r.failure.Put(netip.MustParseAddr("192.0.2.3"), "no PTR record (NXDOMAIN)", t0.Add(20*time.Second))
	r.success.Put(netip.MustParseAddr("192.0.2.4"), "gone.example.", t0.Add(time.Second))
	clk.Advance(2 * time.Second)
	if err := r.SaveFile(path); err != nil {
		t.Fatal(err)
	}
	r.Close()

	// The next run, 5 s later, with a success TTL of one minute.
	clk.Advance(5 * time.Second)
	cfg.SuccessTTL = time.Minute
	r2 := New(cfg)
	defer r2.Close()
	if err := r2.LoadFile(path); err != nil {
		t.Fatal(err)
	}
	now := clk.Now()
	want := Snapshot{
		Success: []Entry{
			{netip.MustParseAddr("192.0.2.2"), "hour.example.", now.Add(time.Minute)}, // capped
			{netip.MustParseAddr("192.0.2.1"), "ten.example.", t0.Add(10 * time.Second)},
		},
		Failure: []Entry{{netip.MustParseAddr("192.0.2.3"), "no PTR record (NXDOMAIN)", t0.Add(20 * time.Second)}},
	}
	if diff := cmp.Diff(want, r2.Export(), addrCmp); diff != "" {
		t.Errorf("loaded (-want +got):\n%s", diff)
	}
	clk.Advance(4 * time.Second) // 11 s after t0
	if _, ok := r2.success.Get(netip.MustParseAddr("192.0.2.1"), clk.Now()); ok {
		t.Error("an entry outlived its TTL across runs")
	}
}

func TestCacheFileMissingAndDamaged(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := New(Config{Lookuper: blocker{}, SuccessTTL: time.Minute, FailureTTL: time.Minute, CacheSize: 10})
	defer r.Close()
	if err := r.LoadFile(filepath.Join(dir, "missing")); err != nil {
		t.Errorf("missing file: %v", err)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("\x00\x01garbage"), 0o600)
	if err := r.LoadFile(bad); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), bad) {
		t.Errorf("damaged file: %v", err)
	}
}

// TestCacheFileConcurrentSaves saves from many resolvers at once: the
// file is always whole, and holds the entries of all of them.
func TestCacheFileConcurrentSaves(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "cache")
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			r := New(Config{Lookuper: blocker{}, SuccessTTL: time.Minute, FailureTTL: time.Minute, CacheSize: 100})
			defer r.Close()
			r.success.Put(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), fmt.Sprintf("h%d.example.", i), time.Now().Add(time.Minute))
			errs[i] = r.SaveFile(path)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("save %d: %v", i, err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := DecodeCache(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Success) != n {
		t.Errorf("%d entries, want %d", len(s.Success), n)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), atomicfile.TempPrefix(path)+"*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func FuzzDecodeCache(f *testing.F) {
	t0 := time.Date(2026, 11, 26, 5, 0, 0, 0, time.UTC)
	f.Add(EncodeCache(Snapshot{
		Success: []Entry{{netip.MustParseAddr("192.0.2.1"), "a.example.com.", t0}},
		Failure: []Entry{{netip.MustParseAddr("2001:db8::9"), "timed out after 2s", t0}},
	}, t0))
	f.Add(EncodeCache(Snapshot{}, t0))
	f.Add([]byte(`{"format":"sockresolve-cache","version":1,"success":[{"ip":"192.0.2.1","host":"a\u0000.","expires":"x"}]}`))
	f.Add([]byte(`{"format":"sockresolve-cache","version":1,"failure":null,"success":[null]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := DecodeCache(data)
		if err != nil {
			if !errors.Is(err, ErrDamaged) {
				t.Fatalf("error %v does not wrap ErrDamaged", err)
			}
			return
		}
		for _, e := range s.Success {
			if ValidateName(e.Value) != nil || !e.IP.IsValid() {
				t.Fatalf("accepted %+v", e)
			}
		}
		for _, e := range s.Failure {
			if !printable(e.Value) || !e.IP.IsValid() {
				t.Fatalf("accepted %+v", e)
			}
		}
		// What was accepted encodes and decodes to the same.
		again, err := DecodeCache(EncodeCache(s, t0))
		if err != nil {
			t.Fatalf("re-decoding: %v", err)
		}
		if diff := cmp.Diff(s, again, addrCmp, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}
