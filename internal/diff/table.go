package diff

import (
	"net/netip"

	"github.com/sockpipe/sockpipe/internal/record"
)

// table maps connections to their entries. A connection whose family is
// known and whose addresses parse (every one that sockdump writes) is
// keyed by a compact key of fixed size, compared and hashed without
// following a pointer, which keeps a lookup to about one cache miss; any
// other by the strings of its record.Key. Addresses are compared by value,
// so the spellings of one IPv6 address are one address, while an IPv4
// address and its IPv4-mapped IPv6 form stay two.
type table struct {
	ips  map[ipKey]*entry
	strs map[record.Key]*entry // nil until needed
}

type ipKey struct {
	family        uint8 // 4 or 6
	lport, rport  uint16
	local, remote netip.Addr
}

// tkey is a connection's key in a table.
type tkey struct {
	ip  ipKey
	str record.Key
	ok  bool // ip is the key
}

func newTable(size int) table { return table{ips: make(map[ipKey]*entry, size)} }

func keyOf(k record.Key) tkey {
	var fam uint8
	switch k.Family {
	case record.FamilyIPv4:
		fam = 4
	case record.FamilyIPv6:
		fam = 6
	default:
		return tkey{str: k}
	}
	l, err := netip.ParseAddr(k.LocalIP)
	if err != nil {
		return tkey{str: k}
	}
	r, err := netip.ParseAddr(k.RemoteIP)
	if err != nil {
		return tkey{str: k}
	}
	return tkey{ip: ipKey{fam, k.LocalPort, k.RemotePort, l, r}, ok: true}
}

func (t *table) len() int { return len(t.ips) + len(t.strs) }

func (t *table) get(k tkey) (*entry, bool) {
	if k.ok {
		e, ok := t.ips[k.ip]
		return e, ok
	}
	e, ok := t.strs[k.str]
	return e, ok
}

func (t *table) put(k tkey, e *entry) {
	if k.ok {
		t.ips[k.ip] = e
		return
	}
	if t.strs == nil {
		t.strs = make(map[record.Key]*entry)
	}
	t.strs[k.str] = e
}

func (t *table) del(k tkey) {
	if k.ok {
		delete(t.ips, k.ip)
		return
	}
	delete(t.strs, k.str)
}
