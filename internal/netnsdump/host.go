// Package netnsdump dumps the TCP and UDP sockets of one network
// namespace, or of every network namespace of the host, into socket and
// snapshot records, and with destroy notifications streams the sockets
// the kernel destroys as destroyed records, with their owners from the
// kernel's owner table. It is the domain of the sockdump program.
package netnsdump

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockpipe/sockpipe/internal/inetdiag"
	"github.com/sockpipe/sockpipe/internal/ownertable"
	"github.com/sockpipe/sockpipe/internal/record"
	"github.com/sockpipe/sockpipe/internal/socktable"
)

// Config is what a Host is told: what to dump besides its first
// namespace, and its outside inputs. Zero fields take their defaults.
type Config struct {
	// Protocols are those to dump in the namespaces a Host enters, and
	// to subscribe to (inetdiag.ProtoTCP, inetdiag.ProtoUDP); the first
	// namespace's dumper has its own.
	Protocols []uint8
	// All makes every Snapshot find the host's network namespaces (those
	// of the processes under ProcRoot and those pinned under PinDirs)
	// and dump them all.
	All      bool
	ProcRoot string
	// Interval is the period written in the snapshot records; 0 for none.
	Interval time.Duration
	// EventBuffer is the receive buffer of each namespace's destroy
	// notifications, in bytes.
	EventBuffer int
	// Stderr is where problems are reported, each once; nil discards them.
	Stderr io.Writer
	// Now is the clock of the records, called from the goroutines that
	// receive destroy notifications too; nil is time.Now.
	Now func() time.Time
	// ListenerRefresh is how long after a dump, at the least, a destroy
	// notification that no listener explains makes the dumper read the
	// listeners again, and how long between two such reads;
	// 0 is DefaultListenerRefresh.
	ListenerRefresh time.Duration
	// NoWalk makes Config.All dump every namespace with netlink, without
	// the one walk of every namespace's TCP sockets (Host.walk).
	NoWalk bool
}

// DefaultListenerRefresh is Config.ListenerRefresh by default.
const DefaultListenerRefresh = 100 * time.Millisecond

// Host is what sockdump dumps: one network namespace, or with Config.All
// every one it finds, each with its own dumper (listeners and direction
// are per namespace) and, once Subscribe was called, its own subscription
// (the kernel sends a namespace's destroy notifications only to sockets
// in it).
type Host struct {
	c      Config
	q      *eventQueue // nil without Subscribe
	owners *owners     // nil without Subscribe or the owner table

	self  *namespace   // sockdump's own namespace, or that of --netns
	nss   []*namespace // every namespace dumped: self first, then by inode
	byIno map[uint64]*namespace
	// failed holds the namespaces that could not be entered for want of
	// privilege: each is named once on stderr and not tried again.
	failed   map[uint64]bool
	dumpSaid map[uint64]bool // namespaces whose failed dump was reported
	skipped  int             // namespaces found by the last refresh but not dumped
	said     said

	// walker lists every namespace's TCP sockets at once (with All);
	// walkFailed is set once it could not load, walkSaid once a walk
	// failed; walkedNS are the namespaces of the last snapshot that took
	// the walk's sockets.
	walker     *socktable.Walker
	walkFailed bool
	walkSaid   bool
	walkedNS   []uint64
	walkMin    int // the fewest namespaces that a snapshot walks for

	overflows   int       // notifications lost since the last snapshot
	overflowMsg time.Time // when their loss was last reported
}

// said records which problems, each reported once, were reported.
type said struct {
	denied bool // processes whose namespace could not be read
	find   bool // a failure to list processes
}

// NewHost returns a host that dumps with d, which was opened by path (""
// for the current namespace), and with Config.All every other namespace
// it finds. Close closes d.
func NewHost(d *Dumper, path string, c Config) *Host {
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ListenerRefresh == 0 {
		c.ListenerRefresh = DefaultListenerRefresh
	}
	if c.Stderr == nil {
		c.Stderr = io.Discard
	}
	h := &Host{c: c, failed: map[uint64]bool{}, dumpSaid: map[uint64]bool{}, walkMin: defaultWalkMin}
	h.self = &namespace{d: d, path: path}
	h.adopt(d)
	h.nss = []*namespace{h.self}
	h.byIno = map[uint64]*namespace{d.netns: h.self}
	return h
}

// adopt gives d the host's settings.
func (h *Host) adopt(d *Dumper) {
	d.listenerRefresh = h.c.ListenerRefresh
	d.owners = h.owners
}

// Subscribe subscribes to the destroy notifications of the first
// namespace (and of every one entered later), and unless noOwners loads
// the kernel's owner table. Where the kernel refuses, it says so on
// stderr and the host goes on with dumps only. The subscriptions end
// with ctx, or with Close.
func (h *Host) Subscribe(ctx context.Context, noOwners bool) error {
	h.q = &eventQueue{ready: make(chan struct{}, 1)}
	fd := 0
	if h.self.path != "" {
		var err error
		if fd, err = openNS(h.self.path); err != nil {
			return err
		}
	}
	var err error
	h.self.sub, err = h.q.subscribe(ctx, fd, h.self.d, h.c.Protocols, h.c.EventBuffer, h.c.Now, h.c.Stderr)
	if fd != 0 {
		unix.Close(fd)
	}
	if err != nil {
		fmt.Fprintf(h.c.Stderr, "sockdump: --events: no destroy notifications (%v); going on with polling only\n", err)
		h.q = nil
	}
	if !noOwners {
		h.owners = openOwners(ownertable.Options{}, h.c.Stderr)
		h.self.d.owners = h.owners
	}
	return nil
}

// Ready returns a channel that receives when destroy notifications wait
// to be written by WriteEvents; nil (never ready) without Subscribe.
func (h *Host) Ready() <-chan struct{} { return h.q.readyChan() }

// WriteEvents writes the destroyed records received so far, then flushes
// out. It must run before every dump, so that a notification never comes
// after a dump that began later than it, and before the end.
func (h *Host) WriteEvents(out Output) error {
	for _, b := range h.q.take() {
		if b.overflow {
			h.overflows++
			// One line a minute at most: a burst would otherwise
			// flood stderr; the snapshot records carry the count.
			if now := h.c.Now(); now.Sub(h.overflowMsg) >= time.Minute {
				h.overflowMsg = now
				fmt.Fprintf(h.c.Stderr, "sockdump: destroy notifications lost: the receive buffer was full (counted in the snapshot records' event_overflows); raise --event-buffer\n")
			}
		}
		if b.err != nil {
			fmt.Fprintf(h.c.Stderr, "sockdump: %v\n", b.err)
		}
		for i := range b.socks {
			if err := out.Write(b.d.Destroyed(&b.socks[i], b.at)); err != nil {
				return err
			}
		}
	}
	return out.Flush()
}

// Output is where a host writes its records, one line a Write.
type Output interface {
	Write(line []byte) error
	Flush() error
}

// Lines is an Output that hands each line to a function, and has nothing
// to flush.
type Lines func(line []byte) error

// Write calls f.
func (f Lines) Write(line []byte) error { return f(line) }

// Flush does nothing.
func (Lines) Flush() error { return nil }

// namespace is one network namespace being dumped.
type namespace struct {
	d    *Dumper
	path string        // the file it was opened by
	sub  *subscription // nil without Subscribe
}

func (n *namespace) close() {
	if n.sub != nil {
		n.sub.close()
	}
	n.d.Close()
}

// Close closes every namespace's sockets and the owner table.
func (h *Host) Close() {
	for _, n := range h.nss {
		n.close()
	}
	h.owners.Close()
	if h.walker != nil {
		h.walker.Close()
	}
}

// Snapshot dumps every namespace, writes their socket records and then one
// snapshot record for the whole set, with the count of notifications lost
// since the last one. A namespace other than the first that fails to
// dump is reported on stderr and counted as skipped. Namespaces entered
// subscribe until ctx ends.
func (h *Host) Snapshot(ctx context.Context, out Output) error {
	start := h.c.Now()
	if h.c.All {
		h.refresh(ctx)
		h.walk()
	}
	skipped := h.skipped
	ok := make([]bool, len(h.nss))
	failed := false
	for i, n := range h.nss {
		// Destroy notifications received so far are written before the
		// namespace is dumped again: their direction and addresses come
		// from the dump that held their sockets.
		if h.q != nil {
			if err := h.WriteEvents(out); err != nil {
				return err
			}
		}
		if err := n.d.collect(start); err != nil {
			if n == h.self {
				return err
			}
			if !h.dumpSaid[n.d.netns] {
				h.dumpSaid[n.d.netns] = true
				fmt.Fprintf(h.c.Stderr, "sockdump: network namespace net:[%d] (%s): %v; skipped, and entered again at the next dump\n", n.d.netns, n.path, err)
			}
			// Its socket may be out of step with the kernel: open
			// another at the next refresh.
			h.drop(n)
			failed = true
			skipped++
			continue
		}
		if n.d.Warning != nil {
			fmt.Fprintf(h.c.Stderr, "sockdump: network namespace net:[%d]: %v\n", n.d.netns, n.d.Warning)
			n.d.Warning = nil
		}
		ok[i] = true
	}
	took := h.c.Now().Sub(start)
	h.owners.drainFresh()
	snap := record.Record{
		Type:           record.TypeSnapshot,
		Time:           start,
		Schema:         record.SchemaVersion,
		Duration:       took,
		Interval:       h.c.Interval,
		EventOverflows: h.overflows,
	}
	for i, n := range h.nss {
		if !ok[i] {
			continue
		}
		if err := n.d.writeRecords(out.Write, start); err != nil {
			return err
		}
		snap.Sockets += len(n.d.socks)
		snap.Namespaces++
	}
	h.owners.endDump()
	if !h.c.All {
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
	h.overflows = 0
	return out.Write(h.self.d.enc.Encode(&snap))
}

// refresh finds the host's network namespaces, opens those it has not
// seen (and subscribes in them, with --events), and drops those gone.
func (h *Host) refresh(ctx context.Context) {
	found, denied, err := findNamespaces(h.c.ProcRoot, PinDirs)
	if err != nil && !h.said.find {
		h.said.find = true
		fmt.Fprintf(h.c.Stderr, "sockdump: --all-netns: %v; dumping the namespaces found so far\n", err)
	}
	if len(denied) > 0 && !h.said.denied {
		h.said.denied = true
		ptrace, _ := hasPtrace()
		fmt.Fprintf(h.c.Stderr, "sockdump: --all-netns: %s; sockets in namespaces that only they hold are missing\n", deniedMessage(denied, ptrace))
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
		n, err := h.enter(ctx, f)
		if errors.Is(err, errGone) {
			continue // its process exited since the scan: the next one will tell
		}
		if err != nil {
			h.skipped++
			if errors.Is(err, inetdiag.ErrPermission) {
				h.failed[f.ino] = true
			}
			fmt.Fprintf(h.c.Stderr, "sockdump: --all-netns: skipped network namespace net:[%d] (%s): %v\n", f.ino, f.path, err)
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
func (h *Host) drop(n *namespace) {
	n.close()
	delete(h.byIno, n.d.netns)
}

// errGone: the file that named a namespace names it no longer (its
// process exited, or its pid names another process now).
var errGone = errors.New("namespace file gone")

// enter opens a dumper inside the namespace f and, with --events,
// subscribes to its destroy notifications.
func (h *Host) enter(ctx context.Context, f nsFile) (*namespace, error) {
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
	n := &namespace{d: NewDumper(conn, f.ino, h.c.Protocols), path: f.path}
	h.adopt(n.d)
	n.d.sockstat = ""
	if f.proc != "" {
		n.d.sockstat = f.proc + "/net"
	}
	if h.q != nil {
		if n.sub, err = h.q.subscribe(ctx, fd, n.d, h.c.Protocols, h.c.EventBuffer, h.c.Now, io.Discard); err != nil {
			fmt.Fprintf(h.c.Stderr, "sockdump: --events: no destroy notifications in network namespace net:[%d] (%s): %v; polling it only\n", f.ino, f.path, err)
		}
	}
	return n, nil
}

// deniedMessage says which processes' network namespaces could not be
// read, naming a few, and blames CAP_SYS_PTRACE only when it is not held:
// with it, what is left is what even root may not read (such as pid 1 of
// a sandbox).
func deniedMessage(pids []int, ptrace bool) string {
	const most = 3
	names := make([]string, 0, most)
	for _, pid := range pids[:min(len(pids), most)] {
		names = append(names, strconv.Itoa(pid))
	}
	list := strings.Join(names, ", ")
	if len(pids) > most {
		list += fmt.Sprintf(" and %d more", len(pids)-most)
	}
	what := "process"
	if len(pids) > 1 {
		what = "processes"
	}
	why := "permission denied"
	if !ptrace {
		why += "; reading other users' /proc/PID/ns/net needs CAP_SYS_PTRACE"
	}
	return fmt.Sprintf("could not read the network namespace of %s %s (%s)", what, list, why)
}

// hasPtrace reports whether CAP_SYS_PTRACE is in the effective set.
func hasPtrace() (bool, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false, err
	}
	return data[0].Effective&(1<<unix.CAP_SYS_PTRACE) != 0, nil
}
