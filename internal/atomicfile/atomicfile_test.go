package atomicfile

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWrite(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state")
	if err := Write(path, func(w io.Writer) error { _, err := io.WriteString(w, "one"); return err }); err != nil {
		t.Fatal(err)
	}
	// A failed fill leaves the file as it was, and no temporary file.
	boom := errors.New("boom")
	if err := Write(path, func(w io.Writer) error { io.WriteString(w, "half"); return boom }); !errors.Is(err, boom) {
		t.Fatalf("Write = %v, want %v", err, boom)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "one" {
		t.Errorf("after a failed write: %q, %v; want the old content", b, err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v; want 0600", st.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), TempPrefix(path)+"*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestRemoveTemps(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	stale, other := filepath.Join(dir, "state.tmp-1"), filepath.Join(dir, "other.tmp-1")
	for _, f := range []string{stale, other} {
		os.WriteFile(f, nil, 0o600)
	}
	RemoveTemps(path)
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s left", stale)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("%s removed: %v", other, err)
	}
}

// flock locks are per open file: a second open of the lock file, in this
// process, stands for another process.
func TestLock(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state")
	l, err := Lock(context.Background(), path, 0)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := Lock(context.Background(), path, 120*time.Millisecond); !errors.Is(err, ErrLocked) || time.Since(start) < 100*time.Millisecond {
		t.Errorf("second Lock = %v after %v; want ErrLocked after the timeout", err, time.Since(start))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Lock(ctx, path, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("Lock with a cancelled context = %v", err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	l2, err := Lock(context.Background(), path, 0)
	if err != nil {
		t.Fatalf("Lock after Unlock: %v", err)
	}
	l2.Unlock()
}
