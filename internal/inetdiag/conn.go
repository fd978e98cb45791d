package inetdiag

import (
	"errors"
	"fmt"
	"os"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Errors that a user can act on; Conn's errors wrap one of them where it
// applies, so callers test with errors.Is.
var (
	// ErrUnsupported: the kernel has no NETLINK_SOCK_DIAG, no inet_diag
	// for the protocol (module tcp_diag or udp_diag missing), or is older
	// than Linux 3.3.
	ErrUnsupported = errors.New("kernel does not support sock_diag dumps")
	// ErrPermission: the kernel or a security policy (seccomp, LSM) refused.
	ErrPermission = os.ErrPermission
)

// Conn is a NETLINK_SOCK_DIAG socket.
type Conn struct {
	c *netlink.Conn
}

// Dial opens a NETLINK_SOCK_DIAG socket in the network namespace of the
// open file netns (/proc/PID/ns/net, /run/netns/NAME), or in the
// current one when netns is 0. Entering another namespace needs
// CAP_SYS_ADMIN; the socket stays in the namespace it was opened in.
func Dial(netns int) (*Conn, error) {
	// A fixed 32 KiB receive buffer, as ss uses: the kernel then fills
	// datagrams of up to 32 KiB (a few hundred sockets each) instead of a
	// page, and no peek is needed before each read.
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, &netlink.Config{MessageBufferSize: 32 << 10, NetNS: netns})
	if err != nil {
		return nil, classify("open netlink socket", err)
	}
	return &Conn{c: c}, nil
}

// NewConn wraps an existing netlink connection (tests use nltest.Dial).
func NewConn(c *netlink.Conn) *Conn { return &Conn{c: c} }

// Close closes the socket.
func (c *Conn) Close() error { return c.c.Close() }

// NetlinkConn returns the underlying connection.
func (c *Conn) NetlinkConn() *netlink.Conn { return c.c }

// Dump asks for every socket of family (AFInet or AFInet6; AFUnspec for
// both at once, with ProtoTCP only) and protocol (ProtoTCP or ProtoUDP) in
// the given states and calls fn for each, as the
// replies arrive, without holding the whole dump in memory. fn must not
// keep the pointer: the Socket is reused. An error from fn stops the dump.
func (c *Conn) Dump(family, protocol uint8, states uint32, fn func(*Socket) error) error {
	return c.dump(family, protocol, states, 0, fn)
}

func (c *Conn) dump(family, protocol uint8, states uint32, ext uint8, fn func(*Socket) error) error {
	req := netlink.Message{
		Header: netlink.Header{
			Type:  sockDiagByFamily,
			Flags: netlink.Request | netlink.Dump,
		},
		Data: marshalRequest(family, protocol, states, ext),
	}
	replyType := netlink.HeaderType(sockDiagByFamily)
	if family == AFUnspec {
		if protocol != ProtoTCP {
			return fmt.Errorf("send dump request: both families at once for TCP only: %w", ErrUnsupported)
		}
		req.Header.Type, replyType = tcpDiagGetSock, tcpDiagGetSock
		req.Data = marshalRequestV1(states, ext)
	}
	if _, err := c.c.Send(req); err != nil {
		return classify("send dump request", err)
	}
	var (
		ferr error
		s    Socket // one for the whole dump: fn must not keep the pointer
	)
	for m, err := range c.c.ReceiveIter() {
		if err != nil {
			return classify("receive dump", err)
		}
		if ferr != nil {
			continue // drain the rest of the dump so the socket stays usable
		}
		if m.Header.Type != replyType {
			continue
		}
		var err error
		if s, err = ParseMessage(m.Data); err != nil {
			ferr = fmt.Errorf("decode dump reply: %w", err)
			continue
		}
		s.Protocol = protocol
		ferr = fn(&s)
	}
	return ferr
}

// classify maps kernel errors to the ones a user can act on.
func classify(op string, err error) error {
	switch {
	case errors.Is(err, unix.EPROTONOSUPPORT), errors.Is(err, unix.EAFNOSUPPORT):
		return fmt.Errorf("%s: no NETLINK_SOCK_DIAG in this kernel (CONFIG_INET_DIAG): %w", op, ErrUnsupported)
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("%s: no sock_diag handler for the protocol (load module tcp_diag or udp_diag; Linux 3.3 or newer is needed): %w", op, ErrUnsupported)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("%s: the kernel rejected SOCK_DIAG_BY_FAMILY (Linux 3.3 or newer is needed): %w", op, ErrUnsupported)
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("%s: permission denied by the kernel or a security policy (seccomp, LSM): %w", op, ErrPermission)
	}
	return fmt.Errorf("%s: %w", op, err)
}
