//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// The TCP and UDP sockets that processes hold, in every network
// namespace at once: a task_file iterator that writes, for each open file
// that is a TCP socket (or an MPTCP socket, by its first TCP subflow) or a
// UDP socket, one fixed record of what a netlink dump tells of it. See
// package socktable.
//
// Built with bpf2go (go generate); CO-RE over the kernel's BTF: the
// kernel structs below name only the members read.

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed int __s32;
typedef signed long long __s64;
typedef long long s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef int pid_t;
typedef unsigned int uid_t;
typedef unsigned short umode_t;

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_MPTCP 262
#define TCP_CLOSE 7
#define TCP_LISTEN 10

typedef struct {
	int counter;
} atomic_t;

typedef struct {
	s64 counter;
} atomic64_t;

typedef struct {
	uid_t val;
} kuid_t;

struct in6_addr {
	union {
		__u32 u6_addr32[4];
	} in6_u;
} __attribute__((preserve_access_index));

struct inode {
	unsigned long i_ino;
} __attribute__((preserve_access_index));

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} __attribute__((preserve_access_index)) possible_net_t;

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	volatile unsigned char skc_state;
	int skc_bound_dev_if;
	possible_net_t skc_net;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
	atomic64_t skc_cookie;
} __attribute__((preserve_access_index));

struct socket;

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
	__u32 sk_ack_backlog;
	kuid_t sk_uid;
	struct socket *sk_socket;
} __attribute__((preserve_access_index));

struct socket {
	short type;
	struct sock *sk;
} __attribute__((preserve_access_index));

// Socket types: a raw socket may have the protocol number of TCP or UDP
// in sk_protocol, and is in no table that a TCP or UDP dump walks.
#define SOCK_STREAM 1
#define SOCK_DGRAM 2

// A socket's inode is the one allocated with it (SOCK_INODE), as the
// kernel's sock_i_ino reads it for a netlink dump.
struct socket_alloc {
	struct socket socket;
	struct inode vfs_inode;
} __attribute__((preserve_access_index));

struct request_sock_queue {
	atomic_t qlen;
} __attribute__((preserve_access_index));

struct inet_connection_sock {
	struct request_sock_queue icsk_accept_queue;
} __attribute__((preserve_access_index));

struct mptcp_sock {
	struct sock *first;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
} __attribute__((preserve_access_index));

struct task_struct;
struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

struct bpf_iter__task_file {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
	__u32 fd;
	struct file *file;
} __attribute__((preserve_access_index));

// Flags of struct entry.
#define ENTRY_MPTCP 1 // the file holds an MPTCP socket; this is its first subflow
#define ENTRY_UDP 2   // a UDP socket, not a TCP one

// entry is what the iterator writes for one socket; Go reads it as
// socktable.Socket (entrySize bytes, native byte order).
struct entry {
	__u64 sk;      // the socket's address, to tell sockets held twice apart
	__u64 cookie;  // skc_cookie as made so far; 0 if nothing asked for it
	__u64 ino;     // the socket's inode, as sock_i_ino gives it; 0 if none
	__u32 netns;   // inode of its network namespace
	__u32 uid;     // sk_uid
	__u32 synq;    // a listener's request sockets (icsk_accept_queue.qlen)
	__u32 backlog; // a listener's accept queue (sk_ack_backlog)
	__u32 ifindex; // sk_bound_dev_if
	__u16 sport;   // local port, host order
	__u16 dport;   // remote port, host order
	__u8 family;
	__u8 state;
	__u8 flags;
	__u8 pad;
	__u8 src[16]; // IPv4 in the first 4 bytes
	__u8 dst[16];
	__u32 pad2;
};

// FILL fills the entry E of the socket S, whose family E holds
// already, with the reads RD(S, member) (CO-RE either way): direct loads
// where the verifier knows the type of S, probe reads where it does not
// (a subflow found through an MPTCP socket).
#define FILL(E, S, RD)                                                                  \
	do {                                                                            \
		(E)->sk = (__u64)(S);                                                   \
		(E)->cookie = RD(S, __sk_common.skc_cookie.counter);                    \
		struct net *net_ = RD(S, __sk_common.skc_net.net);                      \
		(E)->netns = RD(net_, ns.inum);                                         \
		(E)->uid = RD(S, sk_uid.val);                                           \
		(E)->backlog = RD(S, sk_ack_backlog);                                   \
		(E)->ifindex = RD(S, __sk_common.skc_bound_dev_if);                     \
		(E)->sport = RD(S, __sk_common.skc_num);                                \
		(E)->dport = bpf_ntohs(RD(S, __sk_common.skc_dport));                   \
		if ((E)->family == AF_INET6) {                                          \
			__u32 *src = (__u32 *)(E)->src, *dst = (__u32 *)(E)->dst;       \
			src[0] = RD(S, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[0]); \
			src[1] = RD(S, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[1]); \
			src[2] = RD(S, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[2]); \
			src[3] = RD(S, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32[3]); \
			dst[0] = RD(S, __sk_common.skc_v6_daddr.in6_u.u6_addr32[0]);    \
			dst[1] = RD(S, __sk_common.skc_v6_daddr.in6_u.u6_addr32[1]);    \
			dst[2] = RD(S, __sk_common.skc_v6_daddr.in6_u.u6_addr32[2]);    \
			dst[3] = RD(S, __sk_common.skc_v6_daddr.in6_u.u6_addr32[3]);    \
		} else {                                                                \
			*(__be32 *)(E)->src = RD(S, __sk_common.skc_rcv_saddr);         \
			*(__be32 *)(E)->dst = RD(S, __sk_common.skc_daddr);             \
		}                                                                       \
	} while (0)

#define DIRECT(p, a) ((p)->a)

// listener_queue sets a listener's count of request sockets, which is
// past struct sock: read by a probe either way.
static __always_inline void listener_queue(struct entry *e, struct sock *sk)
{
	if (e->state == TCP_LISTEN)
		e->synq = BPF_CORE_READ((struct inet_connection_sock *)sk, icsk_accept_queue.qlen.counter);
}

SEC("iter/task_file")
int sockets(struct bpf_iter__task_file *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct file *file = ctx->file;
	if (!ctx->task || !file)
		return 0;
	struct socket *so = bpf_sock_from_file(file);
	if (!so)
		return 0;
	struct sock *sk = so->sk;
	if (!sk)
		return 0;
	struct entry e = {};
	short type = so->type;
	if (sk->sk_protocol == IPPROTO_TCP && type == SOCK_STREAM) {
		e.family = sk->__sk_common.skc_family;
		e.state = sk->__sk_common.skc_state;
		// A closed socket is in none of the tables that a dump walks.
		if ((e.family != AF_INET && e.family != AF_INET6) || e.state == TCP_CLOSE)
			return 0;
		FILL(&e, sk, DIRECT);
		// The socket of the file is the socket's: its inode is the
		// file's.
		e.ino = file->f_inode->i_ino;
		listener_queue(&e, sk);
		bpf_seq_write(seq, &e, sizeof(e));
		return 0;
	}
	if (sk->sk_protocol == IPPROTO_UDP && type == SOCK_DGRAM) {
		e.family = sk->__sk_common.skc_family;
		e.state = sk->__sk_common.skc_state;
		// A socket without a port is in no table that a dump walks.
		if ((e.family != AF_INET && e.family != AF_INET6) || sk->__sk_common.skc_num == 0)
			return 0;
		e.flags = ENTRY_UDP;
		FILL(&e, sk, DIRECT);
		e.ino = file->f_inode->i_ino;
		bpf_seq_write(seq, &e, sizeof(e));
		return 0;
	}
	if (sk->sk_protocol != IPPROTO_MPTCP || type != SOCK_STREAM || !bpf_core_field_exists(struct mptcp_sock, first))
		return 0;
	// A netlink TCP dump lists the TCP subflow, not the MPTCP socket:
	// its first subflow is what it lists for this file.
	struct sock *ssk = BPF_CORE_READ((struct mptcp_sock *)sk, first);
	if (!ssk || BPF_CORE_READ(ssk, sk_protocol) != IPPROTO_TCP)
		return 0;
	e.flags = ENTRY_MPTCP;
	e.family = BPF_CORE_READ(ssk, __sk_common.skc_family);
	e.state = BPF_CORE_READ(ssk, __sk_common.skc_state);
	if ((e.family != AF_INET && e.family != AF_INET6) || e.state == TCP_CLOSE)
		return 0;
	FILL(&e, ssk, BPF_CORE_READ);
	// Its inode, as sock_i_ino gives it: that of the socket it belongs
	// to (SOCK_INODE), 0 if none.
	struct socket *owner = BPF_CORE_READ(ssk, sk_socket);
	if (owner)
		e.ino = BPF_CORE_READ((struct socket_alloc *)owner, vfs_inode.i_ino);
	listener_queue(&e, ssk);
	bpf_seq_write(seq, &e, sizeof(e));
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
