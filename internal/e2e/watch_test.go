package e2e

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/revdns/dnstest"
)

// Test addresses: the DNS server answers PTR questions for both.
const (
	serverIP   = "127.0.0.2"
	clientIP   = "127.0.0.3"
	serverName = "web.example.org."
	serverETLD = "example.org."
	clientName = "db.example.com."
	clientETLD = "example.com."
)

// watchCmd returns the command that runs watch with args, the environment
// env added to a minimal one.
func watchCmd(t *testing.T, tr tree, env []string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(tr.Watch, args...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin", "TMPDIR=" + t.TempDir()}, env...)
	cmd.Dir = "/"
	return cmd
}

// exitCode returns the exit status of a finished command.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// self is this test process as sockproc sees it.
func self(t *testing.T) sock {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(exe)
	if len(name) > 15 {
		name = name[:15]
	}
	return sock{PID: os.Getpid(), Name: name, Exe: exe, Args: os.Args}
}

// proc fills s with the process of h and the user of uid.
func proc(t *testing.T, s sock, h *helper, uid, user string) sock {
	t.Helper()
	if h != nil {
		s.PID, s.Name, s.Exe, s.Args = h.PID(), "e2ehelper", h.Args[0], h.Args
	}
	s.UID, s.User, s.FullName = uid, user, fullName(t, uid)
	return s
}

// TestWatchStreaming runs examples/watch with reverse lookups against a
// test DNS server, while helper processes open a listener (as root),
// connect to it (as nobody) and accept the connection, all on loopback.
// The documents of these sockets must come out exactly once, with their
// direction, process, user, remote host and eTLD+1. The pipeline is then
// stopped, by SIGTERM to the script, by Ctrl-C (SIGINT to its process
// group) or by a hangup (SIGHUP to the group, a terminal closed), while sockresolve still waits for a slow DNS answer: the
// documents of what sockdump had dumped must still all be written.
func TestWatchStreaming(t *testing.T) {
	tr := setup(t)
	for _, tc := range []struct {
		name  string
		sig   syscall.Signal
		group bool
	}{
		{"SIGTERM to the script", syscall.SIGTERM, false},
		{"Ctrl-C to the process group", syscall.SIGINT, true},
		{"hangup of the process group", syscall.SIGHUP, true},
	} {
		t.Run(tc.name, func(t *testing.T) { testStreaming(t, tr, tc.sig, tc.group) })
	}
}

func testStreaming(t *testing.T, tr tree, sig syscall.Signal, group bool) {
	uid, gid := nobody(t)
	nobodyID := strconv.Itoa(int(uid))
	dns := dnstest.Start(t)
	dns.Set(serverIP, dnstest.Answer{Names: []string{serverName}})
	// The answer about the client comes late: the pipeline is stopped
	// while sockresolve waits for it.
	const late = 1500 * time.Millisecond
	dns.Set(clientIP, dnstest.Answer{Names: []string{clientName}, Delay: late})

	// A listener of this test process, there before the pipeline starts:
	// its document says that the first snapshot went through.
	canary, err := net.Listen("tcp", serverIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer canary.Close()
	server := startHelper(t, tr, "server", nil)
	client := startHelper(t, tr, "client", &syscall.Credential{Uid: uid, Gid: gid})

	outPath := filepath.Join(t.TempDir(), "out.ndjson")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var stderr bytes.Buffer
	cmd := watchCmd(t, tr, []string{"WATCH_REVERSE_LOOKUP=1", "WATCH_DNS_SERVER=" + dns.Addr}, "1s")
	cmd.Stdout, cmd.Stderr = out, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})

	tl := openTail(t, outPath, serverIP, clientIP)
	me := self(t)
	canarySock := proc(t, sock{Action: "existing_socket", Direction: "listening", Local: canary.Addr().String(),
		PID: me.PID, Name: me.Name, Exe: me.Exe, Args: me.Args}, nil, "0", "root")
	tl.waitFor(t, 30*time.Second, "document of the test's own listener", set(canarySock.Local), func(s []sock) bool { return len(s) > 0 })

	// Now the sockets, each new to the pipeline.
	ln := server.do("listen " + serverIP)
	c := connect(server, ln[0], ln[1], client, clientIP)
	locals := set(canarySock.Local, ln[1], c.Client)
	want := []sock{
		canarySock,
		proc(t, sock{Action: "socket_opened", Direction: "listening", Local: ln[1]}, server, "0", "root"),
		proc(t, sock{Action: "socket_opened", Direction: "ingress", Local: c.Server, Remote: c.Client,
			Host: clientName, ETLD: clientETLD}, server, "0", "root"),
		proc(t, sock{Action: "socket_opened", Direction: "egress", Local: c.Client, Remote: c.Server,
			Host: serverName, ETLD: serverETLD}, client, nobodyID, "nobody"),
	}

	// sockresolve has read the ingress socket and waits for its name:
	// stop the pipeline now.
	waitUntil(t, 30*time.Second, "PTR question about "+clientIP, func() bool { return dns.Queries(clientIP) > 0 })
	asked := time.Now()
	target := cmd.Process.Pid
	if group {
		target = -target
	}
	if err := syscall.Kill(target, sig); err != nil {
		t.Fatal(err)
	}
	tl.read()
	for _, s := range docs(t, tl.lines, locals) {
		if s.Direction == "ingress" && time.Since(asked) < late {
			t.Errorf("the ingress document was written before its DNS answer could come: %+v", s)
		}
	}

	select {
	case err = <-done:
		stopped = true
	case <-time.After(30 * time.Second):
		t.Fatalf("watch still runs 30 s after %v; stderr:\n%s", sig, stderr.String())
	}
	if code := exitCode(err); code != 0 {
		t.Errorf("watch exit status %d after %v, want 0; stderr:\n%s", code, sig, stderr.String())
	}
	if bytes.Contains(stderr.Bytes(), []byte("failed")) || bytes.Contains(stderr.Bytes(), []byte("killed")) {
		t.Errorf("stderr reports a failure:\n%s", stderr.String())
	}
	tl.read()
	got := docs(t, tl.lines, locals)
	sortSocks(want)
	sortSocks(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("documents of the test's sockets (-want +got):\n%s\nstderr:\n%s", diff, stderr.String())
	}
	// watch 1s: every document says the period, as Metricbeat's do.
	for _, l := range tl.lines {
		if len(l) > 0 && !bytes.Contains(l, []byte(`"metricset":{"name":"socket","period":1000}`)) {
			t.Errorf("no metricset.period of 1000 ms in %s", l)
		}
	}
}

// runOnce runs watch --once and returns its documents of locals.
func runOnce(t *testing.T, tr tree, env []string, locals map[string]bool, args ...string) []sock {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := watchCmd(t, tr, env, append([]string{"--once"}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("watch --once: %v\nstderr:\n%s", err, stderr.String())
	}
	got := docs(t, bytes.Split(bytes.TrimSpace(stdout.Bytes()), []byte("\n")), locals)
	sortSocks(got)
	return got
}

// TestWatchOnce runs the cron style (watch --once) three times against
// the same state directory: the first run reports what exists, the second
// only what opened and closed in between (with reverse lookups answered
// from the cache that the first run saved), the third nothing.
func TestWatchOnce(t *testing.T) {
	tr := setup(t)
	uid, gid := nobody(t)
	nobodyID := strconv.Itoa(int(uid))
	dns := dnstest.Start(t)
	dns.Set(serverIP, dnstest.Answer{Names: []string{serverName}})
	dns.Set(clientIP, dnstest.Answer{Names: []string{clientName}})
	server := startHelper(t, tr, "server", nil)
	client := startHelper(t, tr, "client", &syscall.Credential{Uid: uid, Gid: gid})
	state := filepath.Join(t.TempDir(), "state")
	env := []string{"WATCH_STATE_DIR=" + state, "WATCH_CLOSED=1"}
	args := []string{"--reverse-lookup", "--dns-server", dns.Addr}

	lnA := server.do("listen " + serverIP)
	c1 := connect(server, lnA[0], lnA[1], client, clientIP)

	locals := set(lnA[1], c1.Client)
	got := runOnce(t, tr, env, locals, args...)
	want := []sock{
		proc(t, sock{Action: "existing_socket", Direction: "listening", Local: lnA[1]}, server, "0", "root"),
		proc(t, sock{Action: "existing_socket", Direction: "ingress", Local: c1.Server, Remote: c1.Client,
			Host: clientName, ETLD: clientETLD}, server, "0", "root"),
		proc(t, sock{Action: "existing_socket", Direction: "egress", Local: c1.Client, Remote: c1.Server,
			Host: serverName, ETLD: serverETLD}, client, nobodyID, "nobody"),
	}
	sortSocks(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("first run (-want +got):\n%s", diff)
	}
	for _, f := range []string{"diff.state", "resolve.cache"} {
		if _, err := os.Stat(filepath.Join(state, f)); err != nil {
			t.Errorf("after the first run: %v", err)
		}
	}
	// Other sockets of the host may bring other addresses: count only
	// the questions about the test's.
	asked := func() int { return dns.Queries(serverIP) + dns.Queries(clientIP) }
	queries := asked()

	// Between the runs: the connection goes (reset on both sides, so no
	// TIME_WAIT is left), a new listener and a new connection come.
	client.do("close " + c1.ClientID)
	server.do("close " + c1.ServerID)
	lnB := server.do("listen " + serverIP)
	c2 := connect(server, lnB[0], lnB[1], client, clientIP)

	locals = set(lnA[1], c1.Client, lnB[1], c2.Client)
	got = runOnce(t, tr, env, locals, args...)
	want = []sock{
		proc(t, sock{Action: "socket_closed", Direction: "ingress", Local: c1.Server, Remote: c1.Client,
			Host: clientName, ETLD: clientETLD}, nil, "0", "root"),
		proc(t, sock{Action: "socket_closed", Direction: "egress", Local: c1.Client, Remote: c1.Server,
			Host: serverName, ETLD: serverETLD}, nil, nobodyID, "nobody"),
		proc(t, sock{Action: "socket_opened", Direction: "listening", Local: lnB[1]}, server, "0", "root"),
		proc(t, sock{Action: "socket_opened", Direction: "ingress", Local: c2.Server, Remote: c2.Client,
			Host: clientName, ETLD: clientETLD}, server, "0", "root"),
		proc(t, sock{Action: "socket_opened", Direction: "egress", Local: c2.Client, Remote: c2.Server,
			Host: serverName, ETLD: serverETLD}, client, nobodyID, "nobody"),
	}
	sortSocks(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("second run (-want +got):\n%s", diff)
	}
	if n := asked(); n != queries {
		t.Errorf("second run asked the DNS server %d more questions; want every name from the saved cache", n-queries)
	}

	if got := runOnce(t, tr, env, locals, args...); len(got) != 0 {
		t.Errorf("third run, nothing changed: got %+v", got)
	}
}

// TestWatchUnprivileged runs the pipeline as nobody, as the systemd
// units do: with CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH as ambient
// capabilities it sees the process of a root socket; without them it
// sees only nobody's own processes and says nothing of the others.
func TestWatchUnprivileged(t *testing.T) {
	tr := setup(t)
	uid, gid := nobody(t)
	nobodyID := strconv.Itoa(int(uid))
	server := startHelper(t, tr, "server", nil)
	client := startHelper(t, tr, "client", &syscall.Credential{Uid: uid, Gid: gid})
	ln := server.do("listen " + serverIP)
	c := connect(server, ln[0], ln[1], client, clientIP)
	locals := set(ln[1], c.Client)

	for _, tc := range []struct {
		name string
		caps []uintptr
		want []sock
	}{{
		name: "with capabilities",
		caps: []uintptr{19 /* CAP_SYS_PTRACE */, 2 /* CAP_DAC_READ_SEARCH */},
		want: []sock{
			proc(t, sock{Action: "existing_socket", Direction: "listening", Local: ln[1]}, server, "0", "root"),
			proc(t, sock{Action: "existing_socket", Direction: "ingress", Local: c.Server, Remote: c.Client}, server, "0", "root"),
			proc(t, sock{Action: "existing_socket", Direction: "egress", Local: c.Client, Remote: c.Server}, client, nobodyID, "nobody"),
		},
	}, {
		name: "without",
		want: []sock{
			proc(t, sock{Action: "existing_socket", Direction: "listening", Local: ln[1]}, nil, "0", "root"),
			proc(t, sock{Action: "existing_socket", Direction: "ingress", Local: c.Server, Remote: c.Client}, nil, "0", "root"),
			proc(t, sock{Action: "existing_socket", Direction: "egress", Local: c.Client, Remote: c.Server}, client, nobodyID, "nobody"),
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := privateDir(t, uid, gid)
			var stdout, stderr bytes.Buffer
			cmd := watchCmd(t, tr, nil, "--once", "--state-dir", filepath.Join(dir, "state"))
			cmd.Env = append(cmd.Env, "TMPDIR="+dir)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			cmd.SysProcAttr = &syscall.SysProcAttr{
				Credential:  &syscall.Credential{Uid: uid, Gid: gid},
				AmbientCaps: tc.caps,
			}
			if err := cmd.Run(); err != nil {
				t.Fatalf("watch --once as nobody: %v\nstderr:\n%s", err, stderr.String())
			}
			got := docs(t, bytes.Split(bytes.TrimSpace(stdout.Bytes()), []byte("\n")), locals)
			sortSocks(got)
			sortSocks(tc.want)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("documents (-want +got):\n%s\nstderr:\n%s", diff, stderr.String())
			}
		})
	}
}

// TestWatchMissingProgram: without a program, watch says which, how to
// get it, and exits 127; sockresolve is needed only with reverse lookups.
func TestWatchMissingProgram(t *testing.T) {
	tr := setup(t)
	dir := t.TempDir()
	watch := filepath.Join(dir, "watch")
	if err := copyFile(tr.Watch, watch); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range programs {
		if p == "sockresolve" {
			continue
		}
		if err := os.Symlink(filepath.Join(tr.Bin, p), filepath.Join(bin, p)); err != nil {
			t.Fatal(err)
		}
	}
	run := func(env []string, args ...string) (int, string) {
		t.Helper()
		var stderr bytes.Buffer
		cmd := exec.Command(watch, args...)
		cmd.Env = append([]string{"PATH=/usr/bin:/bin", "TMPDIR=" + t.TempDir()}, env...)
		cmd.Stdout, cmd.Stderr = nil, &stderr
		err := cmd.Run()
		return exitCode(err), stderr.String()
	}
	hints := []string{
		"go install github.com/sockpipe/sockpipe/cmd/...@latest",
		"go build -o bin/ ./cmd/...",
		"SOCKPIPE_BIN",
	}

	code, stderr := run(nil, "--reverse-lookup", "--count", "1")
	if code != 127 {
		t.Errorf("without sockresolve, --reverse-lookup: exit status %d, want 127; stderr:\n%s", code, stderr)
	}
	for _, want := range append([]string{"cannot find sockresolve in " + bin}, hints...) {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr does not say %q:\n%s", want, stderr)
		}
	}

	if code, stderr := run(nil, "--count", "1"); code != 0 {
		t.Errorf("without sockresolve, no reverse lookup: exit status %d, want 0; stderr:\n%s", code, stderr)
	}

	empty := t.TempDir()
	code, stderr = run([]string{"SOCKPIPE_BIN=" + empty}, "--count", "1")
	if code != 127 || !strings.Contains(stderr, "cannot find sockdump sockdiff sockproc sockecs in SOCKPIPE_BIN ("+empty+")") {
		t.Errorf("SOCKPIPE_BIN empty: exit status %d, want 127 and the programs named; stderr:\n%s", code, stderr)
	}
}

// TestWatchStageFails: a stage that fails makes watch fail, naming it,
// while the other stages end cleanly.
func TestWatchStageFails(t *testing.T) {
	tr := setup(t)
	state := t.TempDir()
	// sockdiff cannot save its state where a directory stands.
	if err := os.Mkdir(filepath.Join(state, "diff.state"), 0o755); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := watchCmd(t, tr, nil, "--once", "--state-dir", state)
	cmd.Stderr = &stderr
	err := cmd.Run()
	if code := exitCode(err); code != 1 {
		t.Errorf("exit status %d, want 1; stderr:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "watch: sockdiff failed") {
		t.Errorf("stderr does not name sockdiff:\n%s", stderr.String())
	}
	for _, p := range []string{"sockdump", "sockproc", "sockecs"} {
		if strings.Contains(stderr.String(), "watch: "+p) {
			t.Errorf("stderr blames %s:\n%s", p, stderr.String())
		}
	}
}

// TestWatchUsage: bad options are usage errors (exit 2), found before any
// stage runs.
func TestWatchUsage(t *testing.T) {
	tr := setup(t)
	for _, tc := range []struct {
		args []string
		env  []string
		code int
		want string
	}{
		{[]string{"--help"}, nil, 0, "usage: watch [options] [PERIOD]"},
		{[]string{"--version"}, nil, 0, "sockpipe-watch "},
		{[]string{"1x"}, nil, 2, "PERIOD must be a duration"},
		{nil, []string{"WATCH_PERIOD=soon"}, 2, "PERIOD must be a duration"},
		{[]string{"--once"}, nil, 2, "--once needs --state-dir DIR"},
		{[]string{"--success-ttl", "1y"}, nil, 2, "--success-ttl must be a duration"},
		{[]string{"--count"}, nil, 2, "option --count needs a value"},
		{[]string{"--frobnicate"}, nil, 2, "unknown option --frobnicate"},
		{[]string{"1s", "2s"}, nil, 2, "unexpected argument '2s'"},
		{nil, []string{"WATCH_CLOSED=maybe"}, 2, "WATCH_CLOSED must be 1 or 0"},
	} {
		var stdout, stderr bytes.Buffer
		cmd := watchCmd(t, tr, tc.env, tc.args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		code := exitCode(cmd.Run())
		if code != tc.code || !strings.Contains(stdout.String()+stderr.String(), tc.want) {
			t.Errorf("watch %q %q: exit status %d, want %d and %q; output:\n%s%s", tc.env, tc.args, code, tc.code, tc.want, stdout.String(), stderr.String())
		}
	}
}

// TestWatchRestart: the streaming pipeline with a state directory (as the
// systemd service runs it) reports after a restart only what changed
// while it was down.
func TestWatchRestart(t *testing.T) {
	tr := setup(t)
	uid, gid := nobody(t)
	nobodyID := strconv.Itoa(int(uid))
	server := startHelper(t, tr, "server", nil)
	client := startHelper(t, tr, "client", &syscall.Credential{Uid: uid, Gid: gid})
	state := filepath.Join(t.TempDir(), "state")
	run := func(locals map[string]bool) []sock {
		t.Helper()
		var stdout, stderr bytes.Buffer
		cmd := watchCmd(t, tr, []string{"WATCH_STATE_DIR=" + state}, "200ms", "--count", "2")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("watch: %v\nstderr:\n%s", err, stderr.String())
		}
		got := docs(t, bytes.Split(bytes.TrimSpace(stdout.Bytes()), []byte("\n")), locals)
		sortSocks(got)
		return got
	}

	lnA := server.do("listen " + serverIP)
	c := connect(server, lnA[0], lnA[1], client, clientIP)
	got := run(set(lnA[1], c.Client))
	want := []sock{
		proc(t, sock{Action: "existing_socket", Direction: "listening", Local: lnA[1]}, server, "0", "root"),
		proc(t, sock{Action: "existing_socket", Direction: "ingress", Local: c.Server, Remote: c.Client}, server, "0", "root"),
		proc(t, sock{Action: "existing_socket", Direction: "egress", Local: c.Client, Remote: c.Server}, client, nobodyID, "nobody"),
	}
	sortSocks(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("first run (-want +got):\n%s", diff)
	}

	lnB := server.do("listen " + serverIP)
	got = run(set(lnA[1], c.Client, lnB[1]))
	want = []sock{proc(t, sock{Action: "socket_opened", Direction: "listening", Local: lnB[1]}, server, "0", "root")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after a restart (-want +got):\n%s", diff)
	}
}

// TestWatchOptions: the options that shape the documents reach sockecs.
func TestWatchOptions(t *testing.T) {
	tr := setup(t)
	ln, err := net.Listen("tcp", serverIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var stdout, stderr bytes.Buffer
	cmd := watchCmd(t, tr, []string{"WATCH_STRICT_ECS=1", "WATCH_INDEX=sockets-test"}, "--count", "1", "--hostname", "web-1.example.org", "--bulk")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("watch: %v\nstderr:\n%s", err, stderr.String())
	}
	lines := bytes.Split(bytes.TrimSpace(stdout.Bytes()), []byte("\n"))
	port := []byte(`"port":` + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	for i := 1; i < len(lines); i += 2 {
		if !bytes.Contains(lines[i], port) {
			continue
		}
		var d struct {
			Host struct {
				Hostname string `json:"hostname"`
			} `json:"host"`
			Network struct {
				IANA string `json:"iana_number"`
			} `json:"network"`
		}
		if err := codec.Unmarshal(lines[i], &d); err != nil {
			t.Fatal(err)
		}
		if d.Host.Hostname != "web-1.example.org" || d.Network.IANA != "6" {
			t.Errorf("--strict-ecs --hostname: host.hostname %q, network.iana_number %q", d.Host.Hostname, d.Network.IANA)
		}
		if want := `{"create":{"_index":"sockets-test"}}`; string(lines[i-1]) != want {
			t.Errorf("--bulk with WATCH_INDEX: action %s, want %s", lines[i-1], want)
		}
		return
	}
	t.Errorf("no document of the test's listener; stderr:\n%s", stderr.String())
}

// TestWatchClosedStreaming: with --closed (and the kernel's destroy
// notifications, on by default), a connection that opens and then goes
// while the pipeline runs is reported once opened and once closed, each
// side, with no duplicate from the notifications.
func TestWatchClosedStreaming(t *testing.T) {
	tr := setup(t)
	uid, gid := nobody(t)
	nobodyID := strconv.Itoa(int(uid))
	server := startHelper(t, tr, "server", nil)
	client := startHelper(t, tr, "client", &syscall.Credential{Uid: uid, Gid: gid})
	ln := server.do("listen " + serverIP)

	outPath := filepath.Join(t.TempDir(), "out.ndjson")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var stderr bytes.Buffer
	cmd := watchCmd(t, tr, []string{"WATCH_CLOSED=1"}, "200ms")
	cmd.Stdout, cmd.Stderr = out, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Kill()
			<-done
		}
	})
	tl := openTail(t, outPath, serverIP, clientIP)
	tl.waitFor(t, 30*time.Second, "document of the listener", set(ln[1]), func(s []sock) bool { return len(s) > 0 })

	c := connect(server, ln[0], ln[1], client, clientIP)
	locals := set(ln[1], c.Client)
	count := func(action string) func([]sock) bool {
		return func(s []sock) bool {
			n := 0
			for _, x := range s {
				if x.Action == action {
					n++
				}
			}
			return n >= 2
		}
	}
	tl.waitFor(t, 30*time.Second, "opened documents of both sides", locals, count("socket_opened"))
	client.do("close " + c.ClientID)
	server.do("close " + c.ServerID)
	tl.waitFor(t, 30*time.Second, "closed documents of both sides", locals, count("socket_closed"))
	// Two more dumps through the whole pipeline, for any late duplicate:
	// each is known to be out when the document of a listener opened
	// after the one before comes.
	for range 2 {
		canary, err := net.Listen("tcp", serverIP+":0")
		if err != nil {
			t.Fatal(err)
		}
		tl.waitFor(t, 30*time.Second, "document of a later listener", set(canary.Addr().String()), func(s []sock) bool { return len(s) > 0 })
		canary.Close()
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err = <-done:
		stopped = true
	case <-time.After(30 * time.Second):
		t.Fatalf("watch still runs 30 s after SIGTERM; stderr:\n%s", stderr.String())
	}
	if code := exitCode(err); code != 0 {
		t.Errorf("watch exit status %d, want 0; stderr:\n%s", code, stderr.String())
	}
	tl.read()
	got := docs(t, tl.lines, locals)
	sortSocks(got)
	want := []sock{
		proc(t, sock{Action: "existing_socket", Direction: "listening", Local: ln[1]}, server, "0", "root"),
		// sockproc still knows the process of a socket it saw.
		proc(t, sock{Action: "socket_closed", Direction: "ingress", Local: c.Server, Remote: c.Client}, server, "0", "root"),
		proc(t, sock{Action: "socket_opened", Direction: "ingress", Local: c.Server, Remote: c.Client}, server, "0", "root"),
		proc(t, sock{Action: "socket_closed", Direction: "egress", Local: c.Client, Remote: c.Server}, client, nobodyID, "nobody"),
		proc(t, sock{Action: "socket_opened", Direction: "egress", Local: c.Client, Remote: c.Server}, client, nobodyID, "nobody"),
	}
	sortSocks(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("documents (-want +got):\n%s\nstderr:\n%s", diff, stderr.String())
	}
}
