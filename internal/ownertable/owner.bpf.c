//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// The owner table: for every TCP and UDP socket, keyed by its socket
// cookie, the process that made it. See package ownertable.
//
// Built with bpf2go (go generate); CO-RE over the kernel's BTF: the
// kernel structs below name only the members read, and are relocated at
// load time.

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed int __s32;
typedef signed long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#define BPF_MAP_TYPE_LRU_HASH 9
#define BPF_MAP_TYPE_SK_STORAGE 24
#define BPF_F_NO_PREALLOC (1U << 0)
#define BPF_F_CLONE (1U << 9)
#define BPF_SK_STORAGE_GET_F_CREATE 1
#define BPF_ANY 0

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_LISTEN 10
#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_UDP 17
#define IPPROTO_UDPLITE 136

// Kernel types, relocated by CO-RE.
typedef struct {
	__u32 val;
} kuid_t;

struct in6_addr {
	union {
		__u8 u6_addr8[16];
	} in6_u;
} __attribute__((preserve_access_index));

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	kuid_t sk_uid;
} __attribute__((preserve_access_index));

struct task_struct {
	struct task_struct *group_leader;
	__u64 start_boottime;
	char comm[16];
} __attribute__((preserve_access_index));

// The context of cgroup/sock_create: the head of the UAPI struct bpf_sock.
struct bpf_sock {
	__u32 bound_dev_if;
	__u32 family;
	__u32 type;
	__u32 protocol;
};

struct bpf_pidns_info {
	__u32 pid;
	__u32 tgid;
};

// How an owner was recorded: the Via* constants of package ownertable.
enum {
	VIA_CONNECT = 1,
	VIA_LISTEN = 2,
	VIA_ACCEPT = 3,
	VIA_CREATE = 4,
};

// struct owner is the value of the owners map; its layout is decoded by
// decodeOwner in owner.go.
struct owner {
	__u32 pid;   // thread group id, in the pid namespace of the reader
	__u32 uid;   // the socket's uid (sk_uid), or the creator's for UDP
	__u32 gid;   // the process's real gid
	__u32 via;   // VIA_*
	__u64 cgroup;  // cgroup v2 id
	__u64 start;   // the thread group leader's start, ns since boot
	char comm[16]; // the thread group leader's name
	// A connecting socket's addresses, once it is established (the
	// kernel wipes them from a socket reset by its owner before it
	// destroys it); family 0 until then.
	__u16 family;  // AF_INET, AF_INET6
	__u16 lport;   // host order
	__u16 rport;   // host order
	__u16 pad;
	__u8 laddr[16]; // AF_INET: the first 4 bytes
	__u8 raddr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64); // socket cookie
	__type(value, struct owner);
} owners SEC(".maps");

// fresh holds the cookies of the sockets recorded in owners since its
// reader last drained it (once a dump): so that the reader learns which
// sockets are new at a cost that follows the new sockets, not all of them.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);  // socket cookie
	__type(value, __u8); // unused
} fresh SEC(".maps");

static __always_inline void record(__u64 cookie, struct owner *o)
{
	__u8 one = 1;

	bpf_map_update_elem(&owners, &cookie, o, BPF_ANY);
	bpf_map_update_elem(&fresh, &cookie, &one, BPF_ANY);
}

// listeners holds the owner of every listening socket on the socket
// itself; the kernel copies it to each connection the listener accepts
// (BPF_F_CLONE), where it is read as the accepted connection's owner.
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC | BPF_F_CLONE);
	__type(key, int);
	__type(value, struct owner);
} listeners SEC(".maps");

// Set at load time: the pid namespace (device and inode of
// /proc/self/ns/pid) in which pids are written; 0 for the initial one.
volatile const __u64 pidns_dev = 0;
volatile const __u64 pidns_ino = 0;

static __always_inline void fill(struct owner *o, __u32 via)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);

	if (pidns_ino) {
		struct bpf_pidns_info ns = {};
		if (bpf_get_ns_current_pid_tgid(pidns_dev, pidns_ino, &ns, sizeof(ns)) == 0)
			o->pid = ns.tgid;
		else
			o->pid = 0; // a process of another pid namespace
	} else {
		o->pid = bpf_get_current_pid_tgid() >> 32;
	}
	__u64 ug = bpf_get_current_uid_gid();
	o->uid = (__u32)ug;
	o->gid = ug >> 32;
	o->via = via;
	o->cgroup = bpf_get_current_cgroup_id();
	o->start = BPF_CORE_READ(leader, start_boottime);
	BPF_CORE_READ_STR_INTO(&o->comm, leader, comm);
}

SEC("tp_btf/inet_sock_set_state")
int on_state(unsigned long long *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	int oldstate = (int)ctx[1];
	int newstate = (int)ctx[2];
	struct owner o = {};
	__u64 cookie;

	switch (newstate) {
	case TCP_ESTABLISHED: { // a connect(2) answered: its addresses
		if (oldstate != TCP_SYN_SENT)
			return 0;
		cookie = bpf_get_socket_cookie(sk);
		struct owner *c = bpf_map_lookup_elem(&owners, &cookie);
		if (!c)
			return 0;
		c->family = BPF_CORE_READ(sk, __sk_common.skc_family);
		c->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
		c->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
		if (c->family == AF_INET6) {
			BPF_CORE_READ_INTO(&c->laddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
			BPF_CORE_READ_INTO(&c->raddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
		} else {
			__be32 a = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
			__be32 b = BPF_CORE_READ(sk, __sk_common.skc_daddr);
			__builtin_memcpy(c->laddr, &a, 4);
			__builtin_memcpy(c->raddr, &b, 4);
		}
		return 0;
	}
	case TCP_SYN_SENT: // connect(2), in the connecting process
		fill(&o, VIA_CONNECT);
		o.uid = BPF_CORE_READ(sk, sk_uid.val);
		break;
	case TCP_LISTEN: { // listen(2), in the listening process
		fill(&o, VIA_LISTEN);
		o.uid = BPF_CORE_READ(sk, sk_uid.val);
		struct owner *l = bpf_sk_storage_get(&listeners, sk, &o, BPF_SK_STORAGE_GET_F_CREATE);
		if (l)
			*l = o;
		break;
	}
	case TCP_SYN_RECV: { // a listener's clone: no process context
		if (oldstate != TCP_LISTEN)
			return 0; // a simultaneous open: the connect recorded it
		struct owner *l = bpf_sk_storage_get(&listeners, sk, 0, 0);
		if (!l)
			return 0; // a listener older than the table
		o = *l;
		o.via = VIA_ACCEPT;
		break;
	}
	default:
		return 0;
	}
	cookie = bpf_get_socket_cookie(sk);
	record(cookie, &o);
	return 0;
}

// on_create records the creator of every UDP socket: socket(2), in the
// creating process. It needs a cgroup v2 hierarchy to attach to.
SEC("cgroup/sock_create")
int on_create(struct bpf_sock *sk)
{
	struct owner o = {};
	__u64 cookie;

	if (sk->protocol != IPPROTO_UDP && sk->protocol != IPPROTO_UDPLITE)
		return 1;
	fill(&o, VIA_CREATE);
	cookie = bpf_get_socket_cookie(sk);
	record(cookie, &o);
	return 1; // allow
}

char __license[] SEC("license") = "Dual BSD/GPL";
