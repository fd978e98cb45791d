package diff

import (
	"hash/maphash"
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
	ips  ipSet
	strs map[record.Key]*entry // nil until needed
}

// ipKey is record.Key in 48 bytes and without pointers, so that neither
// the map nor the entries that hold keys cost the garbage collector a
// look.
type ipKey struct {
	netns        uint64
	lport, rport uint16
	family       uint8 // 4 or 6
	proto        uint8 // IPPROTO_TCP or IPPROTO_UDP
	// v4 has bit 0 set when the local address is an IPv4 one, bit 1 when
	// the remote one is: 1.2.3.4 and ::ffff:1.2.3.4 are two addresses.
	v4            uint8
	local, remote [16]byte
}

// addr returns the key's remote (or local) address.
func (k *ipKey) addr(remote bool) netip.Addr {
	b, bit := k.local, uint8(1)
	if remote {
		b, bit = k.remote, 2
	}
	a := netip.AddrFrom16(b)
	if k.v4&bit != 0 {
		a = a.Unmap()
	}
	return a
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
	// h is the hash of ip, once known (0 for not yet: a hash of 0 is
	// only computed again).
	h uint64
}

func newTable(size int) table {
	var t table
	t.ips.init(size)
	return t
}

// keyOf returns the key of r's connection, record.Key of r, made straight
// from the record: it is on the path of every socket.
func keyOf(r *record.Record, memo *addrMemos) tkey {
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
	l, ok := memo.local.parse(r.Local.IP)
	if !ok {
		return strKey(r)
	}
	rm, ok := memo.remote.parse(r.Remote.IP)
	if !ok {
		return strKey(r)
	}
	k := ipKey{netns: r.NetNS, lport: r.Local.Port, rport: r.Remote.Port, family: fam, proto: proto, local: l.As16(), remote: rm.As16()}
	if l.Is4() {
		k.v4 |= 1
	}
	if rm.Is4() {
		k.v4 |= 2
	}
	return tkey{ip: k, h: hashOf(&k)}
}

func strKey(r *record.Record) tkey {
	k := r.Key()
	return tkey{str: &k}
}

func (t *table) len() int { return t.ips.n + len(t.strs) }

func (t *table) get(k tkey) (*entry, bool) {
	if k.str == nil {
		e := t.ips.get(&k.ip, k.hash())
		return e, e != nil
	}
	e, ok := t.strs[*k.str]
	return e, ok
}

func (t *table) put(k tkey, e *entry) {
	if k.str == nil {
		t.ips.put(e, k.hash())
		return
	}
	if t.strs == nil {
		t.strs = make(map[record.Key]*entry)
	}
	t.strs[*k.str] = e
}

func (t *table) del(k tkey) {
	if k.str == nil {
		t.ips.del(&k.ip)
		return
	}
	delete(t.strs, *k.str)
}

func (k *tkey) hash() uint64 {
	if k.h == 0 {
		k.h = hashOf(&k.ip)
	}
	return k.h
}

// addrMemo is an address that keyOf parsed last. The decoder gives the
// records of a stream the same string for the same address, most often
// one of few local ones, which then compares at once (by pointer).
type addrMemo struct {
	text string
	addr netip.Addr
}

// addrMemos are a State's, for the local and remote ends.
type addrMemos struct{ local, remote addrMemo }

// parse parses an address without a zone, through m.
func (m *addrMemo) parse(s string) (netip.Addr, bool) {
	if s == m.text && s != "" {
		return m.addr, true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	m.text, m.addr = s, a
	return a, true
}

// ipSet is the set of entries keyed by ipKey: open addressing with linear
// probing over the entries themselves, which hold their keys, so that a
// connection costs a slot of 8 bytes and a tag of 4 rather than a map
// slot that copies its key. The tags, bits of the keys' hashes, are
// probed first: a probe follows a pointer to an entry only when its tag
// matches, nearly always for the entry sought.
//
// An entry's home slot is given by the high bits of its tag, so that
// growing the set, and closing the gap a deleted entry leaves, read only
// the tags, not the entries (a walk over memory at random) nor their keys'
// hashes.
type ipSet struct {
	slots []*entry // a power of two of them, 2^bits; nil is free
	tags  []uint32 // by slot: tagOf the hash of its entry's key; 0 is free
	bits  uint
	n     int
}

var ipSeed = maphash.MakeSeed()

func hashOf(k *ipKey) uint64 { return maphash.Comparable(ipSeed, *k) }

// tagOf is the tag of a hash: its high 32 bits, never 0.
func tagOf(h uint64) uint32 { return uint32(h>>32) | 1 }

// home is the first slot that an entry of tag t may take.
func (s *ipSet) home(t uint32) int { return int(t >> (32 - s.bits)) }

func (s *ipSet) init(size int) {
	bits := uint(4)
	for (1<<bits)*3/4 < size {
		bits++
	}
	if bits > 31 {
		panic("diff: a connection table of more than 2^31 slots")
	}
	c := 1 << bits
	s.slots, s.tags, s.bits, s.n = make([]*entry, c), make([]uint32, c), bits, 0
}

// find returns the slot of k, whose hash is h, or the free slot where it
// would go.
func (s *ipSet) find(k *ipKey, h uint64) int {
	mask := len(s.slots) - 1
	tag := tagOf(h)
	for i := s.home(tag); ; i = (i + 1) & mask {
		switch t := s.tags[i]; {
		case t == 0:
			return i
		case t == tag && s.slots[i].ip == *k:
			return i
		}
	}
}

func (s *ipSet) get(k *ipKey, h uint64) *entry {
	if s.slots == nil {
		return nil
	}
	return s.slots[s.find(k, h)]
}

// put adds e, whose key's hash is h, or replaces the entry of its key.
func (s *ipSet) put(e *entry, h uint64) {
	if (s.n+1)*4 > len(s.slots)*3 {
		old, tags := s.slots, s.tags
		s.init(len(old))
		mask := len(s.slots) - 1
		for j, o := range old {
			if o != nil {
				// Keys are distinct: the first free slot from home.
				t := tags[j]
				i := s.home(t)
				for s.tags[i] != 0 {
					i = (i + 1) & mask
				}
				s.slots[i], s.tags[i] = o, t
				s.n++
			}
		}
	}
	i := s.find(&e.ip, h)
	if s.slots[i] == nil {
		s.n++
	}
	s.slots[i], s.tags[i] = e, tagOf(h)
}

// del removes the entry of k, moving back the entries that probed past
// it, so that no probe sequence has a hole.
func (s *ipSet) del(k *ipKey) {
	if s.slots == nil {
		return
	}
	i := s.find(k, hashOf(k))
	if s.slots[i] == nil {
		return
	}
	mask := len(s.slots) - 1
	for j := (i + 1) & mask; s.slots[j] != nil; j = (j + 1) & mask {
		// The entry at j may move to i when its home is not in (i, j],
		// cyclically.
		h := s.home(s.tags[j])
		if (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
			s.slots[i], s.tags[i] = s.slots[j], s.tags[j]
			i = j
		}
	}
	s.slots[i], s.tags[i] = nil, 0
	s.n--
}
