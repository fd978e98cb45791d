// Package dnstest runs a DNS server on 127.0.0.1 for tests: it answers PTR
// questions as a test tells it to (names, NXDOMAIN, empty answers, error
// codes, silence, delays, raw bytes) and counts the questions it gets.
package dnstest

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Answer says how to answer the PTR question for one address.
type Answer struct {
	Names []string // PTR names, in presentation format (may hold \DDD escapes)
	Rcode int      // the response code; dns.RcodeSuccess by default
	Drop  bool     // never answer
	// TCPOnly answers over UDP with the truncated bit set and no
	// records, so that the client asks again over TCP.
	TCPOnly bool
	Delay   time.Duration // wait this long before answering
	// Raw, when set, is the response sent, given the query.
	Raw func(q *dns.Msg) []byte
}

// NX is an NXDOMAIN answer.
var NX = Answer{Rcode: dns.RcodeNameError}

// Server is a DNS server on 127.0.0.1 (UDP).
type Server struct {
	// Addr is the server's HOST:PORT.
	Addr string

	srv, tcp *dns.Server

	mu      sync.Mutex
	answers map[netip.Addr]Answer
	queries map[netip.Addr]int
	total   int
	active  int
	maxAct  int
	// Default answers addresses that have no answer set; nil means NX.
	def func(netip.Addr) Answer
}

// Start starts a server for the duration of a test.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := Listen()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Listen starts a server on a free UDP port of 127.0.0.1. Close it after.
func Listen() (*Server, error) {
	// A UDP port whose TCP twin is free too, if one is found soon.
	var pc net.PacketConn
	var tl net.Listener
	for range 20 {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
		if tl, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		pc = nil
	}
	if pc == nil {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			return nil, err
		}
	}
	s := &Server{
		Addr:    pc.LocalAddr().String(),
		answers: make(map[netip.Addr]Answer),
		queries: make(map[netip.Addr]int),
	}
	started := make(chan struct{})
	s.srv = &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: func() { close(started) }}
	go s.srv.ActivateAndServe()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		pc.Close()
		return nil, fmt.Errorf("dns test server did not start")
	}
	// TCP on the same port, when it was free.
	if tl != nil {
		started := make(chan struct{})
		s.tcp = &dns.Server{Listener: tl, Handler: s, NotifyStartedFunc: func() { close(started) }}
		go s.tcp.ActivateAndServe()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			tl.Close()
			s.tcp = nil
		}
	}
	return s, nil
}

// HasTCP reports whether the server also listens on TCP.
func (s *Server) HasTCP() bool { return s.tcp != nil }

// Close stops the server.
func (s *Server) Close() {
	s.srv.Shutdown()
	if s.tcp != nil {
		s.tcp.Shutdown()
	}
}

// Set sets the answer for an address.
func (s *Server) Set(ip string, a Answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers[netip.MustParseAddr(ip)] = a
}

// SetDefault sets the answer for addresses that have none set.
func (s *Server) SetDefault(f func(netip.Addr) Answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.def = f
}

// Queries returns how many questions came for an address.
func (s *Server) Queries(ip string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[netip.MustParseAddr(ip)]
}

// Total returns how many questions came in all.
func (s *Server) Total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// MaxConcurrent returns the largest number of questions that were being
// answered at once (dropped ones count only for an instant).
func (s *Server) MaxConcurrent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxAct
}

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	if len(q.Question) != 1 || q.Question[0].Qtype != dns.TypePTR {
		m := new(dns.Msg)
		m.SetRcode(q, dns.RcodeNotImplemented)
		w.WriteMsg(m)
		return
	}
	ip, ok := FromArpa(q.Question[0].Name)
	s.mu.Lock()
	s.total++
	a := NX
	if ok {
		s.queries[ip]++
		if x, found := s.answers[ip]; found {
			a = x
		} else if s.def != nil {
			a = s.def(ip)
		}
	}
	s.active++
	if s.active > s.maxAct {
		s.maxAct = s.active
	}
	s.mu.Unlock()
	// The question stops counting as active before the answer leaves, so
	// that a client that asks again at once is not counted twice.
	idle := func() {
		s.mu.Lock()
		s.active--
		s.mu.Unlock()
	}
	if a.Drop {
		idle()
		return
	}
	if a.Delay > 0 {
		time.Sleep(a.Delay)
	}
	if a.Raw != nil {
		b := a.Raw(q)
		idle()
		w.Write(b)
		return
	}
	m := new(dns.Msg)
	m.SetRcode(q, a.Rcode)
	m.RecursionAvailable = true
	if a.TCPOnly && w.LocalAddr().Network() == "udp" {
		m.Truncated = true
		idle()
		w.WriteMsg(m)
		return
	}
	for _, n := range a.Names {
		m.Answer = append(m.Answer, &dns.PTR{
			Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 300},
			Ptr: n,
		})
	}
	idle()
	w.WriteMsg(m)
}

// FromArpa returns the address of a reverse name such as
// "1.2.0.192.in-addr.arpa.".
func FromArpa(name string) (netip.Addr, bool) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if v4, ok := strings.CutSuffix(name, ".in-addr.arpa"); ok {
		p := strings.Split(v4, ".")
		if len(p) != 4 {
			return netip.Addr{}, false
		}
		var b [4]byte
		for i := range p {
			n, err := strconv.ParseUint(p[3-i], 10, 8)
			if err != nil {
				return netip.Addr{}, false
			}
			b[i] = byte(n)
		}
		return netip.AddrFrom4(b), true
	}
	if v6, ok := strings.CutSuffix(name, ".ip6.arpa"); ok {
		p := strings.Split(v6, ".")
		if len(p) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i := range p {
			n, err := strconv.ParseUint(p[31-i], 16, 4)
			if err != nil {
				return netip.Addr{}, false
			}
			b[i/2] |= byte(n) << (4 * (1 - i%2))
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}

// RawPTR returns a response to q with one PTR record whose name is given
// in wire format (length-prefixed labels ending in a zero byte), so a test
// can send names that a well-behaved server could not.
func RawPTR(q *dns.Msg, wireName []byte) []byte {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Compress = false
	const placeholder = "placeholder.invalid."
	m.Answer = []dns.RR{&dns.PTR{
		Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 300},
		Ptr: placeholder,
	}}
	b, err := m.Pack()
	if err != nil {
		panic(fmt.Sprintf("dnstest: pack: %v", err))
	}
	// The PTR's RDATA is the end of the message: its length, then the
	// placeholder name.
	ph := len(placeholder) + 1
	n := len(b) - ph
	out := append([]byte{}, b[:n-2]...)
	out = append(out, byte(len(wireName)>>8), byte(len(wireName)))
	return append(out, wireName...)
}
