// Package sockproc implements the sockproc program: it adds to each socket
// record the process that holds the socket open, the container that
// process runs in, and the user that owns the socket.
package sockproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"

	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/proctable"
	"github.com/sockpipe/sockpipe/internal/record"
	"github.com/sockpipe/sockpipe/internal/sockfiles"
	"github.com/sockpipe/sockpipe/internal/stage"
	"github.com/sockpipe/sockpipe/internal/userdb"
)

const synopsis = "sockproc [--proc DIR] [--passwd FILE] [--nss] [--strict] [--stats]"

var about = `Input: NDJSON socket records (sockdump, sockdiff). Records of other types,
and every member that sockproc does not set, pass through unchanged.

Output: the same records; each socket record gets
  "process": {"pid":42,"ppid":1,"name":"nginx","executable":"/usr/sbin/nginx",
              "args":["nginx","-g","daemon off;"],"cmdline":"nginx -g daemon off;",
              "start":"2026-11-26T04:00:00Z"}
    the process that holds the socket open, found through /proc/PID/fd;
    when several do (after fork), the one that started first, and among
    those started in the same clock tick the lowest pid. A socket that no
    process holds any more (no inode: destroyed, closing, time-wait) and
    whose record has an "owner" (sockdump --events) gets its owner's
    process: from /proc while it lives (the same pid and start time, so a
    reused pid is never taken for it), else the pid, name and start that
    the owner table recorded; an owner "via":"listener" is found by the
    listener's inode;
  "process_error": "process not found. inode=N, tcp_state=STATE"
    when sockproc can see every process and none holds the socket, or
    "process has exited. inode=0, tcp_state=STATE" for a socket that
    has no inode and no known owner (closing, time-wait, or a syn-recv
    request socket), in the original metricset's words: STATE as it
    names the states (ESTAB, SYN-SENT, SYN-RECV, FIN-WAIT-1, FIN-WAIT-2,
    TIME-WAIT, UNCONN for closed, CLOSE-WAIT, LAST-ACK, LISTEN, CLOSING),
    not as the record's "state" does; never on "closed" events, nor when
    the owner's process is written;
  "user": {"id":"1000","name":"jaime","full_name":"Jaime Soriano Pastor"}
    the socket's owner uid (for a socket without inode, its "owner"'s
    uid), with the login name and the GECOS full name from the passwd
    file; uid 0 is always "root" (name and full name, as in the
    original); unknown uids keep only "id";
  "container": {"id":"9e1987cf07ac…"}
    when the process was found and runs in a container: the container's
    64-hex-digit id, from /proc/PID/cgroup (read once per process), for
    Docker, containerd and CRI-O (Kubernetes), Podman and runtimes that
    name their cgroups the same way, under cgroup v1 and v2; the innermost
    when containers are nested; none for conmon, which runs outside the
    container it monitors. An input container is kept, its id replaced.
Output is flushed at each snapshot record and whenever input pauses.

Cost: /proc/PID/fd of every process is walked once at start (while the
stages before are still dumping), then only when a socket arrives whose
inode is not already known, at most once per snapshot; the inode index
and the process details are cached. After sockdiff, a host with no
new sockets costs no /proc read at all. --stats shows the counts.

Privileges: CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH in the effective set to
see every process (root has both, except in containers that drop
CAP_SYS_PTRACE, as Docker does by default). Without them, only the processes that this user may trace
are seen: a warning is written once at start, and sockets of other users
get neither a process nor an error.

With CAP_BPF and CAP_PERFMON as well (root has them), in the host's pid
namespace, the sockets of every process are listed by the kernel's
task_file iterator in one pass, about eight times cheaper than reading
every /proc/PID/fd link (100,000 sockets of 100 processes: a 70 ms walk
instead of 550 ms); where it cannot load, a line on stderr says why and
the links are read.

In a container: mount the host's /proc and point --proc at it, with both
capabilities, e.g. docker run --pid=host --cgroupns=host
-v /proc:/host/proc:ro --cap-add SYS_PTRACE --cap-add DAC_READ_SEARCH
... sockproc --proc /host/proc. Without --cgroupns=host, the processes of
sockproc's own container get no container (their cgroup is "/" from
inside); other containers are still named.

Exit codes:
  0  success, or stopped by SIGINT/SIGTERM or a closed stdout
  1  failure: I/O, an unreadable --proc, a bad line under --strict
  2  bad flags
`

// maxLine is the longest input line accepted.
const maxLine = 1 << 20

// Env holds what Run takes from outside. The zero value uses the real
// ones.
type Env struct {
	// Privileged reports whether sockproc may read every process's
	// file descriptors; default proctable.Privileged.
	Privileged func() (bool, error)
	// Geteuid returns the uid whose processes an unprivileged sockproc
	// sees; default os.Geteuid.
	Geteuid func() int
	// NSS looks up, with --nss, the uids not in --passwd; default
	// user.LookupId.
	NSS userdb.Lookuper
	// SocketFiles opens the kernel's list of every process's socket
	// files, read instead of each /proc/PID/fd link; default
	// sockfiles.Open. No Lister and no error: the links are read, and
	// nothing is said.
	SocketFiles func(procRoot string) (*sockfiles.Lister, error)
}

// Run is the sockproc program with the real privileges, kernel and user
// database.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return Env{}.Run(ctx, args, stdin, stdout, stderr)
}

// Run is the sockproc program.
func (e Env) Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if e.Privileged == nil {
		e.Privileged = proctable.Privileged
	}
	if e.Geteuid == nil {
		e.Geteuid = os.Geteuid
	}
	if e.NSS == nil {
		e.NSS = user.LookupId
	}
	if e.SocketFiles == nil {
		e.SocketFiles = sockfiles.Open
	}
	fs := cli.FlagSet("sockproc", synopsis, about, stderr)
	procRoot := fs.String("proc", proctable.DefaultRoot, "read processes from the proc filesystem mounted at `DIR` (a host's /proc seen from a container)")
	passwd := fs.String("passwd", userdb.DefaultPath, "resolve uids with the passwd `FILE`")
	nss := fs.Bool("nss", false, "also ask the system's user database (NSS: LDAP, sssd; needs a cgo build) about uids not in --passwd")
	strict := fs.Bool("strict", false, "stop at the first bad input line (exit 1) instead of reporting and skipping it")
	stats := fs.Bool("stats", false, "write on stderr, at each snapshot and at the end, what was looked up and read from /proc")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}

	tab, err := proctable.New(*procRoot)
	if err != nil {
		return fmt.Errorf("--proc: %w", err)
	}
	privileged, err := e.Privileged()
	if err != nil {
		fmt.Fprintf(stderr, "sockproc: warning: cannot read own capabilities: %v\n", err)
	}
	if !privileged {
		fmt.Fprintf(stderr, "sockproc: warning: without CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, attribution is limited to the processes of uid %d; other sockets get no process and no error\n", e.Geteuid())
	}
	if l, err := e.SocketFiles(*procRoot); err != nil && privileged {
		// (Without privileges, the warning above says more.)
		fmt.Fprintf(stderr, "sockproc: reading /proc/PID/fd links, without the kernel's socket file iterator: %v\n", err)
	} else if err == nil && l != nil {
		defer l.Close()
		tab.SocketFiles = func(fn func(pid int, inode uint64)) error {
			return l.List(func(f sockfiles.File) { fn(f.PID, f.Inode) })
		}
	}
	var fallback userdb.Lookuper
	if *nss {
		fallback = e.NSS
	}
	users := userdb.New(*passwd, fallback)
	users.Warn = func(err error) {
		fmt.Fprintf(stderr, "sockproc: warning: user names unavailable: %v\n", err)
	}

	out := stage.NewOutput(stdout)
	// The table's processes and containers, and p.user's users, are
	// shared by their sockets' records and never changed.
	out.RememberShared()
	in := stage.NewInput(ctx, stdin, maxLine)
	in.Reuse = true   // each record is written before the next line is read
	in.Recycle = true // and so is its line
	in.Name, in.Stderr, in.Strict, in.Wait = "sockproc", stderr, *strict, out.Flush

	p := &processor{tab: tab, users: users, privileged: privileged}
	var last proctable.Stats
	sockets, total := 0, 0
	saidIter := false
	report := func(what string) {
		s := tab.Stats()
		fmt.Fprintf(stderr, "sockproc: stats: %s sockets=%d %v\n", what, sockets, s.Sub(last))
		last, sockets = s, 0
	}
	// The first walk of the processes begins at once, while the stages
	// before this one are still dumping, rather than at the first socket.
	walked := make(chan struct{})
	go func() {
		defer close(walked)
		tab.Walk()
	}()
	for {
		line, err := in.Next()
		if walked != nil {
			<-walked
			walked = nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			ferr := out.Flush()
			if *stats {
				report("end")
				fmt.Fprintf(stderr, "sockproc: stats: total sockets=%d %v\n", total, tab.Stats())
			}
			if err == nil {
				err = ferr
			}
			return err
		}
		r := line.Rec
		switch r.Type {
		case record.TypeSocket:
			sockets++
			total++
			// sockproc's members are the last of a socket record's:
			// the line as read, with them appended, unless it has
			// some already.
			free := procTail.FreeOf(r, in.Nulls())
			p.socket(r)
			if free {
				err = out.Tail(line.Raw, r, procTail)
			} else {
				err = out.Record(r)
			}
		case record.TypeSnapshot:
			if err := tab.SocketFilesErr; err != nil && !saidIter {
				saidIter = true
				fmt.Fprintf(stderr, "sockproc: reading /proc/PID/fd links instead of the kernel's socket file iterator, which failed: %v\n", err)
			}
			p.endSnapshot()
			if err = out.Raw(line.Raw); err == nil {
				err = out.Flush()
			}
			if *stats {
				report("snapshot=" + r.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
			}
		default:
			err = out.Raw(line.Raw)
		}
		if err != nil {
			return err
		}
	}
}

// procTail is the members that sockproc adds to a socket record.
var procTail = codec.TailFrom("process")

// processor enriches socket records.
type processor struct {
	tab        *proctable.Table
	users      *userdb.DB
	privileged bool
	// byUID are the user objects made since the users were last
	// refreshed: a record's user is written, not changed, so records of
	// one uid share one.
	byUID map[uint32]*record.User
}

func (p *processor) endSnapshot() {
	p.tab.EndSnapshot()
	p.users.Refresh()
	clear(p.byUID)
}

// user returns the user object of uid.
func (p *processor) user(uid uint32) *record.User {
	if u := p.byUID[uid]; u != nil {
		return u
	}
	if p.byUID == nil || len(p.byUID) >= maxUsers {
		p.byUID = make(map[uint32]*record.User)
	}
	e, _ := p.users.Lookup(uid)
	u := &record.User{ID: strconv.FormatUint(uint64(uid), 10), Name: e.Name, FullName: e.FullName}
	p.byUID[uid] = u
	return u
}

// maxUsers bounds processor.byUID; past it, it starts afresh.
const maxUsers = 4096

// socket adds the process and the user to a socket record.
func (p *processor) socket(r *record.Record) {
	if r.HasUID {
		r.User = p.user(r.UID)
	}
	closed := r.Event == record.EventClosed
	proc, ctr := p.tab.Owner(r.Inode, r.Time, !closed)
	if o := r.Owner; proc == nil && o != nil {
		// No process holds the socket's file any more: the owner table
		// says who made it. The kernel reports a closing socket's uid
		// as 0; the owner's is the socket's.
		if r.Inode == 0 || !r.HasUID {
			r.User = p.user(o.UID)
		}
		if o.Via == record.OwnerListener {
			// An accepted connection: the process of its listener, if
			// it still holds it.
			proc, ctr = p.tab.Owner(o.Inode, r.Time, !closed)
		} else if proc, ctr = p.tab.Process(o.PID, o.Start); proc == nil {
			// Gone (or its pid reused by another process): what the
			// table recorded is all there is.
			r.Process, r.ProcessError = &record.Process{PID: o.PID, Name: o.Name, Start: o.Start}, ""
			return
		}
	}
	if proc != nil {
		r.Process, r.ProcessError = proc, ""
		switch {
		case ctr == nil:
		case r.Container == nil:
			r.Container = ctr
		default:
			// Members added upstream stay; the container is the record's own.
			r.Container.ID = ctr.ID
		}
		return
	}
	if r.Process != nil || closed || !p.privileged {
		return
	}
	r.ProcessError = NotFound(r.Inode, r.State)
}

// NotFound is the process error of a socket that no process holds, in the
// words of the original metricset: a socket without an inode has lost its
// file, and so its process. The state is named as the original names it.
func NotFound(inode uint64, state string) string {
	if inode == 0 {
		return "process has exited. inode=0, tcp_state=" + metricbeatState(state)
	}
	return "process not found. inode=" + strconv.FormatUint(inode, 10) + ", tcp_state=" + metricbeatState(state)
}

// metricbeatStates are the record's state names (ss's) as the original
// metricset writes them (gosigar's, ss's output names): a query on its
// error.code finds ours.
var metricbeatStates = map[string]string{
	"established": "ESTAB",
	"syn-sent":    "SYN-SENT",
	"syn-recv":    "SYN-RECV",
	"fin-wait-1":  "FIN-WAIT-1",
	"fin-wait-2":  "FIN-WAIT-2",
	"time-wait":   "TIME-WAIT",
	"closed":      "UNCONN",
	"close-wait":  "CLOSE-WAIT",
	"last-ack":    "LAST-ACK",
	"listening":   "LISTEN",
	"closing":     "CLOSING",
}

// metricbeatState names a state as the original does; a state it has no
// name for ("unknown-13") is written in its capitals, which keeps the
// number that the original's "UNKNOWN" loses.
func metricbeatState(state string) string {
	if s, ok := metricbeatStates[state]; ok {
		return s
	}
	return strings.ToUpper(state)
}
