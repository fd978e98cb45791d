package netnsdump

import (
	"fmt"
	"io"

	"github.com/sockpipe/sockpipe/internal/ownertable"
	"github.com/sockpipe/sockpipe/internal/record"
)

// owners answers, from the kernel's owner table, who made a socket that a
// record has no inode for: a destroyed one, or one whose file is closed.
// What it read is kept for as long as dumps hold the socket (a TIME-WAIT
// socket is dumped for a minute), so each socket costs one lookup in the
// kernel's table, and stays known after the table evicted it.
type owners struct {
	t         *ownertable.Table
	cur, prev map[uint64]ownerEntry // zero values: looked up, unknown
	// fresh and freshPrev are the sockets that the table recorded before
	// the last dump and the one before: the new ones.
	fresh, freshPrev map[uint64]struct{}
	stderr           io.Writer
	failSaid         bool
}

// openOwners loads the owner table; without it, it says why on stderr
// once and returns nil.
func openOwners(opts ownertable.Options, stderr io.Writer) *owners {
	t, err := ownertable.Open(opts)
	if err != nil {
		fmt.Fprintf(stderr, "sockdump: --events: no owner table (%v); connections that no dump saw come without their process and user\n", err)
		return nil
	}
	if t.Warning != nil {
		fmt.Fprintf(stderr, "sockdump: --events: owner table: %v\n", t.Warning)
	}
	return &owners{t: t, cur: map[uint64]ownerEntry{}, prev: map[uint64]ownerEntry{},
		fresh: map[uint64]struct{}{}, freshPrev: map[uint64]struct{}{}, stderr: stderr}
}

// ownerEntry is what the table knows of a socket.
type ownerEntry struct {
	owner *record.Owner
	conn  ownertable.Conn
}

// get returns the owner of the socket with the given cookie, or nil.
func (o *owners) get(cookie uint64) *record.Owner { return o.entry(cookie).owner }

// conn returns the addresses that the table recorded for the connecting
// socket of the given cookie, or the zero Conn.
func (o *owners) conn(cookie uint64) ownertable.Conn { return o.entry(cookie).conn }

func (o *owners) entry(cookie uint64) ownerEntry {
	if o == nil || cookie == 0 {
		return ownerEntry{}
	}
	if v, ok := o.cur[cookie]; ok {
		return v
	}
	v, ok := o.prev[cookie]
	if !ok {
		var err error
		if v.owner, v.conn, err = o.t.LookupConn(cookie); err != nil {
			if !o.failSaid {
				o.failSaid = true
				fmt.Fprintf(o.stderr, "sockdump: owner table: %v\n", err)
			}
			return ownerEntry{}
		}
	}
	o.cur[cookie] = v
	return v
}

// drainFresh takes in the sockets that the table recorded since the last
// call, once the kernel was dumped: those of the last two are new to the
// dumps (a socket made while the dump before walked past it is new to
// this one).
func (o *owners) drainFresh() {
	if o == nil {
		return
	}
	o.fresh, o.freshPrev = o.freshPrev, o.fresh
	clear(o.fresh)
	if err := o.t.Fresh(func(c uint64) { o.fresh[c] = struct{}{} }); err != nil && !o.failSaid {
		o.failSaid = true
		fmt.Fprintf(o.stderr, "sockdump: owner table: %v\n", err)
	}
}

// isNew reports whether the table recorded the socket of cookie c since
// the dump before the last.
func (o *owners) isNew(c uint64) bool {
	if o == nil {
		return false
	}
	_, ok := o.fresh[c]
	if !ok {
		_, ok = o.freshPrev[c]
	}
	return ok
}

// endDump forgets the sockets that the last dump did not ask about.
func (o *owners) endDump() {
	if o == nil {
		return
	}
	clear(o.prev)
	o.prev, o.cur = o.cur, o.prev
}

func (o *owners) Close() {
	if o != nil {
		o.t.Close()
	}
}
