// Package bpfload holds what the packages that load BPF programs
// (ownertable, sockfiles, socktable) share: the checks before a load, and
// what an error of loading means to a user.
package bpfload

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// The inodes of the initial pid and user namespaces (PROC_PID_INIT_INO,
// PROC_USER_INIT_INO).
const (
	InitPidNS  = 0xEFFFFFFC
	InitUserNS = 0xEFFFFFFD
)

// IsNamespace reports whether the namespace file at path (such as
// /proc/self/ns/pid) is the namespace of inode ino.
func IsNamespace(path string, ino uint64) (bool, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return false, err
	}
	return st.Ino == ino, nil
}

// Prepare readies a load: it returns noBTF when the kernel has no BTF,
// which the programs' CO-RE relocations need, and lifts RLIMIT_MEMLOCK,
// to which kernels before 5.11 charge BPF memory (where it may).
func Prepare(noBTF error) error {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return noBTF
	}
	if err := rlimit.RemoveMemlock(); err != nil && !errors.Is(err, unix.EPERM) {
		return err
	}
	return nil
}

// Error says what an error of loading or attaching means to a user:
// perm for a lack of privileges, the verifier's last line (its log is
// long) for a program the kernel refused, else err.
func Error(err, perm error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return perm
	}
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		msg := ve.Error()
		if n := len(ve.Log); n > 0 {
			msg = ve.Log[n-1]
		}
		return fmt.Errorf("the kernel refused the program: %s", msg)
	}
	return err
}
