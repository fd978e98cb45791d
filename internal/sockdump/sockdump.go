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
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
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
	withEvents := fs.Bool("events", false, "with --interval, also write a \"destroyed\" record for every TCP socket the kernel destroys, as it happens (Linux 4.2+)")
	eventBuf := fs.Int("event-buffer", 32<<20, "receive buffer for --events, in `bytes` (beyond net.core.rmem_max only with CAP_NET_ADMIN)")
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
		if *withEvents {
			return cli.UsageError("--events needs --interval")
		}
		*count = 1
	}

	d, err := open(*netns)
	if err != nil {
		return exitError(err)
	}
	defer d.Close()

	out := ndjson.NewWriter(stdout)
	var q *eventQueue
	if *withEvents {
		q = subscribe(ctx, *netns, *eventBuf, stderr)
	}
	var tick <-chan time.Time
	if *interval > 0 {
		t := time.NewTicker(*interval)
		defer t.Stop()
		tick = t.C
	}
	var (
		overflows   int // since the last snapshot
		overflowMsg time.Time
	)
	// writeEvents writes the destroyed records received so far. It runs
	// before every dump, so that a notification never comes after a dump
	// that began later than it, and before sockdump ends.
	writeEvents := func() error {
		for _, b := range q.take() {
			if b.overflow {
				overflows++
				// One line a minute at most: a burst would otherwise
				// flood stderr; the snapshot records carry the count.
				if now := time.Now(); now.Sub(overflowMsg) >= time.Minute {
					overflowMsg = now
					fmt.Fprintf(stderr, "sockdump: destroy notifications lost: the receive buffer was full (counted in the snapshot records' event_overflows); raise --event-buffer\n")
				}
			}
			if b.err != nil {
				fmt.Fprintf(stderr, "sockdump: %v\n", b.err)
			}
			for i := range b.socks {
				if err := out.Write(d.Destroyed(&b.socks[i], b.at)); err != nil {
					return err
				}
			}
		}
		return out.Flush()
	}
	for n := 1; ; n++ {
		if err := writeEvents(); err != nil {
			return err
		}
		if err := d.Snapshot(out.Write, overflows); err != nil {
			return exitError(err)
		}
		overflows = 0
		if err := out.Flush(); err != nil {
			return err
		}
		if *count > 0 && n >= *count {
			return writeEvents()
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return writeEvents()
			case <-tick:
				break wait
			case <-q.readyChan():
				if err := writeEvents(); err != nil {
					return err
				}
			}
		}
	}
}

// eventBatch is what one receive from the destroy groups gave.
type eventBatch struct {
	at       time.Time
	socks    []inetdiag.Socket
	overflow bool
	err      error // a message that did not decode
}

// maxQueued bounds the notifications waiting to be written (about 200
// bytes each): beyond it they are counted as lost, like a kernel overflow.
const maxQueued = 1 << 20

// eventQueue holds the notifications that the receiving goroutine read
// and the main loop has not written yet. The receiver never waits for the
// main loop, which may be busy writing a large snapshot: it keeps draining
// the kernel's buffer into the queue.
type eventQueue struct {
	mu      sync.Mutex
	batches []eventBatch
	queued  int
	ready   chan struct{} // a token when batches is not empty
}

func (q *eventQueue) push(b eventBatch) {
	q.mu.Lock()
	if q.queued+len(b.socks) > maxQueued {
		b = eventBatch{at: b.at, overflow: true}
	}
	q.queued += len(b.socks)
	q.batches = append(q.batches, b)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// take returns the queued batches, oldest first; nil on a nil queue.
func (q *eventQueue) take() []eventBatch {
	if q == nil {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	b := q.batches
	q.batches, q.queued = nil, 0
	return b
}

// readyChan returns the channel that signals queued batches; nil (never
// ready) on a nil queue.
func (q *eventQueue) readyChan() <-chan struct{} {
	if q == nil {
		return nil
	}
	return q.ready
}

// subscribe starts receiving destroy notifications in the background. If
// the kernel refuses, it says so once on stderr and returns nil: sockdump
// goes on polling.
func subscribe(ctx context.Context, netns string, bufBytes int, stderr io.Writer) *eventQueue {
	ev, joined, err := subscribeIn(netns, bufBytes)
	if err != nil {
		fmt.Fprintf(stderr, "sockdump: --events: no destroy notifications (%v); going on with polling only\n", err)
		return nil
	}
	if len(joined) < 2 {
		fmt.Fprintf(stderr, "sockdump: --events: destroy notifications for %s only\n", joined[0])
	}
	q := &eventQueue{ready: make(chan struct{}, 1)}
	go func() {
		defer ev.Close()
		go func() { <-ctx.Done(); ev.Close() }()
		for {
			socks, err := ev.Receive()
			b := eventBatch{at: time.Now(), socks: socks}
			switch {
			case errors.Is(err, inetdiag.ErrOverflow):
				b.overflow = true
			case err != nil && socks == nil:
				if ctx.Err() == nil {
					fmt.Fprintf(stderr, "sockdump: --events: %v; going on with polling only\n", err)
				}
				return
			default:
				b.err = err
			}
			q.push(b)
		}
	}()
	return q
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

	socks     []entry        // reused between snapshots
	byCookie  map[uint64]int // index of socks by cookie, built when first needed
	listeners Listeners
	// listenersAt is when listeners were last read, by a dump or a refresh.
	listenersAt time.Time
	ips         map[ipKey]string // text of addresses seen, bounded
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
func (d *Dumper) Snapshot(write func([]byte) error, overflows int) error {
	start := d.now()
	d.listenersAt = start
	if d.socks == nil {
		// Sized once from the kernel's count: growing the slice by
		// doubling would copy and fault in twice the memory.
		d.socks = make([]entry, 0, socketCountHint())
	}
	d.socks = d.socks[:0]
	d.byCookie = nil
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
		Type:           record.TypeSnapshot,
		Time:           start,
		Schema:         record.SchemaVersion,
		Sockets:        len(d.socks),
		Duration:       took,
		EventOverflows: overflows,
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
	// A closed listener or bound-only socket has no remote end at all; a
	// wiped connection keeps its remote address.
	unconnected := s.DstPort == 0 && s.Dst.IsUnspecified()
	wiped := s.DstPort == 0 && !unconnected
	if wiped {
		s.Info = nil
		if e, ok := d.lookupCookie(s.Cookie); ok && e.srcPort == s.SrcPort {
			s.Src, s.Dst, s.DstPort = addr(e.family, e.src), addr(e.family, e.dst), e.dstPort
		}
	}
	var r record.Record
	d.Record(s, t, &r)
	if unconnected {
		if _, ok := d.listeners[listenKey{s.Src, s.SrcPort}]; ok {
			r.Direction = record.DirectionListening
		}
	} else if r.Direction == record.DirectionEgress && d.refreshListeners(t) {
		// A listener opened since the last dump would make this egress
		// socket an accepted one: look again, at most every 100 ms.
		r.Direction = d.listeners.Direction(s)
	}
	r.Type = record.TypeDestroyed
	r.HasUID, r.UID = false, 0
	if ti := s.Info; ti != nil {
		r.Info = &record.TCPInfo{
			BytesAcked: ti.BytesAcked, BytesReceived: ti.BytesRecv,
			BytesSent: ti.BytesSent, BytesRetrans: ti.BytesRetrans,
			SegsOut: ti.SegsOut, SegsIn: ti.SegsIn, TotalRetrans: ti.TotalRetrans,
			RTTMicros: uint32(ti.RTT / time.Microsecond),
		}
	}
	return d.enc.Encode(&r)
}

// socketCountHint estimates how many TCP sockets a dump will list, from
// /proc/net/sockstat{,6} ("TCP: inuse N … tw M"), with some room; 0 when
// it cannot tell. It is only a hint: the namespace may differ (--netns).
func socketCountHint() int {
	n := 0
	for _, f := range []string{"/proc/net/sockstat", "/proc/net/sockstat6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0
		}
		for _, line := range strings.Split(string(b), "\n") {
			fields := strings.Fields(line)
			if len(fields) == 0 || (fields[0] != "TCP:" && fields[0] != "TCP6:") {
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
// of the last full dump, at most once every 100 ms; it reports whether it
// did.
func (d *Dumper) refreshListeners(now time.Time) bool {
	if now.Sub(d.listenersAt) < 100*time.Millisecond {
		return false
	}
	d.listenersAt = now
	for _, fam := range []uint8{inetdiag.AFInet, inetdiag.AFInet6} {
		if err := d.conn.Dump(fam, 1<<inetdiag.StateListen, func(s *inetdiag.Socket) error {
			d.listeners.Add(s)
			return nil
		}); err != nil {
			return false
		}
	}
	return true
}

// lookupCookie finds a socket of the last dump by its cookie.
func (d *Dumper) lookupCookie(c uint64) (entry, bool) {
	if c == 0 {
		return entry{}, false
	}
	if d.byCookie == nil {
		d.byCookie = make(map[uint64]int, len(d.socks))
		for i := range d.socks {
			d.byCookie[d.socks[i].cookie] = i
		}
	}
	i, ok := d.byCookie[c]
	if !ok {
		return entry{}, false
	}
	return d.socks[i], true
}

// subscribeIn subscribes to destroy notifications inside the network
// namespace at path, or the current one.
func subscribeIn(path string, bufBytes int) (*inetdiag.Events, []string, error) {
	if path == "" {
		return inetdiag.Subscribe(bufBytes)
	}
	var (
		ev     *inetdiag.Events
		joined []string
	)
	err := inNetNS(path, func() error {
		var err error
		ev, joined, err = inetdiag.Subscribe(bufBytes)
		return err
	})
	return ev, joined, err
}

// nsInode returns the inode of a namespace file, or 0.
func nsInode(path string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0
	}
	return st.Ino
}

// dialIn opens the netlink socket inside the network namespace at path.
func dialIn(path string) (*inetdiag.Conn, error) {
	var conn *inetdiag.Conn
	err := inNetNS(path, func() error {
		var err error
		conn, err = inetdiag.Dial()
		return err
	})
	return conn, err
}

// inNetNS runs fn on a thread inside the network namespace at path: a
// socket belongs to the namespace it was created in, so the thread
// enters the namespace, fn creates its sockets, and the thread comes back.
func inNetNS(path string, fn func() error) error {
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open network namespace: %w", err)
	}
	defer unix.Close(target)
	runtime.LockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open current network namespace: %w", err)
	}
	defer unix.Close(orig)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		if errors.Is(err, unix.EPERM) {
			return fmt.Errorf("enter network namespace %s (CAP_SYS_ADMIN is needed): %w", path, inetdiag.ErrPermission)
		}
		if errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("enter network namespace: %s is not a network namespace", path)
		}
		return fmt.Errorf("enter network namespace %s: %w", path, err)
	}
	fnErr := fn()
	if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
		// The thread is stuck in the other namespace: it stays locked, so
		// the runtime retires it with this goroutine.
		return fmt.Errorf("return from network namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return fnErr
}
