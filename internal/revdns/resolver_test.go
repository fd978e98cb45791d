package revdns

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sockpipe/sockpipe/internal/revdns/dnstest"
)

// clock is a settable clock for TTL tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 26, 5, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func testConfig(srv *dnstest.Server, clk *clock) Config {
	return Config{
		Lookuper:   &Client{Server: srv.Addr},
		Timeout:    2 * time.Second,
		Workers:    8,
		SuccessTTL: time.Minute,
		FailureTTL: time.Minute,
		CacheSize:  100,
		Now:        clk.Now,
	}
}

func resolve(t testing.TB, r *Resolver, ip string) Result {
	t.Helper()
	res, call := r.Resolve(netip.MustParseAddr(ip))
	if call == nil {
		return res
	}
	select {
	case <-call.Done():
		return call.Result()
	case <-time.After(10 * time.Second):
		t.Fatalf("lookup of %s never ended", ip)
		return Result{}
	}
}

// wire encodes a name as DNS labels, without any check.
func wire(labels ...string) []byte {
	var b []byte
	for _, l := range labels {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0)
}

func TestResolverAnswers(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t)
	srv.Set("192.0.2.1", dnstest.Answer{Names: []string{"host-1.example.com."}})
	srv.Set("192.0.2.2", dnstest.Answer{Names: []string{"first.example.org.", "second.example.org."}})
	srv.Set("192.0.2.3", dnstest.NX)
	srv.Set("192.0.2.4", dnstest.Answer{}) // NOERROR, no records
	srv.Set("192.0.2.5", dnstest.Answer{Rcode: dns.RcodeRefused})
	srv.Set("192.0.2.6", dnstest.Answer{Rcode: dns.RcodeServerFailure})
	srv.Set("192.0.2.7", dnstest.Answer{Rcode: dns.RcodeNotImplemented})
	srv.Set("192.0.2.8", dnstest.Answer{Drop: true})
	srv.Set("192.0.2.10", dnstest.Answer{Names: []string{`evil\032name.example.`}})
	srv.Set("192.0.2.11", dnstest.Answer{Names: []string{`a\007\010b.example.`}})
	srv.Set("192.0.2.12", dnstest.Answer{Names: []string{`a\027[2Jx.example.`}})
	srv.Set("192.0.2.13", dnstest.Answer{Names: []string{"192.0.2.99."}})
	srv.Set("192.0.2.14", dnstest.Answer{Names: []string{`b\195\188cher.example.`}})
	srv.Set("192.0.2.15", dnstest.Answer{Raw: func(q *dns.Msg) []byte {
		return dnstest.RawPTR(q, wire(strings.Repeat("x", 64), "example"))
	}})
	srv.Set("192.0.2.16", dnstest.Answer{Raw: func(q *dns.Msg) []byte {
		return dnstest.RawPTR(q, wire("ok", "example", "com")[:5]) // cut short
	}})
	srv.Set("192.0.2.17", dnstest.Answer{Raw: func(q *dns.Msg) []byte {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Question[0].Name = "1.2.3.4.in-addr.arpa."
		b, _ := m.Pack()
		return b
	}})
	srv.Set("192.0.2.18", dnstest.Answer{Raw: func(q *dns.Msg) []byte {
		// RFC 2317 classless delegation: a CNAME, then the PTR.
		m := new(dns.Msg)
		m.SetReply(q)
		target := "18.0-25.2.0.192.in-addr.arpa."
		m.Answer = []dns.RR{
			&dns.CNAME{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 60}, Target: target},
			&dns.PTR{Hdr: dns.RR_Header{Name: target, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 60}, Ptr: "classless.example.net."},
		}
		b, _ := m.Pack()
		return b
	}})
	srv.Set("2001:db8::1", dnstest.Answer{Names: []string{"v6.example.com."}})

	cfg := testConfig(srv, newClock())
	cfg.Timeout = 300 * time.Millisecond
	r := New(cfg)
	defer r.Close()

	tests := []struct {
		ip   string
		want Result
	}{
		{"192.0.2.1", Result{Host: "host-1.example.com."}},
		{"::ffff:192.0.2.1", Result{Host: "host-1.example.com."}},
		{"192.0.2.2", Result{Host: "first.example.org."}},
		{"192.0.2.3", Result{Error: "no PTR record (NXDOMAIN)"}},
		{"192.0.2.4", Result{Error: "empty dns response"}},
		{"192.0.2.5", Result{Error: "server refused the query (REFUSED)"}},
		{"192.0.2.6", Result{Error: "server failure (SERVFAIL)"}},
		{"192.0.2.7", Result{Error: "server error (NOTIMP)"}},
		{"192.0.2.8", Result{Error: "timed out after 300ms"}},
		{"192.0.2.10", Result{Error: "invalid host name in answer: escaped character in label 1"}},
		{"192.0.2.11", Result{Error: "invalid host name in answer: escaped character in label 1"}},
		{"192.0.2.12", Result{Error: "invalid host name in answer: escaped character in label 1"}},
		{"192.0.2.13", Result{Error: "invalid host name in answer: all-numeric name"}},
		{"192.0.2.14", Result{Error: "invalid host name in answer: escaped character in label 1"}},
		{"192.0.2.15", Result{Error: "malformed answer: bad rdata"}},
		{"192.0.2.16", Result{Error: "malformed answer: buffer size too small"}},
		{"192.0.2.17", Result{Error: "malformed answer: it answers another question"}},
		{"192.0.2.18", Result{Host: "classless.example.net."}},
		{"2001:db8::1", Result{Host: "v6.example.com."}},
		{"192.0.2.200", Result{Error: "no PTR record (NXDOMAIN)"}},
	}
	for _, tt := range tests {
		if got := resolve(t, r, tt.ip); got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.ip, got, tt.want)
		}
	}
}

func TestResolverTruncated(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t)
	if !srv.HasTCP() {
		t.Skip("no TCP port beside the UDP one")
	}
	srv.Set("192.0.2.1", dnstest.Answer{Names: []string{"over-tcp.example."}, TCPOnly: true})
	r := New(testConfig(srv, newClock()))
	defer r.Close()
	if got, want := resolve(t, r, "192.0.2.1"), (Result{Host: "over-tcp.example."}); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if n := srv.Queries("192.0.2.1"); n != 2 {
		t.Errorf("%d queries, want 2 (UDP, then TCP)", n)
	}
}

func TestResolverUnreachable(t *testing.T) {
	// Not parallel: the port closed below must stay free until it is asked.
	// A UDP port with nothing behind it: the kernel answers with ICMP
	// port unreachable.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	r := New(Config{Lookuper: &Client{Server: addr}, Timeout: time.Second, Workers: 1, CacheSize: 10, FailureTTL: time.Minute})
	defer r.Close()
	got := resolve(t, r, "192.0.2.1")
	want := Result{Error: "cannot query the DNS server: connection refused"}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestResolverTTLs(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name                   string
		successTTL, failureTTL time.Duration
	}{
		{"short failure TTL", time.Minute, time.Second},
		{"short success TTL", time.Second, time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := dnstest.Start(t)
			srv.Set("192.0.2.1", dnstest.Answer{Names: []string{"ok.example."}})
			srv.Set("192.0.2.2", dnstest.NX)
			clk := newClock()
			cfg := testConfig(srv, clk)
			cfg.SuccessTTL, cfg.FailureTTL = tt.successTTL, tt.failureTTL
			r := New(cfg)
			defer r.Close()

			// want returns the number of queries expected for an IP after
			// elapsed time, with lookups at 0, 2s and 61s.
			ask := func() {
				resolve(t, r, "192.0.2.1")
				resolve(t, r, "192.0.2.2")
			}
			check := func(when string, ok, fail int) {
				t.Helper()
				if got := srv.Queries("192.0.2.1"); got != ok {
					t.Errorf("%s: %d queries for the name, want %d", when, got, ok)
				}
				if got := srv.Queries("192.0.2.2"); got != fail {
					t.Errorf("%s: %d queries for the failure, want %d", when, got, fail)
				}
			}
			ask()
			ask()
			check("at once", 1, 1)
			clk.Advance(2 * time.Second)
			ask()
			if tt.successTTL == time.Minute {
				check("after 2s", 1, 2)
			} else {
				check("after 2s", 2, 1)
			}
			clk.Advance(59 * time.Second)
			ask()
			// 61s after the first lookup, 59s after the second.
			if tt.successTTL == time.Minute {
				check("after 61s", 2, 3)
			} else {
				check("after 61s", 3, 2)
			}
		})
	}
}

func TestResolverNoCaching(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t)
	srv.Set("192.0.2.1", dnstest.Answer{Names: []string{"ok.example."}})
	cfg := testConfig(srv, newClock())
	cfg.SuccessTTL, cfg.FailureTTL = 0, 0
	r := New(cfg)
	defer r.Close()
	for range 3 {
		resolve(t, r, "192.0.2.1")
		resolve(t, r, "192.0.2.2")
	}
	if q1, q2 := srv.Queries("192.0.2.1"), srv.Queries("192.0.2.2"); q1 != 3 || q2 != 3 {
		t.Errorf("queries %d and %d, want 3 and 3", q1, q2)
	}
}

func TestResolverCacheBound(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t)
	srv.SetDefault(func(ip netip.Addr) dnstest.Answer {
		if ip.As4()[3]%2 == 0 {
			return dnstest.NX
		}
		return dnstest.Answer{Names: []string{"h" + strings.ReplaceAll(ip.String(), ".", "-") + ".example."}}
	})
	cfg := testConfig(srv, newClock())
	cfg.CacheSize = 3
	r := New(cfg)
	defer r.Close()
	// Odd addresses succeed, even ones fail: each cache holds 3.
	for _, ip := range []string{"10.0.0.1", "10.0.0.3", "10.0.0.5", "10.0.0.2", "10.0.0.4", "10.0.0.6"} {
		resolve(t, r, ip)
	}
	resolve(t, r, "10.0.0.1") // now the most recently used name
	resolve(t, r, "10.0.0.7") // evicts 10.0.0.3, the least recently used
	resolve(t, r, "10.0.0.8") // evicts 10.0.0.2
	if n := srv.Total(); n != 8 {
		t.Fatalf("%d queries, want 8", n)
	}
	for _, ip := range []string{"10.0.0.1", "10.0.0.5", "10.0.0.7", "10.0.0.4", "10.0.0.6", "10.0.0.8"} {
		resolve(t, r, ip)
	}
	if n := srv.Total(); n != 8 {
		t.Errorf("%d queries after cached lookups, want still 8", n)
	}
	resolve(t, r, "10.0.0.3")
	resolve(t, r, "10.0.0.2")
	if n := srv.Total(); n != 10 {
		t.Errorf("%d queries after evicted lookups, want 10", n)
	}
	if s, f := r.success.Len(), r.failure.Len(); s != 3 || f != 3 {
		t.Errorf("cache sizes %d and %d, want 3 and 3", s, f)
	}
}

func TestResolverOneQueryPerIP(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t)
	srv.Set("192.0.2.1", dnstest.Answer{Names: []string{"slow.example."}, Delay: 200 * time.Millisecond})
	r := New(testConfig(srv, newClock()))
	defer r.Close()
	const n = 50
	var wg sync.WaitGroup
	results := make([]Result, n)
	for i := range n {
		wg.Go(func() { results[i] = resolve(t, r, "192.0.2.1") })
	}
	wg.Wait()
	for i, res := range results {
		if res.Host != "slow.example." {
			t.Errorf("result %d: %+v", i, res)
		}
	}
	if q := srv.Queries("192.0.2.1"); q != 1 {
		t.Errorf("%d queries, want 1", q)
	}
	if s := r.Stats(); s.Queries != 1 || s.Joined+s.Hits != n-1 {
		t.Errorf("stats %+v", s)
	}
}

func TestResolverWorkers(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t)
	srv.SetDefault(func(netip.Addr) dnstest.Answer {
		return dnstest.Answer{Names: []string{"x.example."}, Delay: 50 * time.Millisecond}
	})
	cfg := testConfig(srv, newClock())
	cfg.Workers = 3
	r := New(cfg)
	defer r.Close()
	var calls []*Call
	for i := range 12 {
		_, c := r.Resolve(netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}))
		calls = append(calls, c)
	}
	for _, c := range calls {
		<-c.Done()
		if c.Result().Host != "x.example." {
			t.Errorf("result %+v", c.Result())
		}
	}
	if m := srv.MaxConcurrent(); m > 3 || m < 2 {
		t.Errorf("%d queries at once, want at most 3 (and more than 1)", m)
	}
}

// blocker is a Lookuper that takes its time whatever the context says.
type blocker struct{ d time.Duration }

func (b blocker) LookupPTR(ctx context.Context, ip netip.Addr) (string, error) {
	time.Sleep(b.d)
	return "late.example.", nil
}

func TestResolverQueuedTimeout(t *testing.T) {
	t.Parallel()
	r := New(Config{Lookuper: blocker{400 * time.Millisecond}, Timeout: 100 * time.Millisecond, Workers: 1,
		SuccessTTL: time.Minute, FailureTTL: time.Minute, CacheSize: 10})
	defer r.Close()
	_, first := r.Resolve(netip.MustParseAddr("192.0.2.1"))
	for i := 0; !first.Sent(); i++ { // let the first take the worker
		if i > 1000 {
			t.Fatal("the first lookup never started")
		}
		time.Sleep(time.Millisecond)
	}
	got := resolve(t, r, "192.0.2.2")
	want := Result{Error: "timed out after 100ms waiting for a free lookup worker"}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	<-first.Done()
	// The query was never sent, so nothing was cached: it is asked again.
	if got := resolve(t, r, "192.0.2.2"); got.Host != "late.example." {
		t.Errorf("second lookup got %+v", got)
	}
}

func TestResolverClose(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t)
	srv.Set("192.0.2.1", dnstest.Answer{Drop: true})
	cfg := testConfig(srv, newClock())
	cfg.Timeout = 5 * time.Second
	r := New(cfg)
	_, c := r.Resolve(netip.MustParseAddr("192.0.2.1"))
	start := time.Now()
	time.Sleep(20 * time.Millisecond)
	r.Close()
	<-c.Done()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("close took %s", d)
	}
	if got := c.Result(); got.Error != "lookup cancelled" {
		t.Errorf("got %+v", got)
	}
	if n := r.failure.Len(); n != 0 {
		t.Errorf("a cancelled lookup was cached")
	}
}

// TestSystemResolver runs the system path (the Go resolver) against the
// test server, to pin down how its errors read.
func TestSystemResolver(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t)
	srv.Set("192.0.2.1", dnstest.Answer{Names: []string{"sys.example.com."}})
	srv.Set("192.0.2.3", dnstest.NX)
	srv.Set("192.0.2.4", dnstest.Answer{})
	srv.Set("192.0.2.5", dnstest.Answer{Rcode: dns.RcodeRefused})
	srv.Set("192.0.2.6", dnstest.Answer{Rcode: dns.RcodeServerFailure})
	srv.Set("192.0.2.8", dnstest.Answer{Drop: true})
	srv.Set("192.0.2.10", dnstest.Answer{Names: []string{`evil\032name.example.`}})
	nr := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", srv.Addr)
	}}
	cfg := testConfig(srv, newClock())
	cfg.Lookuper = &System{Resolver: nr}
	cfg.Timeout = 300 * time.Millisecond
	r := New(cfg)
	defer r.Close()
	tests := []struct {
		ip   string
		want Result
	}{
		{"192.0.2.1", Result{Host: "sys.example.com."}},
		{"192.0.2.3", Result{Error: "no PTR record (NXDOMAIN or empty answer)"}},
		{"192.0.2.4", Result{Error: "no PTR record (NXDOMAIN or empty answer)"}},
		{"192.0.2.5", Result{Error: "server failure (SERVFAIL, REFUSED or a malformed answer)"}},
		{"192.0.2.6", Result{Error: "server failure (SERVFAIL, REFUSED or a malformed answer)"}},
		{"192.0.2.8", Result{Error: "timed out after 300ms"}},
		{"192.0.2.10", Result{Error: "invalid host name in answer: the resolver refused it"}},
	}
	for _, tt := range tests {
		if got := resolve(t, r, tt.ip); got != tt.want {
			t.Errorf("%s: got %+v, want %+v", tt.ip, got, tt.want)
		}
	}
}
