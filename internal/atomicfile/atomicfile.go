// Package atomicfile writes files that readers see whole, old or new, even
// after a crash, and locks them between processes: what sockdiff's state
// file and sockresolve's cache file share.
package atomicfile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// TempPrefix names the temporary files that Write makes beside path.
func TempPrefix(path string) string { return filepath.Base(path) + ".tmp-" }

// Write writes path atomically: fill writes into a temporary file in the
// same directory, which is synced, renamed over path, and the directory
// synced. The file is readable by its owner only. On error the temporary
// file is removed and path is left as it was.
func Write(path string, fill func(io.Writer) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, TempPrefix(path)+"*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := fill(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		// Some file systems cannot sync a directory; the rename is done.
		d.Sync()
		d.Close()
	}
	return nil
}

// RemoveTemps removes the temporary files that a crashed Write of path
// left behind. Only the holder of path's lock may call it.
func RemoveTemps(path string) {
	dir := filepath.Dir(path)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	prefix := TempPrefix(path)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) && e.Type().IsRegular() {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// ErrLocked is the cause of the error of Lock when another process holds
// the lock for longer than the timeout.
var ErrLocked = errors.New("locked by another process")

// FileLock is the lock of a file: the file path + ".lock", locked with
// flock(2). The lock file is never removed: removing it would let two
// processes lock two different files of the same name.
type FileLock struct {
	f *os.File
}

// pollLock is how often Lock tries again.
const pollLock = 50 * time.Millisecond

// Lock takes the lock of the file at path, waiting at most timeout (0: not
// at all) while another process holds it, or until ctx ends. The lock is
// released by Unlock or when the process ends.
func Lock(ctx context.Context, path string, timeout time.Duration) (*FileLock, error) {
	name := path + ".lock"
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
		if ok {
			return &FileLock{f: f}, nil
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			f.Close()
			return nil, fmt.Errorf("%s: %w (waited %v for %s)", path, ErrLocked, timeout, name)
		}
		t := time.NewTimer(min(wait, pollLock))
		select {
		case <-ctx.Done():
			t.Stop()
			f.Close()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// Unlock releases the lock.
func (l *FileLock) Unlock() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := unlock(l.f)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}
