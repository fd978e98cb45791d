package proctable

import (
	"math/rand/v2"
	"testing"
)

// TestInodeIndex checks the index against a map, over inodes in runs (as
// the kernel gives them out) and scattered, growing from empty.
func TestInodeIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var x inodeIndex
	model := map[uint64]int{}
	for i := range 50000 {
		ino := uint64(1000 + i)
		if i%3 == 0 {
			ino = rng.Uint64() | 1
		}
		if i%7 == 0 {
			ino = uint64(1000 + rng.IntN(i+1)) // again: replaced
		}
		pid := rng.IntN(1 << 22)
		x.set(ino, pid)
		model[ino] = pid
		if i%5000 == 0 || i == 49999 {
			if x.len() != len(model) {
				t.Fatalf("after %d: %d keys, want %d", i, x.len(), len(model))
			}
			for k, want := range model {
				if got, ok := x.get(k); !ok || got != want {
					t.Fatalf("get(%d) = %d, %v; want %d", k, got, ok, want)
				}
			}
			for range 100 {
				k := rng.Uint64()
				_, in := model[k]
				if _, ok := x.get(k); ok != in {
					t.Fatalf("get(%d) found %v, want %v", k, ok, in)
				}
			}
		}
	}
	x.set(0, 5)
	if _, ok := x.get(0); ok || x.len() != len(model) {
		t.Error("inode 0 was indexed")
	}
}
