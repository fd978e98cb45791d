package revdns

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestCache(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 26, 5, 0, 0, 0, time.UTC)
	a, b, c := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::3")
	cache := NewCache(2)
	cache.Put(a, "a.", t0.Add(time.Minute))
	cache.Put(b, "b.", t0.Add(time.Second))
	if v, ok := cache.Get(a, t0); !ok || v != "a." {
		t.Errorf("Get(a) = %q, %v", v, ok)
	}
	cache.Put(c, "c.", t0.Add(time.Minute)) // evicts b, the least recently used
	if _, ok := cache.Get(b, t0); ok {
		t.Error("b was not evicted")
	}
	want := []Entry{{c, "c.", t0.Add(time.Minute)}, {a, "a.", t0.Add(time.Minute)}}
	if diff := cmp.Diff(want, cache.Entries(t0), cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
		t.Errorf("Entries (-want +got):\n%s", diff)
	}
	// Expiry: exactly at the expiry time, the entry is gone.
	if _, ok := cache.Get(a, t0.Add(time.Minute)); ok {
		t.Error("a did not expire")
	}
	if n := cache.Len(); n != 1 {
		t.Errorf("Len = %d after expiry, want 1", n)
	}
	// An update moves the entry to the front and renews it.
	cache.Put(c, "c2.", t0.Add(time.Hour))
	if v, ok := cache.Get(c, t0.Add(time.Minute)); !ok || v != "c2." {
		t.Errorf("Get(c) = %q, %v", v, ok)
	}
	cache.Delete(c)
	if n := cache.Len(); n != 0 {
		t.Errorf("Len = %d after Delete, want 0", n)
	}
	// A cache of size 0 holds nothing.
	none := NewCache(0)
	none.Put(a, "a.", t0.Add(time.Hour))
	if _, ok := none.Get(a, t0); ok {
		t.Error("a cache of size 0 held an entry")
	}
}
