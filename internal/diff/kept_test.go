package diff

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/record"
)

// keptRoundTrip keeps r in an entry as Socket would and returns the line
// of the record the entry gives back, and whether it was kept compact.
func keptRoundTrip(t *testing.T, r *record.Record) (want, got string, compact bool) {
	t.Helper()
	enc := codec.NewEncoder()
	line := enc.Encode(r)
	want = string(line)
	k := keyOf(r, new(addrMemos))
	e := &entry{ip: k.ip, str: k.str}
	e.keep(r, line[:len(line)-1])
	back, err := e.record()
	if err != nil {
		t.Fatal(err)
	}
	return want, string(enc.Encode(back)), e.rec.raw == nil
}

// TestKeptPlain checks that the socket records sockdump writes are kept
// compact and given back exactly.
func TestKeptPlain(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 4, 30, 0, 123456789, time.UTC)
	base := record.Record{
		Type: record.TypeSocket, Time: t0, Family: record.FamilyIPv4, Transport: record.TransportTCP,
		State: "established", Direction: record.DirectionEgress, Inode: 77, UID: 1000, HasUID: true,
		Cookie: 9, NetNS: 4026531840,
		Local: record.Endpoint{IP: "10.0.0.1", Port: 40000}, Remote: record.Endpoint{IP: "10.0.0.2", Port: 443},
	}
	for name, edit := range map[string]func(r *record.Record){
		"ipv4": func(r *record.Record) {},
		"ipv6": func(r *record.Record) {
			r.Family, r.Local.IP, r.Remote.IP = record.FamilyIPv6, "fd00::1", "2001:db8::2"
		},
		"ipv4-mapped": func(r *record.Record) {
			r.Family, r.Local.IP, r.Remote.IP = record.FamilyIPv6, "::ffff:127.0.0.1", "::"
		},
		"no transport": func(r *record.Record) { r.Transport = "" },
		"udp listener": func(r *record.Record) {
			r.Transport, r.State, r.Direction, r.Remote = record.TransportUDP, "closed", record.DirectionListening, record.Endpoint{IP: "0.0.0.0"}
		},
		"no uid, inode or cookie": func(r *record.Record) { r.UID, r.HasUID, r.Inode, r.Cookie, r.NetNS = 0, false, 0, 0, 0 },
		"time-wait":               func(r *record.Record) { r.State = "time-wait" },
		"inode of 33 bits":        func(r *record.Record) { r.Inode = 1 << 32 },
	} {
		r := base
		edit(&r)
		want, got, compact := keptRoundTrip(t, &r)
		if wantCompact := r.Inode <= math.MaxUint32; compact != wantCompact {
			t.Errorf("%s: kept compact %v, want %v", name, compact, wantCompact)
		}
		if got != want {
			t.Errorf("%s: kept\n%s\ngave back\n%s", name, want, got)
		}
	}
}

// TestKeptEveryField sets each field of a record in turn, by reflection,
// so that a field added later is covered too, and checks that the record
// the state gives back is the one it was given: kept compact only when
// the compact fields hold all of it.
func TestKeptEveryField(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 4, 30, 0, 0, time.UTC)
	base := record.Record{
		Type: record.TypeSocket, Time: t0, Family: record.FamilyIPv4, State: "established",
		Local: record.Endpoint{IP: "10.0.0.1", Port: 1}, Remote: record.Endpoint{IP: "10.0.0.2", Port: 2},
	}
	n := 0
	rt := reflect.TypeFor[record.Record]()
	for i := range rt.NumField() {
		f := rt.Field(i)
		for _, sub := range subfields(f.Type) {
			r := base
			v := reflect.ValueOf(&r).Elem().Field(i)
			if !fill(v, sub) {
				continue
			}
			if err := r.Validate(); err != nil {
				continue // not a record that reaches the state
			}
			n++
			want, got, _ := keptRoundTrip(t, &r)
			if got != want {
				t.Errorf("%s%s: kept\n%s\ngave back\n%s", f.Name, sub, want, got)
			}
		}
	}
	if n < 40 {
		t.Errorf("only %d fields tried", n)
	}
	t.Logf("%d fields tried", n)
}

// subfields returns "" for a field to fill whole, or, for a struct (or a
// pointer to one), ".Name" for each of its fields.
func subfields(t reflect.Type) []string {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || t == reflect.TypeFor[time.Time]() {
		return []string{""}
	}
	var out []string
	for i := range t.NumField() {
		out = append(out, "."+t.Field(i).Name)
	}
	return out
}

// fill sets v (or its field sub) to a value that is not zero, and
// reports whether it could.
func fill(v reflect.Value, sub string) bool {
	if sub != "" {
		if v.Kind() == reflect.Pointer {
			v.Set(reflect.New(v.Type().Elem()))
			v = v.Elem()
		}
		v = v.FieldByName(sub[1:])
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("x2")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(v.Int() + 3)
	case reflect.Uint, reflect.Uint64, reflect.Uint32, reflect.Uint16, reflect.Uint8:
		v.SetUint(v.Uint() + 3)
	case reflect.Struct:
		if v.Type() != reflect.TypeFor[time.Time]() {
			return false
		}
		v.Set(reflect.ValueOf(time.Date(2026, 11, 26, 4, 0, 0, 5, time.UTC)))
	case reflect.Slice:
		switch v.Type().Elem() {
		case reflect.TypeFor[record.Field]():
			v.Set(reflect.ValueOf([]record.Field{{Key: "zz", Value: []byte(`{"a":1}`)}}))
		case reflect.TypeFor[string]():
			v.Set(reflect.ValueOf([]string{"a", "b"}))
		default:
			return false
		}
	default:
		return false
	}
	return true
}

// TestIPSet checks the set against a map over random puts and deletes of
// keys from a small pool, so that probe runs collide, wrap around the end
// of the slots and lose members from their middle.
func TestIPSet(t *testing.T) {
	for _, pool := range []int{12, 300} { // 12: the set stays at 16 slots, three quarters full
		testIPSet(t, pool)
	}
}

func testIPSet(t *testing.T, pool int) {
	rng := rand.New(rand.NewPCG(1, uint64(pool)))
	var s ipSet
	s.init(0)
	model := map[ipKey]*entry{}
	keys := make([]ipKey, pool)
	for i := range keys {
		keys[i] = ipKey{netns: uint64(i % 7), lport: uint16(i), rport: 443, family: 4, proto: protoTCP}
	}
	for step := range 20000 {
		k := keys[rng.IntN(len(keys))]
		if rng.IntN(3) == 0 {
			s.del(&k)
			delete(model, k)
		} else {
			e := &entry{ip: k}
			s.put(e, hashOf(&k))
			model[k] = e
		}
		if s.n != len(model) {
			t.Fatalf("step %d: %d members, want %d", step, s.n, len(model))
		}
		if step%100 == 0 {
			for _, k := range keys {
				if got, want := s.get(&k, hashOf(&k)), model[k]; got != want {
					t.Fatalf("step %d: get %v = %p, want %p", step, k, got, want)
				}
			}
		}
	}
}

// TestEntrySize keeps an entry, the cost of a known connection, in the
// 160-byte size class of the Go allocator.
func TestEntrySize(t *testing.T) {
	if n := unsafe.Sizeof(entry{}); n > 160 {
		t.Errorf("an entry is %d bytes, more than 160", n)
	}
}
