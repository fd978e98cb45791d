package netnsdump

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/sockpipe/sockpipe/internal/inetdiag"
)

// PinDirs are where network namespaces are pinned by bind mounts, so that
// they live on without a process: ip-netns(8) pins them under /run/netns,
// Docker its containers' under /run/docker/netns.
var PinDirs = []string{"/run/netns", "/run/docker/netns"}

// nsFile is one network namespace found on the host: its inode, the
// number that names it (net:[INODE]), and a file that opens it.
type nsFile struct {
	ino  uint64
	path string
	// proc is the /proc/PID directory of a process in the namespace
	// (whose net/sockstat tells its socket counts); "" when none is known.
	proc string
}

// findNamespaces lists the distinct network namespaces of the host: those
// pinned under pinDirs, then those of the processes under procRoot (the
// network namespace of each process's main thread). It returns them
// pinned first, each once, with the path to open it by, and how many
// processes it could not tell the namespace of because it was not allowed
// to (reading another user's /proc/PID/ns/net needs CAP_SYS_PTRACE).
// Processes that exit while it looks are not counted.
func findNamespaces(procRoot string, pinDirs []string) (found []nsFile, denied []int, err error) {
	seen := map[uint64]int{} // index in found
	add := func(path, proc string) error {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			return err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			// A namespace file stats as a regular file of nsfs.
			return nil
		}
		if i, ok := seen[st.Ino]; ok {
			if found[i].proc == "" {
				found[i].proc = proc
			}
			return nil
		}
		seen[st.Ino] = len(found)
		found = append(found, nsFile{ino: st.Ino, path: path, proc: proc})
		return nil
	}
	for _, dir := range pinDirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue // no such directory: nothing pinned there
		}
		for _, e := range ents {
			// A file that is not (or no longer) a bind mount of a
			// namespace stats as an empty file on tmpfs, or fails.
			p := filepath.Join(dir, e.Name())
			if isNetNS(p) {
				_ = add(p, "")
			}
		}
	}

	d, err := os.Open(procRoot)
	if err != nil {
		return found, nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return found, nil, err
	}
	var pids []int
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	// In pid order, so that a namespace is opened by its oldest process,
	// the one least likely to exit.
	slices.Sort(pids)
	for _, pid := range pids {
		dir := procRoot + "/" + strconv.Itoa(pid)
		err := add(dir+"/ns/net", dir)
		if errors.Is(err, fs.ErrNotExist) {
			// A process whose main thread has exited (a zombie leader)
			// may still run threads, and hold their namespaces.
			if tids, terr := os.ReadDir(dir + "/task"); terr == nil {
				for _, tid := range tids {
					if tid.Name() != strconv.Itoa(pid) {
						if add(dir+"/task/"+tid.Name()+"/ns/net", dir) == nil {
							break
						}
					}
				}
			}
		}
		if errors.Is(err, fs.ErrPermission) {
			denied = append(denied, pid)
		}
	}
	return found, denied, nil
}

// isNetNS reports whether path is a network namespace file: the kernel's
// NS_GET_NSTYPE answers CLONE_NEWNET on it. A file that is not a
// namespace, or a kernel before 4.11, answers otherwise or not at all; then
// the inode's file system decides (nsfs).
func isNetNS(path string) bool {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	t, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err == nil {
		return t == unix.CLONE_NEWNET
	}
	var sfs unix.Statfs_t
	return unix.Fstatfs(fd, &sfs) == nil && sfs.Type == unix.NSFS_MAGIC
}

// nsInode returns the inode of a namespace file, or 0.
func nsInode(path string) uint64 {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0
	}
	return st.Ino
}

// openNS opens a namespace file.
func openNS(path string) (int, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			return 0, fmt.Errorf("open network namespace %s (CAP_SYS_PTRACE is needed for other users' processes): %w", path, inetdiag.ErrPermission)
		}
		return 0, fmt.Errorf("open network namespace: %w", err)
	}
	return fd, nil
}

// dialNS opens the netlink socket inside the namespace of the open file
// fd (named path in errors), or in the current one when fd is 0.
func dialNS(path string, fd int) (*inetdiag.Conn, error) {
	conn, err := inetdiag.Dial(fd)
	if err != nil && fd != 0 {
		// Entering the namespace (setns) is what needs privilege; the
		// netlink package reports only the errno.
		if errors.Is(err, inetdiag.ErrPermission) {
			return nil, fmt.Errorf("enter network namespace %s: CAP_SYS_ADMIN is needed: %w", path, inetdiag.ErrPermission)
		}
	}
	return conn, err
}
