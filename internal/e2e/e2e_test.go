package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockpipe/sockpipe/internal/codec"
)

// helperEnv, when set in the environment, makes the test binary a helper
// process that opens sockets as told on stdin (see helperMain).
const helperEnv = "SOCKPIPE_E2E_HELPER"

// programs are the sockpipe programs that the tests build.
var programs = []string{"sockdump", "sockdiff", "sockproc", "sockresolve", "sockecs"}

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		helperMain()
		os.Exit(0)
	}
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// build holds the programs, built once for all tests.
var build struct {
	once sync.Once
	dir  string // a directory every user may read: bin/, watch, e2ehelper
	err  error
	skip string
}

// repoRoot is the top of the module, from this package's directory.
const repoRoot = "../.."

// tree is a copy of what a user installs: DIR/watch (examples/watch) with
// the programs in DIR/bin, and the helper program DIR/e2ehelper.
type tree struct {
	Dir    string
	Watch  string
	Bin    string
	Helper string
}

// setup skips the test unless it runs as root with the go command, and
// builds the programs (once).
func setup(t *testing.T) tree {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("end-to-end tests need root (helper processes run as another user, capabilities are granted)")
	}
	if testing.Short() {
		t.Skip("end-to-end tests build the programs: skipped with -short")
	}
	build.once.Do(doBuild)
	if build.skip != "" {
		t.Skip(build.skip)
	}
	if build.err != nil {
		t.Fatal(build.err)
	}
	return tree{
		Dir:    build.dir,
		Watch:  filepath.Join(build.dir, "watch"),
		Bin:    filepath.Join(build.dir, "bin"),
		Helper: filepath.Join(build.dir, "e2ehelper"),
	}
}

func doBuild() {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		build.skip = "the go command is not on PATH"
		return
	}
	if _, err := exec.LookPath("sh"); err != nil {
		build.skip = "no sh"
		return
	}
	dir, err := os.MkdirTemp("", "sockpipe-e2e-")
	if err != nil {
		build.err = err
		return
	}
	build.dir = dir
	// MkdirTemp makes the directory private; the unprivileged runs need
	// to reach the programs.
	if err := os.Chmod(dir, 0o755); err != nil {
		build.err = err
		return
	}
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		build.err = err
		return
	}
	args := []string{"build", "-o", bin + "/"}
	// Programs built with -race check themselves for data races as they
	// run, but are several times slower on a host with many sockets: on
	// request only.
	if os.Getenv("SOCKPIPE_E2E_RACE") == "1" {
		args = append(args, "-race")
	}
	cmd := exec.Command(goCmd, append(args, "./cmd/...")...)
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		build.err = fmt.Errorf("go build ./cmd/...: %v\n%s", err, out)
		return
	}
	for _, p := range programs {
		if _, err := os.Stat(filepath.Join(bin, p)); err != nil {
			build.err = fmt.Errorf("go build ./cmd/... did not build %s", p)
			return
		}
	}
	if err := copyFile(filepath.Join(repoRoot, "examples", "watch"), filepath.Join(dir, "watch")); err != nil {
		build.err = err
		return
	}
	self, err := os.Executable()
	if err != nil {
		build.err = err
		return
	}
	build.err = copyFile(self, filepath.Join(dir, "e2ehelper"))
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o755)
}

// nobody returns the uid and gid of the user nobody.
func nobody(t *testing.T) (uid, gid uint32) {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	id, _ := strconv.ParseUint(u.Uid, 10, 32)
	g, _ := strconv.ParseUint(u.Gid, 10, 32)
	return uint32(id), uint32(g)
}

// fullName returns the GECOS full name of uid in /etc/passwd, as sockproc
// reads it.
func fullName(t *testing.T, uid string) string {
	t.Helper()
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Split(l, ":")
		if len(f) >= 5 && f[2] == uid {
			return strings.SplitN(f[4], ",", 2)[0]
		}
	}
	return ""
}

// privateDir returns a new directory that uid may write, removed at the
// end of the test.
func privateDir(t *testing.T, uid, gid uint32) string {
	t.Helper()
	dir, err := os.MkdirTemp(build.dir, "state-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}
	return dir
}

// ---- helper processes ----

// helperMain reads commands on stdin, one a line, and answers each with a
// line on stdout:
//
//	listen IP               -> ok ID LOCAL
//	accept ID               -> (when a connection comes) accepted ID LOCAL REMOTE
//	dial LOCALIP HOST:PORT  -> ok ID LOCAL REMOTE
//	close ID                -> ok (a connection is reset: no TIME_WAIT)
//
// It ends at the end of stdin.
func helperMain() {
	var mu sync.Mutex
	socks := map[int]io.Closer{}
	next := 0
	reply := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
	}
	add := func(c io.Closer) int {
		mu.Lock()
		defer mu.Unlock()
		next++
		socks[next] = c
		return next
	}
	get := func(s string) io.Closer {
		id, _ := strconv.Atoi(s)
		mu.Lock()
		defer mu.Unlock()
		return socks[id]
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch {
		case f[0] == "listen" && len(f) == 2:
			ln, err := net.Listen("tcp", net.JoinHostPort(f[1], "0"))
			if err != nil {
				reply("error %v", err)
				continue
			}
			reply("ok %d %s", add(ln), ln.Addr())
		case f[0] == "accept" && len(f) == 2:
			ln, ok := get(f[1]).(net.Listener)
			if !ok {
				reply("error no listener %s", f[1])
				continue
			}
			go func() {
				c, err := ln.Accept()
				if err != nil {
					reply("error %v", err)
					return
				}
				reply("accepted %d %s %s", add(c), c.LocalAddr(), c.RemoteAddr())
			}()
		case f[0] == "dial" && len(f) == 3:
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(f[1])}, Timeout: 5 * time.Second}
			c, err := d.Dial("tcp", f[2])
			if err != nil {
				reply("error %v", err)
				continue
			}
			reply("ok %d %s %s", add(c), c.LocalAddr(), c.RemoteAddr())
		case f[0] == "close" && len(f) == 2:
			c := get(f[1])
			if c == nil {
				reply("error no socket %s", f[1])
				continue
			}
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0)
			}
			c.Close()
			reply("ok")
		default:
			reply("error bad command %q", sc.Text())
		}
	}
}

// helper is a running helper process.
type helper struct {
	t     *testing.T
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
	Args  []string // its argv
}

// startHelper runs the helper program as the user of cred (nil: root),
// with role as its one argument (to tell the processes apart).
func startHelper(t *testing.T, tr tree, role string, cred *syscall.Credential) *helper {
	t.Helper()
	cmd := exec.Command(tr.Helper, role)
	cmd.Env = []string{helperEnv + "=1", "PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.Stderr = os.Stderr
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{t: t, cmd: cmd, in: in, lines: make(chan string, 16), Args: []string{tr.Helper, role}}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
	}()
	t.Cleanup(h.stop)
	return h
}

func (h *helper) PID() int { return h.cmd.Process.Pid }

// send writes a command without waiting for its answer.
func (h *helper) send(command string) {
	h.t.Helper()
	if _, err := io.WriteString(h.in, command+"\n"); err != nil {
		h.t.Fatalf("helper %d: %s: %v", h.PID(), command, err)
	}
}

// reply waits for the next answer line and returns its fields after the
// first ("ok", "accepted").
func (h *helper) reply(command string) []string {
	h.t.Helper()
	select {
	case l, ok := <-h.lines:
		f := strings.Fields(l)
		if !ok || len(f) == 0 || f[0] == "error" {
			h.t.Fatalf("helper %d: %s: %q", h.PID(), command, l)
		}
		return f[1:]
	case <-time.After(10 * time.Second):
		h.t.Fatalf("helper %d: %s: no answer in 10 s", h.PID(), command)
	}
	return nil
}

// do sends a command and returns its answer.
func (h *helper) do(command string) []string {
	h.t.Helper()
	h.send(command)
	return h.reply(command)
}

func (h *helper) stop() {
	h.in.Close()
	done := make(chan struct{})
	go func() { h.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		h.cmd.Process.Kill()
		<-done
	}
}

// conn is one connection between two helpers.
type conn struct {
	ServerID, ClientID string // helper socket ids
	Server, Client     string // local address of each side
}

// connect makes client dial the listener (id, addr) of server from
// clientIP. accept is asked first, so the accepted socket has its file
// (and its process) almost at once.
func connect(server *helper, listenerID, listenerAddr string, client *helper, clientIP string) conn {
	server.t.Helper()
	server.send("accept " + listenerID)
	d := client.do("dial " + clientIP + " " + listenerAddr)
	a := server.reply("accept " + listenerID)
	return conn{ServerID: a[0], ClientID: d[0], Server: a[1], Client: d[1]}
}

// ---- the documents ----

// endpoint is an ECS endpoint, or system.socket's local/remote.
type endpoint struct {
	IP          string `json:"ip"`
	Port        int    `json:"port"`
	Host        string `json:"host"`
	ETLDPlusOne string `json:"etld_plus_one"`
	HostError   string `json:"host_error"`
}

// document holds the fields of an ECS document that the tests check.
type document struct {
	Event struct {
		Action string `json:"action"`
	} `json:"event"`
	Network struct {
		Direction string `json:"direction"`
		Type      string `json:"type"`
	} `json:"network"`
	Process *struct {
		PID        int      `json:"pid"`
		Name       string   `json:"name"`
		Executable string   `json:"executable"`
		Args       []string `json:"args"`
	} `json:"process"`
	User struct {
		ID       string `json:"id"`
		Name     string `json:"name"`
		FullName string `json:"full_name"`
	} `json:"user"`
	Error *struct {
		Code string `json:"code"`
	} `json:"error"`
	System struct {
		Socket struct {
			Local  endpoint  `json:"local"`
			Remote *endpoint `json:"remote"`
		} `json:"socket"`
	} `json:"system"`
}

// sock is what the tests compare: one document, flattened.
type sock struct {
	Action    string
	Direction string
	Local     string
	Remote    string // "" for a listener
	PID       int
	Name      string
	Exe       string
	Args      []string
	UID       string
	User      string
	FullName  string
	Host      string
	ETLD      string
	HostError string
	Error     string
}

func (d *document) sock() sock {
	s := sock{
		Action:    d.Event.Action,
		Direction: d.Network.Direction,
		Local:     net.JoinHostPort(d.System.Socket.Local.IP, strconv.Itoa(d.System.Socket.Local.Port)),
		UID:       d.User.ID,
		User:      d.User.Name,
		FullName:  d.User.FullName,
	}
	if r := d.System.Socket.Remote; r != nil {
		s.Remote = net.JoinHostPort(r.IP, strconv.Itoa(r.Port))
		s.Host, s.ETLD, s.HostError = r.Host, r.ETLDPlusOne, r.HostError
	}
	if p := d.Process; p != nil {
		s.PID, s.Name, s.Exe, s.Args = p.PID, p.Name, p.Executable, p.Args
	}
	if d.Error != nil {
		s.Error = d.Error.Code
	}
	return s
}

func sortSocks(s []sock) {
	sort.Slice(s, func(i, j int) bool {
		a, b := s[i], s[j]
		if a.Local != b.Local {
			return a.Local < b.Local
		}
		if a.Remote != b.Remote {
			return a.Remote < b.Remote
		}
		return a.Action < b.Action
	})
}

// docs decodes the documents whose local endpoint is one of locals, in
// the order they came. A line that is not a document fails the test.
func docs(t *testing.T, lines [][]byte, locals map[string]bool) []sock {
	t.Helper()
	// Only lines that hold the port of a local endpoint are decoded: the
	// host may have many sockets.
	var ports [][]byte
	for l := range locals {
		if _, p, err := net.SplitHostPort(l); err == nil {
			ports = append(ports, []byte(`"port":`+p))
		}
	}
	var out []sock
	for _, l := range lines {
		if len(l) == 0 || !slices.ContainsFunc(ports, func(p []byte) bool { return bytes.Contains(l, p) }) {
			continue
		}
		var d document
		if err := codec.Unmarshal(l, &d); err != nil {
			t.Fatalf("bad document %q: %v", l, err)
		}
		s := d.sock()
		if locals[s.Local] {
			out = append(out, s)
		}
	}
	return out
}

// tail reads a growing file by whole lines, keeping only the lines that
// hold one of the test's addresses (the host may hold many sockets).
type tail struct {
	f     *os.File
	part  []byte
	lines [][]byte
	keep  [][]byte
}

func openTail(t *testing.T, path string, keep ...string) *tail {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	tl := &tail{f: f}
	for _, k := range keep {
		tl.keep = append(tl.keep, []byte(k))
	}
	return tl
}

// read takes in what was written since the last call.
func (tl *tail) read() {
	buf := make([]byte, 1<<20)
	for {
		n, err := tl.f.Read(buf)
		tl.part = append(tl.part, buf[:n]...)
		for {
			i := bytes.IndexByte(tl.part, '\n')
			if i < 0 {
				break
			}
			line := tl.part[:i]
			for _, k := range tl.keep {
				if bytes.Contains(line, k) {
					tl.lines = append(tl.lines, append([]byte(nil), line...))
					break
				}
			}
			tl.part = tl.part[i+1:]
		}
		if n == 0 || err != nil {
			tl.part = append([]byte(nil), tl.part...)
			return
		}
	}
}

// waitFor reads until cond holds on the documents of locals, or fails the
// test after d.
func (tl *tail) waitFor(t *testing.T, d time.Duration, what string, locals map[string]bool, cond func([]sock) bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		tl.read()
		if cond(docs(t, tl.lines, locals)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitUntil polls cond every 20 ms for at most d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// set returns a set of strings.
func set(s ...string) map[string]bool {
	m := make(map[string]bool, len(s))
	for _, x := range s {
		m[x] = true
	}
	return m
}
