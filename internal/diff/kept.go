package diff

import (
	"bytes"
	"hash/maphash"
	"math"
	"time"
	"unsafe"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/record"
)

// kept is the last record of a connection, as the state keeps it. A plain
// socket record, as sockdump writes nearly every one, is kept in the few
// fixed-size fields below, beside the connection's key, which holds its
// namespace, addresses and ports: about 40 bytes instead of a line of 250
// or more. Any other record (one with an owner, counters, members this
// version does not know, or addresses in a spelling of their own) is kept
// as its line.
type kept struct {
	// sum is a hash of the line the record was read from, after its
	// time, so that Unchanged recognises the same line without keeping
	// it; 0 when the line does not begin as the codec writes it.
	sum    uint64
	at     int64 // the record's time, Unix nanoseconds
	cookie uint64
	// raw is the record's line, for a record that the fields here
	// cannot hold; nil otherwise. (A pointer, not a slice, keeps an
	// entry in 160 bytes.)
	raw    *[]byte
	inode  uint32 // socket inodes are 32 bits (get_next_ino); a larger one is kept in raw
	uid    uint32
	hasUID bool
	// The record's strings, by their index in the tables below.
	family, transport, state, direction uint8
}

// setLine keeps the record as line, copied without surrounding space.
func (k *kept) setLine(line []byte) {
	if k.raw == nil {
		k.raw = new([]byte)
	}
	*k.raw = append((*k.raw)[:0], bytes.TrimSpace(line)...)
}

// The strings that a kept record holds by index; index 0 is "".
var (
	keptFamilies   = []string{"", record.FamilyIPv4, record.FamilyIPv6}
	keptTransports = []string{"", record.TransportTCP, record.TransportUDP}
	keptDirections = []string{"", record.DirectionListening, record.DirectionIngress, record.DirectionEgress}
	keptStates     = append([]string{""}, statesOf()...)
)

func statesOf() []string {
	var out []string
	for _, s := range record.States {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// indexOf returns the index of s in table, or false.
func indexOf(table []string, s string) (uint8, bool) {
	for i, t := range table {
		if t == s {
			return uint8(i), true
		}
	}
	return 0, false
}

var lineSeed = maphash.MakeSeed()

// lineSum returns the hash of a socket line after its time, or 0.
func lineSum(line []byte) uint64 {
	_, rest, ok := splitTime(bytes.TrimSpace(line))
	if !ok {
		return 0
	}
	if h := maphash.Bytes(lineSeed, rest); h != 0 {
		return h
	}
	return 1
}

// keep makes r, read from line, e's last record.
func (e *entry) keep(r *record.Record, line []byte) {
	sum := lineSum(line)
	if sum != 0 && sum == e.rec.sum {
		// The same line as last time but for its time.
		e.seenAgain(r.Time.UnixNano(), line)
		return
	}
	e.rec = kept{sum: sum}
	if e.str == nil && e.rec.compact(r, &e.ip) {
		return
	}
	e.rec.setLine(line)
}

// seenAgain records that e's last record was read again, at t, from
// line, unchanged but for its time.
func (e *entry) seenAgain(t int64, line []byte) {
	if e.rec.raw != nil {
		e.rec.setLine(line)
	} else {
		e.rec.at = t
	}
}

// compact fills k from r, whose key is ip, when its fields can hold all
// of r, and reports whether they could.
func (k *kept) compact(r *record.Record, ip *ipKey) bool {
	var ok [4]bool
	k.family, ok[0] = indexOf(keptFamilies, r.Family)
	k.transport, ok[1] = indexOf(keptTransports, r.Transport)
	k.state, ok[2] = indexOf(keptStates, r.State)
	k.direction, ok[3] = indexOf(keptDirections, r.Direction)
	if ok != [4]bool{true, true, true, true} || r.Type != record.TypeSocket || r.Inode > math.MaxUint32 ||
		!ip.spells(false, r.Local.IP) || !ip.spells(true, r.Remote.IP) {
		return false
	}
	// Every other field must be empty. TestKeptEveryField fills each
	// field of the record in turn, so that one added later and missing
	// here fails it.
	if r.Time.IsZero() || r.Owner != nil || r.Event != "" || !r.FirstSeen.IsZero() || !r.LastSeen.IsZero() ||
		r.Process != nil || r.ProcessError != "" || r.User != nil || r.Container != nil || r.Info != nil ||
		r.ShortLived || r.Schema != 0 || r.Sockets != 0 || r.Duration != 0 || r.Interval != 0 ||
		r.EventOverflows != 0 || r.Namespaces != 0 || r.NamespacesSkipped != 0 || r.Extra != nil ||
		!plainEnd(&r.Local) || !plainEnd(&r.Remote) {
		return false
	}
	k.at, k.inode, k.cookie, k.uid, k.hasUID = r.Time.UnixNano(), uint32(r.Inode), r.Cookie, r.UID, r.HasUID
	return true
}

// plainEnd reports whether an endpoint has nothing but its address and
// port.
func plainEnd(p *record.Endpoint) bool {
	return p.Host == "" && p.ETLDPlusOne == "" && p.HostError == "" && p.Extra == nil
}

// record returns e's last record, decoded.
func (e *entry) record() (*record.Record, error) {
	if e.rec.raw != nil {
		return codec.Decode(*e.rec.raw)
	}
	r := new(record.Record)
	e.compactInto(r, true)
	return r, nil
}

// compactInto sets r to e's last record, kept compact: but for the
// addresses' text, unless addrs.
func (e *entry) compactInto(r *record.Record, addrs bool) {
	k := &e.rec
	*r = record.Record{
		Type:      record.TypeSocket,
		Time:      time.Unix(0, k.at).UTC(),
		Family:    keptFamilies[k.family],
		Transport: keptTransports[k.transport],
		State:     keptStates[k.state],
		Local:     record.Endpoint{Port: e.ip.lport},
		Remote:    record.Endpoint{Port: e.ip.rport},
		Direction: keptDirections[k.direction],
		Inode:     uint64(k.inode),
		UID:       k.uid,
		HasUID:    k.hasUID,
		Cookie:    k.cookie,
		NetNS:     e.ip.netns,
	}
	if addrs {
		r.Local.IP, r.Remote.IP = e.ip.addr(false).String(), e.ip.addr(true).String()
	}
}

// line returns e's last record as a line, without newline: its own
// memory, or enc's, with scratch for a record it makes and text for its
// addresses' text, which lives only while the record is encoded (rather
// than as two strings a connection for the collector: a save of 100,000
// connections made 3 MB of them).
func (e *entry) line(enc *codec.Encoder, scratch *record.Record, text *[]byte) []byte {
	if e.rec.raw != nil {
		return *e.rec.raw
	}
	e.compactInto(scratch, false)
	b := e.ip.addr(false).AppendTo((*text)[:0])
	n := len(b)
	b = e.ip.addr(true).AppendTo(b)
	*text = b
	scratch.Local.IP = unsafe.String(unsafe.SliceData(b), n)
	scratch.Remote.IP = unsafe.String(unsafe.SliceData(b[n:]), len(b)-n)
	out := enc.Encode(scratch)
	scratch.Local.IP, scratch.Remote.IP = "", ""
	return out[:len(out)-1]
}

// cookie returns the socket cookie of e's last record, or 0.
func (e *entry) cookie() uint64 {
	if e.rec.raw != nil {
		return rawCookie(*e.rec.raw)
	}
	return e.rec.cookie
}

// spells reports whether s is the address of the key's remote (or local)
// end as netip writes it, which is how sockdump writes it.
func (k *ipKey) spells(remote bool, s string) bool {
	var buf [64]byte
	return string(k.addr(remote).AppendTo(buf[:0])) == s
}
