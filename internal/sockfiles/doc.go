// Package sockfiles lists the socket files of every process in one pass
// over the kernel's tables, with a BPF task_file iterator: for each open
// file that is a socket, the process, the descriptor and the socket's
// inode. It is what reading every /proc/PID/fd link tells, at a small
// part of its cost: one readlink a descriptor is a path lookup and a path
// walk in the kernel, while the iterator visits each file once.
//
// It needs CAP_BPF and CAP_PERFMON (or root) and a kernel with BTF; the
// process ids it gives are those of the initial pid namespace, so Open
// refuses to run in another.
package sockfiles
