package sockfiles

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/sockpipe/sockpipe/internal/bpfload"
)

// ErrPermission is the cause of an Open that lacked privileges.
var ErrPermission = errors.New("loading a BPF iterator needs root, or CAP_BPF and CAP_PERFMON")

// ErrNoBTF is the cause of an Open on a kernel without BTF.
var ErrNoBTF = errors.New("the kernel has no BTF (/sys/kernel/btf/vmlinux is missing)")

// ErrPidNamespace is the cause of an Open in a pid namespace other than
// the initial one, whose process ids the iterator does not give.
var ErrPidNamespace = errors.New("not in the initial pid namespace")

// File is one open socket file.
type File struct {
	PID   int    // the process (thread group) that holds it
	FD    int    // its descriptor in that process
	Inode uint64 // the socket's inode, as in socket:[INODE]
}

// entrySize is the size of struct entry of sockfiles.bpf.c.
const entrySize = 16

// Lister lists socket files. Close it when done.
type Lister struct {
	prog *ebpf.Program
	link *link.Iter
}

// Open loads the iterator. procRoot is the proc file system whose process
// ids the caller uses; Open fails with ErrPidNamespace when its pid
// namespace, or the caller's, is not the initial one.
func Open(procRoot string) (*Lister, error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	// The iterator visits the tasks of the caller's pid namespace and
	// gives their ids in the initial one: both must be the initial one,
	// and so must that of the proc file system the ids are for.
	for _, ns := range []string{"/proc/self/ns/pid", procRoot + "/self/ns/pid"} {
		if initial, err := bpfload.IsNamespace(ns, bpfload.InitPidNS); err != nil {
			return nil, err
		} else if !initial {
			return nil, ErrPidNamespace
		}
	}
	if err := bpfload.Prepare(ErrNoBTF); err != nil {
		return nil, err
	}
	var objs sockfilesObjects
	if err := loadSockfilesObjects(&objs, nil); err != nil {
		return nil, loadError(err)
	}
	l, err := link.AttachIter(link.IterOptions{Program: objs.SocketFiles})
	if err != nil {
		objs.Close()
		return nil, loadError(fmt.Errorf("attaching the task_file iterator: %w", err))
	}
	return &Lister{prog: objs.SocketFiles, link: l}, nil
}

func loadError(err error) error { return bpfload.Error(err, ErrPermission) }

// List calls fn for every open socket file of every process, in the order
// of the processes' ids. A process that exits meanwhile may be left out.
func (l *Lister) List(fn func(File)) error {
	r, err := l.link.Open()
	if err != nil {
		return fmt.Errorf("reading the task_file iterator: %w", err)
	}
	defer r.Close()
	return Decode(r, fn)
}

// Decode reads the iterator's records from r and calls fn for each.
func Decode(r io.Reader, fn func(File)) error {
	buf := make([]byte, 64<<10)
	have := 0
	for {
		n, err := r.Read(buf[have:])
		have += n
		i := 0
		for ; have-i >= entrySize; i += entrySize {
			e := buf[i : i+entrySize]
			fn(File{
				PID:   int(binary.NativeEndian.Uint32(e[0:4])),
				FD:    int(binary.NativeEndian.Uint32(e[4:8])),
				Inode: binary.NativeEndian.Uint64(e[8:16]),
			})
		}
		have = copy(buf, buf[i:have])
		if err == io.EOF || (n == 0 && err == nil) {
			if have != 0 {
				return fmt.Errorf("task_file iterator: %d bytes left over", have)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the task_file iterator: %w", err)
		}
	}
}

// Close frees the iterator.
func (l *Lister) Close() error {
	err := l.link.Close()
	if perr := l.prog.Close(); err == nil {
		err = perr
	}
	return err
}
