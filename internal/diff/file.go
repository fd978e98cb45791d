package diff

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Load reads the state file at path. A missing file is a first run: a new
// state and no error. A file that cannot be used (empty, truncated,
// corrupt, foreign, of another version) is also a new state, with the
// reason as a *FileError for the caller to report. Other errors (the file
// cannot be read) are returned as err.
func Load(path string) (s *State, problem, err error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return New(), nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("state file: %w", err)
	}
	defer f.Close()
	s, err = Decode(f)
	var fe *FileError
	if errors.As(err, &fe) {
		return New(), fmt.Errorf("state file %s: %w", path, err), nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("state file: reading %s: %w", path, err)
	}
	return s, nil, nil
}

// tempPrefix names the temporary files that Save writes beside the state
// file.
func tempPrefix(path string) string { return filepath.Base(path) + ".tmp-" }

// Save writes s to path atomically: into a temporary file in the same
// directory, synced, renamed over path, and the directory synced, so that
// path holds either the old state or the new one, whole, even after a
// crash. The file is readable by its owner only.
func Save(path string, s *State, now time.Time) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tempPrefix(path)+"*")
	if err != nil {
		return fmt.Errorf("saving state: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = fmt.Errorf("saving state to %s: %w", path, err)
		}
	}()
	if err := s.Encode(f, now); err != nil {
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
	s.MarkClean()
	return nil
}

// removeTemps removes what a crashed Save left behind. Only the holder of
// the lock may call it.
func removeTemps(path string) {
	dir := filepath.Dir(path)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	prefix := tempPrefix(path)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) && e.Type().IsRegular() {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// ErrLocked is the cause of the error of Lock when another process holds
// the lock for longer than the timeout.
var ErrLocked = errors.New("locked by another process")

// FileLock is the lock of a state file: the file path + ".lock", locked
// with flock(2). The lock file is never removed: removing it would let two
// processes lock two different files of the same name.
type FileLock struct {
	f *os.File
}

// pollLock is how often Lock tries again.
const pollLock = 50 * time.Millisecond

// Lock takes the lock of the state file at path, waiting at most timeout
// (0: not at all) while another process holds it, and then removes the
// temporary files that a crashed run may have left. The lock is released
// by Unlock or when the process ends.
func Lock(ctx context.Context, path string, timeout time.Duration) (*FileLock, error) {
	name := path + ".lock"
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state file lock: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		ok, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("state file lock %s: %w", name, err)
		}
		if ok {
			removeTemps(path)
			return &FileLock{f: f}, nil
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			f.Close()
			return nil, fmt.Errorf("state file %s: %w (waited %v for %s)", path, ErrLocked, timeout, name)
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
