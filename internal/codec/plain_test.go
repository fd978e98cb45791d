package codec

import (
	"strings"
	"testing"
)

// slowPlainLen is PlainLen a byte at a time.
func slowPlainLen(s string) int {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			return i
		}
	}
	return len(s)
}

// TestPlainLen puts every byte value at every position of strings of up
// to 17 bytes, before and after plain ones.
func TestPlainLen(t *testing.T) {
	for n := 0; n <= 17; n++ {
		for at := 0; at < n; at++ {
			for c := 0; c < 256; c++ {
				b := []byte(strings.Repeat("a~ 0", 5)[:n])
				b[at] = byte(c)
				if got, want := PlainLen(b), slowPlainLen(string(b)); got != want {
					t.Fatalf("PlainLen(%q) = %d, want %d", b, got, want)
				}
				if got, want := PlainLen(string(b)), slowPlainLen(string(b)); got != want {
					t.Fatalf("PlainLen(string %q) = %d, want %d", b, got, want)
				}
			}
		}
	}
}

func FuzzPlainLen(f *testing.F) {
	for _, s := range []string{"", "abcdefgh", "/usr/sbin/nginx -g daemon off;", "a\"b", "é", "\x1f\x20\x7f\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := PlainLen(s), slowPlainLen(s); got != want {
			t.Fatalf("PlainLen(%q) = %d, want %d", s, got, want)
		}
	})
}
