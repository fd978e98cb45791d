package netnsdump

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/inetdiag"
	"github.com/sockpipe/sockpipe/internal/record"
	"github.com/sockpipe/sockpipe/internal/socktable"
)

// Dumper takes snapshots of one network namespace.
type Dumper struct {
	conn      *inetdiag.Conn
	netns     uint64
	protocols []uint8
	// sockstat is the directory of the namespace's sockstat files, to
	// size the first dump by; "" when unknown.
	sockstat string
	enc      *codec.Encoder

	socks     []entry        // reused between snapshots
	byCookie  map[uint64]int // index of socks by cookie, built when first needed
	listeners Listeners
	// The dump before the last: a destroy notification received after
	// the dump that followed its socket's end is read against both.
	prevSocks     []entry
	prevByCookie  map[uint64]int
	prevListeners Listeners
	// listenersAt is when listeners were last read, by a dump or a refresh.
	listenersAt time.Time
	ips         map[ipKey]string // text of addresses seen, bounded
	// Warning, when not nil, is what the dumper had to leave out (UDP
	// without udp_diag); its owner says it once and clears it.
	Warning error
	// owners, when not nil, gives the owner of sockets without an
	// inode; shared by the dumpers of every namespace.
	owners *owners
	// listenerOwners are the owners made of listeners, shared by the
	// records that name them (never modified).
	listenerOwners map[listener]*record.Owner
	// listenerRefresh is how often, at most, refreshListeners reads the
	// listeners again.
	listenerRefresh time.Duration
	// perFamily is set when the kernel refused to dump TCP of both
	// families at once: then IPv4 and IPv6 are dumped one after the other.
	perFamily bool
	// walked are the namespace's sockets from the host's walk: when
	// walkOK, the next collect takes its TCP ones instead of a netlink TCP
	// dump (Host.walk), with a netlink dump of the sockets in walkStates
	// (time-wait, request sockets) when not 0; when walkUDP, its UDP ones
	// instead of a netlink UDP dump.
	walked  []socktable.Socket
	walkOK  bool
	walkUDP bool
	// udpDumped is set once a netlink UDP dump worked: the walk's UDP
	// sockets stand for one only then (a kernel without udp_diag has
	// none to give, which only a dump tells).
	udpDumped  bool
	walkStates uint32
}

// entry is the part of a socket that a record needs, without pointers, so
// that a dump of 100k sockets costs the garbage collector nothing to scan.
type entry struct {
	family, proto    uint8
	state            uint8
	srcPort, dstPort uint16
	uid, inode       uint32
	cookie           uint64
	src, dst         [16]byte
}

// socket returns the socket that e holds.
func (e *entry) socket() inetdiag.Socket {
	return inetdiag.Socket{
		Family: e.family, Protocol: e.proto, State: e.state,
		SrcPort: e.srcPort, DstPort: e.dstPort,
		UID: e.uid, Inode: e.inode, Cookie: e.cookie,
		Src: addr(e.family, e.src), Dst: addr(e.family, e.dst),
	}
}

type ipKey struct {
	family uint8
	addr   [16]byte
}

const maxIPCache = 1 << 16

// TCP is the protocol list of a TCP-only dump.
var TCP = []uint8{inetdiag.ProtoTCP}

// Open opens a dumper of the given protocols (inetdiag.ProtoTCP,
// inetdiag.ProtoUDP) in the network namespace at path, or in the current
// one when path is empty.
func Open(path string, protocols []uint8) (*Dumper, error) {
	nsPath := "/proc/self/ns/net"
	fd := 0
	if path != "" {
		nsPath = path
		var err error
		if fd, err = openNS(path); err != nil {
			return nil, err
		}
		defer unix.Close(fd)
		if !isNetNS(path) {
			return nil, fmt.Errorf("%s is not a network namespace (want /proc/PID/ns/net or /run/netns/NAME)", path)
		}
	}
	conn, err := dialNS(nsPath, fd)
	if err != nil {
		return nil, err
	}
	d := NewDumper(conn, nsInode(nsPath), protocols)
	d.sockstat = sockstatDir(nsPath)
	return d, nil
}

// sockstatDir returns the directory of the sockstat files of the network
// namespace at nsPath: /proc/PID/net for /proc/PID/ns/net (each process
// sees its own namespace's), /proc/net for sockdump's own; "" for a
// namespace that no process is known to hold.
func sockstatDir(nsPath string) string {
	if nsPath == "/proc/self/ns/net" {
		return "/proc/net"
	}
	if dir, ok := strings.CutSuffix(nsPath, "/ns/net"); ok {
		return dir + "/net"
	}
	return ""
}

// NewDumper returns a dumper over conn; netns is the namespace's inode
// written in every record (0 leaves it out).
func NewDumper(conn *inetdiag.Conn, netns uint64, protocols []uint8) *Dumper {
	return &Dumper{conn: conn, netns: netns, protocols: protocols, sockstat: "/proc/net", enc: codec.NewEncoder(), listenerRefresh: DefaultListenerRefresh, listeners: Listeners{}, prevListeners: Listeners{}, ips: map[ipKey]string{}}
}

// Close closes the netlink socket.
func (d *Dumper) Close() error { return d.conn.Close() }

// collect dumps every socket of the dumper's protocols, IPv4 and IPv6,
// into d.socks, and their listeners. The whole dump is collected before
// the first record is written, since direction depends on listeners that
// the kernel may list after the connections they accepted.
func (d *Dumper) collect(start time.Time) error {
	// The walk's sockets are for this collect only.
	defer func() { d.walked, d.walkOK, d.walkUDP, d.walkStates = nil, false, false, 0 }()
	d.listenersAt = start
	d.prevSocks, d.socks = d.socks, d.prevSocks
	d.prevListeners, d.listeners = d.listeners, d.prevListeners
	d.prevByCookie, d.byCookie = d.byCookie, nil
	if d.socks == nil {
		// Sized once from the kernel's count: growing the slice by
		// doubling would copy and fault in twice the memory.
		d.socks = make([]entry, 0, socketCountHint(d.sockstat, d.protocols))
	}
	d.socks = d.socks[:0]
	clear(d.listeners)
	collect := func(s *inetdiag.Socket) error {
		d.socks = append(d.socks, entry{
			family: s.Family, proto: s.Protocol, state: s.State,
			srcPort: s.SrcPort, dstPort: s.DstPort,
			uid: s.UID, inode: s.Inode, cookie: s.Cookie,
			src: s.Src.As16(), dst: s.Dst.As16(),
		})
		d.listeners.Add(s)
		return nil
	}
	for _, proto := range d.protocols {
		if proto == inetdiag.ProtoTCP && d.walkOK || proto == inetdiag.ProtoUDP && d.walkUDP {
			if err := d.collectWalked(proto, collect); err != nil {
				return err
			}
			continue
		}
		if proto == inetdiag.ProtoTCP && !d.perFamily {
			// Both families in one walk of the kernel's tables: these
			// hold the sockets of every network namespace of the host
			// (unless net.ipv4.tcp_child_ehash_entries gave the namespace
			// its own), so that each walk costs as much as all of them.
			// A kernel or a policy (SELinux checks each message type)
			// that refuses it gets the two requests of one family each.
			mark, lmark := len(d.socks), len(d.listeners)
			err := d.conn.Dump(inetdiag.AFUnspec, proto, inetdiag.ActiveStates, collect)
			if !errors.Is(err, inetdiag.ErrUnsupported) && !errors.Is(err, inetdiag.ErrPermission) {
				if err != nil {
					return err
				}
				continue
			}
			d.perFamily = true
			if len(d.socks) != mark || len(d.listeners) != lmark {
				// Refused midway: start this protocol over.
				d.socks = d.socks[:mark]
				clear(d.listeners)
				for i := range d.socks {
					s := d.socks[i].socket()
					d.listeners.Add(&s)
				}
			}
		}
		for _, fam := range []uint8{inetdiag.AFInet, inetdiag.AFInet6} {
			err := d.conn.Dump(fam, proto, inetdiag.ActiveStates, collect)
			if err != nil && proto == inetdiag.ProtoUDP && errors.Is(err, inetdiag.ErrUnsupported) && len(d.protocols) > 1 {
				// No udp_diag: go on with TCP, and say it once.
				d.protocols = slices.DeleteFunc(slices.Clone(d.protocols), func(p uint8) bool { return p == inetdiag.ProtoUDP })
				d.Warning = fmt.Errorf("no UDP sockets: %w", err)
				break
			}
			if err != nil {
				return err
			}
		}
		if proto == inetdiag.ProtoUDP && slices.Contains(d.protocols, inetdiag.ProtoUDP) {
			d.udpDumped = true
		}
	}
	return nil
}

// writeRecords writes a socket record for every socket collected, seen at
// t.
func (d *Dumper) writeRecords(write func([]byte) error, t time.Time) error {
	var (
		r record.Record
		s inetdiag.Socket
	)
	// With the owner table, a socket new since the last dump carries its
	// owner too: its process may close it (or exit) before sockproc finds
	// it in /proc.
	for i := range d.socks {
		s = d.socks[i].socket()
		d.Record(&s, t, &r)
		switch {
		case r.Inode == 0:
			if r.Owner = d.owners.get(r.Cookie); r.Owner == nil {
				r.Owner = d.listenerOwner(&s, &r)
			}
		case d.owners.isNew(s.Cookie):
			r.Owner = d.owners.get(s.Cookie)
		}
		if err := write(d.enc.Encode(&r)); err != nil {
			return err
		}
	}
	return nil
}

// Record fills r with the socket record of s, seen at t, its direction
// decided by the listeners of the last dump.
func (d *Dumper) Record(s *inetdiag.Socket, t time.Time, r *record.Record) {
	*r = record.Record{
		Type:      record.TypeSocket,
		Time:      t,
		Family:    Family(s.Family),
		Transport: Transport(s.Protocol),
		State:     record.StateName(s.State),
		Local:     record.Endpoint{IP: d.ipText(s.Family, s.Src), Port: s.SrcPort},
		Remote:    record.Endpoint{IP: d.ipText(s.Family, s.Dst), Port: s.DstPort},
		Direction: d.listeners.Direction(s),
		Inode:     uint64(s.Inode),
		UID:       s.UID,
		HasUID:    true,
		Cookie:    s.Cookie,
		NetNS:     d.netns,
	}
}

func addr(family uint8, b [16]byte) netip.Addr {
	if family == inetdiag.AFInet6 {
		return netip.AddrFrom16(b)
	}
	return netip.AddrFrom4([4]byte(b[12:16]))
}

// ipText returns the text of an address as ss prints it, from a cache:
// the same few addresses recur in every snapshot.
func (d *Dumper) ipText(family uint8, a netip.Addr) string {
	k := ipKey{family, a.As16()}
	if t, ok := d.ips[k]; ok {
		return t
	}
	t := a.String()
	if len(d.ips) >= maxIPCache {
		clear(d.ips)
	}
	d.ips[k] = t
	return t
}

// Destroyed returns the line of a destroyed record for a socket of a
// destroy notification received at t. The kernel reports such a socket
// closed, with inode 0 and uid 0 whoever owned it, so the uid is left out
// as unknown; the direction comes from the listeners of the last dump.
//
// A socket that its owner closed abortively (SO_LINGER 0) comes wiped:
// the kernel's tcp_disconnect resets its remote port, its counters and,
// unless it was bound to an address, its local address before destroying
// it. When the last dump held the socket, its cookie gives its addresses
// back; the zeroed counters are left out either way.
func (d *Dumper) Destroyed(s *inetdiag.Socket, t time.Time) []byte {
	if s.Protocol == 0 {
		// A kernel before 4.4 does not say; TCP is what it most likely
		// is.
		s.Protocol = inetdiag.ProtoTCP
	}
	udp := s.Protocol == inetdiag.ProtoUDP
	// A closed listener or bound-only socket has no remote end at all; a
	// wiped connection keeps its remote address. An unconnected UDP
	// socket is a listener, by the rule of Direction.
	unconnected := s.DstPort == 0 && s.Dst.IsUnspecified() && !udp
	wiped := s.DstPort == 0 && !unconnected && !udp
	if wiped {
		s.Info = nil
		if e, ok := d.lookupCookie(s.Cookie); ok && e.srcPort == s.SrcPort {
			s.Src, s.Dst, s.DstPort = addr(e.family, e.src), addr(e.family, e.dst), e.dstPort
		} else if c := d.owners.conn(s.Cookie); c.Local.Port() == s.SrcPort && c.Remote.Port() != 0 &&
			c.Local.Addr().Is4() == (s.Family == inetdiag.AFInet) {
			// No dump held it: the owner table recorded its addresses
			// when it was established.
			s.Src, s.Dst, s.DstPort = c.Local.Addr(), c.Remote.Addr(), c.Remote.Port()
		}
	}
	var r record.Record
	d.Record(s, t, &r)
	lk := listenKey{s.Protocol, s.Src, s.SrcPort}
	if unconnected {
		_, now := d.listeners[lk]
		_, before := d.prevListeners[lk]
		if now || before {
			r.Direction = record.DirectionListening
		}
	} else if r.Direction == record.DirectionEgress {
		// The socket may have gone with its listener before the last
		// dump, if the notification came after it: the dump before
		// tells. A listener opened since the last dump would make it an
		// accepted one too: look again, at most every listenerRefresh.
		if d.prevListeners.Direction(s) == record.DirectionIngress ||
			d.refreshListeners(t) && d.listeners.Direction(s) == record.DirectionIngress {
			r.Direction = record.DirectionIngress
		}
	}
	r.Type = record.TypeDestroyed
	r.HasUID, r.UID = false, 0
	r.Owner = d.owners.get(s.Cookie)
	if r.Owner == nil {
		r.Owner = d.listenerOwner(s, &r)
	}
	if r.Owner != nil && !udp {
		// The table knows what the socket was, where the listeners of the
		// dumps may not (a listener that came and went between two).
		switch r.Owner.Via {
		case record.OwnerAccept:
			r.Direction = record.DirectionIngress
		case record.OwnerListen:
			r.Direction = record.DirectionListening
		case record.OwnerConnect:
			r.Direction = record.DirectionEgress
		}
	}
	if ti := s.Info; ti != nil && !udp {
		r.Info = &record.TCPInfo{
			BytesAcked: ti.BytesAcked, BytesReceived: ti.BytesRecv,
			BytesSent: ti.BytesSent, BytesRetrans: ti.BytesRetrans,
			SegsOut: ti.SegsOut, SegsIn: ti.SegsIn, TotalRetrans: ti.TotalRetrans,
			RTTMicros: uint32(ti.RTT / time.Microsecond),
		}
	}
	return d.enc.Encode(&r)
}

// listenerOwner returns the owner of an accepted TCP connection that has
// no inode and that the owner table does not know: its listener, as the
// last dump (or the one before) saw it. Nil for any other socket.
func (d *Dumper) listenerOwner(s *inetdiag.Socket, r *record.Record) *record.Owner {
	if s.Protocol != inetdiag.ProtoTCP || r.Direction != record.DirectionIngress {
		return nil
	}
	l, ok := d.listeners.Listener(s)
	if !ok || l.inode == 0 {
		if l, ok = d.prevListeners.Listener(s); !ok || l.inode == 0 {
			return nil
		}
	}
	if o := d.listenerOwners[l]; o != nil {
		return o
	}
	if len(d.listenerOwners) >= maxIPCache || d.listenerOwners == nil {
		d.listenerOwners = map[listener]*record.Owner{}
	}
	o := &record.Owner{UID: l.uid, Via: record.OwnerListener, Inode: uint64(l.inode)}
	d.listenerOwners[l] = o
	return o
}

// socketCountHint estimates how many sockets of the protocols a dump will
// list, from the sockstat files in dir (/proc/net/sockstat{,6}: "TCP: inuse
// N … tw M", "UDP: inuse N"), with some room; 0 when it cannot tell.
func socketCountHint(dir string, protocols []uint8) int {
	if dir == "" {
		return 0
	}
	want := map[string]bool{}
	for _, p := range protocols {
		switch p {
		case inetdiag.ProtoTCP:
			want["TCP:"], want["TCP6:"] = true, true
		case inetdiag.ProtoUDP:
			want["UDP:"], want["UDP6:"] = true, true
		}
	}
	n := 0
	for _, f := range []string{dir + "/sockstat", dir + "/sockstat6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0
		}
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)
			if len(fields) == 0 || !want[fields[0]] {
				continue
			}
			for i := 1; i+1 < len(fields); i += 2 {
				if fields[i] == "inuse" || fields[i] == "tw" {
					v, _ := strconv.Atoi(fields[i+1])
					n += v
				}
			}
		}
	}
	return min(n+n/8+64, 1<<22)
}

// refreshListeners adds the listeners of a listening-only dump to those
// of the last full dump, at most once every d.listenerRefresh; it reports
// whether it did.
func (d *Dumper) refreshListeners(now time.Time) bool {
	if now.Sub(d.listenersAt) < d.listenerRefresh {
		return false
	}
	d.listenersAt = now
	for _, proto := range d.protocols {
		for _, fam := range []uint8{inetdiag.AFInet, inetdiag.AFInet6} {
			if err := d.conn.Dump(fam, proto, listenStates(proto), func(s *inetdiag.Socket) error {
				d.listeners.Add(s)
				return nil
			}); err != nil {
				return false
			}
		}
	}
	return true
}

// lookupCookie finds a socket of the last dump, or of the one before, by
// its cookie.
func (d *Dumper) lookupCookie(c uint64) (entry, bool) {
	if c == 0 {
		return entry{}, false
	}
	if e, ok := findCookie(c, d.socks, &d.byCookie); ok {
		return e, true
	}
	return findCookie(c, d.prevSocks, &d.prevByCookie)
}

// findCookie finds the socket of cookie c in socks, through the index
// *by, built when first needed.
func findCookie(c uint64, socks []entry, by *map[uint64]int) (entry, bool) {
	if *by == nil {
		*by = make(map[uint64]int, len(socks))
		for i := range socks {
			(*by)[socks[i].cookie] = i
		}
	}
	i, ok := (*by)[c]
	if !ok {
		return entry{}, false
	}
	return socks[i], true
}
