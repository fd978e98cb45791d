package revdns

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/publicsuffix"
)

// MaxNameLen is the longest host name accepted, in presentation format
// without the trailing dot (RFC 1035 allows 255 bytes on the wire, which
// is 253 characters written out).
const MaxNameLen = 253

// MaxLabelLen is the longest label of a host name (RFC 1035).
const MaxLabelLen = 63

// ValidateName checks that a name from a PTR answer is a host name that is
// safe to write into a record: labels of letters, digits, hyphens and
// underscores, none starting or ending with a hyphen, each 1 to 63 bytes,
// at most 253 bytes in all, not all digits and dots (which would pass for
// an address), with or without a trailing dot. Escaped characters, as
// github.com/miekg/dns writes bytes that have no place in a host name,
// are refused. The rules are those of the Go resolver's own check, so the
// two resolver paths agree.
func ValidateName(name string) error {
	n := strings.TrimSuffix(name, ".")
	if n == "" {
		return errors.New("empty name")
	}
	if len(n) > MaxNameLen {
		return fmt.Errorf("name longer than %d bytes", MaxNameLen)
	}
	nonNumeric := false
	for i, label := range strings.Split(n, ".") {
		if label == "" {
			return fmt.Errorf("empty label %d", i+1)
		}
		if len(label) > MaxLabelLen {
			return fmt.Errorf("label %d longer than %d bytes", i+1, MaxLabelLen)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %d starts or ends with a hyphen", i+1)
		}
		for j := 0; j < len(label); j++ {
			c := label[j]
			switch {
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '-', c == '_':
				nonNumeric = true
			case '0' <= c && c <= '9':
			case c < 0x20 || c == 0x7f:
				return fmt.Errorf("control character in label %d", i+1)
			case c == '\\':
				return fmt.Errorf("escaped character in label %d", i+1)
			case c == ' ':
				return fmt.Errorf("space in label %d", i+1)
			case c >= 0x80:
				return fmt.Errorf("non-ASCII byte in label %d", i+1)
			default:
				return fmt.Errorf("character %q in label %d", c, i+1)
			}
		}
	}
	if !nonNumeric {
		return errors.New("all-numeric name")
	}
	return nil
}

// ETLDPlusOne returns the registered domain of a host name (its effective
// top-level domain from the public-suffix list plus one label), lower-cased
// and with a trailing dot, or "" when the list gives none, as for
// "localhost." or a bare public suffix.
func ETLDPlusOne(host string) string {
	n := strings.ToLower(strings.TrimSuffix(host, "."))
	if n == "" {
		return ""
	}
	e, err := publicsuffix.EffectiveTLDPlusOne(n)
	if err != nil || e == "" {
		return ""
	}
	return e + "."
}
