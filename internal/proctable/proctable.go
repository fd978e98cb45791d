// Package proctable finds the process that holds a socket open, by the
// socket's inode, from a proc filesystem, and the container that process
// runs in.
//
// The expensive part is the walk of every /proc/PID/fd directory: one
// readlink for every descriptor of every process. A Table therefore keeps
// an index from socket inode to process and a cache of process details
// (name, executable, arguments, start time), and walks only when asked
// about an inode that the index does not hold, at most once per snapshot.
// A process entry is checked against /proc/PID/stat at most once per
// snapshot, and only when one of its sockets is asked about: an entry whose
// start time changed (the pid was reused) or whose process is gone is
// dropped. A stream with no socket to look up costs no /proc read at all.
//
// # Containers
//
// The container of a process comes from /proc/PID/cgroup (see package
// cgroup), under the same root: a Table over a host's /proc mounted in a
// container reads the host's processes and their containers. It is read
// once per process: by the walk, in parallel, for the processes that hold
// sockets and that the table has not met before, or with the other
// details when those are first asked for.
//
// # Shared sockets
//
// After fork, or when descriptors are passed over a Unix socket, several
// processes hold the same socket. The Table attributes it to the process
// that started first (the smallest start time in /proc/PID/stat), and among
// processes that started in the same clock tick to the lowest pid. That is
// the parent in the common pre-fork server, whatever order the walk met them in.
//
// # Privileges
//
// Reading another user's /proc/PID/fd takes CAP_SYS_PTRACE and
// CAP_DAC_READ_SEARCH (see Privileged). Directories that cannot be read
// (EACCES, or processes gone during the walk) are skipped without a word:
// they are normal in containers and sandboxes.
package proctable

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/procfs"

	"github.com/sockpipe/sockpipe/internal/record"
)

// DefaultRoot is where the proc filesystem is mounted.
const DefaultRoot = "/proc"

// userHZ is the unit of the start time in /proc/PID/stat (USER_HZ, 100 on
// every Linux architecture that sockpipe builds for).
const userHZ = 100

// Stats counts the work a Table did. FDDirs and FDLinks are the costly
// reads; a quiet stream leaves every counter at zero.
type Stats struct {
	Lookups   int           // inodes asked about
	Hits      int           // answered from the index
	NotFound  int           // not held by any process that could be seen
	Walks     int           // walks of every /proc/PID/fd
	FDDirs    int           // /proc/PID/fd directories read
	FDLinks   int           // descriptor links read
	ProcFiles int           // other per-process files read: stat, cmdline, exe, cgroup
	WalkTime  time.Duration // time spent walking
}

// Sub returns s - o, counter by counter.
func (s Stats) Sub(o Stats) Stats {
	return Stats{
		Lookups:   s.Lookups - o.Lookups,
		Hits:      s.Hits - o.Hits,
		NotFound:  s.NotFound - o.NotFound,
		Walks:     s.Walks - o.Walks,
		FDDirs:    s.FDDirs - o.FDDirs,
		FDLinks:   s.FDLinks - o.FDLinks,
		ProcFiles: s.ProcFiles - o.ProcFiles,
		WalkTime:  s.WalkTime - o.WalkTime,
	}
}

// String formats the counters as key=value pairs.
func (s Stats) String() string {
	return fmt.Sprintf("lookups=%d hits=%d not_found=%d walks=%d fd_dirs=%d fd_links=%d proc_files=%d walk_ms=%.1f",
		s.Lookups, s.Hits, s.NotFound, s.Walks, s.FDDirs, s.FDLinks, s.ProcFiles, float64(s.WalkTime)/float64(time.Millisecond))
}

// Table maps socket inodes to processes. It is not safe for concurrent use.
type Table struct {
	root string
	fs   procfs.FS

	// Now is the clock; it decides whether a record is younger than the
	// last walk. Tests replace it.
	Now func() time.Time
	// Workers is how many goroutines walk /proc in parallel; 0 means
	// GOMAXPROCS.
	Workers int
	// SocketFiles, when set, lists the socket inodes that every process
	// holds, calling fn for each, in one pass (package sockfiles), instead
	// of a readlink of every /proc/PID/fd link. When it fails, the walk
	// reads /proc, and SocketFilesErr says why.
	SocketFiles func(fn func(pid int, inode uint64)) error
	// SocketFilesErr is the last error of SocketFiles.
	SocketFilesErr error

	inodes inodeIndex    // socket inode -> pid that holds it
	procs  map[int]*proc // processes that held a socket at the last walk

	gen       uint64    // snapshot number, incremented by EndSnapshot
	walkedGen uint64    // gen+1 of the last walk; 0 before any
	walkStart time.Time // when the last walk began

	boot     time.Time // boot time, read once
	bootRead bool

	stats Stats
}

type proc struct {
	pid     int
	start   uint64 // start time in clock ticks after boot: the identity
	ppid    int
	comm    string
	checked uint64 // gen+1 of the snapshot in which start was confirmed
	rec     *record.Process
	ctr     *record.Container // nil outside containers
	ctrRead bool              // whether ctr was read
}

// New returns a table over the proc filesystem mounted at root
// (DefaultRoot when empty).
func New(root string) (*Table, error) {
	if root == "" {
		root = DefaultRoot
	}
	fs, err := procfs.NewFS(root)
	if err != nil {
		return nil, err
	}
	return &Table{
		root:  root,
		fs:    fs,
		Now:   time.Now,
		procs: make(map[int]*proc),
	}, nil
}

// Stats returns the counters since New.
func (t *Table) Stats() Stats { return t.stats }

// EndSnapshot marks the end of a snapshot: the next unknown inode may walk
// /proc again, and process entries are checked again when next used.
func (t *Table) EndSnapshot() { t.gen++ }

// Lookup returns the process that holds the socket with this inode, or
// nil. seen is when the socket was seen (the record's time). When the index
// does not hold the inode and mayWalk is true, Lookup walks /proc unless a
// walk already happened in this snapshot and began after seen: such a walk
// would have found the socket. The returned Process is shared with the
// cache and must not be modified.
func (t *Table) Lookup(inode uint64, seen time.Time, mayWalk bool) *record.Process {
	p, _ := t.Owner(inode, seen, mayWalk)
	return p
}

// Owner is Lookup that also returns the container the process runs in, or
// nil when the process runs in none or was not found. Both are shared with
// the cache and must not be modified.
func (t *Table) Owner(inode uint64, seen time.Time, mayWalk bool) (*record.Process, *record.Container) {
	if inode == 0 {
		return nil, nil
	}
	t.stats.Lookups++
	if p := t.indexed(inode); p != nil {
		t.stats.Hits++
		return t.details(p)
	}
	if mayWalk && t.mayWalk(seen) {
		t.walk()
		if p := t.indexed(inode); p != nil {
			return t.details(p)
		}
	}
	t.stats.NotFound++
	return nil, nil
}

// Process returns the live process pid if it is the one that started at
// start (the boot time plus whole clock ticks, as an owner table or
// Process.Start gives it), and its container; nil when the pid is gone or
// now names another process. Both are shared with the cache and must not
// be modified.
func (t *Table) Process(pid int, start time.Time) (*record.Process, *record.Container) {
	boot := t.bootTime()
	if pid <= 0 || boot.IsZero() || start.Before(boot) {
		return nil, nil
	}
	tick := time.Second / userHZ
	ticks := uint64((start.Sub(boot) + tick/2) / tick)
	t.stats.Lookups++
	p := t.procs[pid]
	if p != nil && p.start == ticks && p.checked == t.gen+1 {
		t.stats.Hits++
		return t.details(p)
	}
	st, err := t.stat(pid)
	if err != nil || st.Start != ticks {
		if p != nil && (err != nil || st.Start != p.start) {
			delete(t.procs, pid) // gone, or reused
		}
		t.stats.NotFound++
		return nil, nil
	}
	if p == nil || p.start != st.Start {
		p = &proc{pid: pid, start: st.Start}
		t.procs[pid] = p
	}
	p.checked = t.gen + 1
	if st.PPID != p.ppid || st.Comm != p.comm {
		p.ppid, p.comm, p.rec = st.PPID, st.Comm, nil
	}
	return t.details(p)
}

func (t *Table) mayWalk(seen time.Time) bool {
	if t.walkedGen != t.gen+1 {
		return true
	}
	// A walk that began before the socket was seen may have missed it. A
	// time in the future (a replayed or forged record) never walks again.
	return seen.After(t.walkStart) && !seen.After(t.Now())
}

// indexed returns the live process that the index names for inode.
func (t *Table) indexed(inode uint64) *proc {
	pid, ok := t.inodes.get(inode)
	if !ok {
		return nil
	}
	p := t.procs[pid]
	if p == nil {
		return nil
	}
	if p.checked == t.gen+1 {
		return p
	}
	st, err := t.stat(pid)
	if err != nil || st.Start != p.start {
		// Gone, or the pid now names another process.
		delete(t.procs, pid)
		return nil
	}
	p.checked = t.gen + 1
	if st.PPID != p.ppid || st.Comm != p.comm {
		p.ppid, p.comm, p.rec = st.PPID, st.Comm, nil
	}
	return p
}

func (t *Table) stat(pid int) (Stat, error) {
	t.stats.ProcFiles++
	return readStat(filepath.Join(t.root, strconv.Itoa(pid), "stat"))
}

func readStat(path string) (Stat, error) {
	var buf [1024]byte
	b, err := readSmall(path, buf[:])
	if err != nil {
		return Stat{}, err
	}
	return ParseStat(b)
}

// Stat is what the table uses of /proc/PID/stat.
type Stat struct {
	PID   int
	Comm  string // the name, at most 15 bytes, any byte but NUL
	PPID  int
	Start uint64 // start time in clock ticks after boot
}

// ParseStat parses the fields of /proc/PID/stat that the table uses. The
// name is between the first "(" and the last ")", since it may itself hold
// parentheses and spaces.
func ParseStat(b []byte) (Stat, error) {
	l := bytes.IndexByte(b, '(')
	r := bytes.LastIndexByte(b, ')')
	if l < 1 || r < l {
		return Stat{}, errors.New("stat: no (name)")
	}
	var s Stat
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:l])))
	if err != nil {
		return Stat{}, fmt.Errorf("stat: pid: %w", err)
	}
	s.PID = pid
	s.Comm = string(b[l+1 : r])
	// After the name: state(0) ppid(1) ... starttime(19).
	f := bytes.Fields(b[r+1:])
	if len(f) < 20 {
		return Stat{}, errors.New("stat: too few fields")
	}
	if s.PPID, err = strconv.Atoi(string(f[1])); err != nil {
		return Stat{}, fmt.Errorf("stat: ppid: %w", err)
	}
	if s.Start, err = strconv.ParseUint(string(f[19]), 10, 64); err != nil {
		return Stat{}, fmt.Errorf("stat: starttime: %w", err)
	}
	return s, nil
}

// details returns the record and the container of p, reading its
// executable, command line and cgroup the first time.
func (t *Table) details(p *proc) (*record.Process, *record.Container) {
	if p.rec != nil {
		return p.rec, p.ctr
	}
	r := &record.Process{PID: p.pid, PPID: p.ppid, Name: p.comm}
	t.stats.ProcFiles += 3
	if !p.ctrRead {
		t.stats.ProcFiles++
		p.ctr, p.ctrRead = readContainer(filepath.Join(t.root, strconv.Itoa(p.pid), "cgroup")), true
	}
	if pp, err := t.fs.Proc(p.pid); err == nil {
		if exe, err := pp.Executable(); err == nil {
			r.Executable = exe
		}
		if args, err := pp.CmdLine(); err == nil && len(args) > 0 {
			r.Args = args
			r.Cmdline = strings.Join(args, " ")
		}
	}
	if boot := t.bootTime(); !boot.IsZero() {
		r.Start = boot.Add(time.Duration(p.start) * (time.Second / userHZ)).UTC()
	}
	p.rec = r
	return r, p.ctr
}

func (t *Table) bootTime() time.Time {
	if !t.bootRead {
		t.bootRead = true
		if st, err := t.fs.Stat(); err == nil {
			t.boot = time.Unix(int64(st.BootTime), 0)
		}
	}
	return t.boot
}

// walkResult is what the walk learned about one process.
type walkResult struct {
	pid    int
	inodes []uint64
	stat   Stat
	ok     bool
	links  int
	dirs   int
	files  int

	ctr     *record.Container
	ctrRead bool
}

// walk reads every /proc/PID/fd and rebuilds the index.
// Walk reads every process's socket files now, as the first Owner of a
// socket the index does not hold would: for a caller with time to spare
// before its first socket.
func (t *Table) Walk() { t.walk() }

func (t *Table) walk() {
	t.walkStart = t.Now()
	t.walkedGen = t.gen + 1
	t.stats.Walks++

	var pids []int
	var held map[int][]uint64 // from SocketFiles, when it worked
	if t.SocketFiles != nil {
		held = make(map[int][]uint64, len(t.procs))
		if err := t.SocketFiles(func(pid int, inode uint64) { held[pid] = append(held[pid], inode) }); err != nil {
			t.SocketFilesErr, held = err, nil
		} else {
			t.SocketFilesErr = nil
			for pid := range held {
				pids = append(pids, pid)
			}
			slices.Sort(pids)
		}
	}
	if held == nil {
		var err error
		if pids, err = listPIDs(t.root); err != nil {
			return
		}
	}
	res := make([]walkResult, len(pids))
	workers := t.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	var next int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s fdScanner
			for {
				mu.Lock()
				i := next
				next += 16
				mu.Unlock()
				if i >= len(pids) {
					return
				}
				for j := i; j < i+16 && j < len(pids); j++ {
					if held != nil {
						res[j] = t.walkHeld(pids[j], held[pids[j]])
					} else {
						res[j] = t.walkOne(&s, pids[j])
					}
				}
			}
		}()
	}
	wg.Wait()
	defer func() { t.stats.WalkTime += t.Now().Sub(t.walkStart) }()

	inodes := newInodeIndex(t.inodes.len())
	procs := make(map[int]*proc, len(t.procs))
	for i := range res {
		r := &res[i]
		t.stats.FDDirs += r.dirs
		t.stats.FDLinks += r.links
		t.stats.ProcFiles += r.files
		if !r.ok {
			continue
		}
		p := t.procs[r.pid]
		if p == nil || p.start != r.stat.Start {
			p = &proc{pid: r.pid, start: r.stat.Start}
		}
		if p.ppid != r.stat.PPID || p.comm != r.stat.Comm {
			p.ppid, p.comm, p.rec = r.stat.PPID, r.stat.Comm, nil
		}
		if r.ctrRead {
			p.ctr, p.ctrRead = r.ctr, true
		}
		p.checked = t.gen + 1
		procs[r.pid] = p
		for _, ino := range r.inodes {
			if cur, ok := inodes.get(ino); ok && !older(p, procs[cur]) {
				continue
			}
			inodes.set(ino, r.pid)
		}
	}
	t.inodes, t.procs = inodes, procs
}

// older reports whether a started before b, or in the same tick with a
// lower pid.
func older(a, b *proc) bool {
	if a.start != b.start {
		return a.start < b.start
	}
	return a.pid < b.pid
}

func (t *Table) walkOne(s *fdScanner, pid int) walkResult {
	r := walkResult{pid: pid, dirs: 1}
	dir := filepath.Join(t.root, strconv.Itoa(pid), "fd")
	inodes, links, err := s.socketInodes(dir)
	r.links = links
	if err != nil || len(inodes) == 0 {
		return r
	}
	return t.walkInodes(r, inodes)
}

// walkHeld is walkOne for a process whose socket inodes SocketFiles gave.
func (t *Table) walkHeld(pid int, inodes []uint64) walkResult {
	return t.walkInodes(walkResult{pid: pid, links: len(inodes)}, inodes)
}

// walkInodes reads what else the walk needs of a process that holds
// sockets.
func (t *Table) walkInodes(r walkResult, inodes []uint64) walkResult {
	pid := r.pid
	r.inodes = inodes
	r.files = 1
	st, err := readStat(filepath.Join(t.root, strconv.Itoa(pid), "stat"))
	if err != nil || st.PID != pid {
		return r
	}
	r.stat, r.ok = st, true
	// A process not met before: its container, here in parallel rather
	// than one by one in Lookup. t.procs is only read while walking.
	if old := t.procs[pid]; old == nil || old.start != st.Start || !old.ctrRead {
		r.ctr, r.ctrRead = readContainer(filepath.Join(t.root, strconv.Itoa(pid), "cgroup")), true
		r.files++
	}
	return r
}

// listPIDs returns the numeric entries of root, in ascending order.
func listPIDs(root string) ([]int, error) {
	d, err := os.Open(root)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if pid, ok := parsePID(n); ok {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids, nil
}

func parsePID(s string) (int, bool) {
	if s == "" || len(s) > 10 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n > 0
}

// ParseSocketLink returns the inode of a descriptor link target of the
// form "socket:[N]".
func ParseSocketLink(b []byte) (uint64, bool) {
	const prefix = "socket:["
	if len(b) < len(prefix)+2 || string(b[:len(prefix)]) != prefix || b[len(b)-1] != ']' {
		return 0, false
	}
	digits := b[len(prefix) : len(b)-1]
	if len(digits) > 20 {
		return 0, false
	}
	var n uint64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if n > (1<<64-1-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}
