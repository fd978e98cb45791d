package proctable

import (
	"os"

	"golang.org/x/sys/unix"

	"github.com/sockpipe/sockpipe/internal/cgroup"
	"github.com/sockpipe/sockpipe/internal/record"
)

// readSmall reads the file at path into buf, until the end of the file or
// a full buffer, and returns what it read. The files of /proc/PID are read
// once for every process, and stat once per snapshot: one open, the reads
// and one close, without the stat and the poller registration of os.Open,
// take a third less time.
func readSmall(path string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if m == 0 {
			break
		}
		n += m
	}
	return buf[:n], nil
}

// readContainer returns the container named by the /proc/PID/cgroup file
// at path, or nil when it names none or cannot be read (the process
// exited). Files longer than the buffer (deep paths in many v1
// hierarchies) are read whole.
func readContainer(path string) *record.Container {
	var buf [4096]byte
	data, err := readSmall(path, buf[:])
	if err != nil {
		return nil
	}
	if len(data) == len(buf) {
		if data, err = os.ReadFile(path); err != nil {
			return nil
		}
	}
	if id := cgroup.ContainerID(data); id != "" {
		return &record.Container{ID: id}
	}
	return nil
}
