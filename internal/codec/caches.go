package codec

import (
	"encoding/binary"
	"time"
)

// hashBytes is a cheap hash of b for the decoder's caches, read a word at
// a time: every byte of a string of up to 16 bytes counts, and of a longer
// one the first, middle and last eight. (A collision costs only a miss.)
func hashBytes(b []byte) uint64 {
	n := len(b)
	var h uint64
	switch {
	case n >= 8:
		h = binary.LittleEndian.Uint64(b) ^ binary.LittleEndian.Uint64(b[n-8:])*0xC2B2AE3D27D4EB4F
		if n > 16 {
			h ^= binary.LittleEndian.Uint64(b[n/2-4:]) * 0x165667B19E3779F9
		}
	case n >= 4:
		h = uint64(binary.LittleEndian.Uint32(b)) | uint64(binary.LittleEndian.Uint32(b[n-4:]))<<32
	case n > 0:
		h = uint64(b[0]) | uint64(b[n/2])<<8 | uint64(b[n-1])<<16
	}
	h = (h ^ uint64(n)) * 0x9E3779B97F4A7C15
	return h ^ h>>29
}

// timeMemo keeps the times a decoder parsed last, by their text: the
// records of one snapshot share their time, and sockdiff gives a first
// run's every record a first_seen equal to it.
type timeMemo [timeMemoSlots]struct {
	n   int
	raw [maxMemoTime]byte
	t   time.Time
}

const (
	timeMemoSlots = 8
	maxMemoTime   = 40 // 2006-01-02T15:04:05.999999999Z is 30
)

func (m *timeMemo) parse(b []byte) (time.Time, bool) {
	if len(b) > maxMemoTime {
		return parseTime(b)
	}
	s := &m[hashBytes(b)>>(64-3)]
	if s.n == len(b) && string(s.raw[:s.n]) == string(b) {
		return s.t, true
	}
	t, ok := parseTime(b)
	if ok {
		s.n = copy(s.raw[:], b)
		s.t = t
	}
	return t, ok
}
