package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/ndjson"
	"github.com/sockpipe/sockpipe/internal/record"
)

// truthConn is one line of the ground-truth log.
type truthConn struct {
	Client, Server netip.AddrPort
	Opened, Closed time.Time
}

// parseTruthLine parses "CLIENT SERVER OPENED CLOSED".
func parseTruthLine(line string) (truthConn, error) {
	f := strings.Fields(line)
	if len(f) != 4 {
		return truthConn{}, fmt.Errorf("want 4 fields, got %d", len(f))
	}
	var (
		c   truthConn
		err error
	)
	if c.Client, err = netip.ParseAddrPort(f[0]); err != nil {
		return truthConn{}, err
	}
	if c.Server, err = netip.ParseAddrPort(f[1]); err != nil {
		return truthConn{}, err
	}
	if c.Opened, err = time.Parse(time.RFC3339Nano, f[2]); err != nil {
		return truthConn{}, err
	}
	if c.Closed, err = time.Parse(time.RFC3339Nano, f[3]); err != nil {
		return truthConn{}, err
	}
	return c, nil
}

// truthOwner is the process that made the connections of a truth log.
type truthOwner struct {
	PID  int
	Name string
	UID  uint32
}

// parseTruth reads a ground-truth log; blank lines and lines starting
// with # are skipped, but for "# owner pid=P name=N uid=U", the process
// that made the connections.
func parseTruth(r io.Reader) ([]truthConn, error) {
	conns, _, err := parseTruthOwner(r)
	return conns, err
}

func parseTruthOwner(r io.Reader) ([]truthConn, *truthOwner, error) {
	var (
		conns []truthConn
		owner *truthOwner
	)
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(l, "# owner "); ok {
			var o truthOwner
			if _, err := fmt.Sscanf(rest, "pid=%d name=%s uid=%d", &o.PID, &o.Name, &o.UID); err != nil {
				return nil, nil, fmt.Errorf("truth line %d: %w", n, err)
			}
			owner = &o
			continue
		}
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		c, err := parseTruthLine(l)
		if err != nil {
			return nil, nil, fmt.Errorf("truth line %d: %w", n, err)
		}
		conns = append(conns, c)
	}
	return conns, owner, sc.Err()
}

// connKey is one end of a connection as a socket record gives it.
type connKey struct{ Local, Remote netip.AddrPort }

func recordKey(r *record.Record) (connKey, bool) {
	l, err1 := netip.ParseAddr(r.Local.IP)
	m, err2 := netip.ParseAddr(r.Remote.IP)
	if err1 != nil || err2 != nil {
		return connKey{}, false
	}
	return connKey{netip.AddrPortFrom(l, r.Local.Port), netip.AddrPortFrom(m, r.Remote.Port)}, true
}

// Seen bits of one connection.
const (
	seenOpenedServer = 1 << iota
	seenOpenedClient
	seenDestroyedServer
	seenDestroyedClient
	seenClosed
	seenShortLived
	seenClientWiped  // a destroyed client end without its remote port
	seenServerEgress // an opened server end said to be egress
	seenOwned        // an opened event whose owner is the truth's (pid, name, uid)
	seenOwnerWrong   // an opened event whose owner is another
)

// scorer joins records with the ground truth.
type scorer struct {
	truth  []truthConn
	owner  *truthOwner     // nil: owners are not scored
	byKey  map[connKey]int // both ends of every connection
	wiped  map[connKey]int // client end with the remote port the kernel wipes
	seen   []uint16
	opened map[connKey]int // opened events of every key of the input

	dupTruth   int // connections whose key an earlier one had
	overflows  int
	snapshots  int
	destroyed  int // destroyed records, all sockets
	shortLived int // short-lived opened events, all sockets
}

func newScorer(truth []truthConn) *scorer {
	s := &scorer{
		truth:  truth,
		byKey:  make(map[connKey]int, 2*len(truth)),
		wiped:  make(map[connKey]int, len(truth)),
		seen:   make([]uint16, len(truth)),
		opened: make(map[connKey]int),
	}
	for i, c := range truth {
		srv, cli := connKey{c.Server, c.Client}, connKey{c.Client, c.Server}
		if _, dup := s.byKey[srv]; dup {
			s.dupTruth++
		}
		s.byKey[srv], s.byKey[cli] = i, i
		s.wiped[connKey{c.Client, netip.AddrPortFrom(c.Server.Addr(), 0)}] = i
	}
	return s
}

// add takes one record of the output.
func (s *scorer) add(r *record.Record) {
	switch r.Type {
	case record.TypeSnapshot:
		s.snapshots++
		s.overflows += r.EventOverflows
		return
	case record.TypeDestroyed:
		s.destroyed++
	case record.TypeSocket:
		if r.Event == "" {
			return
		}
	default:
		return
	}
	k, ok := recordKey(r)
	if !ok {
		return
	}
	if r.Type == record.TypeSocket && r.Event == record.EventOpened {
		s.opened[k]++
		if r.ShortLived {
			s.shortLived++
		}
	}
	i, ok := s.byKey[k]
	if !ok {
		if i, ok := s.wiped[k]; ok && r.Type == record.TypeDestroyed {
			s.seen[i] |= seenClientWiped
		}
		return
	}
	server := k.Local == s.truth[i].Server
	switch {
	case r.Type == record.TypeDestroyed && server:
		s.seen[i] |= seenDestroyedServer
	case r.Type == record.TypeDestroyed:
		s.seen[i] |= seenDestroyedClient
	case r.Event == record.EventOpened && server:
		s.seen[i] |= seenOpenedServer
		if r.Direction == record.DirectionEgress {
			s.seen[i] |= seenServerEgress
		}
	case r.Event == record.EventOpened:
		s.seen[i] |= seenOpenedClient
	case r.Event == record.EventClosed:
		s.seen[i] |= seenClosed
	}
	if r.Event == record.EventOpened && r.ShortLived {
		s.seen[i] |= seenShortLived
	}
	if want := s.owner; r.Event == record.EventOpened && want != nil {
		// sockproc's output: its process and user; sockdiff's: the owner.
		var (
			pid  int
			name string
			uid  string
		)
		switch {
		case r.Process != nil || r.User != nil:
			if r.Process != nil {
				pid, name = r.Process.PID, r.Process.Name
			}
			if r.User != nil {
				uid = r.User.ID
			}
		case r.Owner != nil:
			pid, name, uid = r.Owner.PID, r.Owner.Name, strconv.FormatUint(uint64(r.Owner.UID), 10)
		default:
			return
		}
		if pid == want.PID && name == want.Name && uid == strconv.FormatUint(uint64(want.UID), 10) {
			s.seen[i] |= seenOwned
		} else {
			s.seen[i] |= seenOwnerWrong
		}
	}
}

// result is the score.
type result struct {
	Connections   int // in the truth log
	Found         int // an opened event or a destroyed record, either end
	Opened        int // an opened event, either end
	ShortLived    int // an opened event marked short-lived
	DestroyedOnly int // a destroyed record but no opened event
	ServerEnd     int // found from the server end
	ClientEnd     int // found from the client end
	Closed        int // a closed event, either end
	ClientWiped   int // a destroyed client end without its remote port
	ServerEgress  int // an opened server end with direction egress (wrong)
	Owned         int // an opened event with the right process and user (pid, name, uid), or owner
	OwnerWrong    int // an opened event with another process, user or owner
	OwnerScored   bool
	Overflows     int // sum of the snapshots' event_overflows
	Snapshots     int
	DoubleOpened  int // keys, of any socket, with two or more opened events
	Destroyed     int // destroyed records in the output, of any socket
	DupTruth      int // truth connections sharing a key with an earlier one
	Missed        []int
}

func (s *scorer) result() result {
	r := result{
		Connections: len(s.truth), Overflows: s.overflows, Snapshots: s.snapshots,
		Destroyed: s.destroyed, DupTruth: s.dupTruth, OwnerScored: s.owner != nil,
	}
	for i, b := range s.seen {
		opened := b&(seenOpenedServer|seenOpenedClient) != 0
		destroyed := b&(seenDestroyedServer|seenDestroyedClient) != 0
		if opened || destroyed {
			r.Found++
		} else {
			r.Missed = append(r.Missed, i)
		}
		if opened {
			r.Opened++
		} else if destroyed {
			r.DestroyedOnly++
		}
		if b&seenShortLived != 0 {
			r.ShortLived++
		}
		if b&(seenOpenedServer|seenDestroyedServer) != 0 {
			r.ServerEnd++
		}
		if b&(seenOpenedClient|seenDestroyedClient) != 0 {
			r.ClientEnd++
		}
		if b&seenClosed != 0 {
			r.Closed++
		}
		if b&seenClientWiped != 0 {
			r.ClientWiped++
		}
		if b&seenServerEgress != 0 {
			r.ServerEgress++
		}
		if b&seenOwned != 0 {
			r.Owned++
		}
		if b&seenOwnerWrong != 0 {
			r.OwnerWrong++
		}
	}
	for _, n := range s.opened {
		if n > 1 {
			r.DoubleOpened++
		}
	}
	return r
}

func (r result) percent() float64 {
	if r.Connections == 0 {
		return 0
	}
	return 100 * float64(r.Found) / float64(r.Connections)
}

// String is one line of key=value pairs, for scripts.
func (r result) String() string {
	return fmt.Sprintf("connections=%d found=%d percent=%.2f opened=%d short_lived=%d destroyed_only=%d "+
		"server_end=%d client_end=%d closed=%d client_wiped=%d server_egress=%d overflows=%d snapshots=%d "+
		"double_opened=%d destroyed_records=%d duplicate_truth=%d",
		r.Connections, r.Found, r.percent(), r.Opened, r.ShortLived, r.DestroyedOnly,
		r.ServerEnd, r.ClientEnd, r.Closed, r.ClientWiped, r.ServerEgress, r.Overflows, r.Snapshots,
		r.DoubleOpened, r.Destroyed, r.DupTruth) + r.ownerString()
}

// ownerString is the owner part of String: how many connections have an
// opened event that names the process that made them, of all connections
// and of those reported (with an opened event).
func (r result) ownerString() string {
	if !r.OwnerScored {
		return ""
	}
	p, q := 0.0, 0.0
	if r.Connections > 0 {
		p = 100 * float64(r.Owned) / float64(r.Connections)
	}
	if r.Opened > 0 {
		q = 100 * float64(r.Owned) / float64(r.Opened)
	}
	return fmt.Sprintf(" owned=%d owned_percent=%.2f owned_of_opened_percent=%.2f owner_wrong=%d", r.Owned, p, q, r.OwnerWrong)
}

// scoreReader feeds every decodable line of an NDJSON stream to s; bad
// lines are counted, not fatal.
func scoreReader(s *scorer, in io.Reader) (bad int, err error) {
	rd := ndjson.NewReader(in, ndjson.DefaultMaxLine)
	var rec record.Record
	for n := 0; ; n++ {
		line, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return bad, nil
		}
		var le *ndjson.LineError
		if errors.As(err, &le) {
			bad++
			continue
		}
		if err != nil {
			return bad, err
		}
		rec = record.Record{}
		if err := codec.DecodeInto(line, &rec); err != nil {
			bad++
			continue
		}
		s.add(&rec)
	}
}

func scoreFiles(truthPath string, paths []string, misses int, stdout, stderr io.Writer) error {
	tf, err := os.Open(truthPath)
	if err != nil {
		return err
	}
	truth, owner, err := parseTruthOwner(tf)
	tf.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", truthPath, err)
	}
	s := newScorer(truth)
	s.owner = owner
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		bad, err := scoreReader(s, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if bad > 0 {
			fmt.Fprintf(stderr, "churn: %s: %d lines skipped (not records)\n", p, bad)
		}
	}
	r := s.result()
	fmt.Fprintln(stdout, r)
	for i, m := range r.Missed {
		if i == misses {
			fmt.Fprintf(stderr, "churn: ... %d more missed\n", len(r.Missed)-misses)
			break
		}
		c := truth[m]
		fmt.Fprintf(stderr, "churn: missed %s -> %s opened %s closed %s\n", c.Client, c.Server,
			c.Opened.Format(time.RFC3339Nano), c.Closed.Format(time.RFC3339Nano))
	}
	return nil
}
