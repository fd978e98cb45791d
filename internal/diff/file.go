package diff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/sockpipe/sockpipe/internal/atomicfile"
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

// Save writes s to path atomically (see atomicfile.Write): path holds
// either the old state or the new one, whole, even after a crash. The file
// is readable by its owner only.
func Save(path string, s *State, now time.Time) error {
	if err := atomicfile.Write(path, func(w io.Writer) error { return s.Encode(w, now) }); err != nil {
		return fmt.Errorf("saving state to %s: %w", path, err)
	}
	s.MarkClean()
	return nil
}

// ErrLocked is the cause of the error of Lock when another process holds
// the lock for longer than the timeout.
var ErrLocked = atomicfile.ErrLocked

// Lock takes the lock of the state file at path (the file path + ".lock",
// locked with flock(2)), waiting at most timeout (0: not at all) while
// another process holds it, and then removes the temporary files that a
// crashed run may have left. The lock is released by Unlock or when the
// process ends.
func Lock(ctx context.Context, path string, timeout time.Duration) (*atomicfile.FileLock, error) {
	l, err := atomicfile.Lock(ctx, path, timeout)
	if err != nil {
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			return nil, err
		}
		return nil, fmt.Errorf("state file %w", err)
	}
	atomicfile.RemoveTemps(path)
	return l, nil
}
