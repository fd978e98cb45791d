package diff

import (
	"net/netip"

	"github.com/sockpipe/sockpipe/internal/record"
)

// table maps connections to their entries. A connection whose transport
// and family are known and whose addresses parse (every one that sockdump
// writes) is keyed by a compact key of fixed size, compared and hashed
// without following a pointer, which keeps a lookup to about one cache
// miss; any other by the strings of its record.Key. Addresses are compared
// by value, so the spellings of one IPv6 address are one address, while an
// IPv4 address and its IPv4-mapped IPv6 form stay two.
type table struct {
	ips  map[ipKey]*entry
	strs map[record.Key]*entry // nil until needed
}

// ipKey is record.Key in 64 bytes: the namespace and the small numbers
// first, so that the key fills one cache line.
type ipKey struct {
	netns         uint64
	family        uint8 // 4 or 6
	proto         uint8 // IPPROTO_TCP or IPPROTO_UDP
	lport, rport  uint16
	local, remote netip.Addr
}

// IANA protocol numbers of the transports.
const (
	protoTCP = 6
	protoUDP = 17
)

// tkey is a connection's key in a table: ip, or, when str is not nil, the
// strings of str.
type tkey struct {
	ip  ipKey
	str *record.Key
}

func newTable(size int) table { return table{ips: make(map[ipKey]*entry, size)} }

// keyOf returns the key of r's connection, record.Key of r, made straight
// from the record: it is on the path of every socket.
func keyOf(r *record.Record) tkey {
	var fam, proto uint8
	switch r.Family {
	case record.FamilyIPv4:
		fam = 4
	case record.FamilyIPv6:
		fam = 6
	default:
		return strKey(r)
	}
	switch r.Transport {
	case record.TransportTCP, "":
		proto = protoTCP
	case record.TransportUDP:
		proto = protoUDP
	default:
		return strKey(r)
	}
	l, err := netip.ParseAddr(r.Local.IP)
	if err != nil {
		return strKey(r)
	}
	rm, err := netip.ParseAddr(r.Remote.IP)
	if err != nil {
		return strKey(r)
	}
	return tkey{ip: ipKey{r.NetNS, fam, proto, r.Local.Port, r.Remote.Port, l, rm}}
}

func strKey(r *record.Record) tkey {
	k := r.Key()
	return tkey{str: &k}
}

func (t *table) len() int { return len(t.ips) + len(t.strs) }

func (t *table) get(k tkey) (*entry, bool) {
	if k.str == nil {
		e, ok := t.ips[k.ip]
		return e, ok
	}
	e, ok := t.strs[*k.str]
	return e, ok
}

func (t *table) put(k tkey, e *entry) {
	if k.str == nil {
		t.ips[k.ip] = e
		return
	}
	if t.strs == nil {
		t.strs = make(map[record.Key]*entry)
	}
	t.strs[*k.str] = e
}

func (t *table) del(k tkey) {
	if k.str == nil {
		delete(t.ips, k.ip)
		return
	}
	delete(t.strs, *k.str)
}
