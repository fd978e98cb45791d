package netnsdump

import (
	"net/netip"

	"github.com/sockpipe/sockpipe/internal/inetdiag"
	"github.com/sockpipe/sockpipe/internal/record"
)

type listenKey struct {
	proto uint8
	addr  netip.Addr
	port  uint16
}

// Listeners is the set of listening endpoints of one dump, per protocol,
// each with the socket that listens there: of several (SO_REUSEPORT, or
// listeners of the same port in other namespaces), the one of the lowest
// inode, the same in every dump.
type Listeners map[listenKey]listener

// listener is a listening socket of a dump.
type listener struct{ inode, uid uint32 }

// Listens reports whether s is a listener: a TCP socket in the LISTEN
// state, or an unconnected UDP socket (TCP_CLOSE, no remote end).
func Listens(s *inetdiag.Socket) bool {
	if s.Protocol == inetdiag.ProtoUDP {
		return s.State == inetdiag.StateClose
	}
	return s.State == inetdiag.StateListen
}

// listenStates is the state mask of a protocol's listeners.
func listenStates(proto uint8) uint32 {
	if proto == inetdiag.ProtoUDP {
		return 1 << inetdiag.StateClose
	}
	return 1 << inetdiag.StateListen
}

// Add records s if it listens.
func (l Listeners) Add(s *inetdiag.Socket) {
	if !Listens(s) {
		return
	}
	k := listenKey{s.Protocol, s.Src, s.SrcPort}
	if old, ok := l[k]; !ok || old.inode == 0 || s.Inode != 0 && s.Inode < old.inode {
		l[k] = listener{s.Inode, s.UID}
	}
}

// Listener returns the listener that accepted s, by the rule of
// Direction: the one of its local address and port, else the any-address
// one of its port.
func (l Listeners) Listener(s *inetdiag.Socket) (listener, bool) {
	if v, ok := l[listenKey{s.Protocol, s.Src, s.SrcPort}]; ok {
		return v, true
	}
	anyAddr := any4
	if s.Family == inetdiag.AFInet6 {
		anyAddr = any6
	}
	v, ok := l[listenKey{s.Protocol, anyAddr, s.SrcPort}]
	return v, ok
}

var (
	any4 = netip.IPv4Unspecified()
	any6 = netip.IPv6Unspecified()
)

// Direction decides a socket's direction from the listeners of the same
// dump and protocol: listening when it listens; ingress when a listener
// exists on its local port with its local address or the any-address of
// its family (so a dual-stack :: listener covers IPv4-mapped
// connections); egress otherwise.
func (l Listeners) Direction(s *inetdiag.Socket) string {
	if Listens(s) {
		return record.DirectionListening
	}
	if _, ok := l.Listener(s); ok {
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

// Transport returns the record's name of an IP protocol; TCP when unknown.
func Transport(p uint8) string {
	if p == inetdiag.ProtoUDP {
		return record.TransportUDP
	}
	return record.TransportTCP
}
