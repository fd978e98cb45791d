// Package userdb resolves uids to login names and full names from a
// passwd(5) file, the way a static binary sees the user database, with an
// optional fallback to the system's resolver (NSS) for uids the file lacks.
//
// Lookups are cached. The file is read on first use and read again, at most
// once per call to Refresh, when its size, modification time or inode
// changed, so users added while the program runs are found. A uid that
// neither the file nor the fallback knows is remembered as unknown until
// the file changes.
package userdb

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultPath is the passwd file read unless another is given.
const DefaultPath = "/etc/passwd"

// rootEntry is what Lookup says of uid 0.
var rootEntry = Entry{UID: 0, Name: "root", FullName: "root"}

// Entry is what the user database says about one uid.
type Entry struct {
	UID      uint32
	Name     string // login name
	FullName string // GECOS up to its first comma, as os/user gives it
}

// ParseLine parses one passwd(5) line: name:password:uid:gid:gecos:home:shell.
// It reports false for comments, blank lines, NIS compat entries ("+", "-")
// and lines without a valid uid.
func ParseLine(line string) (Entry, bool) {
	line = strings.TrimRight(line, "\r")
	if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
		return Entry{}, false
	}
	f := strings.SplitN(line, ":", 7)
	if len(f) < 4 || f[0] == "" {
		return Entry{}, false
	}
	uid, err := strconv.ParseUint(f[2], 10, 32)
	if err != nil {
		return Entry{}, false
	}
	e := Entry{UID: uint32(uid), Name: f[0]}
	if len(f) > 4 {
		e.FullName, _, _ = strings.Cut(f[4], ",")
	}
	return e, true
}

// Parse reads a passwd file. When a uid appears more than once, the first
// line wins, as getpwuid(3) returns the first match.
func Parse(r io.Reader) (map[uint32]Entry, error) {
	m := make(map[uint32]Entry)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		e, ok := ParseLine(sc.Text())
		if !ok {
			continue
		}
		if _, dup := m[e.UID]; !dup {
			m[e.UID] = e
		}
	}
	return m, sc.Err()
}

// Lookuper is a fallback user database, such as os/user.LookupId.
type Lookuper func(uid string) (*user.User, error)

// DB is a cached user database. It is not safe for concurrent use.
type DB struct {
	path     string
	fallback Lookuper

	loaded  bool
	check   bool // Refresh was called since the last look at the file
	sig     fileSig
	entries map[uint32]Entry
	extra   map[uint32]Entry // from the fallback, or known missing (Name "")
	warned  bool
	Warn    func(error) // called once for the first failure to read the file
}

type fileSig struct {
	size  int64
	mtime time.Time
	ino   uint64
}

// New returns a database over the passwd file at path (DefaultPath when
// empty). fallback, when not nil, is asked about uids the file lacks; pass
// user.LookupId to use the system's resolver (NSS, when built with cgo).
func New(path string, fallback Lookuper) *DB {
	if path == "" {
		path = DefaultPath
	}
	return &DB{path: path, fallback: fallback, check: true}
}

// Refresh makes the next Lookup look at the file again and reread it if it
// changed. Call it once per batch of lookups, not per lookup.
func (db *DB) Refresh() { db.check = true }

// Lookup returns what is known of uid. ok is false when the uid is unknown
// to the file and to the fallback. uid 0 is always "root", name and full
// name, whatever the file says or lacks: Metricbeat never looks it up, and
// so documents of root's sockets match its, even in a container whose
// passwd file has no root.
func (db *DB) Lookup(uid uint32) (e Entry, ok bool) {
	if uid == 0 {
		return rootEntry, true
	}
	if db.check {
		db.check = false
		db.reload()
	}
	if e, ok := db.entries[uid]; ok {
		return e, true
	}
	if e, ok := db.extra[uid]; ok {
		return e, e.Name != ""
	}
	e = Entry{UID: uid}
	if db.fallback != nil {
		if u, err := db.fallback(strconv.FormatUint(uint64(uid), 10)); err == nil && u != nil {
			e.Name = u.Username
			e.FullName, _, _ = strings.Cut(u.Name, ",")
		}
	}
	if db.extra == nil {
		db.extra = make(map[uint32]Entry)
	}
	db.extra[uid] = e
	return e, e.Name != ""
}

func (db *DB) reload() {
	st, err := os.Stat(db.path)
	if err != nil {
		db.fail(err)
		return
	}
	sig := fileSig{size: st.Size(), mtime: st.ModTime()}
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		sig.ino = s.Ino
	}
	if db.loaded && sig == db.sig {
		return
	}
	data, err := os.ReadFile(db.path)
	if err != nil {
		db.fail(err)
		return
	}
	m, err := Parse(bytes.NewReader(data))
	if err != nil {
		db.fail(fmt.Errorf("read %s: %w", db.path, err))
		return
	}
	db.entries, db.sig, db.loaded = m, sig, true
	db.extra = nil // forget misses: the file changed
}

func (db *DB) fail(err error) {
	if db.Warn != nil && !db.warned {
		db.warned = true
		db.Warn(err)
	}
}
