package proctable

import (
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestIntegrationSelf finds this test's own loopback listener in the real
// /proc.
func TestIntegrationSelf(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	tab, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	p := tab.Lookup(st.Ino, time.Now(), true)
	if p == nil {
		t.Fatalf("own listener (inode %d) not found: %v", st.Ino, tab.Stats())
	}
	exe, _ := os.Executable()
	if p.PID != os.Getpid() || p.PPID != os.Getppid() || p.Executable != exe ||
		len(p.Args) == 0 || p.Cmdline != strings.Join(p.Args, " ") || p.Name == "" {
		t.Errorf("Lookup = %+v; want pid %d ppid %d exe %s", p, os.Getpid(), os.Getppid(), exe)
	}
	if d := time.Since(p.Start); d < 0 || d > time.Hour {
		t.Errorf("start %v is not a recent past", p.Start)
	}
}

func TestIntegrationPrivileged(t *testing.T) {
	got, err := Privileged()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip(err)
	}
	// Cross-check with CapEff: bits 19 (CAP_SYS_PTRACE) and 2 (CAP_DAC_READ_SEARCH).
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			var eff uint64
			for _, c := range strings.TrimSpace(v) {
				eff <<= 4
				switch {
				case c >= '0' && c <= '9':
					eff |= uint64(c - '0')
				case c >= 'a' && c <= 'f':
					eff |= uint64(c-'a') + 10
				}
			}
			want := eff&(1<<19) != 0 && eff&(1<<2) != 0
			if got != want {
				t.Errorf("Privileged() = %v, CapEff %s says %v", got, strings.TrimSpace(v), want)
			}
			return
		}
	}
	t.Skip("no CapEff in /proc/self/status")
}
