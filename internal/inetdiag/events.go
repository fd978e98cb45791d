package inetdiag

import (
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Multicast groups of NETLINK_SOCK_DIAG (linux/sock_diag.h, Linux 4.2+).
const (
	groupTCP4Destroy = 1 // SKNLGRP_INET_TCP_DESTROY
	groupTCP6Destroy = 3 // SKNLGRP_INET6_TCP_DESTROY
)

// ErrOverflow means the kernel dropped notifications because the socket's
// receive buffer was full (ENOBUFS). The subscription goes on after it.
var ErrOverflow = errors.New("receive buffer full, notifications lost")

// Events receives the kernel's notifications of destroyed TCP sockets.
type Events struct {
	c *netlink.Conn
}

// Subscribe joins the TCP destroy groups of IPv4 and IPv6 and sizes the
// receive buffer to bufBytes (forced past net.core.rmem_max when the
// process has CAP_NET_ADMIN). It fails if neither group can be joined;
// joined reports the families that were.
func Subscribe(bufBytes int) (e *Events, joined []string, err error) {
	c, err := netlink.Dial(unix.NETLINK_SOCK_DIAG, nil)
	if err != nil {
		return nil, nil, classify("open netlink socket", err)
	}
	return subscribe(c, bufBytes)
}

func subscribe(c *netlink.Conn, bufBytes int) (*Events, []string, error) {
	var (
		joined []string
		errs   []error
	)
	for _, g := range []struct {
		id   uint32
		name string
	}{{groupTCP4Destroy, "ipv4"}, {groupTCP6Destroy, "ipv6"}} {
		if err := c.JoinGroup(g.id); err != nil {
			errs = append(errs, classify("join "+g.name+" TCP destroy group", err))
			continue
		}
		joined = append(joined, g.name)
	}
	if len(joined) == 0 {
		c.Close()
		return nil, nil, errors.Join(errs...)
	}
	if bufBytes > 0 {
		setReadBuffer(c, bufBytes)
	}
	return &Events{c: c}, joined, nil
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
	return parseEvents(msgs)
}

// parseEvents decodes notifications; a message that does not decode is
// skipped and reported after the good ones.
func parseEvents(msgs []netlink.Message) ([]Socket, error) {
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
		socks = append(socks, s)
	}
	return socks, bad
}

// Close ends the subscription.
func (e *Events) Close() error { return e.c.Close() }
