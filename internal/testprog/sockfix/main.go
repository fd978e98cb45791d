// Command sockfix holds a fixed set of sockets for sockpipe's tests, in
// whatever network namespace it runs in (ip netns exec NAME sockfix …):
//
//	-tcp ADDR       a TCP listener on ADDR and one connection to it (both ends)
//	-udp ADDR       an unconnected UDP socket bound to ADDR, a UDP socket
//	                connected to it from an ephemeral port, and a second socket
//	                on ADDR (SO_REUSEPORT) connected back to that client
//	-timewait ADDR  a TCP connection to a listener on ADDR that the client
//	                closes first and that leaves, once sockfix exits, its
//	                client end in TIME_WAIT and no process in the namespace
//
// Each flag may repeat. It prints one line per socket,
// "TRANSPORT ROLE LOCAL REMOTE" (roles: listener, client, server, bound),
// then "ready PID", and holds the sockets until its standard input closes.
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

type list []string

func (l *list) String() string     { return fmt.Sprint(*l) }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var tcps, udps, tws list
	flag.Var(&tcps, "tcp", "hold a TCP listener and a connection on `ADDR`")
	flag.Var(&udps, "udp", "hold bound and connected UDP sockets on `ADDR`")
	flag.Var(&tws, "timewait", "leave a TIME_WAIT connection to `ADDR`")
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
	for _, a := range tcps {
		l, c, s := tcpPair(a)
		keep = append(keep, l, c, s)
		say("tcp", "listener", l.Addr(), nil)
		say("tcp", "client", c.LocalAddr(), c.RemoteAddr())
		say("tcp", "server", s.LocalAddr(), s.RemoteAddr())
	}
	for _, a := range udps {
		lc := net.ListenConfig{Control: reusePort}
		b, err := lc.ListenPacket(context.Background(), "udp", a)
		check(err)
		c, err := net.Dial("udp", b.LocalAddr().String())
		check(err)
		d := net.Dialer{LocalAddr: b.LocalAddr(), Control: reusePort}
		s, err := d.Dial("udp", c.LocalAddr().String())
		check(err)
		keep = append(keep, b, c, s)
		say("udp", "bound", b.LocalAddr(), nil)
		say("udp", "client", c.LocalAddr(), c.RemoteAddr())
		say("udp", "server", s.LocalAddr(), s.RemoteAddr())
	}
	for _, a := range tws {
		l, c, s := tcpPair(a)
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

func tcpPair(addr string) (net.Listener, net.Conn, net.Conn) {
	l, err := net.Listen("tcp", addr)
	check(err)
	c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
	check(err)
	s, err := l.Accept()
	check(err)
	return l, c, s
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
