package cli

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sockpipe/sockpipe/internal/testprog"
)

// TestStopSignals runs this test binary again, once as is and once with
// SIGINT ignored (as a shell starts a background command), and asks it
// which signals stop it.
func TestStopSignals(t *testing.T) {
	if os.Getenv("CLI_TEST_PRINT_SIGNALS") == "1" {
		var names []string
		for _, s := range stopSignals() {
			names = append(names, s.String())
		}
		os.Stdout.WriteString(strings.Join(names, ",") + "\n")
		return
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	for _, tc := range []struct {
		name, trap, want string
	}{
		{"default", "", "interrupt,terminated"},
		{"SIGINT ignored", `trap "" INT;`, "terminated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(sh, "-c", tc.trap+` exec "$0" -test.run='^TestStopSignals$'`, os.Args[0])
			cmd.Env = append(os.Environ(), "CLI_TEST_PRINT_SIGNALS=1")
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.SplitN(string(out), "\n", 2)[0]; got != tc.want {
				t.Errorf("stop signals = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestParseUsage checks that a bad flag or argument gives the error once,
// the synopsis and a hint, and that only -h prints the full usage.
func TestParseUsage(t *testing.T) {
	t.Parallel()
	const hint = "usage: prog [--n N]\nrun 'prog -h' for more"
	for _, tc := range []struct {
		name       string
		args       []string
		wantErr    string // "" for none
		wantCode   int
		wantStderr string // a prefix of what the flag set printed
	}{
		{"ok", []string{"--n", "3"}, "", 0, ""},
		{"bad flag", []string{"--bogus"}, "flag provided but not defined: -bogus\n" + hint, ExitUsage, ""},
		{"bad value", []string{"--n", "x"}, `invalid value "x" for flag -n: parse error` + "\n" + hint, ExitUsage, ""},
		{"argument", []string{"extra"}, `unexpected argument "extra"` + "\n" + hint, ExitUsage, ""},
		{"help", []string{"-h"}, flag.ErrHelp.Error(), 0, "usage: prog [--n N]\n\nFlags:\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stderr strings.Builder
			fs := FlagSet("prog", "prog [--n N]", "More.\n", &stderr)
			fs.Int("n", 0, "a number")
			err := Parse(fs, tc.args)
			if got := errString(err); got != tc.wantErr {
				t.Errorf("Parse error = %q, want %q", got, tc.wantErr)
			}
			var code strings.Builder
			if got := Code("prog", err, &code); got != tc.wantCode {
				t.Errorf("Code = %d, want %d", got, tc.wantCode)
			}
			if !strings.HasPrefix(stderr.String(), tc.wantStderr) || (tc.wantStderr == "" && stderr.Len() > 0) {
				t.Errorf("flag set printed %q, want %q…", stderr.String(), tc.wantStderr)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func pipeSize(t *testing.T, f *os.File) int {
	t.Helper()
	n, err := unix.FcntlInt(f.Fd(), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestGrowPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if n := pipeSize(t, w); n >= PipeSize {
		t.Skipf("pipes here start at %d bytes", n)
	}
	GrowPipe(w)
	if n := pipeSize(t, r); n != PipeSize {
		t.Errorf("pipe capacity %d after GrowPipe, want %d", n, PipeSize)
	}

	// Anything but a pipe is left alone, without a failure.
	f, err := os.Create(t.TempDir() + "/file")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	GrowPipe(f)
	if _, err := f.WriteString("x"); err != nil {
		t.Fatal(err)
	}
	// Nor is a file that is not open (os.NewFile of -1 is nil).
	GrowPipe(os.NewFile(^uintptr(0), "closed"))
}

// TestGrowPipeUnprivileged runs GrowPipe as nobody: a user's pipes may
// reach the default pipe-max-size without privileges.
func TestGrowPipeUnprivileged(t *testing.T) {
	if os.Getuid() != 0 {
		if os.Getenv("CLI_TEST_CHILD") == "" {
			t.Skip("needs root to run a child as nobody")
		}
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		GrowPipe(w)
		if n := pipeSize(t, r); n != PipeSize {
			t.Fatalf("pipe capacity %d after GrowPipe as uid %d, want %d", n, os.Getuid(), PipeSize)
		}
		return
	}
	exe := testprog.CopySelf(t, "test")
	cmd := exec.Command(exe, "-test.run", "^TestGrowPipeUnprivileged$", "-test.v", "-test.count=1")
	cmd.Dir = filepath.Dir(exe)
	cmd.Env = append(os.Environ(), "CLI_TEST_CHILD=1")
	testprog.AsNobody(t, cmd)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
}
