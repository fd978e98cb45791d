package socktable

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/sockpipe/sockpipe/internal/inetdiag"
)

// Sockstat is what a network namespace's sockstat files
// (/proc/PID/net/sockstat and sockstat6) count of its TCP sockets.
type Sockstat struct {
	// TCPInUse and TCP6InUse count its full TCP sockets in the kernel's
	// tables, IPv4 and IPv6 ("TCP: inuse N", "TCP6: inuse N"): every
	// socket a dump lists but the request and time-wait ones.
	TCPInUse, TCP6InUse int
	// TimeWait counts its time-wait sockets, both families ("TCP: … tw N").
	TimeWait int
	// UDPInUse and UDP6InUse count its UDP sockets that have a port
	// ("UDP: inuse N", "UDP6: inuse N"): every socket a UDP dump lists.
	UDPInUse, UDP6InUse int
}

// ReadSockstat reads the sockstat files in dir (/proc/PID/net). A
// missing sockstat6 (a kernel without IPv6) counts no IPv6 socket.
func ReadSockstat(dir string) (Sockstat, error) {
	var st Sockstat
	b, err := os.ReadFile(dir + "/sockstat")
	if err != nil {
		return st, err
	}
	if err := ParseSockstat(b, &st); err != nil {
		return st, fmt.Errorf("%s/sockstat: %w", dir, err)
	}
	b, err = os.ReadFile(dir + "/sockstat6")
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := ParseSockstat(b, &st); err != nil {
		return st, fmt.Errorf("%s/sockstat6: %w", dir, err)
	}
	return st, nil
}

// ParseSockstat sets the counts of st that the text of a sockstat or
// sockstat6 file b gives: its "TCP:" line must have inuse and tw, its
// "TCP6:", "UDP:" and "UDP6:" lines inuse. It fails when a file has no
// TCP: or TCP6: line, or when a count of those lines is not a number.
func ParseSockstat(b []byte, st *Sockstat) error {
	found := false
	for line := range bytes.Lines(b) {
		fields := bytes.Fields(line)
		if len(fields) == 0 {
			continue
		}
		var inuse *int
		var tw *int
		switch string(fields[0]) {
		case "TCP:":
			inuse, tw = &st.TCPInUse, &st.TimeWait
		case "TCP6:":
			inuse = &st.TCP6InUse
		case "UDP:":
			inuse = &st.UDPInUse
		case "UDP6:":
			inuse = &st.UDP6InUse
		default:
			continue
		}
		haveInuse, haveTW := false, tw == nil
		for i := 1; i+1 < len(fields); i += 2 {
			var dst *int
			switch string(fields[i]) {
			case "inuse":
				dst, haveInuse = inuse, true
			case "tw":
				if tw == nil {
					continue
				}
				dst, haveTW = tw, true
			default:
				continue
			}
			v, err := strconv.Atoi(string(fields[i+1]))
			if err != nil || v < 0 {
				return fmt.Errorf("%s %s %q: not a count", fields[0], fields[i], fields[i+1])
			}
			*dst = v
		}
		if !haveInuse || !haveTW {
			return fmt.Errorf("%s line without inuse or tw: %q", fields[0], bytes.TrimSpace(line))
		}
		found = found || inuse == &st.TCPInUse || inuse == &st.TCP6InUse
	}
	if !found {
		return errors.New("no TCP: or TCP6: line")
	}
	return nil
}

// States a netlink dump lists and the walk never does: time-wait
// sockets and request (SYN-RECV) sockets, by their kernel state numbers.
const (
	StateTimeWait   = 6  // TCP_TIME_WAIT
	StateNewSynRecv = 12 // TCP_NEW_SYN_RECV
)

// Covered reports, as a nil error, whether the TCP sockets among socks
// (the walk's sockets of one namespace) are every full socket that a
// netlink TCP dump of it would list, by its counts read before and after
// the walk (its sockets in use the same both times): as many sockets as
// it has in use, each with a cookie (a dump would make one). Then states
// is the mask (1<<state) of the states that a netlink dump of the
// namespace must add, which the walk does not see: time-wait when the
// namespace has some, request sockets when a listener has some; 0 when
// the walk's sockets are all. Such a dump describes only the few sockets
// in those states, but the kernel still walks its table for it, which by
// default holds every namespace's sockets.
func Covered(socks []Socket, before, after Sockstat) (states uint32, err error) {
	// Time-wait sockets come and go without a process: their count may
	// change, as long as the dump of their state follows.
	if before.TCPInUse != after.TCPInUse || before.TCP6InUse != after.TCP6InUse {
		return 0, errors.New("its sockets changed during the walk")
	}
	var v4, v6 int
	for i := range socks {
		s := &socks[i]
		if s.Protocol != inetdiag.ProtoTCP {
			continue
		}
		if s.Family == inetdiag.AFInet6 {
			v6++
		} else {
			v4++
		}
		if s.SynQueue != 0 {
			states |= 1 << StateNewSynRecv
		}
		if s.Cookie == 0 {
			return 0, errors.New("a socket has no cookie yet")
		}
	}
	// By family: the kernel counts a socket under the family that the
	// walk reads (sk_prot follows IPV6_ADDRFORM), so that one socket too
	// many of one family cannot hide one missing of the other.
	if v4 != before.TCPInUse || v6 != before.TCP6InUse {
		return 0, fmt.Errorf("processes hold %d of its %d IPv4 and %d of its %d IPv6 TCP sockets", v4, before.TCPInUse, v6, before.TCP6InUse)
	}
	if before.TimeWait != 0 || after.TimeWait != 0 {
		states |= 1 << StateTimeWait
	}
	return states, nil
}

// CoveredUDP reports, as nil, whether the UDP sockets among socks (the
// walk's sockets of one namespace) are every socket that a netlink UDP
// dump of it would list, by its counts read before and after the walk:
// as many as it has in use both times, each with a cookie.
func CoveredUDP(socks []Socket, before, after Sockstat) error {
	if before.UDPInUse != after.UDPInUse || before.UDP6InUse != after.UDP6InUse {
		return errors.New("its UDP sockets changed during the walk")
	}
	var v4, v6 int
	for i := range socks {
		s := &socks[i]
		if s.Protocol != inetdiag.ProtoUDP {
			continue
		}
		if s.Family == inetdiag.AFInet6 {
			v6++
		} else {
			v4++
		}
		if s.Cookie == 0 {
			return errors.New("a UDP socket has no cookie yet")
		}
	}
	if v4 != before.UDPInUse || v6 != before.UDP6InUse {
		return fmt.Errorf("processes hold %d of its %d IPv4 and %d of its %d IPv6 UDP sockets", v4, before.UDPInUse, v6, before.UDP6InUse)
	}
	return nil
}
