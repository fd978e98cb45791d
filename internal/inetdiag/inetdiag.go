// Package inetdiag dumps TCP and UDP sockets from the kernel with NETLINK_SOCK_DIAG
// (SOCK_DIAG_BY_FAMILY, struct inet_diag_req_v2) and decodes the replies.
//
// Talking to the kernel (Conn) is split from decoding (ParseMessage), which
// is pure, checks every length and never panics on short or odd input.
package inetdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Kernel constants (linux/sock_diag.h, linux/inet_diag.h, linux/in.h).
const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	tcpDiagGetSock   = 18 // TCPDIAG_GETSOCK: struct inet_diag_req, TCP of both families

	// AFUnspec asks Dump for the TCP sockets of both families at once.
	AFUnspec = 0

	// AFInet and AFInet6 are the address families.
	AFInet  = 2
	AFInet6 = 10

	// ProtoTCP and ProtoUDP are the IP protocols that can be dumped.
	ProtoTCP = 6
	ProtoUDP = 17

	// StateEstablished is TCP_ESTABLISHED, also a connected UDP socket.
	StateEstablished = 1
	// StateClose is TCP_CLOSE, also an unconnected UDP socket.
	StateClose = 7
	// StateListen is TCP_LISTEN.
	StateListen = 10

	// AllStates asks for sockets in every TCP state and every pseudo
	// state the kernel may define.
	AllStates = ^uint32(0)
	// StateBoundInactive is TCP_BOUND_INACTIVE (Linux 6.5+): a socket
	// bound to a port but neither listening nor connected. Asking for it
	// makes the kernel walk its table of bound ports, which holds those of
	// every network namespace of the host.
	StateBoundInactive = 13
	// ActiveStates asks for sockets in the TCP states 1 (ESTABLISHED) to 12
	// (NEW_SYN_RECV): every socket that ss -a shows, and Metricbeat; not
	// the bound-inactive ones (ss --bound-inactive).
	ActiveStates = 1<<StateBoundInactive - 2

	inetDiagInfo     = 2  // INET_DIAG_INFO, the tcp_info attribute
	inetDiagProtocol = 10 // INET_DIAG_PROTOCOL, a u8 (Linux 4.4+, in destroy notifications)

	reqLen   = 56 // sizeof(struct inet_diag_req_v2)
	reqV1Len = 60 // sizeof(struct inet_diag_req)
	// MsgLen is sizeof(struct inet_diag_msg).
	MsgLen = 72
)

// Socket is one socket as the kernel describes it in an inet_diag_msg.
type Socket struct {
	Family uint8 // AFInet or AFInet6
	// Protocol is ProtoTCP or ProtoUDP: what the dump asked for, or what
	// a destroy notification's INET_DIAG_PROTOCOL says; 0 when unknown.
	Protocol uint8
	State    uint8 // TCP state, 1 (ESTABLISHED) to 12 (NEW_SYN_RECV)
	Timer    uint8
	Retrans  uint8

	Src, Dst         netip.Addr // local and remote address
	SrcPort, DstPort uint16     // local and remote port
	Interface        uint32     // bound interface index, 0 if none
	Cookie           uint64     // socket cookie

	Expires uint32
	RQueue  uint32
	WQueue  uint32
	UID     uint32
	Inode   uint32

	// Info is the tcp_info attribute when the kernel sent one.
	Info *TCPInfo
}

// ErrShort is the cause of errors about messages too short to decode.
var ErrShort = errors.New("message too short")

// ParseMessage decodes the payload of one SOCK_DIAG_BY_FAMILY reply: an
// inet_diag_msg followed by attributes. Unknown attributes are skipped.
func ParseMessage(b []byte) (Socket, error) {
	var s Socket
	if len(b) < MsgLen {
		return s, fmt.Errorf("inet_diag_msg: %d bytes, want at least %d: %w", len(b), MsgLen, ErrShort)
	}
	s.Family, s.State, s.Timer, s.Retrans = b[0], b[1], b[2], b[3]
	id := b[4:52]
	s.SrcPort = binary.BigEndian.Uint16(id[0:2])
	s.DstPort = binary.BigEndian.Uint16(id[2:4])
	switch s.Family {
	case AFInet:
		s.Src = netip.AddrFrom4([4]byte(id[4:8]))
		s.Dst = netip.AddrFrom4([4]byte(id[20:24]))
	case AFInet6:
		s.Src = netip.AddrFrom16([16]byte(id[4:20]))
		s.Dst = netip.AddrFrom16([16]byte(id[20:36]))
	default:
		return s, fmt.Errorf("inet_diag_msg: unknown address family %d", s.Family)
	}
	s.Interface = binary.NativeEndian.Uint32(id[36:40])
	s.Cookie = uint64(binary.NativeEndian.Uint32(id[40:44])) | uint64(binary.NativeEndian.Uint32(id[44:48]))<<32
	s.Expires = binary.NativeEndian.Uint32(b[52:56])
	s.RQueue = binary.NativeEndian.Uint32(b[56:60])
	s.WQueue = binary.NativeEndian.Uint32(b[60:64])
	s.UID = binary.NativeEndian.Uint32(b[64:68])
	s.Inode = binary.NativeEndian.Uint32(b[68:72])

	// Attributes follow, each 4-byte aligned: len u16, type u16, data.
	rest := b[MsgLen:]
	for len(rest) >= 4 {
		l := int(binary.NativeEndian.Uint16(rest[0:2]))
		typ := binary.NativeEndian.Uint16(rest[2:4]) &^ 0xc000 // drop NLA_F_NESTED, NLA_F_NET_BYTEORDER
		if l < 4 || l > len(rest) {
			return s, fmt.Errorf("inet_diag_msg: attribute of length %d in %d bytes: %w", l, len(rest), ErrShort)
		}
		switch {
		case typ == inetDiagInfo:
			s.Info = parseTCPInfo(rest[4:l])
		case typ == inetDiagProtocol && l >= 5:
			s.Protocol = rest[4]
		}
		al := (l + 3) &^ 3
		if al > len(rest) {
			al = len(rest)
		}
		rest = rest[al:]
	}
	return s, nil
}

// marshalRequest builds an inet_diag_req_v2 for every socket of one
// family and protocol in the given states, asking for the given
// extensions.
func marshalRequest(family, protocol uint8, states uint32, ext uint8) []byte {
	b := make([]byte, reqLen)
	b[0] = family
	b[1] = protocol
	b[2] = ext
	binary.NativeEndian.PutUint32(b[4:8], states)
	// The socket id (b[8:56]) stays zero: no kernel-side filter; the
	// cookie field is INET_DIAG_NOCOOKIE only for lookups, not dumps.
	return b
}

// marshalRequestV1 builds a struct inet_diag_req (TCPDIAG_GETSOCK) for every
// TCP socket, IPv4 and IPv6, in the given states, asking for the given
// extensions. The kernel answers it with one walk of its socket tables,
// where SOCK_DIAG_BY_FAMILY takes one walk per family.
func marshalRequestV1(states uint32, ext uint8) []byte {
	b := make([]byte, reqV1Len)
	b[3] = ext
	// The socket id (b[4:52]) stays zero: no kernel-side filter.
	binary.NativeEndian.PutUint32(b[52:56], states)
	return b
}
