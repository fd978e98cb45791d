package codec

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sockpipe/sockpipe/internal/record"
)

// TestTimeMemo checks that times read through the decoder's memory of
// recent times are those parsed afresh, over more distinct times than it
// has slots, repeated in an order that makes them collide.
func TestTimeMemo(t *testing.T) {
	var m timeMemo
	base := time.Date(2026, 12, 8, 4, 0, 0, 0, time.UTC)
	var texts []string
	for i := range 50 {
		tm := base.Add(time.Duration(i) * 7777777 * time.Nanosecond)
		texts = append(texts, tm.Format(time.RFC3339Nano))
	}
	texts = append(texts, "2026-12-08T04:00:00Z", "2026-02-30T04:00:00Z", "2026-12-08T04:00:00.Z", "x")
	for i := range 2000 {
		s := texts[(i*31)%len(texts)]
		got, gok := m.parse([]byte(s))
		want, wok := parseTime([]byte(s))
		if gok != wok || !got.Equal(want) || got.Location() != want.Location() {
			t.Fatalf("%q: memo gave %v %v, parseTime %v %v", s, got, gok, want, wok)
		}
	}
}

// TestShareMany checks that a sharing decoder gives every record the
// process and user that its line holds, over more processes than it has
// slots for, whose first bytes differ only in their pid.
func TestShareMany(t *testing.T) {
	dec := NewDecoder()
	dec.Share()
	for i := range 5000 {
		pid := 1000 + (i*7919)%1500
		line := strings.Replace(pipelineLine, `"pid":11536`, fmt.Sprintf(`"pid":%d`, pid), 1)
		line = strings.Replace(line, `"id":"1000"`, fmt.Sprintf(`"id":"%d"`, pid%700), 1)
		var r record.Record
		if err := dec.DecodeInto([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if r.Process.PID != pid || r.User.ID != fmt.Sprint(pid%700) {
			t.Fatalf("line %d: process %d, user %s; want %d, %d", i, r.Process.PID, r.User.ID, pid, pid%700)
		}
	}
}

func TestHashBytesSpreads(t *testing.T) {
	// Addresses that differ in one byte anywhere land in many slots.
	seen := map[uint64]bool{}
	for i := range 256 {
		seen[hashBytes([]byte(fmt.Sprintf("127.0.%d.1", i)))>>(64-internBits)] = true
	}
	if len(seen) < 150 {
		t.Errorf("256 addresses in %d of %d slots", len(seen), internMax)
	}
}
