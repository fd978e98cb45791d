package socktable

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
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
// sockstat6 file b gives: its "TCP:" line must have inuse and tw, a
// "TCP6:" line inuse. It fails when a file has neither line, or when a
// count of them is not a number.
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
		found = true
	}
	if !found {
		return errors.New("no TCP: or TCP6: line")
	}
	return nil
}

// Covered reports, as nil, whether socks (the walk's sockets of one
// namespace) are every socket that a netlink TCP dump of it would list,
// by its counts st, read before and after the walk (before and after,
// the same); otherwise it says why not. It holds when the walk listed as
// many sockets as the namespace has in use, with no time-wait socket, no
// request socket waiting at a listener, and no socket without a cookie
// (a dump would make one).
func Covered(socks []Socket, before, after Sockstat) error {
	if before != after {
		return errors.New("its sockets changed during the walk")
	}
	if before.TimeWait != 0 {
		return fmt.Errorf("%d time-wait sockets", before.TimeWait)
	}
	if n := before.TCPInUse + before.TCP6InUse; len(socks) != n {
		return fmt.Errorf("processes hold %d of its %d TCP sockets", len(socks), n)
	}
	for i := range socks {
		s := &socks[i]
		if s.SynQueue != 0 {
			return fmt.Errorf("a listener on port %d has %d request sockets", s.SrcPort, s.SynQueue)
		}
		if s.Cookie == 0 {
			return errors.New("a socket has no cookie yet")
		}
	}
	return nil
}
