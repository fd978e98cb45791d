package sockproc

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/proctable"
	"github.com/sockpipe/sockpipe/internal/record"
	"github.com/sockpipe/sockpipe/internal/sockdump"
	"github.com/sockpipe/sockpipe/internal/testprog"
)

// The test binary doubles as the helper processes of the integration
// tests, chosen by SOCKPROC_HELPER:
//
//	hold ARGS...      listen on 127.0.0.1, connect to itself, print
//	                  "ready LISTENPORT CLIENTPORT", accept more, hold
//	                  everything until stdin closes
//	connect ADDR      connect to ADDR, print "ready LOCALPORT", hold until
//	                  stdin closes
//	sockproc ARGS...  run sockproc
//	sockproc-hostproc ARGS...
//	                  run sockproc in PID and mount namespaces of its
//	                  own, the host's /proc at $SOCKPROC_HOSTPROC
//	sockproc-cgns ARGS...
//	                  run sockproc in a cgroup namespace of its own,
//	                  once a byte arrives on descriptor 3
func TestMain(m *testing.M) {
	switch os.Getenv("SOCKPROC_HELPER") {
	case "":
		os.Exit(m.Run())
	case "hold":
		helperHold()
	case "connect":
		helperConnect(os.Args[2])
	case "sockproc":
		err := Run(context.Background(), os.Args[2:], os.Stdin, os.Stdout, os.Stderr)
		os.Exit(cli.Code("sockproc", err, os.Stderr))
	case "sockproc-hostproc":
		helperHostProc(os.Args[2:])
	case "sockproc-cgns":
		helperCgroupNS(os.Args[2:])
	}
	os.Exit(0)
}

func die(err error) {
	fmt.Fprintln(os.Stderr, "helper:", err)
	os.Exit(3)
}

func helperHold() {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		die(err)
	}
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		die(err)
	}
	var mu sync.Mutex
	var held []net.Conn // referenced, so that no finalizer closes them
	a, err := ln.Accept()
	if err != nil {
		die(err)
	}
	held = append(held, c, a)
	fmt.Printf("ready %d %d\n", ln.Addr().(*net.TCPAddr).Port, c.LocalAddr().(*net.TCPAddr).Port)
	go func() {
		for {
			a, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, a)
			mu.Unlock()
		}
	}()
	io.Copy(io.Discard, os.Stdin)
	mu.Lock()
	defer mu.Unlock()
	for _, c := range held {
		c.Close()
	}
	ln.Close()
}

func helperConnect(addr string) {
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		die(err)
	}
	fmt.Printf("ready %d\n", c.LocalAddr().(*net.TCPAddr).Port)
	io.Copy(io.Discard, os.Stdin)
	c.Close()
}

// helperBin copies the test binary to a directory that every user may
// read, under a name of 15 bytes (the most a process name holds), and
// writes a passwd file beside it.
func helperBin(t *testing.T) (bin, passwd string) {
	t.Helper()
	bin = testprog.CopySelf(t, "sockproc-helper")
	dir := filepath.Dir(bin)
	passwd = filepath.Join(dir, "passwd")
	users := "root:x:0:0:Charlie Root,,,:/root:/bin/sh\nnobody:x:65534:65534:Nobody Here,Room 0:/nonexistent:/usr/sbin/nologin\n"
	if err := os.WriteFile(passwd, []byte(users), 0o644); err != nil {
		t.Fatal(err)
	}
	return bin, passwd
}

// child is a running helper process.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	ready []int // the numbers after "ready"
}

func startChild(t *testing.T, bin string, cred *syscall.Credential, mode string, args ...string) *child {
	t.Helper()
	cmd := exec.Command(bin, append([]string{mode}, args...)...)
	cmd.Env = append(os.Environ(), "SOCKPROC_HELPER="+mode)
	cmd.Stderr = os.Stderr
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin}
	t.Cleanup(c.stop)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("%s helper: %v", mode, err)
	}
	f := strings.Fields(line)
	if len(f) == 0 || f[0] != "ready" {
		t.Fatalf("%s helper said %q", mode, line)
	}
	for _, s := range f[1:] {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("%s helper said %q", mode, line)
		}
		c.ready = append(c.ready, n)
	}
	return c
}

// stop ends the helper and waits for it.
func (c *child) stop() {
	if c.stdin != nil {
		c.stdin.Close()
		c.stdin = nil
		c.cmd.Wait()
	}
}

// dump returns the records of the loopback sockets that have one of ports
// at either end, from a real sockdump of this host, each snapshot
// followed by its snapshot record.
func dump(t *testing.T, ports map[int]bool) []*record.Record {
	t.Helper()
	var out bytes.Buffer
	if err := sockdump.Run(context.Background(), nil, nil, &out, io.Discard); err != nil {
		t.Skipf("sockdump: %v", err)
	}
	var recs []*record.Record
	for _, line := range bytes.Split(out.Bytes(), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		r, err := codec.Decode(line)
		if err != nil {
			t.Fatal(err)
		}
		if r.Type == record.TypeSnapshot || (r.Local.IP == "127.0.0.1" && (ports[int(r.Local.Port)] || ports[int(r.Remote.Port)])) {
			recs = append(recs, r)
		}
	}
	return recs
}

func encode(recs []*record.Record) []byte {
	var b bytes.Buffer
	enc := codec.NewEncoder()
	for _, r := range recs {
		b.Write(enc.Encode(r))
	}
	return b.Bytes()
}

func decodeAll(t *testing.T, b []byte) []*record.Record {
	t.Helper()
	var recs []*record.Record
	for _, line := range bytes.Split(b, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		r, err := codec.Decode(line)
		if err != nil {
			t.Fatalf("output line %q: %v", line, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// find returns the socket records with these local and remote ports
// (remote 0 for a listener).
func find(recs []*record.Record, local, remote int) []*record.Record {
	var found []*record.Record
	for _, r := range recs {
		if r.Type == record.TypeSocket && int(r.Local.Port) == local && int(r.Remote.Port) == remote {
			found = append(found, r)
		}
	}
	return found
}

func one(t *testing.T, recs []*record.Record, what string, local, remote int) *record.Record {
	t.Helper()
	f := find(recs, local, remote)
	if len(f) != 1 {
		t.Fatalf("%s (local port %d, remote port %d): %d records, want 1", what, local, remote, len(f))
	}
	return f[0]
}

var nobodyCred = &syscall.Credential{Uid: 65534, Gid: 65534}

// TestIntegrationProcesses attributes real loopback sockets of real
// processes, one of them running as nobody, and a socket whose process
// exited.
func TestIntegrationProcesses(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a helper as nobody and to see every process")
	}
	if ok, _ := proctable.Privileged(); !ok {
		t.Skip("root without CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH")
	}
	bin, passwd := helperBin(t)
	holder := startChild(t, bin, nil, "hold", "two words", "x")
	lport, cport := holder.ready[0], holder.ready[1]
	nobody := startChild(t, bin, nobodyCred, "hold", "as nobody")
	nlport := nobody.ready[0]
	leaver := startChild(t, bin, nil, "connect", "127.0.0.1:"+strconv.Itoa(lport))
	leavePort := leaver.ready[0]
	ports := map[int]bool{lport: true, cport: true, nlport: true, leavePort: true}

	// Records of the sockets while every process lives; then the leaver
	// exits before sockproc reads them, and a second snapshot shows its
	// socket orphaned (fin-wait-2, inode 0).
	first := dump(t, ports)
	leaverPID := leaver.cmd.Process.Pid
	leaver.stop()
	var second []*record.Record
	deadline := time.Now().Add(5 * time.Second)
	for {
		second = dump(t, map[int]bool{leavePort: true})
		if f := find(second, leavePort, lport); len(f) == 1 && f[0].Inode == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the exited helper's socket did not lose its inode: %+v", find(second, leavePort, lport))
		}
		time.Sleep(20 * time.Millisecond)
	}

	var stdout, stderr bytes.Buffer
	in := bytes.NewReader(encode(append(first, second...)))
	if err := Run(context.Background(), []string{"--passwd", passwd}, in, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Errorf("stderr: %s", stderr.String())
	}
	// The kernel's socket file iterator (the default, as root) and the
	// readlink of every /proc/PID/fd link find the same.
	for _, iter := range []bool{true, false} {
		var e Env
		if !iter {
			e.SocketFiles = readFDLinks
		}
		var out, errs bytes.Buffer
		if err := e.Run(context.Background(), []string{"--passwd", passwd, "--stats"}, bytes.NewReader(encode(append(first, second...))), &out, &errs); err != nil {
			t.Fatalf("run: %v\n%s", err, errs.String())
		}
		if out.String() != stdout.String() {
			t.Errorf("iterator %v: output\n%s\nwant\n%s", iter, out.String(), stdout.String())
		}
		_, total, _ := strings.Cut(errs.String(), "total sockets=")
		if strings.Contains(total, " walks=0 ") || strings.Contains(total, " fd_dirs=0 ") != iter {
			t.Errorf("iterator %v: stats %s", iter, errs.String())
		}
	}
	out := decodeAll(t, stdout.Bytes())
	n := len(first) + len(second)
	if len(out) != n {
		t.Fatalf("%d records out, %d in", len(out), n)
	}
	firstOut, secondOut := out[:len(first)], out[len(first):]

	holderProc := &record.Process{
		PID:        holder.cmd.Process.Pid,
		PPID:       os.Getpid(),
		Name:       "sockproc-helper",
		Executable: bin,
		Args:       []string{bin, "hold", "two words", "x"},
		Cmdline:    bin + " hold two words x",
	}
	// uid 0 is "root" whatever the passwd file says, as in Metricbeat.
	root := &record.User{ID: "0", Name: "root", FullName: "root"}
	ignoreStart := cmpopts.IgnoreFields(record.Process{}, "Start")
	checkProc := func(what string, r *record.Record, want *record.Process, wantUser *record.User) {
		t.Helper()
		if diff := cmp.Diff(want, r.Process, ignoreStart); diff != "" {
			t.Errorf("%s: process (-want +got):\n%s", what, diff)
		}
		if r.Process != nil {
			if d := time.Since(r.Process.Start); d < -time.Second || d > time.Minute {
				t.Errorf("%s: start %v is not the last minute", what, r.Process.Start)
			}
		}
		if r.ProcessError != "" {
			t.Errorf("%s: process_error %q", what, r.ProcessError)
		}
		if diff := cmp.Diff(wantUser, r.User); diff != "" {
			t.Errorf("%s: user (-want +got):\n%s", what, diff)
		}
	}
	checkProc("listener", one(t, firstOut, "listener", lport, 0), holderProc, root)
	checkProc("client", one(t, firstOut, "client", cport, lport), holderProc, root)
	checkProc("accepted", one(t, firstOut, "accepted", lport, cport), holderProc, root)
	checkProc("accepted from the leaver", one(t, firstOut, "accepted from the leaver", lport, leavePort), holderProc, root)

	nobodyProc := &record.Process{
		PID:        nobody.cmd.Process.Pid,
		PPID:       os.Getpid(),
		Name:       "sockproc-helper",
		Executable: bin,
		Args:       []string{bin, "hold", "as nobody"},
		Cmdline:    bin + " hold as nobody",
	}
	nobodyUser := &record.User{ID: "65534", Name: "nobody", FullName: "Nobody Here"}
	checkProc("nobody's listener", one(t, firstOut, "nobody's listener", nlport, 0), nobodyProc, nobodyUser)

	// The leaver's socket, seen while it lived, read after it exited.
	gone := one(t, firstOut, "leaver", leavePort, lport)
	if gone.Process != nil {
		t.Errorf("socket of exited pid %d attributed to %+v", leaverPID, gone.Process)
	}
	if want := fmt.Sprintf("process not found. inode=%d, tcp_state=ESTAB", gone.Inode); gone.Inode == 0 || gone.ProcessError != want {
		t.Errorf("leaver: process_error %q, want %q", gone.ProcessError, want)
	}
	// The same connection once orphaned.
	orphan := one(t, secondOut, "orphan", leavePort, lport)
	if want := "process has exited. inode=0, tcp_state=" + metricbeatState(orphan.State); orphan.Process != nil || orphan.ProcessError != want {
		t.Errorf("orphan: process %+v, process_error %q, want %q", orphan.Process, orphan.ProcessError, want)
	}
	if diff := cmp.Diff(root, orphan.User); diff != "" {
		t.Errorf("orphan: user (-want +got):\n%s", diff)
	}

	// Unprivileged: the same records through sockproc running as nobody.
	t.Run("unprivileged", func(t *testing.T) {
		cmd := exec.Command(bin, "sockproc", "--passwd", passwd)
		cmd.Env = append(os.Environ(), "SOCKPROC_HELPER=sockproc")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobodyCred}
		cmd.Stdin = bytes.NewReader(encode(first))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("sockproc as nobody: %v\n%s", err, stderr.String())
		}
		want := "sockproc: warning: without CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, attribution is limited to the processes of uid 65534; other sockets get no process and no error\n"
		if diff := cmp.Diff(want, stderr.String()); diff != "" {
			t.Errorf("stderr (-want +got):\n%s", diff)
		}
		out := decodeAll(t, stdout.Bytes())
		for _, c := range []struct {
			what          string
			local, remote int
		}{{"listener", lport, 0}, {"client", cport, lport}, {"accepted", lport, cport}, {"leaver", leavePort, lport}} {
			r := one(t, out, c.what, c.local, c.remote)
			if r.Process != nil || r.ProcessError != "" {
				t.Errorf("%s of root's process: process %+v, process_error %q; want neither", c.what, r.Process, r.ProcessError)
			}
			if diff := cmp.Diff(root, r.User); diff != "" {
				t.Errorf("%s: user (-want +got):\n%s", c.what, diff)
			}
		}
		r := one(t, out, "nobody's listener", nlport, 0)
		if diff := cmp.Diff(nobodyProc, r.Process, ignoreStart); diff != "" {
			t.Errorf("nobody's own listener, unprivileged: process (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(nobodyUser, r.User); diff != "" {
			t.Errorf("nobody's own listener: user (-want +got):\n%s", diff)
		}
	})
}
