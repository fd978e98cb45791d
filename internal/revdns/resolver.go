// Package revdns finds the host names of IP addresses by reverse DNS (PTR)
// lookups, with separate caches for successes and failures, a bound on
// concurrent lookups, one lookup at a time per address, a timeout for
// each lookup, and a cache file that keeps the caches across runs.
//
// A PTR answer is untrusted input: a name that is not a valid host name
// becomes a failure, never a result.
package revdns

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Resolver.
type Config struct {
	// Lookuper asks the questions.
	Lookuper Lookuper
	// Timeout bounds each lookup, from when its query is sent, and the
	// wait for a free worker before that.
	Timeout time.Duration
	// Workers is how many lookups may run at once.
	Workers int
	// SuccessTTL is how long a name is cached; 0 caches no name.
	SuccessTTL time.Duration
	// FailureTTL is how long a failure is cached; 0 caches no failure.
	FailureTTL time.Duration
	// CacheSize bounds each of the two caches (names and failures).
	CacheSize int
	// Now is the clock of the caches; nil means time.Now.
	Now func() time.Time
}

// Result is the outcome of a lookup: a host name or an error in words.
type Result struct {
	Host  string // the PTR name, a valid host name with a trailing dot
	Error string // why there is no name
}

// Stats counts what a Resolver did.
type Stats struct {
	Queries int64 // lookups sent to the Lookuper
	Hits    int64 // answers from a cache
	Joined  int64 // requests that joined a lookup already running
}

// Call is a lookup in progress.
type Call struct {
	done chan struct{}
	res  Result
	sent atomic.Bool
}

// Done is closed when the lookup is over.
func (c *Call) Done() <-chan struct{} { return c.done }

// Result returns the outcome; call it after Done is closed.
func (c *Call) Result() Result { return c.res }

// Sent reports whether the query was sent, rather than still waiting for
// a free worker.
func (c *Call) Sent() bool { return c.sent.Load() }

// Resolver resolves addresses to host names.
type Resolver struct {
	cfg              Config
	success, failure *Cache
	sem              chan struct{}
	ctx              context.Context
	cancel           context.CancelFunc

	mu       sync.Mutex
	inflight map[netip.Addr]*Call
	wg       sync.WaitGroup

	queries, hits, joined atomic.Int64
}

// New returns a resolver. Close it to abandon the lookups in progress.
func New(cfg Config) *Resolver {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Workers < 1 {
		cfg.Workers = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Resolver{
		cfg:      cfg,
		success:  NewCache(cfg.CacheSize),
		failure:  NewCache(cfg.CacheSize),
		sem:      make(chan struct{}, cfg.Workers),
		ctx:      ctx,
		cancel:   cancel,
		inflight: make(map[netip.Addr]*Call),
	}
}

// Key is the address under which ip is looked up and cached: an
// IPv4-mapped IPv6 address is its IPv4 address, and zones are dropped.
func Key(ip netip.Addr) netip.Addr { return ip.Unmap().WithZone("") }

// Resolve returns the cached result for ip, or else a lookup in progress
// (a new one, or the one already running for the same address).
func (r *Resolver) Resolve(ip netip.Addr) (Result, *Call) {
	ip = Key(ip)
	now := r.cfg.Now()
	if h, ok := r.success.Get(ip, now); ok {
		r.hits.Add(1)
		return Result{Host: h}, nil
	}
	if e, ok := r.failure.Get(ip, now); ok {
		r.hits.Add(1)
		return Result{Error: e}, nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.inflight[ip]; ok {
		r.joined.Add(1)
		return Result{}, c
	}
	// A lookup may have ended since the caches were read: it fills them
	// before it leaves inflight, under r.mu.
	if h, ok := r.success.Get(ip, now); ok {
		r.hits.Add(1)
		return Result{Host: h}, nil
	}
	if e, ok := r.failure.Get(ip, now); ok {
		r.hits.Add(1)
		return Result{Error: e}, nil
	}
	c := &Call{done: make(chan struct{})}
	r.inflight[ip] = c
	r.wg.Add(1)
	go r.lookup(ip, c)
	return Result{}, c
}

func (r *Resolver) lookup(ip netip.Addr, c *Call) {
	defer r.wg.Done()
	wait := time.NewTimer(r.cfg.Timeout)
	select {
	case r.sem <- struct{}{}:
		wait.Stop()
	case <-wait.C:
		r.finish(ip, c, Result{Error: (&TimeoutError{After: r.cfg.Timeout, Queued: true}).Error()}, false)
		return
	case <-r.ctx.Done():
		wait.Stop()
		r.finish(ip, c, Result{Error: ErrCancelled.Error()}, false)
		return
	}
	c.sent.Store(true)
	r.queries.Add(1)
	ctx, cancel := context.WithTimeout(r.ctx, r.cfg.Timeout)
	host, err := r.cfg.Lookuper.LookupPTR(ctx, ip)
	cancel()
	<-r.sem
	res, keep := r.result(host, err)
	r.finish(ip, c, res, keep)
}

// result turns what the Lookuper returned into a Result, and says whether
// it may be cached.
func (r *Resolver) result(host string, err error) (Result, bool) {
	switch {
	case err == nil:
		if verr := ValidateName(host); verr != nil {
			return Result{Error: (&NameError{Reason: verr.Error()}).Error()}, true
		}
		if !strings.HasSuffix(host, ".") {
			host += "."
		}
		return Result{Host: host}, true
	case errors.Is(err, ErrCancelled), r.ctx.Err() != nil:
		return Result{Error: ErrCancelled.Error()}, false
	case errors.Is(err, context.DeadlineExceeded):
		return Result{Error: (&TimeoutError{After: r.cfg.Timeout}).Error()}, true
	}
	return Result{Error: err.Error()}, true
}

func (r *Resolver) finish(ip netip.Addr, c *Call, res Result, keep bool) {
	if keep {
		now := r.cfg.Now()
		if res.Host != "" {
			r.failure.Delete(ip)
			if r.cfg.SuccessTTL > 0 {
				r.success.Put(ip, res.Host, now.Add(r.cfg.SuccessTTL))
			}
		} else {
			r.success.Delete(ip)
			if r.cfg.FailureTTL > 0 {
				r.failure.Put(ip, res.Error, now.Add(r.cfg.FailureTTL))
			}
		}
	}
	c.res = res
	r.mu.Lock()
	delete(r.inflight, ip)
	r.mu.Unlock()
	close(c.done)
}

// Stats returns the counters.
func (r *Resolver) Stats() Stats {
	return Stats{Queries: r.queries.Load(), Hits: r.hits.Load(), Joined: r.joined.Load()}
}

// Close abandons the lookups in progress and waits for them to end.
func (r *Resolver) Close() {
	r.cancel()
	r.wg.Wait()
}

// Snapshot is the content of both caches.
type Snapshot struct {
	Success []Entry // names, most recently used first
	Failure []Entry // failures in words, most recently used first
}

// Export returns the entries that have not expired.
func (r *Resolver) Export() Snapshot {
	now := r.cfg.Now()
	return Snapshot{Success: r.success.Entries(now), Failure: r.failure.Entries(now)}
}

// Import adds entries to the caches as less recently used than those
// already there, and never over them. An entry lives no longer than the
// configured TTL from now, so a shorter TTL, or a clock that went back,
// takes effect; expired entries are dropped.
func (r *Resolver) Import(s Snapshot) {
	now := r.cfg.Now()
	add := func(c *Cache, other *Cache, es []Entry, ttl time.Duration) {
		for _, e := range es {
			ip := Key(e.IP)
			exp := e.Expires
			if max := now.Add(ttl); exp.After(max) {
				exp = max
			}
			if !now.Before(exp) {
				continue
			}
			if _, ok := other.Get(ip, now); ok {
				continue
			}
			c.putOld(ip, e.Value, exp)
		}
	}
	add(r.success, r.failure, s.Success, r.cfg.SuccessTTL)
	add(r.failure, r.success, s.Failure, r.cfg.FailureTTL)
}
