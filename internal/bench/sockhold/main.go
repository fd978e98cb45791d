// Command sockhold holds a population of established TCP connections on
// loopback for benchmarks: -n sockets (both ends of -n/2 connections),
// spread over -procs processes, each with its own listener on 127.0.0.1.
// Once every connection is established it prints one line,
// "ready PID...", and holds the sockets until its standard input closes
// or it gets SIGINT or SIGTERM. Only loopback is used.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	n := flag.Int("n", 100000, "total `sockets` to hold (two per connection)")
	procs := flag.Int("procs", 0, "number of holding `processes` (0: as few as the 20,000-descriptor limit allows)")
	child := flag.Int("child", 0, "internal: hold this many connections in this process")
	addr := flag.String("addr", "127.0.0.1", "loopback `address` to listen on")
	flag.Parse()
	if *child > 0 {
		if err := hold(*child, *addr); err != nil {
			fmt.Fprintln(os.Stderr, "sockhold:", err)
			os.Exit(1)
		}
		return
	}
	if err := parent(*n, *procs, *addr); err != nil {
		fmt.Fprintln(os.Stderr, "sockhold:", err)
		os.Exit(1)
	}
}

func parent(n, procs int, addr string) error {
	ip := net.ParseIP(addr)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s is not a loopback address", addr)
	}
	conns := n / 2
	if procs <= 0 {
		procs = (n + 15999) / 16000
	}
	if procs > conns {
		procs = conns
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var cmds []*exec.Cmd
	defer func() {
		for _, c := range cmds {
			c.Process.Signal(syscall.SIGTERM)
			c.Wait()
		}
	}()
	var readers []*bufio.Reader
	for i := 0; i < procs; i++ {
		k := conns / procs
		if i < conns%procs {
			k++
		}
		c := exec.Command(self, "-child", strconv.Itoa(k), "-addr", addr)
		c.Stderr = os.Stderr
		out, err := c.StdoutPipe()
		if err != nil {
			return err
		}
		if err := c.Start(); err != nil {
			return err
		}
		cmds = append(cmds, c)
		readers = append(readers, bufio.NewReader(out))
	}
	pids := make([]string, len(cmds))
	for i, r := range readers {
		line, err := r.ReadString('\n')
		if strings.TrimSpace(line) != "ok" {
			return fmt.Errorf("holder %d failed: %q %v", cmds[i].Process.Pid, line, err)
		}
		pids[i] = strconv.Itoa(cmds[i].Process.Pid)
	}
	fmt.Println("ready " + strings.Join(pids, " "))
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, os.Stdin); close(done) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-done:
	case <-sig:
	}
	return nil
}

func hold(k int, addr string) error {
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		return err
	}
	accepted := make(chan net.Conn, 1024)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	held := make([]net.Conn, 0, 2*k)
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; i < k; i++ {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d connections after 2 minutes", i, k)
		}
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			return fmt.Errorf("connection %d: %w", i, err)
		}
		held = append(held, c)
		// Drain accepts as we go so the backlog never fills.
		for len(accepted) > 0 {
			held = append(held, <-accepted)
		}
	}
	for len(held) < 2*k {
		select {
		case c := <-accepted:
			held = append(held, c)
		case <-time.After(10 * time.Second):
			return fmt.Errorf("accepted %d of %d", len(held)-k, k)
		}
	}
	fmt.Println("ok")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	ln.Close()
	return nil
}
