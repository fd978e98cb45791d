package revdns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// Lookuper asks for the PTR name of one address. It returns the first name
// of the answer as the server wrote it, or an error whose message says in
// words what went wrong. The Resolver validates the name and enforces the
// timeout through ctx.
type Lookuper interface {
	LookupPTR(ctx context.Context, ip netip.Addr) (string, error)
}

// Client queries one DNS server directly, over UDP and, when the answer is
// truncated, over TCP. It tells NXDOMAIN, an empty answer, SERVFAIL and
// REFUSED apart, which the system resolver cannot.
type Client struct {
	// Server is the server's HOST:PORT.
	Server string
}

// udpSize is the EDNS0 buffer size advertised: the size that avoids IP
// fragmentation on nearly every path (DNS Flag Day 2020).
const udpSize = 1232

// LookupPTR implements Lookuper.
func (c *Client) LookupPTR(ctx context.Context, ip netip.Addr) (string, error) {
	qname, err := dns.ReverseAddr(ip.Unmap().WithZone("").String())
	if err != nil {
		return "", err
	}
	m := new(dns.Msg)
	m.SetQuestion(qname, dns.TypePTR)
	m.SetEdns0(udpSize, false)
	resp, err := c.exchange(ctx, m, "udp")
	if err == nil && resp.Truncated {
		resp, err = c.exchange(ctx, m, "tcp")
	}
	if err != nil {
		return "", err
	}
	return parseAnswer(qname, resp)
}

func (c *Client) exchange(ctx context.Context, m *dns.Msg, network string) (*dns.Msg, error) {
	cl := &dns.Client{Net: network, UDPSize: udpSize}
	if d, ok := ctx.Deadline(); ok {
		cl.Timeout = time.Until(d)
		if cl.Timeout <= 0 {
			return nil, context.DeadlineExceeded
		}
	}
	conn, err := cl.DialContext(ctx, c.Server)
	if err != nil {
		return nil, exchangeError(ctx, err)
	}
	defer conn.Close()
	// The dns package stops waiting at the deadline only; closing the
	// connection makes cancellation immediate too.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	resp, _, err := cl.ExchangeWithConnContext(ctx, m, conn)
	if err != nil {
		return nil, exchangeError(ctx, err)
	}
	return resp, nil
}

// exchangeError turns what the dns package returns into one of ours.
func exchangeError(ctx context.Context, err error) error {
	var ne net.Error
	switch {
	case ctx.Err() == context.Canceled:
		return ErrCancelled
	case ctx.Err() != nil, errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return context.DeadlineExceeded
	case errors.Is(err, syscall.ECONNREFUSED):
		return &NetworkError{Err: errors.New("connection refused")}
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return &NetworkError{Err: errors.New("no route to the server")}
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return &NetworkError{Err: innermost(oe.Err)}
	}
	if msg := err.Error(); strings.Contains(msg, "dns: ") {
		// The dns package could not unpack the answer.
		return &MalformedError{Reason: msg[strings.LastIndex(msg, "dns: ")+len("dns: "):]}
	}
	return &NetworkError{Err: err}
}

func innermost(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// parseAnswer finds the first PTR name for qname in an answer, following a
// CNAME chain as RFC 2317 classless delegation uses it.
func parseAnswer(qname string, resp *dns.Msg) (string, error) {
	if len(resp.Question) != 1 || resp.Question[0].Qtype != dns.TypePTR ||
		!strings.EqualFold(resp.Question[0].Name, qname) {
		return "", &MalformedError{Reason: "it answers another question"}
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return "", ErrNXDomain
	case dns.RcodeServerFailure:
		return "", ErrServFail
	case dns.RcodeRefused:
		return "", ErrRefused
	default:
		s, ok := dns.RcodeToString[resp.Rcode]
		if !ok {
			s = "rcode " + strconv.Itoa(resp.Rcode)
		}
		return "", &RcodeError{Rcode: s}
	}
	name := qname
	for hops := 0; hops < 8; hops++ {
		var next string
		for _, rr := range resp.Answer {
			h := rr.Header()
			if !strings.EqualFold(h.Name, name) || h.Class != dns.ClassINET {
				continue
			}
			switch rr := rr.(type) {
			case *dns.PTR:
				return rr.Ptr, nil
			case *dns.CNAME:
				if next == "" {
					next = rr.Target
				}
			}
		}
		if next == "" {
			break
		}
		name = next
	}
	return "", ErrEmptyAnswer
}
