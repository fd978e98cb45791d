// Package socktable lists the TCP and UDP sockets that processes hold, in
// every network namespace of the host, in one pass over the processes'
// open files, with a BPF task_file iterator: for each, what a netlink dump
// of its namespace tells of it (state, addresses, ports, uid, inode,
// cookie), its namespace, and a listener's queues. A netlink dump of one
// namespace walks the kernel's TCP (or UDP) table, which by default holds
// the sockets of every namespace, so dumping each namespace costs
// namespaces × the host's sockets; the walk costs the host's open files,
// once.
//
// The walk sees only the sockets that a process holds: not time-wait or
// request sockets, nor connections closed by their process or waiting in
// an accept queue. Covered and CoveredUDP tell, from a namespace's
// sockstat counts, whether the walk listed every socket that a dump of it
// would; where it did not, the namespace is to be dumped with netlink.
//
// It needs CAP_BPF and CAP_PERFMON (or root) and a kernel with BTF; the
// walk visits the processes of the caller's pid namespace, and gives uids
// as the kernel holds them where a netlink dump maps them into the
// caller's user namespace, so Open refuses to run in other pid or user
// namespaces than the initial ones.
package socktable
