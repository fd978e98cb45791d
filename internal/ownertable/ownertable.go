// Package ownertable loads the kernel's owner table and reads it: for
// every TCP and UDP socket made while it is loaded, keyed by the socket's
// cookie, the process that made it (pid, name, start time), its uid, gid
// and cgroup. It answers for the sockets that no dump saw with an inode:
// those born and destroyed between two dumps, and those whose file is
// closed (FIN-WAIT, TIME-WAIT).
//
// # Hooks
//
//   - The tp_btf program on the inet_sock_set_state tracepoint covers TCP
//     in every network namespace, with no mount and no cgroup. The change
//     to SYN_SENT runs in the process that calls connect(2), and the change
//     to LISTEN in the one that calls listen(2). A connection that a
//     listener accepts is made by the kernel, in no process: its owner is
//     the listener's, which the kernel copies onto the new socket (socket
//     local storage with BPF_F_CLONE). A listener that several processes
//     share (a pre-forked server) is reported with the process that called
//     listen(2), usually the parent.
//   - The cgroup/sock_create program covers UDP: it runs in the process that
//     calls socket(2). It needs a cgroup v2 hierarchy to attach to, and sees
//     the processes of the cgroup it is attached to and below: a host that
//     mounts only cgroup v1 gets no UDP owners (one warning says so), TCP
//     owners all the same.
//
// Both run only on those calls, not per packet: the tracepoint's program
// returns at its first test on every other state change.
//
// The table is an LRU hash of MaxEntries entries (about 7 MiB of kernel
// memory, measured with bpftool: the memlock of its map): at 4,000 new connections a second, both ends
// on this host, an entry lives about 8 s before it is evicted. Entries of
// sockets still open are not renewed; a reader that caches what it read
// (sockdump does, per dump) keeps them as long as it needs.
//
// # Privileges
//
// Loading takes root, or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN; the
// kernel must have BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF).
package ownertable

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/sockpipe/sockpipe/internal/bpfload"
	"github.com/sockpipe/sockpipe/internal/record"
)

// MaxEntries is the number of sockets the table holds.
const MaxEntries = 65536

// valueSize is the size of struct owner in owner.bpf.c.
const valueSize = 88

// Via values of struct owner, as in owner.bpf.c.
const (
	viaConnect = 1
	viaListen  = 2
	viaAccept  = 3
	viaCreate  = 4
)

// pidMaxLimit is the kernel's largest pid (PID_MAX_LIMIT).
const pidMaxLimit = 1 << 22

// userHZ is the unit of /proc/PID/stat's start time: an owner's start is
// truncated to it, so that it compares equal with a process's.
const userHZ = 100

// Options say where the table attaches.
type Options struct {
	// Cgroup is the cgroup v2 directory to attach the UDP hook to; empty
	// finds the root of the cgroup v2 hierarchy in /proc/self/mountinfo.
	Cgroup string
	// ProcRoot is the proc filesystem of the boot time and of sockdump's
	// own pid namespace; empty is /proc.
	ProcRoot string
}

// Table is a loaded owner table.
type Table struct {
	owners *ebpf.Map
	fresh  *ebpf.Map
	hooks  []*ebpf.Program // for the benchmarks' statistics
	// keys and vals are Fresh's buffers.
	keys   []uint64
	vals   []uint8
	closer []interface{ Close() error }
	boot   time.Time
	// Warning, when not nil, says what the table does not cover (UDP
	// without cgroup v2). Its owner says it once.
	Warning error
	buf     [valueSize]byte
}

// ErrPermission is the cause of an Open that lacked privileges.
var ErrPermission = errors.New("loading BPF programs needs root, or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN")

// ErrNoBTF is the cause of an Open on a kernel without BTF.
var ErrNoBTF = errors.New("the kernel has no BTF (/sys/kernel/btf/vmlinux is missing: CONFIG_DEBUG_INFO_BTF)")

// Open loads the table and attaches its hooks. An error means no table
// at all; a table whose UDP hook could not attach says so in Warning.
func Open(opts Options) (*Table, error) {
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if err := bpfload.Prepare(ErrNoBTF); err != nil {
		return nil, err
	}
	boot, err := bootTime(opts.ProcRoot + "/stat")
	if err != nil {
		return nil, err
	}
	spec, err := loadOwner()
	if err != nil {
		return nil, err
	}
	if dev, ino, ok := pidNamespace(opts.ProcRoot); ok {
		if err := spec.Variables[ownerVarPidnsDev].Set(dev); err != nil {
			return nil, err
		}
		if err := spec.Variables[ownerVarPidnsIno].Set(ino); err != nil {
			return nil, err
		}
	}
	t := &Table{boot: boot}
	var objs struct {
		OnState   *ebpf.Program `ebpf:"on_state"`
		Owners    *ebpf.Map     `ebpf:"owners"`
		Fresh     *ebpf.Map     `ebpf:"fresh"`
		Listeners *ebpf.Map     `ebpf:"listeners"`
	}
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, loadError(err)
	}
	t.owners, t.fresh = objs.Owners, objs.Fresh
	t.hooks = append(t.hooks, objs.OnState)
	t.closer = append(t.closer, objs.OnState, objs.Owners, objs.Fresh, objs.Listeners)
	l, err := link.AttachTracing(link.TracingOptions{Program: objs.OnState, AttachType: ebpf.AttachTraceRawTp})
	if err != nil {
		t.Close()
		return nil, loadError(fmt.Errorf("attaching to the inet_sock_set_state tracepoint: %w", err))
	}
	t.closer = append(t.closer, l)
	t.Warning = t.attachUDP(spec, opts.Cgroup)
	return t, nil
}

// attachUDP loads and attaches the UDP hook, and returns why not.
func (t *Table) attachUDP(spec *ebpf.CollectionSpec, cgroup string) error {
	if cgroup == "" {
		var err error
		if cgroup, err = Cgroup2Root("/proc/self/mountinfo"); err != nil {
			return fmt.Errorf("UDP sockets get no owner: %w", err)
		}
	}
	var objs struct {
		OnCreate *ebpf.Program `ebpf:"on_create"`
	}
	opts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{ownerMapOwners: t.owners, ownerMapFresh: t.fresh}}
	if err := spec.LoadAndAssign(&objs, opts); err != nil {
		return fmt.Errorf("UDP sockets get no owner: %w", loadError(err))
	}
	t.closer = append(t.closer, objs.OnCreate)
	t.hooks = append(t.hooks, objs.OnCreate)
	l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroup, Attach: ebpf.AttachCGroupInetSockCreate, Program: objs.OnCreate})
	if err != nil {
		return fmt.Errorf("UDP sockets get no owner: attaching to the cgroup %s: %w", cgroup, err)
	}
	t.closer = append(t.closer, l)
	return nil
}

// loadError says what an error of loading means to a user.
func loadError(err error) error { return bpfload.Error(err, ErrPermission) }

// Close detaches the hooks and frees the table.
func (t *Table) Close() error {
	var first error
	for i := len(t.closer) - 1; i >= 0; i-- {
		if err := t.closer[i].Close(); err != nil && first == nil {
			first = err
		}
	}
	t.closer = nil
	return first
}

// Lookup returns the owner of the socket with the given cookie, if the
// table has it.
func (t *Table) Lookup(cookie uint64) (*record.Owner, error) {
	o, _, err := t.LookupConn(cookie)
	return o, err
}

// Conn is a connecting socket's addresses as the table recorded them
// when it was established: what the kernel wipes from a socket that its
// owner resets. The zero Conn is unknown.
type Conn struct {
	Local, Remote netip.AddrPort
}

// LookupConn is Lookup that also returns the socket's addresses, for a
// socket that connected (via connect) and was established.
func (t *Table) LookupConn(cookie uint64) (*record.Owner, Conn, error) {
	if cookie == 0 {
		return nil, Conn{}, nil
	}
	if err := t.owners.Lookup(&cookie, t.buf[:]); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil, Conn{}, nil
		}
		return nil, Conn{}, err
	}
	o, err := Decode(t.buf[:], t.boot)
	if err != nil {
		return nil, Conn{}, err
	}
	return &o, DecodeConn(t.buf[:]), nil
}

// DecodeConn decodes the addresses of a value of the table; the zero Conn
// when it holds none (or what it holds is not an address pair).
func DecodeConn(b []byte) Conn {
	if len(b) != valueSize {
		return Conn{}
	}
	e := binary.NativeEndian
	lport, rport := e.Uint16(b[50:]), e.Uint16(b[52:])
	var la, ra netip.Addr
	switch e.Uint16(b[48:]) {
	case unix.AF_INET:
		la, ra = netip.AddrFrom4([4]byte(b[56:60])), netip.AddrFrom4([4]byte(b[72:76]))
	case unix.AF_INET6:
		la, ra = netip.AddrFrom16([16]byte(b[56:72])), netip.AddrFrom16([16]byte(b[72:88]))
	default:
		return Conn{}
	}
	if lport == 0 || rport == 0 {
		return Conn{}
	}
	return Conn{netip.AddrPortFrom(la, lport), netip.AddrPortFrom(ra, rport)}
}

// FreshEntries is how many sockets Fresh remembers between two calls: of
// more, the oldest are forgotten.
const FreshEntries = 16384

// Fresh calls fn with the cookie of each socket that the table recorded
// since the last call (at most FreshEntries), and forgets them: a cost
// that follows the number of new sockets, not of all sockets.
func (t *Table) Fresh(fn func(cookie uint64)) error {
	if t.keys == nil {
		t.keys, t.vals = make([]uint64, 1024), make([]uint8, 1024)
	}
	var cursor ebpf.MapBatchCursor
	// Bounded: sockets keep coming while it reads.
	for range 4 * FreshEntries / 1024 {
		n, err := t.fresh.BatchLookupAndDelete(&cursor, t.keys, t.vals, nil)
		for _, k := range t.keys[:n] {
			fn(k)
		}
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return nil
		case errors.Is(err, unix.ENOSPC) && len(t.keys) < FreshEntries:
			// A hash bucket holds more than the buffer.
			t.keys, t.vals = make([]uint64, 2*len(t.keys)), make([]uint8, 2*len(t.vals))
		case err != nil:
			return err
		}
	}
	return nil
}

// Len counts the entries of the table (a full walk: for tests and
// measurements).
func (t *Table) Len() int {
	var (
		k   uint64
		v   [valueSize]byte
		n   int
		it  = t.owners.Iterate()
		max = MaxEntries * 2
	)
	for n < max && it.Next(&k, &v) {
		n++
	}
	return n
}

// Decode decodes a value of the table (struct owner of owner.bpf.c, in
// the host's byte order); boot is the boot time, to which the start is
// relative.
func Decode(b []byte, boot time.Time) (record.Owner, error) {
	if len(b) != valueSize {
		return record.Owner{}, fmt.Errorf("owner table value: %d bytes, want %d", len(b), valueSize)
	}
	e := binary.NativeEndian
	o := record.Owner{
		PID:      int(e.Uint32(b[0:])),
		UID:      e.Uint32(b[4:]),
		GID:      e.Uint32(b[8:]),
		CgroupID: e.Uint64(b[16:]),
	}
	switch via := e.Uint32(b[12:]); via {
	case viaConnect:
		o.Via = record.OwnerConnect
	case viaListen:
		o.Via = record.OwnerListen
	case viaAccept:
		o.Via = record.OwnerAccept
	case viaCreate:
		o.Via = record.OwnerCreate
	default:
		return record.Owner{}, fmt.Errorf("owner table value: unknown via %d", via)
	}
	if o.PID > pidMaxLimit {
		return record.Owner{}, fmt.Errorf("owner table value: pid %d out of range", o.PID)
	}
	comm := b[32:48]
	if i := strings.IndexByte(string(comm), 0); i >= 0 {
		comm = comm[:i]
	}
	o.Name = strings.ToValidUTF8(string(comm), "\uFFFD")
	if start := e.Uint64(b[24:]); !boot.IsZero() {
		ticks := start / uint64(time.Second/userHZ)
		o.Start = boot.Add(time.Duration(ticks) * (time.Second / userHZ)).UTC()
	}
	return o, nil
}

// bootTime reads the boot time (btime) of a /proc/stat file.
func bootTime(path string) (time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "btime "); ok {
			sec, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("%s: btime: %w", path, err)
			}
			return time.Unix(sec, 0), nil
		}
	}
	if err := s.Err(); err != nil {
		return time.Time{}, err
	}
	return time.Time{}, fmt.Errorf("%s: no btime", path)
}

// pidNamespace returns the device and inode of the pid namespace of the
// proc filesystem at root, unless it is the initial one.
func pidNamespace(root string) (dev, ino uint64, ok bool) {
	var st unix.Stat_t
	if err := unix.Stat(root+"/self/ns/pid", &st); err != nil {
		return 0, 0, false
	}
	if st.Ino == bpfload.InitPidNS {
		return 0, 0, false
	}
	return st.Dev, st.Ino, true
}

// Cgroup2Root returns the mount point of the root of a cgroup v2
// hierarchy in a mountinfo file, preferring /sys/fs/cgroup.
func Cgroup2Root(mountinfo string) (string, error) {
	b, err := os.ReadFile(mountinfo)
	if err != nil {
		return "", err
	}
	return cgroup2Root(string(b))
}

func cgroup2Root(mountinfo string) (string, error) {
	var found string
	for line := range strings.Lines(mountinfo) {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(strings.TrimSuffix(line, "\n"), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 1 || g[0] != "cgroup2" || f[3] != "/" {
			continue
		}
		mp := unescapeMount(f[4])
		if mp == "/sys/fs/cgroup" || mp == "/sys/fs/cgroup/unified" {
			return mp, nil
		}
		if found == "" {
			found = mp
		}
	}
	if found == "" {
		return "", errors.New("no cgroup v2 hierarchy is mounted (only cgroup v1)")
	}
	return found, nil
}

// unescapeMount undoes the octal escapes (\040 for a space) of a mountinfo
// path.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
