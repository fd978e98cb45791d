// Package sockdump implements the sockdump program: it dumps every TCP
// (and on request UDP) socket of a network namespace, or of every network
// namespace of the host, from the kernel and writes one socket record a
// line, then a snapshot record, once or every interval. Its flags and
// wiring are here; the dumps, namespaces and destroy notifications are
// package netnsdump's.
package sockdump

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/inetdiag"
	"github.com/sockpipe/sockpipe/internal/ndjson"
	"github.com/sockpipe/sockpipe/internal/netnsdump"
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
  ls -l /proc/PID/ns/net shows it. A connected UDP socket has state
  "established"; an unconnected one has state "closed" (ss's UNCONN)
  and direction "listening".
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

--all-netns and the cost of many namespaces: by default the kernel keeps
one TCP table (and one UDP table) for every namespace, and a netlink dump
of one walks all of it. As root (or with CAP_BPF and CAP_PERFMON too) in
the host's pid and user namespaces, on a kernel with BTF, sockdump instead
lists the TCP and UDP sockets that processes hold, in every namespace at
once, with one BPF walk of the processes' open files, and takes them for
each namespace where its sockstat counts show the walk missed none
(adding its time-wait and SYN-RECV sockets with a netlink dump of those
states alone); a namespace where it did not is dumped with netlink. Where the walk cannot load, sockdump says so once on stderr
and dumps every namespace with netlink. The records are the same.

Exit codes:
  0  success, or stopped by SIGINT/SIGTERM or a closed stdout
  1  failure (I/O, an unexpected kernel error)
  2  bad flags
  3  permission denied by the kernel or a security policy
  4  the kernel does not support sock_diag dumps (of TCP, or of UDP alone)
`

// Env holds what Run takes from outside. The zero value uses the real
// ones.
type Env struct {
	// Open opens a dumper of the protocols in the network namespace at
	// path, or in the current one when path is empty; default
	// netnsdump.Open. Tests give it a fake kernel.
	Open func(path string, protocols []uint8) (*netnsdump.Dumper, error)
	// Now is the clock of the records; default time.Now.
	Now func() time.Time
	// ListenerRefresh is how often, at most, a destroyed socket that no
	// listener explains makes sockdump read the listeners again; default
	// netnsdump.DefaultListenerRefresh.
	ListenerRefresh time.Duration
}

// Run is the sockdump program with the real kernel and clock.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return Env{}.Run(ctx, args, stdin, stdout, stderr)
}

// Run is the sockdump program.
func (env Env) Run(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := cli.FlagSet("sockdump", synopsis, about, stderr)
	interval := fs.Duration("interval", 0, "dump every `D` (e.g. 1s) until interrupted; 0 dumps once and exits")
	count := fs.Int("count", 0, "with --interval, stop after `N` dumps (0: no limit)")
	netns := fs.String("netns", "", "dump the network namespace at `PATH` (/proc/PID/ns/net, /run/netns/NAME) instead of this process's own")
	allNetNS := fs.Bool("all-netns", false, "dump every network namespace of the host: those of all processes, and those pinned under "+strings.Join(netnsdump.PinDirs, " and "))
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

	if env.Open == nil {
		env.Open = netnsdump.Open
	}
	d, err := env.Open(*netns, protocols)
	if err != nil {
		return exitError(err)
	}
	h := netnsdump.NewHost(d, *netns, netnsdump.Config{
		Protocols: protocols, All: *allNetNS, ProcRoot: *procRoot,
		Interval: *interval, EventBuffer: *eventBuf, Stderr: stderr,
		Now: env.Now, ListenerRefresh: env.ListenerRefresh,
	})
	defer h.Close()

	out := ndjson.NewWriter(stdout)
	if *withEvents {
		if err := h.Subscribe(ctx, *noOwners); err != nil {
			return exitError(err)
		}
	}
	var tick <-chan time.Time
	if *interval > 0 {
		t := time.NewTicker(*interval)
		defer t.Stop()
		tick = t.C
	}
	for n := 1; ; n++ {
		if err := h.WriteEvents(out); err != nil {
			return err
		}
		if err := h.Snapshot(ctx, out); err != nil {
			return exitError(err)
		}
		if err := out.Flush(); err != nil {
			return err
		}
		if *count > 0 && n >= *count {
			return h.WriteEvents(out)
		}
	wait:
		for {
			select {
			case <-ctx.Done():
				return h.WriteEvents(out)
			case <-tick:
				break wait
			case <-h.Ready():
				if err := h.WriteEvents(out); err != nil {
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

func exitError(err error) error {
	switch {
	case errors.Is(err, inetdiag.ErrPermission):
		return cli.Exit(ExitPermission, err)
	case errors.Is(err, inetdiag.ErrUnsupported):
		return cli.Exit(ExitUnsupported, err)
	}
	return err
}
