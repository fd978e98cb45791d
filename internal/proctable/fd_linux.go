package proctable

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// fdScanner reads the socket inodes of one fd directory at a time with
// one open, getdents and one readlinkat per descriptor, relative to the
// directory's descriptor so the kernel does not resolve the path again for
// every link. Its buffers are reused from one directory to the next.
type fdScanner struct {
	dents [32 << 10]byte
	link  [64]byte // "socket:[" + 20 digits + "]" fits; longer targets are not sockets
}

// socketInodes returns the socket inodes that the links in dir point to,
// and how many links it read.
func (s *fdScanner) socketInodes(dir string) ([]uint64, int, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, 0, err
	}
	defer unix.Close(fd)
	var inodes []uint64
	links := 0
	for {
		n, err := unix.Getdents(fd, s.dents[:])
		if err != nil {
			return inodes, links, err
		}
		if n <= 0 {
			return inodes, links, nil
		}
		buf := s.dents[:n]
		for len(buf) > 0 {
			reclen, name, ok := direntName(buf)
			if !ok {
				break
			}
			buf = buf[reclen:]
			if len(name) == 0 || name[0] == '.' {
				continue
			}
			links++
			m, err := unix.Readlinkat(fd, string(name), s.link[:])
			if err != nil {
				continue // closed since getdents: not an error
			}
			if ino, ok := ParseSocketLink(s.link[:m]); ok {
				inodes = append(inodes, ino)
			}
		}
	}
}

// direntName returns the record length and name of the first linux_dirent64
// in buf: ino(8) off(8) reclen(2) type(1) name(NUL-terminated).
func direntName(buf []byte) (int, []byte, bool) {
	const nameOff = 19
	if len(buf) < nameOff {
		return 0, nil, false
	}
	reclen := int(binary.NativeEndian.Uint16(buf[16:18]))
	if reclen < nameOff || reclen > len(buf) {
		return 0, nil, false
	}
	name := buf[nameOff:reclen]
	for i, c := range name {
		if c == 0 {
			name = name[:i]
			break
		}
	}
	return reclen, name, true
}
