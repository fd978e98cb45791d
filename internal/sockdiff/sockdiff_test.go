package sockdiff

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/ndjson"
)

var t0 = time.Date(2026, 11, 26, 4, 30, 0, 0, time.UTC)

func socketLine(sec int, rport int, state string) string {
	return fmt.Sprintf(`{"type":"socket","time":%q,"family":"ipv4","transport":"tcp","state":%q,"local":{"ip":"10.0.0.1","port":22},"remote":{"ip":"10.0.0.2","port":%d},"direction":"ingress","inode":%d,"uid":0}`,
		t0.Add(time.Duration(sec)*time.Second).Format(time.RFC3339Nano), state, rport, 1000+rport)
}

func snapshotLine(sec int) string {
	return fmt.Sprintf(`{"type":"snapshot","time":%q,"schema":1,"sockets":1,"duration_ns":1000}`, t0.Add(time.Duration(sec)*time.Second).Format(time.RFC3339Nano))
}

// stream returns n snapshots of one socket each, a new connection each
// time.
func stream(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintln(&b, socketLine(i, 5000+i, "established"))
		fmt.Fprintln(&b, snapshotLine(i))
	}
	return b.String()
}

// TestSaveInterval checks that streaming with --state saves at most every
// --save-interval, at snapshot boundaries, and at the end: the clock is
// read once at the start and once per snapshot, and advances 4s a read.
func TestSaveInterval(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state")
	var seen []string // the state file's snapshot time whenever the clock is read
	clock := t0
	snapRE := regexp.MustCompile(`"snapshot":"([^"]*)"`)
	c := config{
		closed: true, state: path, lockTimeout: time.Second, saveInterval: 10 * time.Second,
		now: func() time.Time {
			b, err := os.ReadFile(path)
			switch {
			case errors.Is(err, os.ErrNotExist):
				seen = append(seen, "none")
			case err != nil:
				t.Error(err)
			default:
				seen = append(seen, string(snapRE.FindSubmatch(b)[1]))
			}
			clock = clock.Add(4 * time.Second)
			return clock
		},
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), c, strings.NewReader(stream(6)), &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	at := func(sec int) string { return t0.Add(time.Duration(sec) * time.Second).Format(time.RFC3339) }
	// The start and snapshots 1 to 6: saved after snapshots 3 (12s) and
	// 6 (24s); nothing changed after 6, so the end does not save again
	// (nor read the clock).
	want := []string{"none", "none", "none", "none", at(3), at(3), at(3)}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("state file when the clock was read (-want +got):\n%s", diff)
	}
	if b, _ := os.ReadFile(path); !bytes.Contains(b, []byte(`"snapshot":"`+at(6)+`"`)) {
		t.Errorf("state file at the end:\n%s", b)
	}
	if got := strings.Count(stdout.String(), `"event":"opened"`); got != 5 {
		t.Errorf("%d opened events, want 5:\n%s", got, stdout.String())
	}
	if got := strings.Count(stdout.String(), `"event":"closed"`); got != 5 {
		t.Errorf("%d closed events, want 5:\n%s", got, stdout.String())
	}
}

// TestRunEnds checks the ways a run ends: each saves the state.
func TestRunEnds(t *testing.T) {
	t.Parallel()
	input := socketLine(0, 5000, "established") + "\n" + snapshotLine(0) + "\n" + socketLine(1, 5001, "syn-recv") + "\nnot json\n"
	tests := []struct {
		name     string
		strict   bool
		stdout   io.Writer
		wantErr  func(error) bool
		wantCode int
		entries  int
	}{
		{"end of input", false, io.Discard, func(err error) bool { return err == nil }, cli.ExitOK, 2},
		{"bad line under --strict", true, io.Discard, func(err error) bool { var le *ndjson.LineError; return errors.As(err, &le) }, cli.ExitFailure, 2},
		{"closed stdout", false, brokenPipe{}, cli.IsClosedPipe, cli.ExitOK, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "state")
			c := config{state: path, strict: tt.strict, lockTimeout: time.Second, saveInterval: time.Hour, now: time.Now}
			var stderr bytes.Buffer
			err := run(context.Background(), c, strings.NewReader(input), tt.stdout, &stderr)
			if !tt.wantErr(err) {
				t.Errorf("run = %v", err)
			}
			if code := cli.Code("sockdiff", err, io.Discard); code != tt.wantCode {
				t.Errorf("exit code %d, want %d", code, tt.wantCode)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf(`{"end":"sockdiff-state","entries":%d}`, tt.entries); !strings.Contains(string(b), want) {
				t.Errorf("state file lacks %s:\n%s", want, b)
			}
		})
	}
}

type brokenPipe struct{}

func (brokenPipe) Write([]byte) (int, error) {
	return 0, &os.PathError{Op: "write", Path: "/dev/stdout", Err: syscall.EPIPE}
}

// TestCancel checks that a cancelled context (SIGINT, SIGTERM) ends a run
// that waits for input, with the state saved and the snapshot being read
// merged into it.
func TestCancel(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state")
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout := newLineWatcher()
	done := make(chan error, 1)
	go func() {
		c := config{state: path, lockTimeout: time.Second, saveInterval: time.Hour, now: time.Now}
		done <- run(ctx, c, pr, stdout, io.Discard)
	}()
	fmt.Fprintln(pw, socketLine(0, 5000, "established"))
	fmt.Fprintln(pw, snapshotLine(0))
	fmt.Fprintln(pw, socketLine(1, 5001, "established"))
	stdout.waitFor(t, `"event":"opened"`)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("run = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not end after cancel")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"complete":true,"snapshot":"2026-11-26T04:30:00Z","entries":2}`) {
		t.Errorf("state file:\n%s", b)
	}
}

// lineWatcher is a writer that a test can wait on.
type lineWatcher struct {
	ch  chan []byte
	buf []byte
}

func newLineWatcher() *lineWatcher { return &lineWatcher{ch: make(chan []byte, 100)} }

func (w *lineWatcher) Write(p []byte) (int, error) {
	w.ch <- append([]byte(nil), p...)
	return len(p), nil
}

func (w *lineWatcher) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for !bytes.Contains(w.buf, []byte(s)) {
		select {
		case p := <-w.ch:
			w.buf = append(w.buf, p...)
		case <-deadline:
			t.Fatalf("output lacks %s after 30s:\n%s", s, w.buf)
		}
	}
}

// TestSaveFails checks that a state that cannot be saved is a failure,
// also when the run ends by a closed stdout.
func TestSaveFails(t *testing.T) {
	t.Parallel()
	input := socketLine(0, 5000, "established") + "\n" + snapshotLine(0) + "\n"
	for _, stdout := range []io.Writer{io.Discard, brokenPipe{}} {
		path := filepath.Join(t.TempDir(), "state")
		// Once the run has loaded its state, a directory takes the state
		// file's place: the rename of the save fails.
		in := &blockSave{path: path, r: strings.NewReader(input)}
		c := config{state: path, lockTimeout: time.Second, saveInterval: time.Hour, now: time.Now}
		err := run(context.Background(), c, in, stdout, io.Discard)
		var msg bytes.Buffer
		if code := cli.Code("sockdiff", err, &msg); code != cli.ExitFailure {
			t.Errorf("stdout %T: exit code %d (%v), want 1", stdout, code, err)
		}
		if want := "sockdiff: saving state to " + path; !strings.Contains(msg.String(), want) {
			t.Errorf("stdout %T: message %q, want it to contain %q", stdout, msg.String(), want)
		}
	}
}

// TestPeriodicSaveFails checks that a failed save while streaming is
// reported and the stream goes on.
func TestPeriodicSaveFails(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state")
	in := &blockSave{path: path, r: strings.NewReader(stream(3))}
	c := config{closed: true, state: path, lockTimeout: time.Second, saveInterval: 0, now: time.Now}
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), c, in, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "saving state") {
		t.Errorf("run = %v, want the failure of the save at exit", err)
	}
	if n := strings.Count(stderr.String(), "(going on, will try again)"); n != 3 {
		t.Errorf("%d failed periodic saves reported, want 3:\n%s", n, stderr.String())
	}
	if n := strings.Count(stdout.String(), `"type":"snapshot"`); n != 3 {
		t.Errorf("%d snapshots written, want 3:\n%s", n, stdout.String())
	}
}

type blockSave struct {
	path string
	r    io.Reader
	done bool
}

func (b *blockSave) Read(p []byte) (int, error) {
	if !b.done {
		b.done = true
		if err := os.MkdirAll(filepath.Join(b.path, "x"), 0o755); err != nil {
			return 0, err
		}
	}
	return b.r.Read(p)
}

// gcPercent returns the collector's GOGC.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestFirstSnapshotGC checks that the collector waits longer while a first
// snapshot is read into an empty state, and works as before from its end
// on; and that a run which loaded a state, or one given GOGC, leaves it.
// (Not parallel: the setting is the process's.)
func TestFirstSnapshotGC(t *testing.T) {
	t.Setenv("GOGC", "")
	before := gcPercent()
	path := filepath.Join(t.TempDir(), "state")
	for i, tc := range []struct {
		name   string
		gogc   string
		during int
	}{
		{"first run", "", firstSnapshotGC},
		{"state loaded", "", before},
		{"GOGC given", "100", before},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.gogc != "" {
				os.Remove(path)
			}
			t.Setenv("GOGC", tc.gogc)
			pr, pw := io.Pipe()
			stdout := newLineWatcher()
			done := make(chan error, 1)
			go func() {
				c := config{state: path, lockTimeout: time.Second, saveInterval: time.Hour, now: time.Now}
				err := run(context.Background(), c, pr, stdout, io.Discard)
				pr.CloseWithError(err)
				done <- err
			}()
			defer func() {
				pw.Close()
				if err := <-done; err != nil {
					t.Error(err)
				}
			}()
			write := func(line string) {
				if _, err := fmt.Fprintln(pw, line); err != nil {
					t.Fatalf("run ended: %v", err)
				}
			}
			sec := 10 * i
			write(socketLine(sec, 5000+i, "established"))
			stdout.waitFor(t, `"event":`)
			if got := gcPercent(); got != tc.during {
				t.Errorf("GOGC during the first snapshot %d, want %d", got, tc.during)
			}
			write(snapshotLine(sec))
			stdout.waitFor(t, `"type":"snapshot"`)
			if got := gcPercent(); got != before {
				t.Errorf("GOGC after the first snapshot %d, want %d", got, before)
			}
			write(socketLine(sec+1, 5100+i, "established"))
			stdout.waitFor(t, `"event":"opened"`)
			if got := gcPercent(); got != before {
				t.Errorf("GOGC in the second snapshot %d, want %d", got, before)
			}
		})
		if got := gcPercent(); got != before {
			t.Errorf("GOGC after the run %d, want %d", got, before)
		}
	}
}
