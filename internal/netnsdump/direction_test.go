package netnsdump

import (
	"net/netip"
	"testing"

	"github.com/sockpipe/sockpipe/internal/inetdiag"
)

func sock(family uint8, state uint8, src string, sport uint16, dst string, dport uint16) *inetdiag.Socket {
	return &inetdiag.Socket{Family: family, State: state,
		Src: netip.MustParseAddr(src), SrcPort: sport, Dst: netip.MustParseAddr(dst), DstPort: dport}
}

func TestDirection(t *testing.T) {
	t.Parallel()
	const est, listen = 1, inetdiag.StateListen
	v4, v6 := uint8(inetdiag.AFInet), uint8(inetdiag.AFInet6)
	l := Listeners{}
	for _, s := range []*inetdiag.Socket{
		sock(v4, listen, "127.0.0.1", 80, "0.0.0.0", 0),
		sock(v4, listen, "0.0.0.0", 22, "0.0.0.0", 0),
		sock(v6, listen, "::", 443, "::", 0),
		sock(v6, listen, "::1", 8080, "::", 0),
		sock(v4, est, "127.0.0.1", 5000, "127.0.0.1", 80), // not a listener
	} {
		l.Add(s)
	}
	for _, tt := range []struct {
		name string
		s    *inetdiag.Socket
		want string
	}{
		{"listener", sock(v4, listen, "0.0.0.0", 22, "0.0.0.0", 0), "listening"},
		{"same address", sock(v4, est, "127.0.0.1", 80, "127.0.0.1", 40000), "ingress"},
		{"other address, no wildcard", sock(v4, est, "127.0.0.2", 80, "127.0.0.1", 40000), "egress"},
		{"ipv4 wildcard", sock(v4, est, "10.0.0.1", 22, "10.0.0.2", 40000), "ingress"},
		{"ipv6 wildcard", sock(v6, est, "2001:db8::1", 443, "2001:db8::2", 40000), "ingress"},
		{"ipv4-mapped on dual-stack ::", sock(v6, est, "::ffff:127.0.0.1", 443, "::ffff:127.0.0.1", 40000), "ingress"},
		{"ipv4 socket, only an ipv6 wildcard", sock(v4, est, "127.0.0.1", 443, "127.0.0.1", 40000), "egress"},
		{"ipv6 socket, only an ipv4 wildcard", sock(v6, est, "::1", 22, "::1", 40000), "egress"},
		{"ipv6 same address", sock(v6, est, "::1", 8080, "::1", 40000), "ingress"},
		{"client to a local listener", sock(v4, est, "127.0.0.1", 5000, "127.0.0.1", 80), "egress"},
		{"time-wait of an accepted connection", sock(v4, 6, "127.0.0.1", 80, "127.0.0.1", 40001), "ingress"},
		{"closed, bound only", sock(v4, 7, "127.0.0.1", 9999, "0.0.0.0", 0), "egress"},
	} {
		if got := l.Direction(tt.s); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}

func udpSock(family uint8, state uint8, src string, sport uint16, dst string, dport uint16) *inetdiag.Socket {
	s := sock(family, state, src, sport, dst, dport)
	s.Protocol = inetdiag.ProtoUDP
	return s
}

// UDP has no LISTEN state: an unconnected socket is the listener, and the
// listeners of one protocol say nothing of the other's sockets.
func TestDirectionUDP(t *testing.T) {
	t.Parallel()
	const est, unconn = inetdiag.StateEstablished, inetdiag.StateClose
	v4, v6 := uint8(inetdiag.AFInet), uint8(inetdiag.AFInet6)
	l := Listeners{}
	for _, s := range []*inetdiag.Socket{
		udpSock(v4, unconn, "0.0.0.0", 53, "0.0.0.0", 0),
		udpSock(v6, unconn, "::1", 443, "::", 0),
		sock(v4, inetdiag.StateListen, "127.0.0.1", 8080, "0.0.0.0", 0), // TCP
		udpSock(v4, est, "127.0.0.1", 40000, "127.0.0.1", 53),           // not a listener
	} {
		l.Add(s)
	}
	for _, tt := range []struct {
		name string
		s    *inetdiag.Socket
		want string
	}{
		{"unconnected is listening", udpSock(v4, unconn, "127.0.0.1", 9999, "0.0.0.0", 0), "listening"},
		{"connected from a listener's port", udpSock(v4, est, "10.0.0.1", 53, "10.0.0.2", 40000), "ingress"},
		{"connected ipv6, same address", udpSock(v6, est, "::1", 443, "::1", 50000), "ingress"},
		{"connected client", udpSock(v4, est, "127.0.0.1", 40000, "127.0.0.1", 53), "egress"},
		{"a TCP listener's port says nothing of UDP", udpSock(v4, est, "127.0.0.1", 8080, "127.0.0.1", 40000), "egress"},
		{"a UDP listener's port says nothing of TCP", sock(v4, est, "127.0.0.1", 53, "127.0.0.1", 40000), "egress"},
		{"a closed TCP socket is not listening", sock(v4, unconn, "127.0.0.1", 9999, "0.0.0.0", 0), "egress"},
	} {
		if got := l.Direction(tt.s); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}
