package codec

// PlainLen returns the length of the longest prefix of s made of bytes
// that a JSON string holds as they are: printable ASCII but '"' and '\'.
// It tests eight bytes at a time.
func PlainLen[S ~string | ~[]byte](s S) int {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := s[i : i+8] // one bounds check; the loads below combine into one
		x := uint64(w[0]) | uint64(w[1])<<8 | uint64(w[2])<<16 | uint64(w[3])<<24 |
			uint64(w[4])<<32 | uint64(w[5])<<40 | uint64(w[6])<<48 | uint64(w[7])<<56
		q, bs := x^(lo*'"'), x^(lo*'\\')
		// A byte's high bit is set in m when it is below 0x20, is '"'
		// or '\', or is not ASCII: exact as to whether any is (a borrow
		// can only mark the bytes above one that is).
		if m := ((x-lo*0x20)&^x | (q-lo)&^q | (bs-lo)&^bs | x) & hi; m != 0 {
			break
		}
	}
	for ; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			break
		}
	}
	return i
}
