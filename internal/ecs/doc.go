// Package ecs turns socket records into Elastic Common Schema documents.
//
// Build is a pure function of a record, the time the document is built
// and Options; it gives a Doc, an ordered list of dotted field names and
// values, which AppendJSON writes as one nested JSON object. It calls one
// builder per top-level field or object, in name order, which keeps the
// fields sorted.
//
// # Two modes
//
// By default a document holds what Metricbeat's system/socket metricset
// writes, field for field and value for value, so that existing dashboards
// and queries keep working, plus only fields that conflict with nothing:
// ecs.version, host.name, network.transport, event.kind, event.category,
// event.type, event.action, event.start and event.end (closed events),
// process.parent.pid and process.start, container.id, and the byte and
// packet counts of connections that destroy notifications told of (below).
// agent.type and agent.version (Options: the program that writes the
// document) and metricset.period (Options.Period, in milliseconds, as Beats
// write it) are Metricbeat's fields too. Where the default documents still
// differ from Metricbeat's, on purpose, docs/metricbeat.md says why.
//
// Three of the original's fields depart from ECS 9.4, and the default mode
// keeps them for compatibility:
//
//   - network.iana_number is "4" for IPv4 and "41" for IPv6 (a map from the
//     address family), for UDP sockets too; ECS wants the transport's
//     number, "6" for TCP and "17" for UDP;
//   - network.direction is "listening" for listeners, a value ECS does not
//     list;
//   - agent.hostname, a Beats field that ECS no longer defines (ECS has
//     host.hostname).
//
// With Options.Strict the document holds what ECS 9.4 expects instead:
// network.iana_number "6" for TCP, "17" for UDP; no network.direction for
// listeners, and "unknown" for a direction this version does not know;
// system.socket.listening: true for listeners instead (not
// system.socket.direction, which Metricbeat's fields define as an alias of
// network.direction: Elasticsearch refuses a document that writes to an
// alias); host.hostname instead of agent.hostname; client and server beside source and
// destination, as ECS's mapping of network events asks (ingress: the
// remote end is client and source, the local end server and destination;
// egress: the local end is client and source; a listener is a server);
// related.ip, related.hosts and related.user; source.domain or
// destination.domain and registered_domain, without the trailing dots of
// DNS names; process.command_line; error.message beside error.code.
//
// In both modes the system.socket.* fields are the original's custom
// namespace, and metricset.name is the Beats field every Metricbeat
// document carries; neither conflicts with ECS.
//
// # UDP, network namespaces and containers
//
// network.transport is the record's transport, "tcp" when it has none.
// A UDP socket maps as a TCP one does: an unconnected UDP socket
// (sockdump's direction "listening", state "closed") is a listener, its
// local end the server, with event.type info, start or end and no
// network.direction in strict mode; a connected one is an ingress or
// egress connection with both ends. The kernel's counters (tcp_info) are
// TCP's: a record of another transport that carries them has them left
// out, and with them the byte and packet counts.
//
// system.socket.netns, a long, is the inode of the network namespace the
// socket lives in (as lsns(8) and /proc/PID/ns/net show it), written
// whenever the record has one: the same address and port can be held in
// several namespaces at once, so it is what tells the sockets of two
// containers apart. ECS has no field for it (host.pid_ns_ino is the PID
// namespace's).
//
// container.id is the id of the container that the socket's process runs
// in (sockproc), in both modes. It is ECS's field, the one Beats'
// add_docker_metadata processor writes, so documents join other sources'
// on it.
//
// # Connections that destroy notifications told of
//
// sockdiff reports a connection from the kernel's destroy notification
// (sockdump --events) with the kernel's counters (tcp_info) and, when no
// snapshot ever held it, short_lived. In both modes:
//
//   - system.socket.short_lived: true, for a connection born and gone
//     between two dumps; it is an opened (socket_opened) or closed
//     (socket_closed) event like any other, whose process.* and user.*
//     are those of the owner that sockdump's owner table recorded (the
//     process may be gone: then process.pid, process.name and
//     process.start only); without an owner, its error.code is "process
//     has exited. inode=0, tcp_state=UNCONN", from sockproc. Its closed
//     event has no event.start (no snapshot saw it begin) and so no
//     event.duration;
//   - system.socket.tcp_info.*: the counters as the kernel gives them
//     (bytes_acked, bytes_received, bytes_sent, bytes_retrans, segs_out,
//     segs_in, total_retrans, rtt_us), custom fields;
//   - for a connection (ingress or egress, with a remote end), what each
//     end sent, as ECS defines source.bytes ("bytes sent from the source
//     to the destination") and source.packets: the local end sent
//     tcp_info.bytes_acked bytes in segs_out segments, the remote end
//     bytes_received bytes in segs_in segments. So for egress source.bytes
//     is bytes_acked and destination.bytes bytes_received, for ingress the
//     reverse; client.* and server.* (strict mode) follow source and
//     destination; network.bytes and network.packets are the sums. The
//     kernel counts sequence space: the SYN and FIN each add one to the
//     bytes, and segments include pure acknowledgements and
//     retransmissions. A listener has no flow: its counters stay under
//     system.socket.tcp_info only.
//
// # Events
//
// The record's event (written by sockdiff) decides the categorization:
//
//	event      event.action      event.kind  event.type (connection / listener)
//	existing   existing_socket   state       [connection, info] / [info]
//	opened     socket_opened     event       [connection, start] / [start]
//	closed     socket_closed     event       [connection, end] / [end]
//
// A socket that exists when it is first looked at is a state, not a change
// (ECS: "the state of a TCP connection"; "info": a dump of what exists "as
// opposed to reporting that a process started/ended"); an opened or closed
// socket is a change, so an event. A record without an event (sockdump
// straight into sockecs) or with an event this version does not know is a
// socket seen in a snapshot: it is written as existing.
//
// # Values
//
// IPv6 zones (fe80::1%eth0) are dropped from addresses, which ECS types
// as ip. IPv4-mapped addresses (::ffff:10.0.0.5, the IPv4 peers of a
// dual-stack listener) are written dotted (10.0.0.5), in both modes, as
// Metricbeat writes them; network.type stays ipv6, the socket's family,
// and the record keeps the mapped form. system.socket.process.cmdline is
// written whenever the record has a process, "" when it has neither a
// command line nor arguments, as Metricbeat writes it. Text that is not
// valid UTF-8 (process arguments need not be) has its bad bytes replaced by
// U+FFFD. Check tells the records whose documents Elasticsearch would
// reject.
//
// # Times
//
// @timestamp is the record's time, when the dump that saw the socket began
// (all sockets of one dump share it), in milliseconds as Beats writes it.
// For closed events event.start is the first snapshot that held the
// connection (first_seen) and event.end the last one (last_seen, or the
// record's time when it is missing): ECS's "when the activity was first /
// last observed". The connection ended between event.end and @timestamp.
//
// event.duration, in nanoseconds: for closed events event.end minus
// event.start, as ECS asks when both are known. For every other event, as
// in the original, the time from the start of the dump to when the document
// was built: the original built its events inside the poll, after the
// process and DNS lookups, so the value was the poll's latency up to that
// event; here it is the pipeline's latency, dump, process and DNS lookups
// included. A document built from a saved file therefore shows how old the
// file is. It is never negative (a clock stepped back gives 0).
package ecs

import (
	"time"

	"github.com/sockpipe/sockpipe/internal/record"
)

// Version is the ECS version the documents follow.
const Version = "9.4.0"

// Options shape the documents.
type Options struct {
	// Strict writes what ECS 9.4 expects where the original departs
	// from it; see the package documentation.
	Strict bool
	// Hostname is the host the sockets belong to: agent.hostname and
	// host.name (host.hostname in strict mode). Empty leaves them out.
	Hostname string
	// AgentName is agent.name; empty means Hostname, as in Beats.
	AgentName string
	// AgentType and AgentVersion are agent.type and agent.version (the
	// program that wrote the document); empty leaves them out.
	AgentType, AgentVersion string
	// Period is metricset.period (in milliseconds): how often the dumps
	// that saw the sockets run. Zero, for a one-shot dump, leaves it out.
	Period time.Duration
	// DataStream, when set, adds the data_stream.* fields.
	DataStream *DataStream
}

// DataStream names an Elasticsearch data stream: TYPE-DATASET-NAMESPACE.
type DataStream struct {
	Type      string // logs, metrics, …
	Dataset   string // system.socket
	Namespace string // default
}

// Name returns the data stream's index name.
func (d DataStream) Name() string { return d.Type + "-" + d.Dataset + "-" + d.Namespace }

// ParseDataStream splits an index name that follows the data stream naming
// scheme (a known type, then a dataset and a namespace without dashes).
func ParseDataStream(index string) (DataStream, bool) {
	var parts [3]string
	n := 0
	start := 0
	for i := 0; i <= len(index); i++ {
		if i == len(index) || index[i] == '-' {
			if n == 3 {
				return DataStream{}, false
			}
			parts[n] = index[start:i]
			n++
			start = i + 1
		}
	}
	if n != 3 || parts[1] == "" || parts[2] == "" {
		return DataStream{}, false
	}
	switch parts[0] {
	case "logs", "metrics", "traces", "synthetics", "profiling":
	default:
		return DataStream{}, false
	}
	return DataStream{Type: parts[0], Dataset: parts[1], Namespace: parts[2]}, true
}

// Kind is the JSON shape of a field's value.
type Kind uint8

// Value kinds.
const (
	String     Kind = iota // Field.Str
	Long                   // Field.Int
	Time                   // Field.Int, nanoseconds since the Unix epoch, as an RFC 3339 string in milliseconds
	Strings                // Field.Strs, as an array
	UintString             // Field.Int as a decimal string (user.id from a uid)
	Bool                   // Field.Int, 0 for false
)

// Field is one leaf of a document.
type Field struct {
	Name string // dotted path, e.g. "process.pid"
	Str  string
	Strs []string
	Int  int64
	Kind Kind
}

// Doc is one document: its leaves in output order. Names are sorted by
// their dot-separated segments, so that the leaves of one object are
// adjacent, as AppendJSON requires.
type Doc struct {
	Fields []Field

	in      input        // what the builders share, during Build
	rel     [2][3]string // backing arrays for related.ip and related.hosts/user
	relUser [2]string

	// times are the last dates AppendJSON wrote, as JSON text.
	times [4]struct {
		ns   int64
		text []byte
	}
	nextTime int

	// shapes are the last document shapes AppendJSON wrote.
	shapes    [4]*shape
	nextShape int

	// proc is the process whose fields are Fields[procFrom:procTo], set
	// by Build; procs, the JSON that AppendJSON wrote for the fields of
	// the last processes, by the process's address and the document's
	// shape. Records share their process objects (the decoder's Share)
	// and never change them.
	proc             *record.Process
	procFrom, procTo int
	procs            [procSlots]procText
}

// procSlots is how many processes' fields a Doc remembers.
const (
	procBits  = 8
	procSlots = 1 << procBits
)

type procText struct {
	proc  *record.Process // kept alive by this: its address stays its own
	shape *shape
	text  []byte
}

// Get returns the field of that name.
func (d *Doc) Get(name string) (Field, bool) {
	for _, f := range d.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return Field{}, false
}
