// Package sockdiff is the sockdiff program: it reads snapshots of sockets
// (from sockdump) and writes one event per connection that is new and, on
// request, one per connection that is gone. The comparison itself is the
// diff package's; this package wires it to the stream, the flags and the
// state file.
package sockdiff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"time"

	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/diff"
	"github.com/sockpipe/sockpipe/internal/record"
	"github.com/sockpipe/sockpipe/internal/stage"
)

const name = "sockdiff"

// ExitLocked is the exit code when the state file stays locked by another
// sockdiff for longer than --lock-timeout.
const ExitLocked = 3

const synopsis = "sockdiff [--closed] [--state FILE [--lock-timeout D] [--save-interval D]] [--strict]"

const about = `sockdiff reads snapshots of sockets (sockdump's NDJSON) on stdin and
writes on stdout one event per connection that changed. A connection is its
network namespace ("netns"), transport (TCP when absent), family, and local
and remote address and port: the same addresses in two containers, or in
TCP and in UDP, are two connections. Its state changes (syn-recv,
established, time-wait) are not new connections, and sockets that share
one key (SO_REUSEPORT listeners) are one connection.

Output: the socket records of new connections, with "event" and "first_seen"
added, written as soon as they are read:
  "existing"  a socket of the first snapshot, when nothing earlier is known;
  "opened"    a socket first seen in a later snapshot.
With --closed, when a snapshot's "snapshot" record arrives, the last record
seen of each connection that this snapshot no longer holds, with "event"
"closed", "time" the time of this snapshot, and "first_seen" and
"last_seen". Snapshot records and records of other types (but
"destroyed", below) pass through unchanged; sockets of connections already
known are not written.

Destroy notifications ("destroyed" records, sockdump --interval D --events)
are folded in and not passed on:
  - a connection that a snapshot held gets its "closed" event (--closed) at
    once: "time" and "last_seen" are the destroy's time, and "tcp_info" the
    kernel's counters (TCP only);
  - a connection that no snapshot held (born and gone between two dumps),
    TCP or UDP, gets an "opened" event made of the notification, with
    "short_lived": true, its "state" as the notification gives it (TCP:
    "closed"), inode 0, no uid and no "first_seen", and with --closed its
    "closed" event ("last_seen" the destroy's time);
  - what remains of a TCP connection after its destroy (its time-wait twin
    in later snapshots) reports nothing, neither opened nor closed again;
  - the destroy of one of several sockets that shared a connection's key in
    the last snapshot (SO_REUSEPORT listeners, UDP servers) reports
    nothing: the connection is closed when a snapshot no longer holds it;
  - a TCP notification whose remote port the kernel wiped (a socket closed
    abortively by its owner, that sockdump could not restore) is matched
    to a known connection by its socket cookie in its namespace, else
    dropped: no TCP event ever has a remote port 0 from a notification. A
    UDP socket of remote port 0 is one that was not connected: matched by
    its cookie, else by its addresses, and short-lived when unknown.

A snapshot that ends without its "snapshot" record (input ended or was
interrupted mid-dump) or that held bad lines reports nothing closed; its
sockets are merged into the state.

State: in memory, or with --state FILE kept in FILE across runs (cron,
systemd timers) and restarts: read at start (a missing FILE is a first run;
an unusable one is reported and treated as a first run), saved atomically
at exit and, while streaming, at most every --save-interval. FILE.lock,
created beside it, keeps two runs from using FILE at once; the directory
must be writable.

Privileges: none; with --state, write access to FILE's directory.

Exit codes:
  0  success, or stopped by SIGINT/SIGTERM or a closed stdout (state saved)
  1  failure: I/O, the state file cannot be written, a bad line with --strict
  2  bad flags or arguments
  3  the state file stayed locked by another sockdiff for --lock-timeout
`

// Env holds what Run takes from outside. The zero value uses the real
// ones.
type Env struct {
	// Now is the clock of the state file's saves; default time.Now.
	Now func() time.Time
}

// config is what the flags say, and the outside inputs of Env.
type config struct {
	closed       bool
	state        string
	lockTimeout  time.Duration
	saveInterval time.Duration
	strict       bool
	now          func() time.Time
}

// Run is the sockdiff program with the real clock.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return Env{}.Run(ctx, args, stdin, stdout, stderr)
}

// Run is the sockdiff program.
func (env Env) Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := cli.FlagSet(name, synopsis, about, stderr)
	var c config
	fs.BoolVar(&c.closed, "closed", false, "also report connections that are gone")
	fs.StringVar(&c.state, "state", "", "keep the state in `FILE` across runs")
	fs.DurationVar(&c.lockTimeout, "lock-timeout", 10*time.Second, "how long to wait for another run's lock on the state file")
	fs.DurationVar(&c.saveInterval, "save-interval", 10*time.Second, "save the state file at most this often while streaming (it is always saved at exit)")
	fs.BoolVar(&c.strict, "strict", false, "stop at the first bad input line (exit 1) instead of skipping it")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if c.lockTimeout < 0 {
		return cli.UsageError("--lock-timeout must not be negative")
	}
	if c.saveInterval < 0 {
		return cli.UsageError("--save-interval must not be negative")
	}
	c.now = env.Now
	if c.now == nil {
		c.now = time.Now
	}
	return run(ctx, c, stdin, stdout, stderr)
}

func run(ctx context.Context, c config, stdin io.Reader, stdout, stderr io.Writer) (err error) {
	st := diff.New()
	if c.state != "" {
		lock, err := diff.Lock(ctx, c.state, c.lockTimeout)
		if errors.Is(err, diff.ErrLocked) {
			return cli.Exit(ExitLocked, fmt.Errorf("%w; is another sockdiff still running? (--lock-timeout)", err))
		}
		if err != nil {
			return err
		}
		defer lock.Unlock()
		var problem error
		st, problem, err = diff.Load(c.state)
		if err != nil {
			return err
		}
		if problem != nil {
			fmt.Fprintf(stderr, "%s: %v: starting afresh, as a first run\n", name, problem)
		}
	}

	in := stage.NewInput(ctx, stdin, 0)
	// Every record is done with before the next line: Socket copies the
	// line, and events are written at once.
	in.Reuse = true
	in.Recycle = true // State.Socket copies what it keeps of a line
	in.Name, in.Stderr, in.Strict = name, stderr, c.strict
	out := stage.NewOutput(stdout)
	in.Wait = out.Flush
	// Sockets unchanged since the last snapshot but for their time are
	// recognised from their bytes, without decoding.
	in.Consume = st.Unchanged
	d := differ{c: c, st: st, in: in, out: out, stderr: stderr, saved: c.now()}
	if st.Len() == 0 && os.Getenv("GOGC") == "" {
		// Of what a first snapshot makes, nearly everything is kept:
		// the state's entries. A collection, each time the heap has
		// doubled, then frees nothing, and marked a fifth of the CPU of
		// a first run at 100,000 sockets. The collector waits longer
		// until the end of the first snapshot (or of the input), and
		// then works as usual; the peak memory of a first run stays the
		// size of its state.
		d.gcPercent = debug.SetGCPercent(firstSnapshotGC)
		defer d.restoreGC()
	}

	err = d.loop()
	if errors.Is(err, io.EOF) {
		err = nil
	}
	if n := st.Pending(); n > 0 {
		// Only the end of input is news: a signal, a closed stdout or a
		// bad line under --strict stop mid-snapshot by design.
		if err == nil {
			fmt.Fprintf(stderr, "%s: input ended mid-snapshot, %s after the last snapshot record: merged into the state, nothing reported closed\n", name, count(n, "socket"))
		}
		st.Incomplete()
	}
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	if c.state != "" && st.Dirty() {
		if serr := diff.Save(c.state, st, c.now()); serr != nil {
			// A state not saved is a failure, even after a signal or a
			// closed stdout, whose errors mean a clean end.
			if err == nil || errors.Is(err, context.Canceled) || cli.IsClosedPipe(err) {
				err = serr
			} else {
				err = errors.Join(err, serr)
			}
		}
	}
	return err
}

type differ struct {
	c      config
	st     *diff.State
	in     *stage.Input
	out    *stage.Output
	stderr io.Writer
	saved  time.Time
	bad    int // in.Bad when the snapshot being read began
	// gcPercent is the collector's setting to restore at the end of the
	// first snapshot; 0 when there is none.
	gcPercent int
}

// firstSnapshotGC is the collector's GOGC while a first snapshot is read
// into an empty state.
const firstSnapshotGC = 400

// restoreGC ends the first snapshot's setting of the collector.
func (d *differ) restoreGC() {
	if d.gcPercent != 0 {
		debug.SetGCPercent(d.gcPercent)
		d.gcPercent = 0
	}
}

func (d *differ) loop() error {
	closed := d.closed
	if !d.c.closed {
		closed = nil
	}
	for {
		line, err := d.in.Next()
		if err != nil {
			return err
		}
		r := line.Rec
		switch r.Type {
		case record.TypeSocket:
			ev := d.st.Socket(r, line.Raw)
			if ev == "" {
				continue
			}
			// The event's members are the last of a socket record's:
			// the line as read, with them appended, unless it has
			// some already.
			free := eventTail.FreeOf(r, d.in.Nulls())
			r.Event, r.FirstSeen, r.LastSeen = ev, r.Time, time.Time{}
			if free {
				err = d.out.Tail(line.Raw, r, eventTail)
			} else {
				err = d.out.Record(r)
			}
			if err != nil {
				return err
			}
		case record.TypeSnapshot:
			d.restoreGC()
			if bad := d.in.Bad - d.bad; bad > 0 {
				fmt.Fprintf(d.stderr, "%s: snapshot of %s had %s: nothing reported closed for it\n", name, r.Time.UTC().Format(time.RFC3339Nano), count(bad, "bad line"))
				d.st.Incomplete()
			} else if err := d.st.EndSnapshot(r.Time, closed); err != nil {
				return err
			}
			d.bad = d.in.Bad
			if err := d.out.Raw(line.Raw); err != nil {
				return err
			}
			if err := d.maybeSave(); err != nil {
				return err
			}
		case record.TypeDestroyed:
			opened, closed, _, err := d.st.Destroyed(r)
			if err != nil {
				return err
			}
			if opened != nil {
				if err := d.out.Record(opened); err != nil {
					return err
				}
			}
			if closed != nil && d.c.closed {
				if err := d.out.Record(closed); err != nil {
					return err
				}
			}
		default:
			if err := d.out.Raw(line.Raw); err != nil {
				return err
			}
		}
	}
}

// eventTail is the members that sockdiff adds to a socket record, and those
// of the stages after it.
var eventTail = codec.TailFrom("event")

func (d *differ) closed(r *record.Record) error { return d.out.Record(r) }

// maybeSave saves the state at a snapshot boundary when --save-interval
// has passed since the last save. The output is flushed first, so the
// saved state never claims events that were not written.
func (d *differ) maybeSave() error {
	if d.c.state == "" {
		return nil
	}
	now := d.c.now()
	if now.Sub(d.saved) < d.c.saveInterval {
		return nil
	}
	if err := d.out.Flush(); err != nil {
		return err
	}
	d.saved = now
	// The events matter more than the state file: report and go on, the
	// next save tries again and the one at exit decides the exit code.
	if err := diff.Save(d.c.state, d.st, now); err != nil {
		fmt.Fprintf(d.stderr, "%s: %v (going on, will try again)\n", name, err)
	}
	return nil
}

// count returns "1 thing" or "n things".
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
