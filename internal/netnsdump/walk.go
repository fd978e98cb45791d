package netnsdump

import (
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sockpipe/sockpipe/internal/inetdiag"
	"github.com/sockpipe/sockpipe/internal/socktable"
)

// walk lists, with --all-netns, the TCP sockets that processes hold in
// every namespace at once, and gives each namespace that the walk covers
// (socktable.Covered, by its sockstat counts) the walk's sockets for its
// next collect, in place of a netlink TCP dump: by default the kernel
// keeps one TCP table for every namespace, and a dump of one walks all of
// it. A namespace that it does not cover is dumped with netlink, as is
// every one when the walk cannot load (said once on stderr).
func (h *Host) walk() {
	for _, n := range h.nss {
		n.d.walked, n.d.walkOK = nil, false
	}
	if h.c.NoWalk || h.walkFailed {
		return
	}
	if h.walker == nil {
		w, err := socktable.Open()
		if err != nil {
			h.walkFailed = true
			fmt.Fprintf(h.c.Stderr, "sockdump: --all-netns: cannot walk every namespace's TCP sockets at once (%v); dumping each namespace with netlink\n", err)
			return
		}
		h.walker = w
	}
	before := make([]socktable.Sockstat, len(h.nss))
	known := make([]bool, len(h.nss))
	for i, n := range h.nss {
		if slices.Contains(n.d.protocols, inetdiag.ProtoTCP) {
			before[i], known[i] = readSockstat(n.d)
		}
	}
	all, err := h.walker.Walk()
	if err != nil {
		if !h.walkSaid {
			h.walkSaid = true
			fmt.Fprintf(h.c.Stderr, "sockdump: --all-netns: %v; dumping each namespace with netlink this time\n", err)
		}
		return
	}
	h.walkedNS = h.walkedNS[:0]
	for i, n := range h.nss {
		if !known[i] {
			continue
		}
		after, ok := readSockstat(n.d)
		if !ok {
			continue
		}
		socks := all[n.d.netns]
		if socktable.Covered(socks, before[i], after) == nil {
			n.d.walked, n.d.walkOK = socks, true
			h.walkedNS = append(h.walkedNS, n.d.netns)
		}
	}
}

// readSockstat reads the sockstat counts of d's namespace, from the
// /proc/PID/net of a process that is in it still.
func readSockstat(d *Dumper) (socktable.Sockstat, bool) {
	dir := d.sockstat
	if dir == "" || d.netns == 0 {
		return socktable.Sockstat{}, false
	}
	ns := "/proc/self/ns/net"
	if dir != "/proc/net" {
		proc, ok := strings.CutSuffix(dir, "/net")
		if !ok {
			return socktable.Sockstat{}, false
		}
		ns = proc + "/ns/net"
	}
	// The process may have exited, and its pid be another's.
	var st unix.Stat_t
	if unix.Stat(ns, &st) != nil || st.Ino != d.netns {
		return socktable.Sockstat{}, false
	}
	s, err := socktable.ReadSockstat(dir)
	return s, err == nil
}

// collectWalked adds the walk's TCP sockets to d.socks and d.listeners,
// as a netlink TCP dump of both families would.
func (d *Dumper) collectWalked() {
	for i := range d.walked {
		w := &d.walked[i]
		d.socks = append(d.socks, entry{
			family: w.Family, proto: inetdiag.ProtoTCP, state: w.State,
			srcPort: w.SrcPort, dstPort: w.DstPort,
			uid: w.UID, inode: uint32(w.Inode), cookie: w.Cookie,
			src: w.Src, dst: w.Dst,
		})
		if w.State == inetdiag.StateListen {
			s := w.Inetdiag()
			d.listeners.Add(&s)
		}
	}
	d.walked, d.walkOK = nil, false
}
