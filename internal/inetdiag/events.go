package inetdiag

import (
	"errors"
	"fmt"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Multicast groups of NETLINK_SOCK_DIAG (linux/sock_diag.h, Linux 4.2+).
const (
	groupTCP4Destroy = 1 // SKNLGRP_INET_TCP_DESTROY
	groupUDP4Destroy = 2 // SKNLGRP_INET_UDP_DESTROY
	groupTCP6Destroy = 3 // SKNLGRP_INET6_TCP_DESTROY
	groupUDP6Destroy = 4 // SKNLGRP_INET6_UDP_DESTROY
)

// ErrOverflow means the kernel dropped notifications because the socket's
// receive buffer was full (ENOBUFS). The subscription goes on after it.
var ErrOverflow = errors.New("receive buffer full, notifications lost")

// Events receives the kernel's notifications of destroyed sockets.
type Events struct {
	c *netlink.Conn
	// proto is the protocol of every notification when the socket joined
	// the groups of one protocol only; 0 when it joined both.
	proto uint8
}

// Subscribe joins the destroy groups of IPv4 and IPv6 for the given
// protocols (ProtoTCP, ProtoUDP), in the network namespace of the open
// file netns or the current one when netns is 0, and sizes the receive
// buffer to bufBytes (forced past net.core.rmem_max when the process has
// CAP_NET_ADMIN). It fails if no group can be joined; joined names the
// groups that were ("tcp/ipv4", …).
func Subscribe(netns int, protocols []uint8, bufBytes int) (e *Events, joined []string, err error) {
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, nil, classify("open netlink socket", err)
	}
	return subscribe(c, protocols, bufBytes)
}

func subscribe(c *netlink.Conn, protocols []uint8, bufBytes int) (*Events, []string, error) {
	var (
		joined []string
		errs   []error
	)
	type group struct {
		id   uint32
		name string
	}
	var groups []group
	for _, p := range protocols {
		switch p {
		case ProtoTCP:
			groups = append(groups, group{groupTCP4Destroy, "tcp/ipv4"}, group{groupTCP6Destroy, "tcp/ipv6"})
		case ProtoUDP:
			groups = append(groups, group{groupUDP4Destroy, "udp/ipv4"}, group{groupUDP6Destroy, "udp/ipv6"})
		}
	}
	for _, g := range groups {
		if err := c.JoinGroup(g.id); err != nil {
			errs = append(errs, classify("join "+g.name+" destroy group", err))
			continue
		}
		joined = append(joined, g.name)
	}
	if len(joined) == 0 {
		c.Close()
		if len(errs) == 0 {
			return nil, nil, errors.New("no protocol to subscribe to")
		}
		return nil, nil, errors.Join(errs...)
	}
	if bufBytes > 0 {
		setReadBuffer(c, bufBytes)
	}
	e := &Events{c: c}
	if len(protocols) == 1 {
		e.proto = protocols[0]
	}
	return e, joined, nil
}

// setReadBuffer asks for bufBytes with SO_RCVBUFFORCE, which only a
// process with CAP_NET_ADMIN may use, and falls back to SO_RCVBUF, which
// the kernel caps at net.core.rmem_max.
func setReadBuffer(c *netlink.Conn, bufBytes int) {
	rc, err := c.SyscallConn()
	if err == nil {
		var serr error
		err = rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, bufBytes)
		})
		if err == nil && serr == nil {
			return
		}
	}
	_ = c.SetReadBuffer(bufBytes)
}

// ReadBuffer returns the receive buffer size the kernel granted.
func (e *Events) ReadBuffer() (int, error) { return e.c.ReadBuffer() }

// Receive blocks until the kernel sends notifications and returns the
// destroyed sockets. An error wrapping ErrOverflow means some were lost;
// the caller may go on receiving.
func (e *Events) Receive() ([]Socket, error) {
	msgs, err := e.c.Receive()
	if err != nil {
		if errors.Is(err, unix.ENOBUFS) {
			return nil, fmt.Errorf("destroy notifications: %w", ErrOverflow)
		}
		return nil, fmt.Errorf("receive destroy notifications: %w", err)
	}
	return parseEvents(msgs, e.proto)
}

// parseEvents decodes notifications; a message that does not decode is
// skipped and reported after the good ones. proto is the protocol of a
// notification that does not say it (kernels before 4.4), 0 if unknown.
func parseEvents(msgs []netlink.Message, proto uint8) ([]Socket, error) {
	socks := make([]Socket, 0, len(msgs))
	var bad error
	for _, m := range msgs {
		if m.Header.Type != sockDiagByFamily {
			continue
		}
		s, err := ParseMessage(m.Data)
		if err != nil {
			bad = fmt.Errorf("decode destroy notification: %w", err)
			continue
		}
		if s.Protocol == 0 {
			s.Protocol = proto
		}
		socks = append(socks, s)
	}
	return socks, bad
}

// Close ends the subscription.
func (e *Events) Close() error { return e.c.Close() }

// SetReadDeadline makes Receive return an error once t has passed, so that
// what the kernel has queued can be drained before Close.
func (e *Events) SetReadDeadline(t time.Time) error { return e.c.SetReadDeadline(t) }
