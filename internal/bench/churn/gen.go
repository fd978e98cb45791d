package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type config struct {
	rate     int
	duration time.Duration
	lifetime time.Duration
	listen   string
	client   string
	ports    string
	log      string
	inflight int
}

// summary is what one generation did.
type summary struct {
	listener  string
	planned   int
	opened    int // connections established and logged
	failed    int // connects that failed
	skipped   int // ports that could not be bound (in use)
	elapsed   time.Duration
	lifetimes []time.Duration
	resets    int64 // server ends that read the reset
	orderly   int64 // server ends that read an orderly close (unexpected)
	srvErrors int64 // server ends that failed otherwise
	log       string
}

func (s summary) String() string {
	slices.Sort(s.lifetimes)
	med, max := time.Duration(0), time.Duration(0)
	if n := len(s.lifetimes); n > 0 {
		med, max = s.lifetimes[n/2], s.lifetimes[n-1]
	}
	rate := float64(s.opened) / s.elapsed.Seconds()
	return fmt.Sprintf("churn: %d of %d connections to %s in %.2f s (%.0f/s), %d failed, %d ports in use skipped; "+
		"lifetime median %.1f ms, max %.1f ms; server ends: %d reset, %d orderly close, %d other errors; log %s",
		s.opened, s.planned, s.listener, s.elapsed.Seconds(), rate, s.failed, s.skipped,
		ms(med), ms(max), s.resets, s.orderly, s.srvErrors, s.log)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// parsePorts parses "LOW-HIGH".
func parsePorts(s string) (lo, hi int, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("ports %q: want LOW-HIGH", s)
	}
	lo, err1 := strconv.Atoi(a)
	hi, err2 := strconv.Atoi(b)
	if err1 != nil || err2 != nil || lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("ports %q: want LOW-HIGH within 1-65535", s)
	}
	return lo, hi, nil
}

func loopback(host string) error {
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%s is not a loopback address", host)
	}
	return nil
}

func generate(ctx context.Context, cfg config) (summary, error) {
	sum := summary{log: cfg.log}
	if cfg.rate <= 0 || cfg.duration <= 0 || cfg.lifetime < 0 || cfg.inflight <= 0 {
		return sum, errors.New("-rate, -duration and -max-inflight must be positive, -lifetime not negative")
	}
	lo, hi, err := parsePorts(cfg.ports)
	if err != nil {
		return sum, err
	}
	host, _, err := net.SplitHostPort(cfg.listen)
	if err != nil {
		return sum, err
	}
	if err := loopback(host); err != nil {
		return sum, err
	}
	clientIP := net.ParseIP(cfg.client)
	if err := loopback(cfg.client); err != nil {
		return sum, err
	}
	total := int(float64(cfg.rate) * cfg.duration.Seconds())
	if total < 1 {
		total = 1
	}
	if total > hi-lo+1 {
		return sum, fmt.Errorf("%d connections need as many client ports; -ports %s has %d", total, cfg.ports, hi-lo+1)
	}
	sum.planned = total

	f, err := os.Create(cfg.log)
	if err != nil {
		return sum, err
	}
	defer f.Close()

	ln, err := net.Listen("tcp", cfg.listen)
	if err != nil {
		return sum, err
	}
	defer ln.Close()
	sum.listener = ln.Addr().String()
	srv := &server{}
	srvDone := make(chan struct{})
	go func() { srv.serve(ln); close(srvDone) }()

	// The truth log has one writer.
	lines := make(chan string, 1024)
	logDone := make(chan error, 1)
	go func() {
		w := bufio.NewWriter(f)
		// Who makes the connections, both ends: the owner every opened
		// event should name.
		comm, _ := os.ReadFile("/proc/self/comm")
		fmt.Fprintf(w, "# owner pid=%d name=%s uid=%d\n", os.Getpid(), strings.TrimSpace(string(comm)), os.Getuid())
		for l := range lines {
			w.WriteString(l)
		}
		if err := w.Flush(); err != nil {
			logDone <- err
			return
		}
		logDone <- f.Close()
	}()

	var (
		mu        sync.Mutex
		lifetimes = make([]time.Duration, 0, total)
		failed    int
		skipped   atomic.Int64
		nextPort  atomic.Int64
		wg        sync.WaitGroup
		sem       = make(chan struct{}, cfg.inflight)
	)
	nextPort.Store(int64(lo))
	takePort := func() (int, bool) {
		p := nextPort.Add(1) - 1
		return int(p), p <= int64(hi)
	}
	server := sum.listener
	interval := time.Duration(float64(time.Second) / float64(cfg.rate))
	start := time.Now()
	// A connection that hangs cannot hold the run: every step has a
	// deadline, and the whole run one more.
	runCtx, cancel := context.WithTimeout(ctx, cfg.duration+cfg.lifetime+time.Minute)
	defer cancel()
	for i := 0; i < total && runCtx.Err() == nil; i++ {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			select {
			case <-time.After(d):
			case <-runCtx.Done():
			}
		}
		select {
		case sem <- struct{}{}:
		case <-runCtx.Done():
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			line, life, skip, err := connectOnce(runCtx, clientIP, server, cfg.lifetime, takePort)
			skipped.Add(int64(skip))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				return
			}
			lifetimes = append(lifetimes, life)
			lines <- line
		}()
	}
	wg.Wait()
	sum.elapsed = time.Since(start)
	close(lines)
	if err := <-logDone; err != nil {
		return sum, err
	}
	// Every server end must have closed before the summary says the run
	// is over: its close is what the kernel notifies.
	srv.wait(len(lifetimes), 10*time.Second)
	ln.Close()
	<-srvDone
	srv.wg.Wait()

	sum.opened, sum.failed, sum.skipped = len(lifetimes), failed, int(skipped.Load())
	sum.lifetimes = lifetimes
	sum.resets, sum.orderly, sum.srvErrors = srv.resets.Load(), srv.orderly.Load(), srv.errors.Load()
	if runCtx.Err() != nil && ctx.Err() != nil {
		return sum, ctx.Err()
	}
	return sum, nil
}

// connectOnce opens one connection from an unused client port, writes a
// few bytes, keeps it lifetime, and closes it with RST. It returns the
// truth log line.
func connectOnce(ctx context.Context, client net.IP, server string, lifetime time.Duration, takePort func() (int, bool)) (line string, life time.Duration, skipped int, err error) {
	for tries := 0; tries < 100; tries++ {
		port, ok := takePort()
		if !ok {
			return "", 0, skipped, errors.New("out of client ports")
		}
		d := net.Dialer{
			LocalAddr: &net.TCPAddr{IP: client, Port: port},
			Timeout:   5 * time.Second,
			// SO_REUSEADDR: a port whose last user has not fully gone
			// can still be bound for a new 4-tuple.
			Control: func(_, _ string, c syscall.RawConn) error {
				var serr error
				if err := c.Control(func(fd uintptr) {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
				}); err != nil {
					return err
				}
				return serr
			},
		}
		c, err := d.DialContext(ctx, "tcp", server)
		if errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EADDRNOTAVAIL) {
			skipped++
			continue
		}
		if err != nil {
			return "", 0, skipped, err
		}
		opened := time.Now()
		tc := c.(*net.TCPConn)
		local := tc.LocalAddr().String()
		tc.SetDeadline(opened.Add(5*time.Second + lifetime))
		tc.Write([]byte("churn\n"))
		if d := time.Until(opened.Add(lifetime)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
			}
		}
		tc.SetLinger(0)
		tc.Close()
		closed := time.Now()
		return fmt.Sprintf("%s %s %s %s\n", local, server,
			opened.UTC().Format(time.RFC3339Nano), closed.UTC().Format(time.RFC3339Nano)), closed.Sub(opened), skipped, nil
	}
	return "", 0, skipped, errors.New("no client port free after 100 tries")
}

// server accepts connections and reads each until the peer resets it,
// then closes it: a closed socket, not in TIME_WAIT, with its 4-tuple.
type server struct {
	wg       sync.WaitGroup
	accepted atomic.Int64
	closed   atomic.Int64
	resets   atomic.Int64
	orderly  atomic.Int64
	errors   atomic.Int64
}

func (s *server) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: back off a little, never spin.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		s.accepted.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.closed.Add(1)
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, err := io.Copy(io.Discard, c)
			switch {
			case errors.Is(err, syscall.ECONNRESET):
				s.resets.Add(1)
			case err == nil:
				s.orderly.Add(1)
			default:
				s.errors.Add(1)
			}
			c.Close()
		}()
	}
}

// wait waits, at most timeout, until n server ends have closed.
func (s *server) wait(n int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for s.closed.Load() < int64(n) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}
