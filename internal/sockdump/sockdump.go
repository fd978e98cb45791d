// Package sockdump implements the sockdump program: it dumps every TCP
// socket of the host (or of a network namespace) from the kernel and
// writes one socket record a line, then a snapshot record, once or every
// interval.
package sockdump

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/inetdiag"
	"github.com/sockpipe/sockpipe/internal/ndjson"
	"github.com/sockpipe/sockpipe/internal/record"
)

// Exit codes of sockdump, beside cli's.
const (
	ExitPermission  = 3 // the kernel or a policy refused the netlink socket or the dump
	ExitUnsupported = 4 // the kernel cannot dump TCP sockets over sock_diag
)

const synopsis = "sockdump [--interval D [--count N]] [--netns PATH]"

var about = `Output (NDJSON on stdout, one object a line, schema version ` + strconv.Itoa(record.SchemaVersion) + `):
  one "socket" record for every TCP socket, IPv4 and IPv6, in every state:
    {"type":"socket","time":…,"family":"ipv4","transport":"tcp","state":"established",
     "local":{"ip":"127.0.0.1","port":22},"remote":{"ip":"127.0.0.1","port":40000},
     "direction":"ingress","inode":12345,"uid":0,"cookie":678,"netns":4026531840}
  then one "snapshot" record that closes the dump:
    {"type":"snapshot","time":…,"schema":1,"sockets":N,"duration_ns":D}
  Output is flushed after each snapshot record.

Privileges: none. Any user may dump every socket of its network namespace;
--netns needs CAP_SYS_ADMIN.

Exit codes:
  0  success, or stopped by SIGINT/SIGTERM or a closed stdout
  1  failure (I/O, an unexpected kernel error)
  2  bad flags
  3  permission denied by the kernel or a security policy
  4  the kernel does not support sock_diag TCP dumps
`

// Run is the sockdump program.
func Run(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := cli.FlagSet("sockdump", synopsis, about, stderr)
	interval := fs.Duration("interval", 0, "dump every `D` (e.g. 1s) until interrupted; 0 dumps once and exits")
	count := fs.Int("count", 0, "with --interval, stop after `N` dumps (0: no limit)")
	netns := fs.String("netns", "", "dump the network namespace at `PATH` (/proc/PID/ns/net, /run/netns/NAME) instead of this process's own")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if *interval < 0 {
		return cli.UsageError("--interval must not be negative")
	}
	if *count < 0 {
		return cli.UsageError("--count must not be negative")
	}
	if *interval == 0 {
		if *count > 1 {
			return cli.UsageError("--count needs --interval")
		}
		*count = 1
	}

	d, err := open(*netns)
	if err != nil {
		return exitError(err)
	}
	defer d.Close()

	out := ndjson.NewWriter(stdout)
	var tick <-chan time.Time
	if *interval > 0 {
		t := time.NewTicker(*interval)
		defer t.Stop()
		tick = t.C
	}
	for n := 1; ; n++ {
		if err := d.Snapshot(out.Write); err != nil {
			return exitError(err)
		}
		if err := out.Flush(); err != nil {
			return err
		}
		if *count > 0 && n >= *count {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
		}
	}
}

func exitError(err error) error {
	switch {
	case errors.Is(err, inetdiag.ErrPermission):
		return cli.Exit(ExitPermission, err)
	case errors.Is(err, inetdiag.ErrUnsupported):
		return cli.Exit(ExitUnsupported, err)
	}
	return err
}

// Dumper takes snapshots of one network namespace.
type Dumper struct {
	conn  *inetdiag.Conn
	netns uint64
	enc   *codec.Encoder
	now   func() time.Time

	socks     []entry // reused between snapshots
	listeners Listeners
	ips       map[ipKey]string // text of addresses seen, bounded
}

// entry is the part of a socket that a record needs, without pointers, so
// that a dump of 100k sockets costs the garbage collector nothing to scan.
type entry struct {
	family, state    uint8
	srcPort, dstPort uint16
	uid, inode       uint32
	cookie           uint64
	src, dst         [16]byte
}

type ipKey struct {
	family uint8
	addr   [16]byte
}

const maxIPCache = 1 << 16

// open is Open, replaced in tests.
var open = Open

// Open opens a dumper of the network namespace at path, or of the
// current one when path is empty.
func Open(path string) (*Dumper, error) {
	var (
		conn *inetdiag.Conn
		err  error
	)
	nsPath := "/proc/self/ns/net"
	if path == "" {
		conn, err = inetdiag.Dial()
	} else {
		nsPath = path
		conn, err = dialIn(path)
	}
	if err != nil {
		return nil, err
	}
	return NewDumper(conn, nsInode(nsPath)), nil
}

// NewDumper returns a dumper over conn; netns is the namespace's inode
// written in every record (0 leaves it out).
func NewDumper(conn *inetdiag.Conn, netns uint64) *Dumper {
	return &Dumper{conn: conn, netns: netns, enc: codec.NewEncoder(), now: time.Now, listeners: Listeners{}, ips: map[ipKey]string{}}
}

// Close closes the netlink socket.
func (d *Dumper) Close() error { return d.conn.Close() }

// Snapshot dumps every TCP socket, IPv4 then IPv6, and writes a socket
// record for each, then the snapshot record. The dump is complete before
// the first record is written, since direction depends on listeners that
// the kernel may list after the connections they accepted.
func (d *Dumper) Snapshot(write func([]byte) error) error {
	start := d.now()
	d.socks = d.socks[:0]
	clear(d.listeners)
	collect := func(s *inetdiag.Socket) error {
		d.socks = append(d.socks, entry{
			family: s.Family, state: s.State,
			srcPort: s.SrcPort, dstPort: s.DstPort,
			uid: s.UID, inode: s.Inode, cookie: s.Cookie,
			src: s.Src.As16(), dst: s.Dst.As16(),
		})
		d.listeners.Add(s)
		return nil
	}
	for _, fam := range []uint8{inetdiag.AFInet, inetdiag.AFInet6} {
		if err := d.conn.Dump(fam, inetdiag.AllStates, collect); err != nil {
			return err
		}
	}
	took := d.now().Sub(start)

	var (
		r record.Record
		s inetdiag.Socket
	)
	for i := range d.socks {
		e := &d.socks[i]
		s = inetdiag.Socket{
			Family: e.family, State: e.state,
			SrcPort: e.srcPort, DstPort: e.dstPort,
			UID: e.uid, Inode: e.inode, Cookie: e.cookie,
			Src: addr(e.family, e.src), Dst: addr(e.family, e.dst),
		}
		d.Record(&s, start, &r)
		if err := write(d.enc.Encode(&r)); err != nil {
			return err
		}
	}
	snap := record.Record{
		Type:     record.TypeSnapshot,
		Time:     start,
		Schema:   record.SchemaVersion,
		Sockets:  len(d.socks),
		Duration: took,
	}
	return write(d.enc.Encode(&snap))
}

// Record fills r with the socket record of s, seen at t, its direction
// decided by the listeners of the last dump.
func (d *Dumper) Record(s *inetdiag.Socket, t time.Time, r *record.Record) {
	*r = record.Record{
		Type:      record.TypeSocket,
		Time:      t,
		Family:    Family(s.Family),
		Transport: record.TransportTCP,
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

// nsInode returns the inode of a namespace file, or 0.
func nsInode(path string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0
	}
	return st.Ino
}

// dialIn opens the netlink socket inside the network namespace at path: a
// socket belongs to the namespace it was created in, so the thread enters
// the namespace, creates it, and comes back.
func dialIn(path string) (*inetdiag.Conn, error) {
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open network namespace: %w", err)
	}
	defer unix.Close(target)
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("open current network namespace: %w", err)
	}
	defer unix.Close(orig)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		if errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("enter network namespace %s (CAP_SYS_ADMIN is needed): %w", path, inetdiag.ErrPermission)
		}
		if errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("enter network namespace: %s is not a network namespace", path)
		}
		return nil, fmt.Errorf("enter network namespace %s: %w", path, err)
	}
	conn, dialErr := inetdiag.Dial()
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		// The thread is stuck in the other namespace: never unlock it,
		// so the runtime retires it with the goroutine.
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("return from network namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return conn, dialErr
}
