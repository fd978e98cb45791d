// Package sockdump implements the sockdump program: it dumps every TCP
// (and on request UDP) socket of a network namespace, or of every network
// namespace of the host, from the kernel and writes one socket record a
// line, then a snapshot record, once or every interval.
package sockdump

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/inetdiag"
	"github.com/sockpipe/sockpipe/internal/ndjson"
	"github.com/sockpipe/sockpipe/internal/ownertable"
	"github.com/sockpipe/sockpipe/internal/record"
)

// Exit codes of sockdump, beside cli's.
const (
	ExitPermission  = 3 // the kernel or a policy refused the netlink socket or the dump
	ExitUnsupported = 4 // the kernel cannot dump TCP sockets over sock_diag
)

const synopsis = "sockdump [--interval D [--count N] [--events]] [--udp | --protocols LIST] [--netns PATH | --all-netns]"

var about = `Output (NDJSON on stdout, one object a line, schema version ` + strconv.Itoa(record.SchemaVersion) + `):
  one "socket" record for every TCP socket (and UDP socket with --udp), IPv4
  and IPv6, in every state that ss -a shows (not bound-only TCP sockets,
  which ss shows only with --bound-inactive):
    {"type":"socket","time":…,"family":"ipv4","transport":"tcp","state":"established",
     "local":{"ip":"127.0.0.1","port":22},"remote":{"ip":"127.0.0.1","port":40000},
     "direction":"ingress","inode":12345,"uid":0,"cookie":678,"netns":4026531840}
  "netns" is the inode of the socket's network namespace (net:[INODE]), as
  ls -l /proc/PID/ns/net shows it. A UDP socket's state is "established"
  when connected, else "closed", and an unconnected one is "listening".
  then one "snapshot" record that closes the dump (of every namespace):
    {"type":"snapshot","time":…,"schema":1,"sockets":N,"duration_ns":D}
  with --interval also "interval_ns" (the period, in nanoseconds), with
  --all-netns also "namespaces" (dumped) and "namespaces_skipped"
  (found but not entered: each is named once on stderr, with the reason).
  Output is flushed after each snapshot record.

With --events, also one "destroyed" record for every socket the kernel
destroys, as it happens, with its last counters (tcp_info); see the record
schema (docs/record.md) for its fields and how sockdiff uses it.

Owners: with --events, sockdump also loads the kernel's owner table (eBPF;
root, or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN, and a kernel with BTF),
which records the process (pid, name, start), user and cgroup that made
each socket: TCP ones as they connect (via "connect") or listen ("listen"),
the connections a listener accepts as its listener's ("accept"), and UDP
ones as they are created ("create", where a cgroup v2 hierarchy is
mounted). Records without an inode (destroyed sockets, closing and
time-wait ones), and those of sockets new since the last dump (whose
process may close them before sockproc looks), carry it as "owner":
    "owner":{"pid":4242,"name":"curl","uid":1000,"gid":1000,"start":…,"via":"connect"}
An accepted connection that the table does not know is owned by its
listener, as the last dump saw it ("via":"listener", its "inode" and
"uid"). Without the privileges or BTF, sockdump says once on stderr why
there are no owners and goes on; --no-owners does not load the table. It
holds the latest 65536 sockets, in about 11.3 MiB of locked kernel memory.

Privileges: none to dump every socket of sockdump's own network namespace
and to subscribe to its destroy notifications. --netns needs
CAP_SYS_ADMIN; --all-netns needs CAP_SYS_ADMIN to enter the other
namespaces and CAP_SYS_PTRACE to find those of other users' processes
(without them it dumps what it can, and says what it skipped).

Exit codes:
  0  success, or stopped by SIGINT/SIGTERM or a closed stdout
  1  failure (I/O, an unexpected kernel error)
  2  bad flags
  3  permission denied by the kernel or a security policy
  4  the kernel does not support sock_diag dumps (of TCP, or of UDP alone)
`

// Run is the sockdump program.
func Run(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := cli.FlagSet("sockdump", synopsis, about, stderr)
	interval := fs.Duration("interval", 0, "dump every `D` (e.g. 1s) until interrupted; 0 dumps once and exits")
	count := fs.Int("count", 0, "with --interval, stop after `N` dumps (0: no limit)")
	netns := fs.String("netns", "", "dump the network namespace at `PATH` (/proc/PID/ns/net, /run/netns/NAME) instead of this process's own")
	allNetNS := fs.Bool("all-netns", false, "dump every network namespace of the host: those of all processes, and those pinned under "+strings.Join(PinDirs, " and "))
	procRoot := fs.String("proc", "/proc", "with --all-netns, find processes in the proc filesystem mounted at `DIR` (the host's /proc seen from a container)")
	udp := fs.Bool("udp", false, "dump UDP sockets too (--protocols tcp,udp)")
	protoList := fs.String("protocols", "tcp", "the protocols to dump, a comma-separated `LIST` of tcp and udp")
	withEvents := fs.Bool("events", false, "with --interval, also write a \"destroyed\" record for every socket the kernel destroys, as it happens (Linux 4.2+)")
	noOwners := fs.Bool("no-owners", false, "with --events, do not load the kernel's owner table (see Owners below)")
	eventBuf := fs.Int("event-buffer", 32<<20, "receive buffer for --events, in `bytes`, per namespace (beyond net.core.rmem_max only with CAP_NET_ADMIN)")
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
	if *allNetNS && *netns != "" {
		return cli.UsageError("--netns and --all-netns exclude each other")
	}
	protocols, err := ParseProtocols(*protoList)
	if err != nil {
		return cli.UsageError("%v", err)
	}
	if *udp && !slices.Contains(protocols, inetdiag.ProtoUDP) {
		protocols = append(protocols, inetdiag.ProtoUDP)
	}

	d, err := open(*netns, protocols)
	if err != nil {
		return exitError(err)
	}
	h := &host{
		protocols: protocols, all: *allNetNS, procRoot: *procRoot,
		ctx: ctx, stderr: stderr, eventBuf: *eventBuf, interval: *interval,
		failed: map[uint64]bool{}, dumpSaid: map[uint64]bool{},
	}
	h.self = &namespace{d: d, path: *netns}
	h.nss = []*namespace{h.self}
	h.byIno = map[uint64]*namespace{d.netns: h.self}
	defer h.Close()

	out := ndjson.NewWriter(stdout)
	if *withEvents {
		h.q = &eventQueue{ready: make(chan struct{}, 1)}
		fd := 0
		if *netns != "" {
			if fd, err = openNS(*netns); err != nil {
				return exitError(err)
			}
		}
		h.self.sub, err = h.q.subscribe(ctx, fd, d, protocols, *eventBuf, stderr)
		if fd != 0 {
			unix.Close(fd)
		}
		if err != nil {
			fmt.Fprintf(stderr, "sockdump: --events: no destroy notifications (%v); going on with polling only\n", err)
			h.q = nil
		}
		if !*noOwners {
			h.owners = openOwners(ownertable.Options{}, stderr)
			d.owners = h.owners
		}
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
		for _, b := range h.q.take() {
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
				if err := out.Write(b.d.Destroyed(&b.socks[i], b.at)); err != nil {
					return err
				}
			}
		}
		return out.Flush()
	}
	if h.q != nil {
		h.flush = writeEvents
	}
	for n := 1; ; n++ {
		if err := writeEvents(); err != nil {
			return err
		}
		if err := h.Snapshot(out.Write, overflows); err != nil {
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
			case <-h.q.readyChan():
				if err := writeEvents(); err != nil {
					return err
				}
			}
		}
	}
}

// ParseProtocols parses a comma-separated list of protocol names, tcp and
// udp, into inetdiag protocol numbers, each once, in the order given.
func ParseProtocols(list string) ([]uint8, error) {
	var ps []uint8
	for _, name := range strings.Split(list, ",") {
		var p uint8
		switch strings.TrimSpace(strings.ToLower(name)) {
		case record.TransportTCP:
			p = inetdiag.ProtoTCP
		case record.TransportUDP:
			p = inetdiag.ProtoUDP
		default:
			return nil, fmt.Errorf("--protocols: unknown protocol %q (want tcp, udp)", name)
		}
		if !slices.Contains(ps, p) {
			ps = append(ps, p)
		}
	}
	return ps, nil
}

// host is what sockdump dumps: one network namespace, or with --all-netns
// every one it finds, each with its own dumper (listeners and direction
// are per namespace) and, with --events, its own subscription (the kernel
// sends a namespace's destroy notifications only to sockets in it).
type host struct {
	protocols []uint8
	all       bool
	procRoot  string
	ctx       context.Context
	stderr    io.Writer
	q         *eventQueue // nil without --events
	eventBuf  int
	interval  time.Duration // written in the snapshot records
	owners    *owners       // nil without --events or the owner table

	self  *namespace   // sockdump's own namespace, or that of --netns
	nss   []*namespace // every namespace dumped: self first, then by inode
	byIno map[uint64]*namespace
	// failed holds the namespaces that could not be entered for want of
	// privilege: each is named once on stderr and not tried again.
	failed   map[uint64]bool
	dumpSaid map[uint64]bool // namespaces whose failed dump was reported
	// flush writes the destroyed records received so far; nil without
	// --events.
	flush      func() error
	skipped    int  // namespaces found by the last refresh but not dumped
	deniedSaid bool // whether unreadable processes were reported
	findSaid   bool // whether a failure to list processes was reported
}

// namespace is one network namespace being dumped.
type namespace struct {
	d    *Dumper
	path string        // the file it was opened by
	sub  *subscription // nil without --events
}

func (n *namespace) close() {
	if n.sub != nil {
		n.sub.close()
	}
	n.d.Close()
}

// Close closes every namespace's sockets.
func (h *host) Close() {
	for _, n := range h.nss {
		n.close()
	}
	h.owners.Close()
}

// Snapshot dumps every namespace, writes their socket records and then one
// snapshot record for the whole set. A namespace other than the first
// that fails to dump is reported on stderr and counted as skipped.
func (h *host) Snapshot(write func([]byte) error, overflows int) error {
	start := time.Now()
	if h.all {
		h.refresh()
	}
	skipped := h.skipped
	ok := make([]bool, len(h.nss))
	failed := false
	for i, n := range h.nss {
		// Destroy notifications received so far are written before the
		// namespace is dumped again: their direction and addresses come
		// from the dump that held their sockets.
		if h.flush != nil {
			if err := h.flush(); err != nil {
				return err
			}
		}
		if err := n.d.collect(start); err != nil {
			if n == h.self {
				return err
			}
			if !h.dumpSaid[n.d.netns] {
				h.dumpSaid[n.d.netns] = true
				fmt.Fprintf(h.stderr, "sockdump: network namespace net:[%d] (%s): %v; skipped, and entered again at the next dump\n", n.d.netns, n.path, err)
			}
			// Its socket may be out of step with the kernel: open
			// another at the next refresh.
			h.drop(n)
			failed = true
			skipped++
			continue
		}
		if n.d.Warning != nil {
			fmt.Fprintf(h.stderr, "sockdump: network namespace net:[%d]: %v\n", n.d.netns, n.d.Warning)
			n.d.Warning = nil
		}
		ok[i] = true
	}
	took := time.Since(start)
	h.owners.drainFresh()
	snap := record.Record{
		Type:           record.TypeSnapshot,
		Time:           start,
		Schema:         record.SchemaVersion,
		Duration:       took,
		Interval:       h.interval,
		EventOverflows: overflows,
	}
	for i, n := range h.nss {
		if !ok[i] {
			continue
		}
		if err := n.d.writeRecords(write, start); err != nil {
			return err
		}
		snap.Sockets += len(n.d.socks)
		snap.Namespaces++
	}
	h.owners.endDump()
	if !h.all {
		snap.Namespaces = 0
	}
	snap.NamespacesSkipped = skipped
	if failed {
		kept := h.nss[:0]
		for i, n := range h.nss {
			if ok[i] {
				kept = append(kept, n)
			}
		}
		clear(h.nss[len(kept):])
		h.nss = kept
	}
	return write(h.self.d.enc.Encode(&snap))
}

// refresh finds the host's network namespaces, opens those it has not
// seen (and subscribes in them, with --events), and drops those gone.
func (h *host) refresh() {
	found, denied, err := findNamespaces(h.procRoot, PinDirs)
	if err != nil && !h.findSaid {
		h.findSaid = true
		fmt.Fprintf(h.stderr, "sockdump: --all-netns: %v; dumping the namespaces found so far\n", err)
	}
	if denied > 0 && !h.deniedSaid {
		h.deniedSaid = true
		fmt.Fprintf(h.stderr, "sockdump: --all-netns: could not read the network namespace of %d processes (permission denied; reading other users' /proc/PID/ns/net needs CAP_SYS_PTRACE); sockets in namespaces that only they hold are missing\n", denied)
	}
	present := make(map[uint64]bool, len(found))
	h.skipped = 0
	added := false
	for _, f := range found {
		present[f.ino] = true
		if _, ok := h.byIno[f.ino]; ok {
			continue
		}
		if h.failed[f.ino] {
			h.skipped++
			continue
		}
		n, err := h.enter(f)
		if errors.Is(err, errGone) {
			continue // its process exited since the scan: the next one will tell
		}
		if err != nil {
			h.skipped++
			if errors.Is(err, inetdiag.ErrPermission) {
				h.failed[f.ino] = true
			}
			fmt.Fprintf(h.stderr, "sockdump: --all-netns: skipped network namespace net:[%d] (%s): %v\n", f.ino, f.path, err)
			continue
		}
		h.nss = append(h.nss, n)
		h.byIno[f.ino] = n
		added = true
	}
	if err != nil {
		// A partial list says nothing of the namespaces it missed.
		return
	}
	// Inode numbers are reused once a namespace is freed: forget the
	// failures of those gone.
	for ino := range h.failed {
		if !present[ino] {
			delete(h.failed, ino)
		}
	}
	// A namespace that nothing holds any more is dropped at once: the
	// sockets open in it keep it alive in the kernel (with its devices and
	// addresses) while sockdump holds them. Its subscription is drained
	// first, for the destroy notifications of its last sockets.
	kept := h.nss[:1]
	for _, n := range h.nss[1:] {
		if !present[n.d.netns] {
			h.drop(n)
			continue
		}
		kept = append(kept, n)
	}
	clear(h.nss[len(kept):])
	h.nss = kept
	if added {
		slices.SortFunc(h.nss[1:], func(a, b *namespace) int { return cmp.Compare(a.d.netns, b.d.netns) })
	}
}

// drop closes the namespace n and forgets it; it stays in h.nss until
// the caller removes it.
func (h *host) drop(n *namespace) {
	n.close()
	delete(h.byIno, n.d.netns)
}

// errGone: the file that named a namespace names it no longer (its
// process exited, or its pid names another process now).
var errGone = errors.New("namespace file gone")

// enter opens a dumper inside the namespace f and, with --events,
// subscribes to its destroy notifications.
func (h *host) enter(f nsFile) (*namespace, error) {
	fd, err := openNS(f.path)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
		return nil, errGone
	}
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Ino != f.ino {
		return nil, errGone
	}
	conn, err := dialNS(f.path, fd)
	if err != nil {
		return nil, err
	}
	n := &namespace{d: NewDumper(conn, f.ino, h.protocols), path: f.path}
	n.d.owners = h.owners
	n.d.sockstat = ""
	if f.proc != "" {
		n.d.sockstat = f.proc + "/net"
	}
	if h.q != nil {
		if n.sub, err = h.q.subscribe(h.ctx, fd, n.d, h.protocols, h.eventBuf, io.Discard); err != nil {
			fmt.Fprintf(h.stderr, "sockdump: --events: no destroy notifications in network namespace net:[%d] (%s): %v; polling it only\n", f.ino, f.path, err)
		}
	}
	return n, nil
}

// eventBatch is what one receive from the destroy groups gave.
type eventBatch struct {
	d        *Dumper // of the namespace the notifications came from
	at       time.Time
	socks    []inetdiag.Socket
	overflow bool
	err      error // a message that did not decode
}

// maxQueued bounds the notifications waiting to be written (about 200
// bytes each): beyond it they are counted as lost, like a kernel overflow.
const maxQueued = 1 << 20

// eventQueue holds the notifications that the receiving goroutines read
// and the main loop has not written yet. A receiver never waits for the
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
		b = eventBatch{d: b.d, at: b.at, overflow: true}
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

// subscription is one namespace's destroy notifications, received in the
// background into the queue.
type subscription struct {
	ev      *inetdiag.Events
	done    chan struct{} // closed when the receiver has stopped
	closing atomic.Bool   // set by close: the receiver's error is expected
}

// drainTime is how long close keeps receiving what the kernel has queued.
const drainTime = 20 * time.Millisecond

// close receives what the kernel has already queued (for drainTime at
// most), ends the subscription and waits for its receiver to stop.
func (s *subscription) close() {
	s.closing.Store(true)
	if s.ev.SetReadDeadline(time.Now().Add(drainTime)) != nil {
		s.ev.Close()
	}
	select {
	case <-s.done:
	case <-time.After(drainTime + time.Second):
		s.ev.Close()
		<-s.done
	}
	s.ev.Close()
}

// subscribe joins the destroy groups of the protocols in the namespace of
// the open file netns (0: the current one) and starts receiving them for
// the dumper d in the background. Groups it could not join are named on
// stderr.
func (q *eventQueue) subscribe(ctx context.Context, netns int, d *Dumper, protocols []uint8, bufBytes int, stderr io.Writer) (*subscription, error) {
	ev, joined, err := inetdiag.Subscribe(netns, protocols, bufBytes)
	if err != nil {
		return nil, err
	}
	if len(joined) < 2*len(protocols) {
		fmt.Fprintf(stderr, "sockdump: --events: destroy notifications for %s only\n", strings.Join(joined, ", "))
	}
	s := &subscription{ev: ev, done: make(chan struct{})}
	stop := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			ev.Close()
		case <-stop:
		}
	}()
	go func() {
		defer close(s.done)
		defer close(stop)
		for {
			socks, err := ev.Receive()
			b := eventBatch{d: d, at: time.Now(), socks: socks}
			switch {
			case errors.Is(err, inetdiag.ErrOverflow):
				b.overflow = true
			case err != nil && socks == nil:
				if ctx.Err() == nil && !s.closing.Load() && !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrClosed) {
					fmt.Fprintf(stderr, "sockdump: --events: %v; going on with polling only\n", err)
				}
				return
			default:
				b.err = err
			}
			q.push(b)
		}
	}()
	return s, nil
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

// nsInode returns the inode of a namespace file, or 0.
func nsInode(path string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0
	}
	return st.Ino
}

// openNS opens a namespace file.
func openNS(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			return 0, fmt.Errorf("open network namespace %s (CAP_SYS_PTRACE is needed for other users' processes): %w", path, inetdiag.ErrPermission)
		}
		return 0, fmt.Errorf("open network namespace: %w", err)
	}
	return fd, nil
}

// dialNS opens the netlink socket inside the namespace of the open file
// fd (named path in errors), or in the current one when fd is 0.
func dialNS(path string, fd int) (*inetdiag.Conn, error) {
	conn, err := inetdiag.Dial(fd)
	if err != nil && fd != 0 {
		// Entering the namespace (setns) is what needs privilege; the
		// netlink package reports only the errno.
		if errors.Is(err, inetdiag.ErrPermission) {
			return nil, fmt.Errorf("enter network namespace %s: CAP_SYS_ADMIN is needed: %w", path, inetdiag.ErrPermission)
		}
	}
	return conn, err
}
