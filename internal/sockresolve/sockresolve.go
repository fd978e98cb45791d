// Package sockresolve implements the sockresolve program: it adds to each
// socket record the host name of its remote address, by reverse DNS, with
// caches and concurrent lookups that never stall the stream for longer
// than one lookup's timeout.
package sockresolve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/record"
	"github.com/sockpipe/sockpipe/internal/revdns"
	"github.com/sockpipe/sockpipe/internal/stage"
)

const synopsis = "sockresolve [--server HOST:PORT] [--timeout D] [--workers N] [--success-ttl D] [--failure-ttl D] [--cache-size N] [--cache FILE] [--max-pending N] [--strict] [--stats]"

var about = `Input: NDJSON socket records (sockdump, sockdiff, sockproc). Records of
other types, socket records without a remote port (listeners), and every
member that sockresolve does not set, pass through unchanged.

Output: the same records, in the same order; each socket record with a
remote port gets, from the PTR record of remote.ip,
  "remote": {..., "host":"www.example.com.", "etld_plus_one":"example.com."}
    the first name of the answer, trailing dot kept, and its registered
    domain by the public-suffix list (left out when there is none, as
    for "localhost."); or
  "remote": {..., "host_error":"no PTR record (NXDOMAIN)"}
    why there is no name: "no PTR record (NXDOMAIN)", "empty dns
    response" (no PTR record, in Metricbeat's words), "timed out after
    2s", "server refused the query (REFUSED)", "server failure
    (SERVFAIL)", "invalid host name in answer: ...", "cannot query the
    DNS server: ...". Without --server, the system resolver cannot tell
    NXDOMAIN from an empty answer, nor SERVFAIL from REFUSED, and says so.
A PTR answer is untrusted: a name that is not a valid host name (letters,
digits, hyphens, underscores; labels of at most 63 bytes, at most 253 in
all) becomes a host_error and is never written.

Lookups run concurrently (--workers), one at a time per address, each for
at most --timeout. A record waits for its own lookup at most --timeout
from when it was read, so a slow answer delays the records behind it by
at most the timeout. At most --max-pending records wait for output; then
input waits. Output is flushed at each snapshot record and whenever
nothing more is ready.

Caches: names are cached for --success-ttl, failures for --failure-ttl,
each on its own (a failure never shortens a name's life); each cache
holds at most --cache-size addresses, the least recently used going
first. --cache FILE keeps both across runs (absolute expiry times; saved
at the end, and at snapshot records at most once a minute; written
atomically under a lock on FILE.lock; a damaged file is reported and
ignored).

Privileges: none. Queries go to --server (UDP, then TCP for a truncated
answer), or to the system's resolver as any program on the host asks it:
/etc/hosts and the servers of /etc/resolv.conf, in the order that
/etc/nsswitch.conf gives.

Exit codes:
  0  success, or stopped by SIGINT/SIGTERM or a closed stdout
  1  failure: I/O, a cache file that cannot be written, a bad line under --strict
  2  bad flags
`

// maxLine is the longest input line accepted.
const maxLine = 1 << 20

// saveEvery is how often, at most, the cache file is saved at snapshot
// records in a long-running pipeline.
const saveEvery = time.Minute

// Env holds what Run takes from outside. The zero value uses the real
// ones.
type Env struct {
	// Lookuper answers the reverse lookups; default the system's
	// resolver, or with --server a client of that server.
	Lookuper revdns.Lookuper
	// Now is the clock of the caches and of their saves; default
	// time.Now.
	Now func() time.Time
}

// options are sockresolve's settings, from its flags.
type options struct {
	Server     string // HOST:PORT, or "" for the system resolver
	Timeout    time.Duration
	Workers    int
	SuccessTTL time.Duration
	FailureTTL time.Duration
	CacheSize  int
	CacheFile  string
	MaxPending int
	Strict     bool
	Stats      bool
}

// Run is the sockresolve program with the real resolver and clock.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return Env{}.Run(ctx, args, stdin, stdout, stderr)
}

// Run is the sockresolve program.
func (env Env) Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := cli.FlagSet("sockresolve", synopsis, about, stderr)
	var o options
	fs.StringVar(&o.Server, "server", "", "send queries to the DNS server at `HOST:PORT` (port 53 when left out) instead of the system's resolvers")
	fs.DurationVar(&o.Timeout, "timeout", 2*time.Second, "give up a lookup after `D`; no record waits longer than this for its own")
	fs.IntVar(&o.Workers, "workers", 32, "run at most `N` lookups at once")
	fs.DurationVar(&o.SuccessTTL, "success-ttl", time.Minute, "cache names for `D` (0: do not cache them)")
	fs.DurationVar(&o.FailureTTL, "failure-ttl", time.Minute, "cache failures for `D` (0: do not cache them)")
	fs.IntVar(&o.CacheSize, "cache-size", 10000, "keep at most `N` names and N failures in the caches")
	fs.StringVar(&o.CacheFile, "cache", "", "keep the caches in `FILE` across runs (for cron)")
	fs.IntVar(&o.MaxPending, "max-pending", 4096, "let at most `N` records wait for output before input waits")
	fs.BoolVar(&o.Strict, "strict", false, "stop at the first bad input line (exit 1) instead of reporting and skipping it")
	fs.BoolVar(&o.Stats, "stats", false, "write on stderr, at the end, how many lookups were sent, answered from the caches and shared")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if err := o.check(); err != nil {
		fs.Usage()
		return err
	}
	if env.Lookuper == nil {
		env.Lookuper = &revdns.System{}
		if o.Server != "" {
			env.Lookuper = &revdns.Client{Server: o.Server}
		}
	}
	if env.Now == nil {
		env.Now = time.Now
	}
	return filter(ctx, o, env, stdin, stdout, stderr)
}

// check validates the options and completes --server with port 53.
func (o *options) check() error {
	switch {
	case o.Timeout <= 0:
		return cli.UsageError("--timeout must be more than 0")
	case o.Workers < 1 || o.Workers > 4096:
		return cli.UsageError("--workers must be between 1 and 4096")
	case o.SuccessTTL < 0 || o.FailureTTL < 0:
		return cli.UsageError("--success-ttl and --failure-ttl must not be negative")
	case o.CacheSize < 0:
		return cli.UsageError("--cache-size must not be negative")
	case o.MaxPending < 1:
		return cli.UsageError("--max-pending must be at least 1")
	}
	if o.Server != "" {
		s, err := serverAddr(o.Server)
		if err != nil {
			return cli.UsageError("--server: %v", err)
		}
		o.Server = s
	}
	return nil
}

// serverAddr accepts HOST:PORT, [IPv6]:PORT, HOST, or an IPv6 address.
func serverAddr(s string) (string, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return net.JoinHostPort(a.String(), "53"), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if strings.Contains(s, ":") {
			return "", err
		}
		host, port = s, "53"
	}
	if host == "" {
		return "", fmt.Errorf("%q: no host", s)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", fmt.Errorf("%q: bad port", s)
	}
	return net.JoinHostPort(host, port), nil
}

// item is one record on its way out.
type item struct {
	// raw is a line to write unchanged, when rec is nil; else, when not
	// nil, the line rec was read from, whose remote end's object is at
	// raw[start:end], to write with the name put in.
	raw        []byte
	start, end int
	rec        *record.Record // a socket record to enrich and encode, or nil
	call       *revdns.Call   // the lookup to wait for, or nil
	res        revdns.Result  // the result, when call is nil
	deadline   time.Time      // when to stop waiting for call
	flush      bool           // flush after writing (a snapshot record)
}

// filter runs sockresolve with the given options and outside inputs.
func filter(ctx context.Context, o options, env Env, stdin io.Reader, stdout, stderr io.Writer) error {
	res := revdns.New(revdns.Config{
		Now:        env.Now,
		Lookuper:   env.Lookuper,
		Timeout:    o.Timeout,
		Workers:    o.Workers,
		SuccessTTL: o.SuccessTTL,
		FailureTTL: o.FailureTTL,
		CacheSize:  o.CacheSize,
	})
	defer res.Close()
	if o.CacheFile != "" {
		if err := res.LoadFile(o.CacheFile); err != nil {
			fmt.Fprintf(stderr, "sockresolve: warning: --cache: %v (ignored, starting with empty caches)\n", err)
		}
	}
	lastSave := env.Now()

	// Items go to the writer in batches, each sent when full, at a
	// snapshot record, and before the input waits.
	batch := min(itemBatch, o.MaxPending)
	queue := make(chan *chunk, max(1, o.MaxPending/batch))
	// Written chunks come back, to hold the lines of later ones.
	free := make(chan *chunk, cap(queue)+2)
	w := &writer{out: stage.NewOutput(stdout), timeout: o.Timeout, free: free}
	wdone := make(chan struct{})
	go func() {
		defer close(wdone)
		w.err = w.run(queue)
	}()
	newChunk := func() *chunk {
		select {
		case c := <-free:
			return c
		default:
			return &chunk{items: make([]item, 0, batch)}
		}
	}
	pending := newChunk()
	send := func() bool {
		if len(pending.items) == 0 {
			return true
		}
		select {
		case queue <- pending:
			pending = newChunk()
			return true
		case <-wdone:
			return false
		}
	}

	in := stage.NewInput(ctx, stdin, maxLine)
	in.Share = true   // only the remote end of a record is changed
	in.Recycle = true // lines are copied into their chunk
	// The writer hands back the records of socket lines once written;
	// newItem those of the others at once.
	in.New = func() *record.Record { return records.Get().(*record.Record) }
	in.Name, in.Stderr, in.Strict = "sockresolve", stderr, o.Strict
	in.Wait = func() error {
		if !send() {
			return errWriterDone
		}
		return nil
	}
	var err error
loop:
	for {
		var line stage.Line
		line, err = in.Next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, errWriterDone) {
				err = nil
			}
			break
		}
		it := newItem(line, res, o.Timeout)
		if it.rec != nil {
			// The name goes into the remote end's object of the line as
			// read, when it can, rather than into a new encoding.
			if start, end, ok := in.RemoteSpan(); ok && codec.RemoteFree(line.Raw, start, end, it.rec) {
				it.raw, it.start, it.end = line.Raw, start, end
			}
		}
		if it.raw != nil {
			it.raw = pending.keep(it.raw)
		}
		pending.items = append(pending.items, it)
		if (len(pending.items) >= batch || it.flush) && !send() {
			break loop
		}
		if o.CacheFile != "" && it.flush && env.Now().Sub(lastSave) >= saveEvery {
			lastSave = env.Now()
			if serr := res.SaveFile(o.CacheFile); serr != nil {
				fmt.Fprintf(stderr, "sockresolve: warning: --cache: %v\n", serr)
			}
		}
	}
	send()
	close(queue)
	<-wdone
	if w.err != nil {
		err = w.err
	}
	if o.CacheFile != "" {
		if serr := res.SaveFile(o.CacheFile); serr != nil && err == nil {
			err = fmt.Errorf("--cache: %w", serr)
		}
	}
	if o.Stats {
		s := res.Stats()
		fmt.Fprintf(stderr, "sockresolve: stats: queries=%d cache_hits=%d shared=%d timed_out_waiting=%d\n",
			s.Queries, s.Hits, s.Joined, w.timedOut)
	}
	return err
}

// itemBatch is how many items go to the writer at once.
const itemBatch = 64

// errWriterDone stops the input when the writer has stopped.
var errWriterDone = errors.New("writer stopped")

// chunk is items on their way to the writer, and the lines they write.
type chunk struct {
	items []item
	lines []byte
}

// keep copies line into c, for one of its items: the input reuses its
// memory once the next line is read.
func (c *chunk) keep(line []byte) []byte {
	if cap(c.lines)-len(c.lines) < len(line) {
		// Lines kept so far stay where they are; later ones go into
		// memory of their own.
		c.lines = make([]byte, 0, max(2*cap(c.lines), len(line), 64<<10))
	}
	start := len(c.lines)
	c.lines = append(c.lines, line...)
	return c.lines[start:len(c.lines):len(c.lines)]
}

// newItem prepares a line for output, starting its lookup if it needs one.
func newItem(line stage.Line, res *revdns.Resolver, timeout time.Duration) item {
	r := line.Rec
	if r.Type != record.TypeSocket || r.Remote.Port == 0 {
		it := item{raw: line.Raw, flush: r.Type == record.TypeSnapshot}
		records.Put(r)
		return it
	}
	it := item{rec: r}
	ip, err := netip.ParseAddr(r.Remote.IP)
	if err != nil {
		it.res = revdns.Result{Error: "remote.ip is not an IP address"}
		return it
	}
	it.res, it.call = res.Resolve(ip)
	it.deadline = time.Now().Add(timeout)
	return it
}

// writer writes items in order, waiting for their lookups.
type writer struct {
	out      *stage.Output
	timeout  time.Duration
	err      error
	timedOut int // records written before their lookup ended
	free     chan<- *chunk
	// domains keeps the registered domains of the names written lately:
	// the public-suffix list costs more than the rest of a record.
	domains map[string]string
}

// maxDomains bounds writer.domains; past it, it starts afresh.
const maxDomains = 1 << 14

// domain returns revdns.ETLDPlusOne(host), from w.domains when it can.
func (w *writer) domain(host string) string {
	if d, ok := w.domains[host]; ok {
		return d
	}
	if w.domains == nil || len(w.domains) >= maxDomains {
		w.domains = make(map[string]string)
	}
	d := revdns.ETLDPlusOne(host)
	w.domains[host] = d
	return d
}

func (w *writer) run(queue <-chan *chunk) error {
	for {
		var b *chunk
		var ok bool
		select {
		case b, ok = <-queue:
		default:
			// Nothing ready: write out what is held before waiting.
			if err := w.out.Flush(); err != nil {
				return err
			}
			b, ok = <-queue
		}
		if !ok {
			return w.out.Flush()
		}
		for i := range b.items {
			if err := w.write(&b.items[i]); err != nil {
				return err
			}
		}
		clear(b.items)
		b.items, b.lines = b.items[:0], b.lines[:0]
		select {
		case w.free <- b:
		default:
		}
	}
}

func (w *writer) write(it *item) error {
	if it.rec == nil {
		if err := w.out.Raw(it.raw); err != nil {
			return err
		}
		if it.flush {
			return w.out.Flush()
		}
		return nil
	}
	res := it.res
	if it.call != nil {
		var err error
		if res, err = w.wait(it); err != nil {
			return err
		}
	}
	e := &it.rec.Remote
	e.Host, e.ETLDPlusOne, e.HostError = "", "", ""
	if res.Host != "" {
		e.Host, e.ETLDPlusOne = res.Host, w.domain(res.Host)
	} else {
		e.HostError = res.Error
	}
	var err error
	if it.raw != nil {
		err = w.out.Remote(it.raw, it.start, it.end, it.rec)
	} else {
		err = w.out.Record(it.rec)
	}
	records.Put(it.rec)
	it.rec = nil
	return err
}

// records recycles the records of lines, which the writer is the last to
// read.
var records = sync.Pool{New: func() any { return new(record.Record) }}

// wait waits for an item's lookup until its deadline, flushing first.
func (w *writer) wait(it *item) (revdns.Result, error) {
	select {
	case <-it.call.Done():
		return it.call.Result(), nil
	default:
	}
	if err := w.out.Flush(); err != nil {
		return revdns.Result{}, err
	}
	t := time.NewTimer(time.Until(it.deadline))
	defer t.Stop()
	select {
	case <-it.call.Done():
		return it.call.Result(), nil
	case <-t.C:
		w.timedOut++
		return revdns.Result{Error: (&revdns.TimeoutError{After: w.timeout, Queued: !it.call.Sent()}).Error()}, nil
	}
}
