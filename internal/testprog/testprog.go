// Package testprog builds sockpipe's programs for tests and runs them as
// the unprivileged user nobody.
package testprog

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// Nobody is the uid and gid of the unprivileged user the tests run as.
const Nobody = 65534

// Build builds the program of package pkg (a full import path) into a
// directory that every user may read, so it can run as nobody, and
// returns its path. The directory is removed when the test ends.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	dir := PublicDir(t)
	bin := filepath.Join(dir, filepath.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// PublicDir returns a new temporary directory that every user may read
// and enter (a test's own temporary directories are private to it),
// removed when the test ends.
func PublicDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sockpipe-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// MkdirTemp makes the directory private to its owner.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// CopySelf copies the running test binary, as name, into a PublicDir, so
// that it can run as nobody (the build directory may be private), and
// returns its path.
func CopySelf(t testing.TB, name string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(PublicDir(t), name)
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// AsNobody makes cmd run as nobody. Only root may switch users: the test
// is skipped otherwise.
func AsNobody(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to switch to nobody")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: Nobody, Gid: Nobody}}
}

// TCPPair opens a listener on an ephemeral port of 127.0.0.1, connects to
// it and accepts, and returns the three sockets, closed when the test ends.
func TCPPair(t testing.TB) (l net.Listener, client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	client, err = net.DialTimeout("tcp4", l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return l, client, server
}
