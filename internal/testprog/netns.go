package testprog

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var nsSeq atomic.Int64

// NetNS is a network namespace that a test created with ip-netns(8).
type NetNS struct {
	Name string // its name for ip netns
	Path string // its pin, /run/netns/NAME
	Ino  uint64 // its inode, the number records carry as "netns"
}

// NewNetNS creates a network namespace with its loopback up, pinned under
// /run/netns, and deletes it when the test ends. The test is skipped when
// not root or when ip(8) is missing.
func NewNetNS(t testing.TB) NetNS {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip(8) (iproute2) to create network namespaces")
	}
	name := fmt.Sprintf("sockpipe-test-%d-%d", os.Getpid(), nsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", name).Run() })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip -n %s link set lo up: %v: %s", name, err, out)
	}
	ns := NetNS{Name: name, Path: "/run/netns/" + name}
	var st syscall.Stat_t
	if err := syscall.Stat(ns.Path, &st); err != nil {
		t.Fatal(err)
	}
	ns.Ino = st.Ino
	return ns
}

// Sock is one socket that sockfix holds: its transport (tcp, udp), its
// role (listener, client, server, bound, timewait) and its addresses as
// Go prints them ("127.0.0.1:80", "[::1]:53"; Remote "-" when none).
type Sock struct {
	Transport, Role, Local, Remote string
}

// Fixture is a running sockfix.
type Fixture struct {
	PID   int
	Socks []Sock
	stop  func()
}

// Stop ends sockfix, which closes its sockets, and waits for it.
func (f *Fixture) Stop() { f.stop() }

// StartFixture runs the sockfix program bin (built with Build) with args,
// inside the network namespace ns unless ns.Name is empty, waits until
// its sockets are in place and stops it when the test ends.
func StartFixture(t testing.TB, ns NetNS, bin string, args ...string) *Fixture {
	t.Helper()
	var cmd *exec.Cmd
	if ns.Name != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", ns.Name, bin}, args...)...)
	} else {
		cmd = exec.Command(bin, args...)
	}
	return startFixture(t, cmd, args)
}

// StartFixtureAsNobody runs sockfix as StartFixture does, in the test's
// own network namespace, as the user nobody (bin must be in a PublicDir,
// as Build makes it). The test is skipped when not root.
func StartFixtureAsNobody(t testing.TB, bin string, args ...string) *Fixture {
	t.Helper()
	cmd := exec.Command(bin, args...)
	AsNobody(t, cmd)
	return startFixture(t, cmd, args)
}

func startFixture(t testing.TB, cmd *exec.Cmd, args []string) *Fixture {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			stdin.Close()
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		})
	}
	t.Cleanup(stop)
	f := &Fixture{stop: stop}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("sockfix %v ended before it was ready", args)
			}
			fs := strings.Fields(line)
			if len(fs) == 2 && fs[0] == "ready" {
				f.PID, _ = strconv.Atoi(fs[1])
				go func() {
					for range lines {
					}
				}()
				return f
			}
			if len(fs) != 4 {
				t.Fatalf("sockfix: unexpected line %q", line)
			}
			f.Socks = append(f.Socks, Sock{fs[0], fs[1], fs[2], fs[3]})
		case <-timeout:
			t.Fatalf("sockfix %v not ready after 30s", args)
		}
	}
}
