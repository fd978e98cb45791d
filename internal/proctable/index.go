package proctable

// inodeIndex maps socket inodes to the pids that hold them: open
// addressing with linear probing over one array of slots of 16 bytes, so
// that a lookup costs about one cache miss (a map of 100,000 inodes cost
// two). Inode 0 is never a key.
type inodeIndex struct {
	slots []inodeSlot // a power of two of them; ino 0 is free
	n     int
	shift uint // 64 - log2(len(slots))
}

type inodeSlot struct {
	ino uint64
	pid int64
}

func newInodeIndex(size int) inodeIndex {
	c, shift := 16, uint(60)
	for c*3/4 < size {
		c *= 2
		shift--
	}
	return inodeIndex{slots: make([]inodeSlot, c), shift: shift}
}

// home is Fibonacci hashing: inodes are given out in sequence, which the
// multiplication spreads.
func (x *inodeIndex) home(ino uint64) int { return int((ino * 0x9E3779B97F4A7C15) >> x.shift) }

// find returns the slot of ino, or the free slot where it would go.
func (x *inodeIndex) find(ino uint64) int {
	mask := len(x.slots) - 1
	for i := x.home(ino); ; i = (i + 1) & mask {
		if s := x.slots[i].ino; s == ino || s == 0 {
			return i
		}
	}
}

func (x *inodeIndex) get(ino uint64) (int, bool) {
	if ino == 0 || x.slots == nil {
		return 0, false
	}
	s := &x.slots[x.find(ino)]
	return int(s.pid), s.ino != 0
}

func (x *inodeIndex) set(ino uint64, pid int) {
	if ino == 0 {
		return
	}
	if x.slots == nil || (x.n+1)*4 > len(x.slots)*3 {
		old := x.slots
		*x = newInodeIndex(2 * max(x.n, 8))
		for _, s := range old {
			if s.ino != 0 {
				x.slots[x.find(s.ino)] = s
				x.n++
			}
		}
	}
	i := x.find(ino)
	if x.slots[i].ino == 0 {
		x.n++
	}
	x.slots[i] = inodeSlot{ino: ino, pid: int64(pid)}
}

func (x *inodeIndex) len() int { return x.n }
