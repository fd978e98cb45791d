package revdns

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidateName(t *testing.T) {
	t.Parallel()
	long63 := strings.Repeat("a", 63)
	// Four labels of 63 bytes and their dots: 255 bytes, 2 over the limit.
	tooLong := strings.Join([]string{long63, long63, long63, long63}, ".")
	// 253 bytes exactly.
	longest := strings.Join([]string{long63, long63, long63, strings.Repeat("b", 61)}, ".")
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{"plain", "host.example.com.", ""},
		{"no trailing dot", "host.example.com", ""},
		{"single label", "localhost.", ""},
		{"digits and hyphens", "ec2-192-0-2-1.compute-1.amazonaws.com.", ""},
		{"underscore", "_dmarc.example.com.", ""},
		{"upper case", "HOST.Example.COM.", ""},
		{"63-byte label", long63 + ".example.", ""},
		{"253 bytes", longest + ".", ""},
		{"empty", "", "empty name"},
		{"root", ".", "empty name"},
		{"empty label", "a..b.", "empty label 2"},
		{"leading dot", ".a.b.", "empty label 1"},
		{"64-byte label", long63 + "a.example.", "label 1 longer than 63 bytes"},
		{"too long", tooLong + ".", "name longer than 253 bytes"},
		{"leading hyphen", "-a.example.", "label 1 starts or ends with a hyphen"},
		{"trailing hyphen", "a.b-.", "label 2 starts or ends with a hyphen"},
		{"space escaped", `a\032b.example.`, "escaped character in label 1"},
		{"space", "a b.example.", "space in label 1"},
		{"newline", "a\nb.example.", "control character in label 1"},
		{"escape sequence", "a\x1b[31mred.example.", "control character in label 1"},
		{"nul", "a\x00.example.", "control character in label 1"},
		{"del", "a\x7f.example.", "control character in label 1"},
		{"non-ascii", "bücher.example.", "non-ASCII byte in label 1"},
		{"quote", `a".example.`, `character '"' in label 1`},
		{"slash", "a/b.example.", "character '/' in label 1"},
		{"all numeric", "192.0.2.1.", "all-numeric name"},
		{"numeric label", "1.example.", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateName(tt.in)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.wantErr {
				t.Errorf("ValidateName(%q) = %q, want %q", tt.in, got, tt.wantErr)
			}
		})
	}
}

func TestETLDPlusOne(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"foo.example.com.", "example.com."},
		{"example.com.", "example.com."},
		{"a.b.example.co.uk.", "example.co.uk."},
		{"FOO.Example.COM.", "example.com."},
		{"localhost.", ""},
		{"localhost", ""},
		{"co.uk.", ""},
		{"com.", ""},
		{"", ""},
		// *.compute-1.amazonaws.com is a public suffix (private section).
		{"ec2-192-0-2-1.compute-1.amazonaws.com.", ""},
		{"x.ec2-192-0-2-1.compute-1.amazonaws.com.", "x.ec2-192-0-2-1.compute-1.amazonaws.com."},
		{"host.internal.", "host.internal."},
	}
	for _, tt := range tests {
		if got := ETLDPlusOne(tt.in); got != tt.want {
			t.Errorf("ETLDPlusOne(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzValidateName checks that a name that passes is one that is safe to
// write: printable ASCII host-name characters only, within the limits, and
// that the eTLD+1 of it is then well formed too.
func FuzzValidateName(f *testing.F) {
	for _, s := range []string{
		"host.example.com.", "localhost.", `a\032b.`, "a\x00b.", "-a.", "192.0.2.1.",
		strings.Repeat("a", 64) + ".", "_x.example.", "..", ".", "bücher.de.",
		"ec2-192-0-2-1.compute-1.amazonaws.com.", "a.b.example.co.uk.",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateName(s) != nil {
			return
		}
		n := strings.TrimSuffix(s, ".")
		if len(n) == 0 || len(n) > MaxNameLen || !utf8.ValidString(s) {
			t.Fatalf("accepted %q", s)
		}
		for _, c := range []byte(n) {
			ok := c == '.' || c == '-' || c == '_' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
			if !ok {
				t.Fatalf("accepted %q with byte %q", s, c)
			}
		}
		if e := ETLDPlusOne(s); e != "" {
			// A suffix of the name, whole labels: "a.0.0." gives "0.0.".
			if !strings.HasSuffix(e, ".") || !strings.HasSuffix("."+strings.ToLower(n)+".", "."+e) {
				t.Fatalf("ETLDPlusOne(%q) = %q", s, e)
			}
		}
	})
}
