package netnsdump

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/sockpipe/sockpipe/internal/inetdiag"
	"github.com/sockpipe/sockpipe/internal/socktable"
)

// openWalker loads the walk; tests replace it.
var openWalker = socktable.Open

// defaultWalkMin is Host.walkMin by default: on a quiet host (2 cores,
// Linux 6.18), one namespace of 50,000 sockets and the host's dumped with
// netlink cost 120-160 ms CPU, with the walk 140-210 ms; five of 5,000
// and the host's, 130 ms with netlink and 100-110 ms with the walk.
const defaultWalkMin = 3

// walk lists, with --all-netns, the TCP and UDP sockets that processes
// hold in every namespace at once, and gives each namespace that the walk
// covers (socktable.Covered and CoveredUDP, by its sockstat counts) the
// walk's sockets for its next collect, in place of a netlink dump of
// that protocol: by default the kernel keeps one TCP table and one UDP
// table for every namespace, and a dump of one walks all of it. A
// namespace that it does not cover is dumped with netlink, as is every
// one when the walk cannot load (said once on stderr). With fewer than
// walkMin namespaces to dump, their dumps cost about what loading the
// program and the walk do: no walk then.
func (h *Host) walk() {
	h.walkedNS = h.walkedNS[:0]
	for _, n := range h.nss {
		n.d.walked, n.d.walkOK, n.d.walkUDP, n.d.walkStates = nil, false, false, 0
	}
	if h.c.NoWalk || h.walkFailed || len(h.nss) < h.walkMin {
		return
	}
	if h.walker == nil {
		w, err := openWalker()
		if err != nil {
			h.walkFailed = true
			fmt.Fprintf(h.c.Stderr, "sockdump: --all-netns: cannot walk every namespace's sockets at once (%v); dumping each namespace with netlink\n", err)
			return
		}
		h.walker = w
	}
	before := make([]socktable.Sockstat, len(h.nss))
	known := make([]bool, len(h.nss))
	for i, n := range h.nss {
		before[i], known[i] = readSockstat(n.d)
	}
	all, err := h.walker.Walk()
	if err != nil {
		if !h.walkSaid {
			h.walkSaid = true
			fmt.Fprintf(h.c.Stderr, "sockdump: --all-netns: %v; dumping each namespace with netlink this time\n", err)
		}
		return
	}
	for i, n := range h.nss {
		if !known[i] {
			continue
		}
		after, ok := readSockstat(n.d)
		if !ok {
			continue
		}
		socks := all[n.d.netns]
		if slices.Contains(n.d.protocols, inetdiag.ProtoTCP) {
			if states, err := socktable.Covered(socks, before[i], after); err == nil {
				n.d.walkOK, n.d.walkStates = true, states
			}
		}
		if slices.Contains(n.d.protocols, inetdiag.ProtoUDP) && n.d.udpDumped {
			n.d.walkUDP = socktable.CoveredUDP(socks, before[i], after) == nil
		}
		if n.d.walkOK || n.d.walkUDP {
			n.d.walked = socks
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
	// The process may have exited, and its pid be another's: before the
	// read, or during it.
	inNS := func() bool {
		var st unix.Stat_t
		return unix.Stat(ns, &st) == nil && st.Ino == d.netns
	}
	if !inNS() {
		return socktable.Sockstat{}, false
	}
	s, err := socktable.ReadSockstat(dir)
	return s, err == nil && inNS()
}

// collectWalked adds the walk's sockets of protocol proto to d.socks and
// d.listeners, and for TCP with collect those of a netlink dump of
// d.walkStates: together, what a netlink dump of both families would
// list. A socket that the walk saw and that is in time-wait by that dump
// is kept as that dump saw it.
func (d *Dumper) collectWalked(proto uint8, collect func(*inetdiag.Socket) error) error {
	listen := uint8(inetdiag.StateListen)
	if proto == inetdiag.ProtoUDP {
		listen = inetdiag.StateClose
	}
	for i := range d.walked {
		w := &d.walked[i]
		if w.Protocol != proto {
			continue
		}
		d.socks = append(d.socks, entry{
			family: w.Family, proto: proto, state: w.State,
			srcPort: w.SrcPort, dstPort: w.DstPort,
			uid: w.UID, inode: uint32(w.Inode), cookie: w.Cookie,
			src: w.Src, dst: w.Dst,
		})
		if w.State == listen {
			s := w.Inetdiag()
			d.listeners.Add(&s)
		}
	}
	if proto != inetdiag.ProtoTCP {
		return nil
	}
	states := d.walkStates
	if states == 0 {
		return nil
	}
	mark := len(d.socks)
	if !d.perFamily {
		// Both families at once, else one after the other, as collect.
		err := d.conn.Dump(inetdiag.AFUnspec, inetdiag.ProtoTCP, states, collect)
		if errors.Is(err, inetdiag.ErrUnsupported) || errors.Is(err, inetdiag.ErrPermission) {
			d.perFamily = true
			d.socks = d.socks[:mark]
		} else if err != nil {
			return err
		}
	}
	if d.perFamily {
		for _, fam := range []uint8{inetdiag.AFInet, inetdiag.AFInet6} {
			if err := d.conn.Dump(fam, inetdiag.ProtoTCP, states, collect); err != nil {
				return err
			}
		}
	}
	added := d.socks[mark:]
	if len(added) == 0 {
		return nil
	}
	later := make(map[uint64]bool, len(added))
	for i := range added {
		later[added[i].cookie] = true
	}
	kept := slices.DeleteFunc(d.socks[:mark], func(e entry) bool { return later[e.cookie] })
	d.socks = append(kept, added...)
	return nil
}
