package socktable

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/sockpipe/sockpipe/internal/bpfload"
	"github.com/sockpipe/sockpipe/internal/inetdiag"
	"github.com/sockpipe/sockpipe/internal/sockfiles"
)

// ErrPermission is the cause of an Open that lacked privileges (the same
// as the other task_file iterator's).
var ErrPermission = sockfiles.ErrPermission

// ErrNoBTF is the cause of an Open on a kernel without BTF.
var ErrNoBTF = sockfiles.ErrNoBTF

// ErrPidNamespace is the cause of an Open in a pid namespace other than
// the initial one, whose processes' sockets the walk would miss.
var ErrPidNamespace = errors.New("not in the initial pid namespace")

// ErrUserNamespace is the cause of an Open in a user namespace other than
// the initial one, into which a netlink dump maps the uids it gives: the
// walk gives them as the kernel holds them.
var ErrUserNamespace = errors.New("not in the initial user namespace")

// Socket is one TCP or UDP socket that a process holds, as a netlink dump
// of its namespace would describe it.
type Socket struct {
	Family           uint8 // inetdiag.AFInet or inetdiag.AFInet6
	Protocol         uint8 // inetdiag.ProtoTCP or inetdiag.ProtoUDP
	State            uint8 // TCP state (for UDP: established when connected, else closed)
	MPTCP            bool  // the file holds an MPTCP socket; this is its first TCP subflow
	SrcPort, DstPort uint16
	// Src and Dst are the local and remote addresses, 16 bytes as
	// netip.Addr.As16 gives them (IPv4 mapped into IPv6).
	Src, Dst  [16]byte
	Interface uint32 // bound interface index, 0 if none
	UID       uint32
	Inode     uint64 // the socket's inode; 0 if it has none
	// Cookie is the socket cookie as made so far: 0 when nothing asked
	// for it yet (a netlink dump makes it).
	Cookie uint64
	NetNS  uint64 // inode of its network namespace
	// SynQueue is a listener's count of request sockets (SYN-RECV), which
	// a dump lists and the walk does not; AcceptQueue its connections
	// waiting for accept.
	SynQueue, AcceptQueue uint32
	// Addr is the kernel address of the socket: the same socket held by
	// several files or processes is listed once.
	Addr uint64
}

// Inetdiag returns s as a netlink TCP dump gives it.
func (s *Socket) Inetdiag() inetdiag.Socket {
	return inetdiag.Socket{
		Family: s.Family, Protocol: s.Protocol, State: s.State,
		Src: addr(s.Family, s.Src), Dst: addr(s.Family, s.Dst),
		SrcPort: s.SrcPort, DstPort: s.DstPort,
		Interface: s.Interface, Cookie: s.Cookie,
		UID: s.UID, Inode: uint32(s.Inode),
	}
}

func addr(family uint8, b [16]byte) netip.Addr {
	if family == inetdiag.AFInet6 {
		return netip.AddrFrom16(b)
	}
	return netip.AddrFrom4([4]byte(b[12:16]))
}

// entrySize is the size of struct entry of socktable.bpf.c.
const entrySize = 88

// Flags of struct entry.
const (
	flagMPTCP = 1 // ENTRY_MPTCP
	flagUDP   = 2 // ENTRY_UDP
)

// Walker walks the host's TCP and UDP sockets. Close it when done.
type Walker struct {
	prog *ebpf.Program
	link *link.Iter
	buf  []byte
	// addrs, out and byNS are those of the last walk, reused: the
	// sockets' addresses, and their lists by namespace.
	addrs []uint64
	out   map[uint64][]Socket
	byNS  map[uint64]*[]Socket
}

// Open loads the iterator.
func Open() (*Walker, error) {
	// The iterator visits the tasks of the caller's pid namespace: in
	// another, it would miss the sockets of processes outside it.
	for _, ns := range []struct {
		path string
		ino  uint64
		err  error
	}{{"/proc/self/ns/pid", bpfload.InitPidNS, ErrPidNamespace}, {"/proc/self/ns/user", bpfload.InitUserNS, ErrUserNamespace}} {
		if initial, err := bpfload.IsNamespace(ns.path, ns.ino); err != nil {
			return nil, err
		} else if !initial {
			return nil, ns.err
		}
	}
	if err := bpfload.Prepare(ErrNoBTF); err != nil {
		return nil, err
	}
	var objs socktableObjects
	if err := loadSocktableObjects(&objs, nil); err != nil {
		return nil, loadError(err)
	}
	l, err := link.AttachIter(link.IterOptions{Program: objs.Sockets})
	if err != nil {
		objs.Close()
		return nil, loadError(fmt.Errorf("attaching the task_file iterator: %w", err))
	}
	return &Walker{prog: objs.Sockets, link: l}, nil
}

func loadError(err error) error { return bpfload.Error(err, ErrPermission) }

// Walk lists the TCP and UDP sockets that the processes hold, by network
// namespace inode, each socket once. A process that exits meanwhile may be
// left out, as may a socket opened or closed meanwhile. The map and its
// slices are valid until the next Walk, which reuses them.
func (w *Walker) Walk() (map[uint64][]Socket, error) {
	r, err := w.link.Open()
	if err != nil {
		return nil, fmt.Errorf("reading the task_file iterator: %w", err)
	}
	defer r.Close()
	if w.buf == nil {
		w.buf = make([]byte, 64*entrySize<<4)
	}
	if w.out == nil {
		w.out, w.byNS = map[uint64][]Socket{}, map[uint64]*[]Socket{}
	}
	for _, socks := range w.byNS {
		*socks = (*socks)[:0]
	}
	w.addrs = w.addrs[:0]
	var (
		lastNS = ^uint64(0)
		last   *[]Socket
	)
	err = decode(r, w.buf, func(s *Socket) {
		// A process's sockets are mostly of one namespace.
		if s.NetNS != lastNS {
			if last = w.byNS[s.NetNS]; last == nil {
				last = new([]Socket)
				w.byNS[s.NetNS] = last
			}
			lastNS = s.NetNS
		}
		*last = append(*last, *s)
		w.addrs = append(w.addrs, s.Addr)
	})
	clear(w.out)
	for ns, socks := range w.byNS {
		if len(*socks) == 0 {
			delete(w.byNS, ns)
			continue
		}
		w.out[ns] = *socks
	}
	// A socket held by several files, or by several processes, is listed
	// once: sorting its addresses (cheaper than a set) tells whether any is.
	slices.Sort(w.addrs)
	for i := 1; i < len(w.addrs); i++ {
		if w.addrs[i] == w.addrs[i-1] {
			w.dedupe()
			break
		}
	}
	return w.out, err
}

// dedupe keeps the first of each socket listed more than once.
func (w *Walker) dedupe() {
	seen := make(map[uint64]bool, len(w.addrs))
	for ns, socks := range w.byNS {
		kept := slices.DeleteFunc(*socks, func(s Socket) bool {
			if seen[s.Addr] {
				return true
			}
			seen[s.Addr] = true
			return false
		})
		*socks = kept
		w.out[ns] = kept
	}
}

// maxAgain bounds the reads that decode makes again after EAGAIN: each
// goes a million files further.
const maxAgain = 1 << 12

// Decode reads the iterator's records from r and calls fn for each; fn
// must not keep the pointer.
func Decode(r io.Reader, fn func(*Socket)) error {
	return decode(r, make([]byte, 64*entrySize), fn)
}

func decode(r io.Reader, buf []byte, fn func(*Socket)) error {
	have, again := 0, 0
	var s Socket
	for {
		n, err := r.Read(buf[have:])
		if err != nil && errors.Is(err, unix.EAGAIN) && again < maxAgain {
			// The kernel stops a read that went through a million
			// files without writing anything (MAX_ITER_OBJECTS); the
			// next read goes on from there.
			again++
			err = nil
			if n == 0 {
				continue
			}
		}
		have += n
		i := 0
		for ; have-i >= entrySize; i += entrySize {
			parse(buf[i:i+entrySize], &s)
			fn(&s)
		}
		have = copy(buf, buf[i:have])
		if err == io.EOF || (n == 0 && err == nil) {
			if have != 0 {
				return fmt.Errorf("task_file iterator: %d bytes left over", have)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the task_file iterator: %w", err)
		}
	}
}

// parse decodes one struct entry (entrySize bytes).
func parse(e []byte, s *Socket) {
	ne := binary.NativeEndian
	*s = Socket{
		Addr:        ne.Uint64(e[0:8]),
		Cookie:      ne.Uint64(e[8:16]),
		Inode:       ne.Uint64(e[16:24]),
		NetNS:       uint64(ne.Uint32(e[24:28])),
		UID:         ne.Uint32(e[28:32]),
		SynQueue:    ne.Uint32(e[32:36]),
		AcceptQueue: ne.Uint32(e[36:40]),
		Interface:   ne.Uint32(e[40:44]),
		SrcPort:     ne.Uint16(e[44:46]),
		DstPort:     ne.Uint16(e[46:48]),
		Family:      e[48],
		State:       e[49],
		MPTCP:       e[50]&flagMPTCP != 0,
		Protocol:    inetdiag.ProtoTCP,
	}
	if e[50]&flagUDP != 0 {
		s.Protocol = inetdiag.ProtoUDP
	}
	if s.Family == inetdiag.AFInet6 {
		s.Src = [16]byte(e[52:68])
		s.Dst = [16]byte(e[68:84])
	} else {
		s.Src = netip.AddrFrom4([4]byte(e[52:56])).As16()
		s.Dst = netip.AddrFrom4([4]byte(e[68:72])).As16()
	}
}

// Close frees the iterator.
func (w *Walker) Close() error {
	err := w.link.Close()
	if perr := w.prog.Close(); err == nil {
		err = perr
	}
	return err
}
