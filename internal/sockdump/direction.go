package sockdump

import (
	"net/netip"

	"github.com/sockpipe/sockpipe/internal/inetdiag"
	"github.com/sockpipe/sockpipe/internal/record"
)

type listenKey struct {
	addr netip.Addr
	port uint16
}

// Listeners is the set of listening endpoints of one dump.
type Listeners map[listenKey]struct{}

// Add records s if it listens.
func (l Listeners) Add(s *inetdiag.Socket) {
	if s.State == inetdiag.StateListen {
		l[listenKey{s.Src, s.SrcPort}] = struct{}{}
	}
}

var (
	any4 = netip.IPv4Unspecified()
	any6 = netip.IPv6Unspecified()
)

// Direction decides a socket's direction from the listeners of the same
// dump: listening when it listens; ingress when a listener exists on its
// local port with its local address or the any-address of its family (so a
// dual-stack :: listener covers IPv4-mapped connections); egress otherwise.
func (l Listeners) Direction(s *inetdiag.Socket) string {
	if s.State == inetdiag.StateListen {
		return record.DirectionListening
	}
	if _, ok := l[listenKey{s.Src, s.SrcPort}]; ok {
		return record.DirectionIngress
	}
	anyAddr := any4
	if s.Family == inetdiag.AFInet6 {
		anyAddr = any6
	}
	if _, ok := l[listenKey{anyAddr, s.SrcPort}]; ok {
		return record.DirectionIngress
	}
	return record.DirectionEgress
}

// Family returns the record's name of an address family.
func Family(f uint8) string {
	if f == inetdiag.AFInet6 {
		return record.FamilyIPv6
	}
	return record.FamilyIPv4
}
