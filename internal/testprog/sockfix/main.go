// Command sockfix holds a fixed set of sockets for sockpipe's tests, in
// whatever network namespace it runs in (ip netns exec NAME sockfix …):
//
//	-tcp ADDR       a TCP listener on ADDR and one connection to it (both ends)
//	-udp ADDR       an unconnected UDP socket bound to ADDR, a UDP socket
//	                connected to it from an ephemeral port, and a second socket
//	                on ADDR (SO_REUSEPORT) connected back to that client
//	-from ADDR      the clients of the -tcp and -udp flags that follow connect
//	                from ADDR instead of an ephemeral port (until the next
//	                -from; "" for an ephemeral port again); a TCP connection
//	                from a fixed address is closed abortively (RST) when
//	                sockfix ends, so that no TIME_WAIT keeps the address busy
//	-timewait ADDR  a TCP connection to a listener on ADDR that the client
//	                closes first and that leaves, once sockfix exits, its
//	                client end in TIME_WAIT and no process in the namespace
//
// Each flag may repeat. It prints one line per socket,
// "TRANSPORT ROLE LOCAL REMOTE" (roles: listener, client, server, bound,
// timewait), then "ready PID", and holds the sockets until its standard
// input closes.
// Only the given addresses are used: tests give loopback ones.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// target is the address of a -tcp, -udp or -timewait flag and the -from
// in effect there.
type target struct{ addr, from string }

// list collects the targets of one flag, each with the -from in effect.
type list struct {
	from    *string
	targets []target
}

func (l *list) String() string { return fmt.Sprint(l.targets) }
func (l *list) Set(v string) error {
	l.targets = append(l.targets, target{v, *l.from})
	return nil
}

// fromFlag sets the -from in effect for the flags that follow it.
type fromFlag struct{ from *string }

func (f fromFlag) String() string {
	if f.from == nil {
		return ""
	}
	return *f.from
}
func (f fromFlag) Set(v string) error { *f.from = v; return nil }

func main() {
	var from string
	tcps, udps, tws := list{from: &from}, list{from: &from}, list{from: &from}
	flag.Var(&tcps, "tcp", "hold a TCP listener and a connection on `ADDR`")
	flag.Var(&udps, "udp", "hold bound and connected UDP sockets on `ADDR`")
	flag.Var(&tws, "timewait", "leave a TIME_WAIT connection to `ADDR`")
	flag.Var(fromFlag{&from}, "from", "connect the clients of the -tcp and -udp flags that follow from `ADDR`")
	flag.Parse()
	out := bufio.NewWriter(os.Stdout)
	var keep []io.Closer
	say := func(transport, role string, l, r net.Addr) {
		rs := "-"
		if r != nil {
			rs = r.String()
		}
		fmt.Fprintf(out, "%s %s %s %s\n", transport, role, l, rs)
	}
	for _, a := range tcps.targets {
		l, c, s := tcpPair(a.addr, a.from)
		if a.from != "" {
			// Closed abortively: no TIME_WAIT holds the fixed address.
			c.(*net.TCPConn).SetLinger(0)
			s.(*net.TCPConn).SetLinger(0)
		}
		keep = append(keep, l, c, s)
		say("tcp", "listener", l.Addr(), nil)
		say("tcp", "client", c.LocalAddr(), c.RemoteAddr())
		say("tcp", "server", s.LocalAddr(), s.RemoteAddr())
	}
	for _, a := range udps.targets {
		lc := net.ListenConfig{Control: reusePort}
		b, err := lc.ListenPacket(context.Background(), "udp", a.addr)
		check(err)
		cd := net.Dialer{LocalAddr: resolve("udp", a.from)}
		c, err := cd.Dial("udp", b.LocalAddr().String())
		check(err)
		d := net.Dialer{LocalAddr: b.LocalAddr(), Control: reusePort}
		s, err := d.Dial("udp", c.LocalAddr().String())
		check(err)
		keep = append(keep, b, c, s)
		say("udp", "bound", b.LocalAddr(), nil)
		say("udp", "client", c.LocalAddr(), c.RemoteAddr())
		say("udp", "server", s.LocalAddr(), s.RemoteAddr())
	}
	for _, a := range tws.targets {
		l, c, s := tcpPair(a.addr, "")
		say("tcp", "timewait", c.LocalAddr(), c.RemoteAddr())
		c.Close() // the active closer ends in TIME_WAIT
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, s)
		s.Close()
		l.Close()
	}
	fmt.Fprintf(out, "ready %d\n", os.Getpid())
	check(out.Flush())
	io.Copy(io.Discard, os.Stdin)
	for _, c := range keep {
		c.Close()
	}
}

// tcpPair makes a listener on addr and a connection to it, from the
// address from when not empty, and returns the listener and both ends.
func tcpPair(addr, from string) (net.Listener, net.Conn, net.Conn) {
	l, err := net.Listen("tcp", addr)
	check(err)
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: resolve("tcp", from)}
	c, err := d.Dial("tcp", l.Addr().String())
	check(err)
	s, err := l.Accept()
	check(err)
	return l, c, s
}

// resolve returns the address addr of network, nil when addr is empty.
func resolve(network, addr string) net.Addr {
	if addr == "" {
		return nil
	}
	if network == "tcp" {
		a, err := net.ResolveTCPAddr(network, addr)
		check(err)
		return a
	}
	a, err := net.ResolveUDPAddr(network, addr)
	check(err)
	return a
}

func reusePort(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "sockfix:", err)
		os.Exit(1)
	}
}
