package proctable

import "golang.org/x/sys/unix"

// Privileged reports whether this process may read the fd directory of
// every process: whether CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH are both in
// its effective set. Root inside a container often lacks CAP_SYS_PTRACE, so
// the uid alone does not say.
func Privileged() (bool, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false, err
	}
	eff := uint64(data[0].Effective) | uint64(data[1].Effective)<<32
	const need = 1<<unix.CAP_SYS_PTRACE | 1<<unix.CAP_DAC_READ_SEARCH
	return eff&need == need, nil
}
