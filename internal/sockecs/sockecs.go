// Package sockecs implements the sockecs program: it reads socket records
// and writes one Elastic Common Schema document a line for each, shaped
// like Metricbeat's system/socket documents, or ECS 9.4 strict, or as an
// Elasticsearch _bulk body.
package sockecs

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/ecs"
	"github.com/sockpipe/sockpipe/internal/ndjson"
	"github.com/sockpipe/sockpipe/internal/record"
	"github.com/sockpipe/sockpipe/internal/stage"
	"github.com/sockpipe/sockpipe/internal/version"
)

// DefaultIndex is where --bulk sends documents unless --index says
// otherwise: the data stream Metricbeat's system integration uses.
const DefaultIndex = "metrics-system.socket-default"

const synopsis = "sockecs [--strict-ecs] [--bulk [--index NAME]] [--name NAME] [--hostname NAME] [--agent-type NAME] [--period D] [--strict]"

const about = `Input (NDJSON on stdin): socket records, from sockdump, sockdiff, sockproc
and sockresolve in any combination. Only "socket" records become
documents; "snapshot" records (which flush the output) and records of
other types are consumed and not written. A record without an "event"
(sockdump straight into sockecs) is a socket seen in a snapshot and is
written as an existing one. Bad lines, and socket records that would make
documents Elasticsearch rejects (an address that is not an IP address, a
date before 1970 or after 2261), are reported on stderr with their line
number and skipped (--strict stops at the first one).

Output (NDJSON on stdout): one ECS document a line, as Metricbeat's
system/socket metricset writes it (@timestamp, agent.*, event.*,
metricset.name and period, network.*, server/source/destination,
process.*, user.*, error.code, system.socket.*), plus ecs.version,
host.name, network.transport, event.kind/category/type/action, process.parent.pid,
process.start, event.start / event.end for closed sockets, container.id
when the process runs in a container (sockproc), and
system.socket.netns, the inode of the socket's network namespace, when
the record has it.
agent.type is "sockpipe" (--agent-type changes it, "" leaves it out) and
agent.version the version that --version prints. metricset.period (ms) is
the period of the dumps, from the snapshot record that follows each dump's
sockets (sockdump --interval); the first dump's documents wait for it (at
most until the input has been quiet for 5s, and at most 16,384 of them:
past that, that dump's documents go without it, to bound the memory;
--period avoids the wait); a one-shot dump has none, unless --period
gives it (a cron or timer run: its period).
UDP sockets map as TCP ones do: network.transport "udp"; an unconnected
one is a listener (network.direction "listening", its local end the
server), a connected one ingress or egress.
  event.duration (ns): for closed sockets event.end - event.start; for the
  others, as in the original, from the start of the dump to when sockecs
  built the document (the pipeline's latency, process and DNS lookups
  included; for a saved file, its age).
Connections that the kernel's destroy notifications told of (sockdump
--events, folded in by sockdiff) also get system.socket.short_lived: true
when no snapshot held them (no event.start then), the kernel's counters
under system.socket.tcp_info.*, and, for connections, what each end sent:
source.bytes/packets (and client.* in --strict-ecs) for the source's,
destination.bytes/packets (and server.*) for the destination's, from
tcp_info bytes_acked/segs_out (the local end) and bytes_received/segs_in
(the remote end), and network.bytes/packets their sums.
--strict-ecs writes what ECS 9.4 expects where the original departs from
it: network.iana_number "6" for TCP and "17" for UDP (not the family's
"4"/"41", which the default keeps for UDP too), no "listening" in
network.direction (system.socket.listening: true instead: Metricbeat's
fields make system.socket.direction an alias, which refuses values),
host.hostname instead of agent.hostname, client/server beside
source/destination, related.*, *.domain and *.registered_domain,
process.command_line, error.message.
--bulk writes an Elasticsearch _bulk body: a {"create":{"_index":…}} line
before each document, which carries data_stream.* when the index is named
TYPE-DATASET-NAMESPACE. Send it with
  curl -H 'Content-Type: application/x-ndjson' --data-binary @- URL/_bulk
(one request per run: use it on a finite input, such as one cron run).
Output is flushed at every snapshot record and whenever the input pauses
(but for the first dump's documents, which wait for its period).
Where the documents still differ from Metricbeat's, on purpose:
docs/metricbeat.md.

Privileges: none.

Exit codes:
  0  success, or stopped by SIGINT/SIGTERM or a closed stdout
  1  failure (I/O, a bad line under --strict)
  2  bad flags
`

// Env holds what Run takes from outside: the clock, the host name and the
// program's version. The zero value uses the real ones.
type Env struct {
	Now      func() time.Time       // default time.Now
	Hostname func() (string, error) // default os.Hostname
	Version  func() string          // agent.version; default version.String

	// hold is how long the input must stay quiet before the records of
	// a first dump with no snapshot record yet are written without the
	// period; default defaultHold.
	hold time.Duration
}

// defaultHold is Env.hold by default: longer than sockresolve makes a
// record wait for its lookup (--timeout, 2 s by default).
const defaultHold = 5 * time.Second

// DefaultAgentType is agent.type unless --agent-type says otherwise.
const DefaultAgentType = "sockpipe"

// maxHeld is how many socket records of the first dump wait for its
// snapshot record, which says the period, before they are written
// without it: about 14 MiB of decoded records.
const maxHeld = 1 << 14

// Run is the sockecs program with the real clock and host name.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return Env{}.Run(ctx, args, stdin, stdout, stderr)
}

// Run is the sockecs program.
func (env Env) Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := cli.FlagSet("sockecs", synopsis, about, stderr)
	strictECS := fs.Bool("strict-ecs", false, "write what ECS 9.4 expects where Metricbeat's documents depart from it")
	bulk := fs.Bool("bulk", false, "write an Elasticsearch _bulk body: a create action before each document")
	index := fs.String("index", DefaultIndex, "with --bulk, the index or data stream `NAME`")
	name := fs.String("name", "", "agent.name (default: the host name), as Beats' name setting")
	hostname := fs.String("hostname", "", "the host the sockets belong to, for agent.hostname and host.name (default: this machine's host name)")
	agentType := fs.String("agent-type", DefaultAgentType, "write `NAME` as agent.type (\"\" leaves it out; metricbeat for queries that filter on Metricbeat's)")
	period := fs.Duration("period", 0, "metricset.period: the period `D` of the dumps, instead of what the snapshot records say (for a cron or timer run of a one-shot dump, its period)")
	strict := fs.Bool("strict", false, "stop at the first bad input line instead of skipping it")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	indexSet := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "index" {
			indexSet = true
		}
	})
	if indexSet && !*bulk {
		return cli.UsageError("--index needs --bulk")
	}
	if *bulk && *index == "" {
		return cli.UsageError("--index must not be empty")
	}
	if *period < 0 {
		return cli.UsageError("--period must not be negative")
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.Hostname == nil {
		env.Hostname = os.Hostname
	}
	if env.Version == nil {
		env.Version = version.String
	}
	opts := ecs.Options{Strict: *strictECS, Hostname: *hostname, AgentName: *name, AgentType: *agentType, AgentVersion: env.Version()}
	if opts.Hostname == "" {
		h, err := env.Hostname()
		if err != nil {
			// Documents without a host name are still worth writing.
			fmt.Fprintf(stderr, "sockecs: host name: %v (agent.hostname and host.name left out)\n", err)
		}
		opts.Hostname = h
	}
	var action []byte
	if *bulk {
		if ds, ok := ecs.ParseDataStream(*index); ok {
			opts.DataStream = &ds
		}
		action = BulkAction(*index)
	}

	out := ndjson.NewWriter(stdout)
	enc := newEncoder(Writer{Options: opts, Action: action, Now: env.Now}, out)
	in := stage.NewInput(ctx, stdin, 0)
	in.Share = true   // documents are built from the records, which stay as read
	in.Recycle = true // and never from the lines
	// The encoder hands back the records of socket lines once written.
	in.New = func() *record.Record { return records.Get().(*record.Record) }
	if env.hold == 0 {
		env.hold = defaultHold
	}

	// The period of the dumps is in the snapshot record that follows
	// each dump's sockets (--period overrides it). Until the first one,
	// socket records wait for it, as long as they are of one dump (they
	// share its time), at most maxHeld of them, and until the input has
	// been quiet for env.hold (a stream without snapshot records); after
	// it, each snapshot record says the period for what follows.
	known := *period > 0
	enc.period = *period
	var held []*record.Record
	quiet := 0 // calls of in.Wait since the last line
	release := func() error {
		known, in.Rewait = true, 0
		for _, r := range held {
			if err := enc.add(r); err != nil {
				return err
			}
		}
		held = nil
		return nil
	}
	// Before the input blocks, everything read is written out, so a live
	// pipeline never holds a document back, but for the first dump's
	// while it waits for its period.
	in.Name, in.Stderr, in.Strict = "sockecs", stderr, *strict
	in.Wait = func() error {
		if len(held) > 0 {
			if quiet++; quiet > 1 {
				if err := release(); err != nil {
					return err
				}
			}
		}
		return enc.flush(true)
	}
	for {
		line, err := in.Next()
		quiet = 0
		if err != nil {
			if rerr := release(); rerr != nil {
				enc.close()
				return rerr
			}
			cerr := enc.close()
			switch {
			case errors.Is(err, io.EOF):
				return cerr
			case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
				if cerr != nil {
					return cerr
				}
				return err
			}
			var le *ndjson.LineError
			if errors.As(err, &le) {
				return cli.Exit(cli.ExitFailure, err)
			}
			return fmt.Errorf("reading stdin: %w", err)
		}
		switch line.Rec.Type {
		case record.TypeSocket:
			if err := ecs.Check(line.Rec); err != nil {
				in.Bad++
				le := &ndjson.LineError{Line: line.Num, Err: err}
				if *strict {
					if rerr := release(); rerr != nil {
						enc.close()
						return rerr
					}
					if cerr := enc.close(); cerr != nil {
						return cerr
					}
					return cli.Exit(cli.ExitFailure, le)
				}
				fmt.Fprintf(stderr, "sockecs: %v (skipped)\n", le)
				continue
			}
			if !known {
				if len(held) == 0 || (line.Rec.Time.Equal(held[0].Time) && len(held) < maxHeld) {
					held = append(held, line.Rec)
					in.Rewait = env.hold
					continue
				}
				if err := release(); err != nil {
					enc.close()
					return err
				}
			}
			if err := enc.add(line.Rec); err != nil {
				enc.close()
				return err
			}
		case record.TypeSnapshot:
			if *period == 0 {
				enc.setPeriod(line.Rec.Interval)
			}
			if err := release(); err != nil {
				enc.close()
				return err
			}
			if err := enc.flush(false); err != nil {
				enc.close()
				return err
			}
		}
	}
}

// encoder builds, encodes and writes documents on a goroutine of its own,
// in input order, so that decoding the next records overlaps with it.
type encoder struct {
	w     Writer
	out   *ndjson.Writer
	jobs  chan job
	done  chan struct{} // closed when the goroutine has ended
	dead  chan struct{} // closed at the first write error
	err   error         // that error; read only after dead or done is closed
	batch []*record.Record
	// period is metricset.period for the records of the batch.
	period time.Duration
}

type job struct {
	recs   []*record.Record
	period time.Duration // metricset.period of the records
	flush  bool          // flush the output after the records
	ack    chan struct{} // closed once the job is done, when not nil
}

const batchSize = 256

// records recycles the records of socket lines, which the encoder is the
// last to read.
var records = sync.Pool{New: func() any { return new(record.Record) }}

func newEncoder(w Writer, out *ndjson.Writer) *encoder {
	e := &encoder{w: w, out: out, jobs: make(chan job, 8), done: make(chan struct{}), dead: make(chan struct{})}
	go e.run()
	return e
}

func (e *encoder) run() {
	defer close(e.done)
	failed := false
	fail := func(err error) {
		if !failed {
			failed, e.err = true, err
			close(e.dead)
		}
	}
	for j := range e.jobs {
		e.w.Options.Period = j.period
		now := e.w.now() // the documents of a job are built at once
		for _, r := range j.recs {
			if failed {
				break
			}
			if err := e.out.Write(e.w.AppendAt(r, now)); err != nil {
				fail(err)
			}
			records.Put(r)
		}
		if j.flush && !failed {
			if err := e.out.Flush(); err != nil {
				fail(err)
			}
		}
		if j.ack != nil {
			close(j.ack)
		}
	}
}

func (e *encoder) send(j job) error {
	select {
	case e.jobs <- j:
		return nil
	case <-e.dead:
		return e.err
	}
}

// add queues a record.
func (e *encoder) add(r *record.Record) error {
	e.batch = append(e.batch, r)
	if len(e.batch) < batchSize {
		return nil
	}
	j := job{recs: e.batch, period: e.period}
	e.batch = make([]*record.Record, 0, batchSize)
	return e.send(j)
}

// setPeriod sets metricset.period for the records not yet sent: those
// of the dump that a snapshot record closes, and those after it.
func (e *encoder) setPeriod(p time.Duration) { e.period = p }

// flush queues what is pending and a flush of the output; with wait, it
// returns once they are done.
func (e *encoder) flush(wait bool) error {
	j := job{recs: e.batch, period: e.period, flush: true}
	e.batch = nil
	if wait {
		j.ack = make(chan struct{})
	}
	if err := e.send(j); err != nil {
		return err
	}
	if wait {
		select {
		case <-j.ack:
		case <-e.dead:
			return e.err
		}
	}
	return nil
}

// close writes out what is pending, ends the goroutine and returns the
// first write error.
func (e *encoder) close() error {
	select {
	case <-e.done:
		return e.err
	default:
	}
	err := e.flush(false)
	close(e.jobs)
	<-e.done
	if err != nil {
		return err
	}
	return e.err
}

// BulkAction returns the _bulk action line (with its newline) that
// creates a document in index. Data streams accept only create.
func BulkAction(index string) []byte {
	b := []byte(`{"create":{"_index":`)
	b = codec.AppendString(b, index)
	return append(b, "}}\n"...)
}

// Writer turns records into output lines, reusing its buffers. It is not
// safe for concurrent use.
type Writer struct {
	Options ecs.Options
	Action  []byte           // written before each document when set (--bulk)
	Now     func() time.Time // the build time of each document; nil means time.Now

	doc ecs.Doc
	buf []byte
}

// Append returns the lines for one socket record: the action line, if
// any, and the document, each with its newline. The slice is valid until
// the next call.
func (w *Writer) Append(r *record.Record) []byte {
	return w.AppendAt(r, w.now())
}

func (w *Writer) now() time.Time {
	if w.Now == nil {
		w.Now = time.Now
	}
	return w.Now()
}

// AppendAt is Append for a document built at now: for a caller that
// builds a batch of documents at once, and reads the clock once for them.
func (w *Writer) AppendAt(r *record.Record, now time.Time) []byte {
	w.doc.Build(r, now, &w.Options)
	b := append(w.buf[:0], w.Action...)
	b = w.doc.AppendJSON(b)
	b = append(b, '\n')
	w.buf = b
	return b
}
