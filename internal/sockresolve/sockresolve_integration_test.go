package sockresolve

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/revdns/dnstest"
	"github.com/sockpipe/sockpipe/internal/sockdump"
	"github.com/sockpipe/sockpipe/internal/testprog"
)

// TestIntegrationPipeline runs sockdump on the real kernel, with a
// loopback connection open, and sockresolve over its output.
func TestIntegrationPipeline(t *testing.T) {
	ln, c, _ := testprog.TCPPair(t)
	clientPort := c.LocalAddr().(*net.TCPAddr).Port

	var dump, stderr bytes.Buffer
	if err := sockdump.Run(context.Background(), nil, nil, &dump, &stderr); err != nil {
		t.Fatalf("sockdump: %v %s", err, stderr.String())
	}
	// The host may hold many sockets: keep those of our listener's port,
	// the snapshot record, and some others.
	lnPort := ln.Addr().(*net.TCPAddr).Port
	var input strings.Builder
	for i, line := range strings.SplitAfter(dump.String(), "\n") {
		if i < 200 || strings.Contains(line, fmt.Sprintf(`"port":%d`, lnPort)) || strings.Contains(line, `"type":"snapshot"`) {
			input.WriteString(line)
		}
	}
	srv := dnstest.Start(t)
	srv.Set("127.0.0.1", dnstest.Answer{Names: []string{"localhost."}})
	stdout, errs, err := run(t, []string{"--server", srv.Addr, "--timeout", "500ms"}, input.String())
	if err != nil || errs != "" {
		t.Fatalf("sockresolve: %v %s", err, errs)
	}
	in := strings.Count(input.String(), "\n")
	if out := strings.Count(stdout, "\n"); out != in {
		t.Errorf("%d lines in, %d out", in, out)
	}
	found := 0
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		r, err := codec.Decode([]byte(line))
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if r.Type != "socket" {
			continue
		}
		if r.Remote.Port == 0 && (r.Remote.Host != "" || r.Remote.HostError != "") {
			t.Errorf("a listener got a name: %s", line)
		}
		if int(r.Local.Port) == clientPort && int(r.Remote.Port) == lnPort && r.Remote.IP == "127.0.0.1" {
			found++
			if r.Remote.Host != "localhost." || r.Remote.ETLDPlusOne != "" || r.Remote.HostError != "" {
				t.Errorf("our connection: %s", line)
			}
		}
	}
	if found != 1 {
		t.Errorf("found our connection %d times, want 1", found)
	}
}

// TestIntegrationUnprivileged runs sockresolve as nobody: it needs no
// privilege, and writes its cache where nobody may write.
func TestIntegrationUnprivileged(t *testing.T) {
	if os.Getenv("SOCKRESOLVE_CHILD") == "1" {
		t.Skip("child")
	}
	if os.Geteuid() != 0 {
		t.Skip("not root: every other test already runs unprivileged")
	}
	uid, gid := uint32(65534), uint32(65534)
	if u, err := user.Lookup("nobody"); err == nil {
		if n, err := strconv.Atoi(u.Uid); err == nil {
			uid = uint32(n)
		}
		if n, err := strconv.Atoi(u.Gid); err == nil {
			gid = uint32(n)
		}
	}
	// A copy of this test binary that nobody may run, in a directory
	// nobody may write.
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "sockresolve.test")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(dir, "nobody")
	if err := os.Mkdir(own, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(own, int(uid), int(gid)); err != nil {
		t.Fatal(err)
	}

	srv := dnstest.Start(t)
	srv.Set("192.0.2.1", dnstest.Answer{Names: []string{"a.example.com."}})
	child := func(cache string) (string, string, error) {
		cmd := exec.Command(bin, "-test.run=^TestChild$")
		cmd.Env = append(os.Environ(), "SOCKRESOLVE_CHILD=1",
			"SOCKRESOLVE_ARGS=--server "+srv.Addr+" --cache "+cache)
		cmd.Stdin = strings.NewReader(sock("192.0.2.1", 443) + "\n")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
		err := cmd.Run()
		return out.String(), errb.String(), err
	}
	stdout, stderr, err := child(filepath.Join(own, "cache"))
	if err != nil {
		t.Fatalf("as nobody: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, `"host":"a.example.com."`) {
		t.Errorf("as nobody: stdout %q", stdout)
	}
	if fi, err := os.Stat(filepath.Join(own, "cache")); err != nil {
		t.Errorf("no cache file: %v", err)
	} else if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid {
		t.Errorf("cache file owned by %d", st.Uid)
	}
	// A cache in a directory nobody may not write: the record still
	// comes out, then the failure is reported with exit 1.
	stdout, stderr, err = child(filepath.Join(dir, "cache"))
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("unwritable cache as nobody: %v", err)
	}
	if !strings.Contains(stdout, `"host":"a.example.com."`) || !strings.Contains(stderr, "permission denied") {
		t.Errorf("unwritable cache as nobody: stdout %q stderr %q", stdout, stderr)
	}
}

// TestChild is sockresolve in a child process, for
// TestIntegrationUnprivileged.
func TestChild(t *testing.T) {
	if os.Getenv("SOCKRESOLVE_CHILD") != "1" {
		t.Skip("only as a child")
	}
	err := Run(context.Background(), strings.Fields(os.Getenv("SOCKRESOLVE_ARGS")), os.Stdin, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sockresolve:", err)
		os.Exit(1)
	}
	os.Exit(0)
}
