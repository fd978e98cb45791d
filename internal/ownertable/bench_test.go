package ownertable

import (
	"net"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
	"os"
	"testing"
	"time"
)

// BenchmarkConnectAcceptClose is the hook's cost: one loopback TCP
// connection a loop (connect, accept, a byte each way, close with RST so
// that no TIME_WAIT piles up), with the owner table off and on, side by
// side (-count N alternates them):
//
//	go test -run '^$' -bench ConnectAcceptClose -count 6 ./internal/ownertable
//
// With the table on, the kernel's statistics of the hooks (run time and
// count, BPF_ENABLE_STATS) give their own cost, free of the noise of the
// connections': hook-ns/op and hook-runs/op. Each connection runs the
// tracepoint program at every state change of both ends, and writes two
// entries (the connecting and the accepted end).
func BenchmarkConnectAcceptClose(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "table=off"
		if on {
			name = "table=on"
		}
		b.Run(name, func(b *testing.B) {
			if on {
				if os.Geteuid() != 0 {
					b.Skip("needs root to load BPF programs")
				}
				stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
				if err != nil {
					b.Skipf("no BPF statistics: %v", err)
				}
				defer stats.Close()
				tab, err := Open(Options{})
				if err != nil {
					b.Skipf("no owner table: %v", err)
				}
				defer tab.Close()
				defer func() {
					var ns, runs uint64
					for _, p := range tab.hooks {
						st, err := p.Stats()
						if err != nil {
							b.Fatal(err)
						}
						ns += uint64(st.Runtime.Nanoseconds())
						runs += st.RunCount
					}
					b.ReportMetric(float64(ns)/float64(b.N), "hook-ns/op")
					b.ReportMetric(float64(runs)/float64(b.N), "hook-runs/op")
				}()
			}
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			accepted := make(chan net.Conn, 1)
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
			buf := make([]byte, 1)
			d := net.Dialer{Timeout: 5 * time.Second}
			for b.Loop() {
				c, err := d.Dial("tcp4", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				s := <-accepted
				c.Write(buf)
				s.Read(buf)
				s.Write(buf)
				c.Read(buf)
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
				s.Close()
			}
		})
	}
}
