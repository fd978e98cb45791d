package revdns

import (
	"testing"

	"github.com/miekg/dns"
)

// FuzzParseAnswer feeds arbitrary bytes where a DNS answer is expected:
// whatever unpacks is parsed without a panic, and a name that comes out
// is either rejected by ValidateName or safe.
func FuzzParseAnswer(f *testing.F) {
	const qname = "1.2.0.192.in-addr.arpa."
	q := new(dns.Msg)
	q.SetQuestion(qname, dns.TypePTR)
	add := func(m *dns.Msg) {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	ok := new(dns.Msg)
	ok.SetReply(q)
	ok.Answer = []dns.RR{&dns.PTR{Hdr: dns.RR_Header{Name: qname, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 60}, Ptr: "host.example.com."}}
	add(ok)
	nx := new(dns.Msg)
	nx.SetRcode(q, dns.RcodeNameError)
	add(nx)
	cname := new(dns.Msg)
	cname.SetReply(q)
	cname.Answer = []dns.RR{
		&dns.CNAME{Hdr: dns.RR_Header{Name: qname, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 60}, Target: "1.0-25.2.0.192.in-addr.arpa."},
		&dns.PTR{Hdr: dns.RR_Header{Name: "1.0-25.2.0.192.in-addr.arpa.", Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 60}, Ptr: "c.example."},
	}
	add(cname)
	loop := new(dns.Msg)
	loop.SetReply(q)
	loop.Answer = []dns.RR{&dns.CNAME{Hdr: dns.RR_Header{Name: qname, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 60}, Target: qname}}
	add(loop)
	hostile := new(dns.Msg)
	hostile.SetReply(q)
	hostile.Answer = []dns.RR{&dns.PTR{Hdr: dns.RR_Header{Name: qname, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 60}, Ptr: `a\000\027b.example.`}}
	add(hostile)
	f.Fuzz(func(t *testing.T, data []byte) {
		m := new(dns.Msg)
		if m.Unpack(data) != nil {
			return
		}
		host, err := parseAnswer(qname, m)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if ValidateName(host) == nil {
			for _, c := range []byte(host) {
				if c < 0x21 || c > 0x7e || c == '\\' {
					t.Fatalf("accepted %q", host)
				}
			}
		}
	})
}
