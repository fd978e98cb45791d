// Package record defines the records that sockpipe's stages exchange as
// NDJSON, one JSON object a line: socket, snapshot and destroyed records,
// and the fields that each stage adds. The schema, its version and its
// versioning rule are documented for users in docs/record.md;
// this package is its code, and the codec package turns it into bytes and
// back.
//
// SchemaVersion is written in every snapshot record ("schema"). Within one
// version, fields are only ever added, never renamed, retyped or removed.
// Every stage passes through, byte for byte, the members and record types
// that it does not know.
package record

import (
	"errors"
	"fmt"
	"time"
)

// SchemaVersion is the version of the record schema that this code reads
// and writes. See the package documentation for the rule.
const SchemaVersion = 1

// Record types.
const (
	TypeSocket   = "socket"
	TypeSnapshot = "snapshot"
	// TypeDestroyed is a socket that the kernel destroyed, as its
	// destroy notification described it (sockdump --events).
	TypeDestroyed = "destroyed"
)

// Address families.
const (
	FamilyIPv4 = "ipv4"
	FamilyIPv6 = "ipv6"
)

// Transports.
const (
	TransportTCP = "tcp"
	TransportUDP = "udp"
)

// Directions, decided by sockdump from the listeners of the same dump.
const (
	DirectionListening = "listening"
	DirectionIngress   = "ingress"
	DirectionEgress    = "egress"
)

// Events, added by sockdiff.
const (
	EventExisting = "existing" // in the first snapshot that sockdiff saw
	EventOpened   = "opened"   // first seen in a later snapshot
	EventClosed   = "closed"   // in the previous snapshot, not in this one
)

// States are the TCP states by their kernel number (TCP_ESTABLISHED = 1 …
// TCP_NEW_SYN_RECV = 12), named as ss(8) names them in its state filter.
// TCP_NEW_SYN_RECV, the kernel's request socket, is shown as syn-recv, as
// ss shows it.
var States = [...]string{
	1:  "established",
	2:  "syn-sent",
	3:  "syn-recv",
	4:  "fin-wait-1",
	5:  "fin-wait-2",
	6:  "time-wait",
	7:  "closed",
	8:  "close-wait",
	9:  "last-ack",
	10: "listening",
	11: "closing",
	12: "syn-recv",
}

// StateName returns the ss name of a kernel TCP state, or "unknown-N".
func StateName(s uint8) string {
	if int(s) < len(States) && States[s] != "" {
		return States[s]
	}
	return fmt.Sprintf("unknown-%d", s)
}

// Field is a JSON member that a stage does not know, kept as raw JSON so it
// passes through unchanged.
type Field struct {
	Key   string
	Value []byte // raw JSON value
}

// Endpoint is one end of a socket.
type Endpoint struct {
	// IP is the address as ss prints it: dotted quad for IPv4, RFC 5952
	// for IPv6, and ::ffff:a.b.c.d for IPv4-mapped IPv6.
	IP string
	// Port is the TCP port; 0 for the remote end of a listener.
	Port uint16
	// Host is the remote address's PTR name with its trailing dot
	// (sockresolve).
	Host string
	// ETLDPlusOne is Host's registered domain, trailing dot kept; empty
	// when the public-suffix list gives none (sockresolve).
	ETLDPlusOne string
	// HostError says why Host is missing, in words (sockresolve).
	HostError string
	// Extra holds members this version does not know.
	Extra []Field
}

// Process is the process that holds a socket open (sockproc).
type Process struct {
	PID        int       // process id
	PPID       int       // parent process id
	Name       string    // comm, at most 15 bytes
	Executable string    // target of /proc/PID/exe
	Args       []string  // argv
	Cmdline    string    // Args joined by single spaces
	Start      time.Time // when the process started
	Extra      []Field
}

// User is the owner of a socket: its kernel uid, resolved (sockproc).
type User struct {
	ID       string // the uid, in decimal
	Name     string // login name
	FullName string // GECOS full name
	Extra    []Field
}

// Ways an owner was recorded (Owner.Via).
const (
	// OwnerConnect: the process that called connect(2) on a TCP socket.
	OwnerConnect = "connect"
	// OwnerListen: the process that called listen(2) on a TCP socket.
	OwnerListen = "listen"
	// OwnerAccept: an accepted TCP connection, owned by the owner of
	// the listener that accepted it (the kernel accepts it with no
	// process of its own).
	OwnerAccept = "accept"
	// OwnerCreate: the process that created the socket with socket(2)
	// (UDP, where cgroup v2 hooks can load).
	OwnerCreate = "create"
	// OwnerListener: an accepted TCP connection that the owner table
	// does not know (no table, or a listener older than it), owned by the
	// owner of its listener, named by the listener's inode and uid as the
	// last dump saw them (Owner.Inode, Owner.UID; no PID): sockproc finds
	// the listener's process by the inode.
	OwnerListener = "listener"
)

// Owner is the process and user that created, connected or listened on a
// socket, as sockdump's in-kernel owner table recorded them at that moment
// (sockdump --events). It outlives the process: sockproc uses it when the
// process is gone, or when no process holds the socket any more. An owner
// via OwnerListener names only a listener's socket inode and uid.
type Owner struct {
	PID      int       // process id (thread group id), in the pid namespace of sockdump
	Name     string    // the process's comm, at most 15 bytes
	UID      uint32    // the socket's uid (the kernel's sk_uid)
	GID      uint32    // the process's real gid
	CgroupID uint64    // cgroup v2 id of the process; 0 when unknown
	Start    time.Time // when the process started, to tell a reused pid apart
	Via      string    // how it was recorded: OwnerConnect, OwnerListen, …
	Inode    uint64    // via OwnerListener: the listener's socket inode
	Extra    []Field
}

// Container is the container a socket's process runs in (sockproc).
type Container struct {
	// ID is the container's id as its runtime names it: 64 hex digits
	// for Docker, containerd, CRI-O and Podman.
	ID    string
	Extra []Field
}

// Record is one line of the stream. Which fields are meaningful depends on
// Type; the zero value of a field means "not present" unless said otherwise.
type Record struct {
	// Type is the record type: TypeSocket, TypeSnapshot, or a type that
	// this version does not know (passed through by every stage).
	Type string
	// Time is when the dump that saw the socket began, or, for a
	// snapshot record, the same time for the whole dump.
	Time time.Time

	// Socket fields (sockdump).
	Family    string   // FamilyIPv4 or FamilyIPv6
	Transport string   // TransportTCP or TransportUDP; empty is TCP
	State     string   // an ss state name, see States
	Local     Endpoint // the local end
	Remote    Endpoint // the remote end; port 0 for a listener
	Direction string   // DirectionListening, DirectionIngress or DirectionEgress
	Inode     uint64   // socket inode; 0 once the socket is closing
	UID       uint32   // owner uid, meaningful only when HasUID
	HasUID    bool     // whether the uid is known
	Cookie    uint64   // kernel socket cookie; 0 when unknown
	NetNS     uint64   // inode of the network namespace dumped; 0 when unknown
	// Owner is who made the socket, from the kernel's owner table
	// (sockdump --events), when the table knows it; or, for an accepted
	// connection without an inode, its listener (OwnerListener).
	Owner *Owner

	// Event fields (sockdiff).
	Event     string    // EventExisting, EventOpened or EventClosed
	FirstSeen time.Time // first snapshot that held the connection
	LastSeen  time.Time // last snapshot that held the connection

	// Enrichment (sockproc).
	Process      *Process // the owning process, when found
	ProcessError string   // why no process is given, when it should be
	User         *User    // the owner
	// Container is the container of the owning process, when it runs
	// in one (sockproc).
	Container *Container

	// Info is what the kernel counted for the connection, given with
	// destroy notifications (sockdump --events).
	Info *TCPInfo
	// ShortLived marks a connection that no snapshot held: it was born
	// and destroyed between two dumps (sockdiff, from destroy records).
	ShortLived bool

	// Snapshot fields (sockdump).
	Schema   int           // SchemaVersion of the writer
	Sockets  int           // number of socket records in the dump
	Duration time.Duration // how long the dump took
	// Interval is the period of the dumps (sockdump --interval); 0 for
	// a one-shot dump.
	Interval time.Duration
	// EventOverflows counts, since the previous snapshot, the times the
	// kernel reported (ENOBUFS) that destroy notifications were dropped
	// because the receive buffer was full; each means one or more lost.
	EventOverflows int
	// Namespaces is how many network namespaces the dump covered, and
	// NamespacesSkipped how many it found but could not enter (sockdump
	// --all-netns; both 0 otherwise).
	Namespaces        int
	NamespacesSkipped int

	// Extra holds top-level members that this version does not know.
	Extra []Field
}

// TCPInfo is the part of the kernel's struct tcp_info that says what a
// connection did. Counters that the kernel does not have are zero.
type TCPInfo struct {
	BytesAcked    uint64 // bytes sent and acknowledged by the peer
	BytesReceived uint64 // bytes received
	BytesSent     uint64 // bytes sent, retransmissions included (Linux 5.5)
	BytesRetrans  uint64 // bytes retransmitted (Linux 5.5)
	SegsOut       uint32 // segments sent
	SegsIn        uint32 // segments received
	TotalRetrans  uint32 // segments retransmitted
	RTTMicros     uint32 // smoothed round-trip time, µs
	Extra         []Field
}

// Key identifies a connection: its network namespace, transport, family,
// and local and remote address and port. The inode and cookie are not part
// of it: the inode becomes 0 while a socket closes, and a request socket,
// the full socket and its TIME_WAIT twin are three kernel objects, with
// three cookies, of one connection. The namespace is: two containers can
// both hold 127.0.0.1:80 <-> 127.0.0.1:45000.
type Key struct {
	NetNS      uint64
	Transport  string // never empty: a record without one is TCP
	Family     string
	LocalIP    string
	LocalPort  uint16
	RemoteIP   string
	RemotePort uint16
}

// Key returns the connection identity of a socket record.
func (r *Record) Key() Key {
	t := r.Transport
	if t == "" {
		t = TransportTCP
	}
	return Key{r.NetNS, t, r.Family, r.Local.IP, r.Local.Port, r.Remote.IP, r.Remote.Port}
}

// Validate reports whether a record of a known type holds what its type
// requires. Records of unknown types are valid. A required member that is
// absent is said to be absent, not to have a wrong value.
func (r *Record) Validate() error {
	switch r.Type {
	case "":
		return errors.New(`no "type"`)
	case TypeSocket, TypeDestroyed:
		switch r.Family {
		case FamilyIPv4, FamilyIPv6:
		case "":
			return fmt.Errorf(`%s record: no "family"`, r.Type)
		default:
			return fmt.Errorf("%s record: family %q is neither %q nor %q", r.Type, r.Family, FamilyIPv4, FamilyIPv6)
		}
		if r.Local.IP == "" {
			return fmt.Errorf(`%s record: no "local.ip"`, r.Type)
		}
		if r.Remote.IP == "" {
			return fmt.Errorf(`%s record: no "remote.ip"`, r.Type)
		}
		if r.Time.IsZero() {
			return fmt.Errorf(`%s record: no "time"`, r.Type)
		}
	case TypeSnapshot:
		if r.Time.IsZero() {
			return errors.New(`snapshot record: no "time"`)
		}
	}
	return nil
}
