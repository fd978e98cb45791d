package revdns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
)

// System asks the system's resolver: the Go resolver with the host's
// /etc/hosts, /etc/nsswitch.conf and /etc/resolv.conf, as any other
// program on the host would. It cannot tell NXDOMAIN from an empty answer,
// nor SERVFAIL from REFUSED.
type System struct {
	// Resolver is the resolver to use; nil means net.DefaultResolver.
	Resolver *net.Resolver
}

// LookupPTR implements Lookuper.
func (s *System) LookupPTR(ctx context.Context, ip netip.Addr) (string, error) {
	r := s.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	names, err := r.LookupAddr(ctx, ip.Unmap().WithZone("").String())
	if err != nil {
		return "", systemError(ctx, err)
	}
	if len(names) == 0 {
		return "", ErrEmptyAnswer
	}
	return names[0], nil
}

// systemError maps the net package's errors, which mostly carry strings,
// to ours.
func systemError(ctx context.Context, err error) error {
	if ctx.Err() == context.Canceled {
		return ErrCancelled
	}
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		return context.DeadlineExceeded
	}
	var de *net.DNSError
	if !errors.As(err, &de) {
		return &NetworkError{Err: err}
	}
	switch {
	case de.IsTimeout:
		return context.DeadlineExceeded
	case de.IsNotFound:
		return ErrNotFound
	case de.Err == "server misbehaving":
		return ErrMisbehaving
	case strings.Contains(de.Err, "invalid names"):
		return &NameError{Reason: "the resolver refused it"}
	case de.Err == "cannot unmarshal DNS message", de.Err == "invalid DNS response":
		return &MalformedError{Reason: de.Err}
	case de.Err == "lame referral":
		return &MalformedError{Reason: "lame referral"}
	case strings.HasSuffix(de.Err, "connection refused"):
		return &NetworkError{Err: errors.New("connection refused")}
	case de.Err == "no answer from DNS server":
		return &NetworkError{Err: errors.New("no answer from any DNS server")}
	}
	return &NetworkError{Err: errors.New(de.Err)}
}
