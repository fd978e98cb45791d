package ecs

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/sockpipe/sockpipe/internal/record"
)

// Event actions.
const (
	ActionExisting = "existing_socket"
	ActionOpened   = "socket_opened"
	ActionClosed   = "socket_closed"
)

var (
	categoryNetwork  = []string{"network"}
	typeConnInfo     = []string{"connection", "info"}
	typeConnStart    = []string{"connection", "start"}
	typeConnEnd      = []string{"connection", "end"}
	typeInfo         = []string{"info"}
	typeStart        = []string{"start"}
	typeEnd          = []string{"end"}
	ianaByFamily     = map[string]string{record.FamilyIPv4: "4", record.FamilyIPv6: "41"}
	ianaByTransport  = map[string]string{record.TransportTCP: "6", record.TransportUDP: "17"}
	directionUnknown = "unknown"
)

// New builds the document of a socket record; now is when it is built.
func New(r *record.Record, now time.Time, o *Options) *Doc {
	d := new(Doc)
	d.Build(r, now, o)
	return d
}

// roles says which ECS endpoint objects an end of the socket fills.
type roles struct {
	local, remote [2]string // up to two object names each, "" for none
}

func rolesOf(direction string, strict bool) roles {
	switch direction {
	case record.DirectionListening:
		return roles{local: [2]string{"server"}}
	case record.DirectionIngress:
		if strict {
			return roles{local: [2]string{"destination", "server"}, remote: [2]string{"client", "source"}}
		}
		return roles{local: [2]string{"destination"}, remote: [2]string{"source"}}
	case record.DirectionEgress:
		if strict {
			return roles{local: [2]string{"client", "source"}, remote: [2]string{"destination", "server"}}
		}
		return roles{local: [2]string{"source"}, remote: [2]string{"destination"}}
	}
	return roles{}
}

// Build fills d, which it resets first, with the document of r. Only
// socket records make documents; Build does not look at r.Type.
func (d *Doc) Build(r *record.Record, now time.Time, o *Options) {
	d.Fields = d.Fields[:0]
	strict := o.Strict
	listener := r.Direction == record.DirectionListening
	hasRemote := r.Remote.Port != 0 && !listener
	rl := rolesOf(r.Direction, strict)
	remoteHost := strings.TrimSuffix(r.Remote.Host, ".")
	remoteDomain := strings.TrimSuffix(r.Remote.ETLDPlusOne, ".")

	// Fields are added in sorted order: see Doc.
	d.time("@timestamp", r.Time)
	if !strict {
		d.str("agent.hostname", o.Hostname)
	}
	agentName := o.AgentName
	if agentName == "" {
		agentName = o.Hostname
	}
	d.str("agent.name", agentName)

	transport := r.Transport
	if transport == "" {
		transport = record.TransportTCP
	}
	// The kernel's counters are TCP's (struct tcp_info); a record of
	// another transport that carries them is not believed.
	info := r.Info
	if transport != record.TransportTCP {
		info = nil
	}

	// What each end sent, from the kernel's counters of a destroyed
	// connection: ECS's source.bytes is what the source sent.
	var localSent, remoteSent flow
	if ti := info; ti != nil && hasRemote && (r.Direction == record.DirectionIngress || r.Direction == record.DirectionEgress) {
		localSent = flow{int64(ti.BytesAcked), int64(ti.SegsOut), true}
		remoteSent = flow{int64(ti.BytesReceived), int64(ti.SegsIn), true}
	}
	put := func(obj string) {
		switch obj {
		case rl.local[0], rl.local[1]:
			d.endpoint(obj, &r.Local, "", "", strict, localSent)
		case rl.remote[0], rl.remote[1]:
			if hasRemote {
				d.endpoint(obj, &r.Remote, remoteHost, remoteDomain, strict, remoteSent)
			}
		}
	}
	put("client")
	if c := r.Container; c != nil {
		d.str("container.id", c.ID)
	}
	if ds := o.DataStream; ds != nil {
		d.str("data_stream.dataset", ds.Dataset)
		d.str("data_stream.namespace", ds.Namespace)
		d.str("data_stream.type", ds.Type)
	}
	put("destination")

	d.str("ecs.version", Version)
	if r.ProcessError != "" {
		d.str("error.code", r.ProcessError)
		if strict {
			d.str("error.message", r.ProcessError)
		}
	}

	// event.*
	action, kind := ActionExisting, "state"
	types := typeConnInfo
	switch r.Event {
	case record.EventOpened:
		action, kind, types = ActionOpened, "event", typeConnStart
	case record.EventClosed:
		action, kind, types = ActionClosed, "event", typeConnEnd
	}
	if listener {
		switch r.Event {
		case record.EventOpened:
			types = typeStart
		case record.EventClosed:
			types = typeEnd
		default:
			types = typeInfo
		}
	}
	var start, end time.Time
	var duration time.Duration
	if r.Event == record.EventClosed {
		start, end = r.FirstSeen, r.LastSeen
		if end.IsZero() {
			end = r.Time
		}
		duration = end.Sub(start)
	} else {
		duration = max(now.Sub(r.Time), 0)
	}
	d.str("event.action", action)
	d.strs("event.category", categoryNetwork)
	d.str("event.dataset", "system.socket")
	// A closed event's duration needs both ends, in order.
	if r.Event != record.EventClosed || (!start.IsZero() && duration >= 0) {
		d.long("event.duration", int64(duration))
	}
	d.time("event.end", end)
	d.str("event.kind", kind)
	d.str("event.module", "system")
	d.time("event.start", start)
	d.strs("event.type", types)

	if strict {
		d.str("host.hostname", o.Hostname)
	}
	d.str("host.name", o.Hostname)
	d.str("metricset.name", "socket")

	// network.*
	if localSent.ok {
		d.long("network.bytes", localSent.bytes+remoteSent.bytes)
	}
	switch {
	case !strict:
		d.str("network.direction", r.Direction)
	case r.Direction == record.DirectionIngress || r.Direction == record.DirectionEgress:
		d.str("network.direction", r.Direction)
	case listener:
	default:
		d.str("network.direction", directionUnknown)
	}
	if strict {
		d.str("network.iana_number", ianaByTransport[transport])
	} else {
		d.str("network.iana_number", ianaByFamily[r.Family])
	}
	if localSent.ok {
		d.long("network.packets", localSent.packets+remoteSent.packets)
	}
	d.str("network.transport", transport)
	d.str("network.type", r.Family)

	// process.*
	p := r.Process
	cmdline := ""
	if p != nil {
		cmdline = p.Cmdline
		if cmdline == "" && len(p.Args) > 0 {
			cmdline = strings.Join(p.Args, " ")
		}
		if len(p.Args) > 0 {
			d.strs("process.args", p.Args)
		}
		if strict {
			d.str("process.command_line", cmdline)
		}
		d.str("process.executable", p.Executable)
		d.str("process.name", p.Name)
		if p.PPID > 0 {
			d.long("process.parent.pid", int64(p.PPID))
		}
		d.long("process.pid", int64(p.PID))
		d.time("process.start", p.Start)
	}

	// related.*
	if strict {
		ips := d.related[0][:0]
		ips = append(ips, stripZone(r.Local.IP))
		if hasRemote && r.Remote.IP != r.Local.IP {
			ips = append(ips, stripZone(r.Remote.IP))
		}
		hosts := d.related[1][:0]
		if hasRemote && remoteHost != "" {
			hosts = append(hosts, remoteHost)
		}
		if len(hosts) > 0 {
			d.strs("related.hosts", hosts)
		}
		d.strs("related.ip", ips)
		if u := userName(r); u != "" {
			d.relUser[0] = u
			d.strs("related.user", d.relUser[:1])
		}
	}

	put("server")
	d.str("service.type", "system")
	put("source")

	// system.socket.*
	if strict && (listener || r.Direction == record.DirectionIngress || r.Direction == record.DirectionEgress) {
		// A direction this version does not know is network.direction
		// "unknown", and nothing here.
		d.str("system.socket.direction", r.Direction)
	}
	d.str("system.socket.local.ip", stripZone(r.Local.IP))
	d.long("system.socket.local.port", int64(r.Local.Port))
	if r.NetNS != 0 {
		d.long("system.socket.netns", int64(r.NetNS))
	}
	d.str("system.socket.process.cmdline", cmdline)
	if hasRemote {
		d.str("system.socket.remote.etld_plus_one", r.Remote.ETLDPlusOne)
		d.str("system.socket.remote.host", r.Remote.Host)
		d.str("system.socket.remote.host_error", r.Remote.HostError)
		d.str("system.socket.remote.ip", stripZone(r.Remote.IP))
		d.long("system.socket.remote.port", int64(r.Remote.Port))
	}
	if r.ShortLived {
		d.add(Field{Name: "system.socket.short_lived", Kind: Bool, Int: 1})
	}
	if ti := info; ti != nil {
		d.long("system.socket.tcp_info.bytes_acked", int64(ti.BytesAcked))
		d.long("system.socket.tcp_info.bytes_received", int64(ti.BytesReceived))
		d.long("system.socket.tcp_info.bytes_retrans", int64(ti.BytesRetrans))
		d.long("system.socket.tcp_info.bytes_sent", int64(ti.BytesSent))
		d.long("system.socket.tcp_info.rtt_us", int64(ti.RTTMicros))
		d.long("system.socket.tcp_info.segs_in", int64(ti.SegsIn))
		d.long("system.socket.tcp_info.segs_out", int64(ti.SegsOut))
		d.long("system.socket.tcp_info.total_retrans", int64(ti.TotalRetrans))
	}

	// user.*
	if u := r.User; u != nil {
		d.str("user.full_name", u.FullName)
		if u.ID != "" {
			d.str("user.id", u.ID)
		} else if r.HasUID {
			d.uintStr("user.id", uint64(r.UID))
		}
		d.str("user.name", u.Name)
	} else if r.HasUID {
		d.uintStr("user.id", uint64(r.UID))
	}
}

// Dates outside [minTime, maxTime) are refused: before the epoch they are
// nonsense for a socket, and nanoseconds since it overflow after 2262.
var (
	minTime = time.Unix(0, 0)
	maxTime = time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC)
)

// Check reports what in a socket record would make a wrong document or
// one that Elasticsearch rejects: addresses that are not IP addresses,
// dates before 1970 or after 2261, a namespace inode or a counter too
// large for a long.
func Check(r *record.Record) error {
	times := [...]struct {
		name string
		t    time.Time
	}{{"time", r.Time}, {"first_seen", r.FirstSeen}, {"last_seen", r.LastSeen}, {"process.start", time.Time{}}}
	if r.Process != nil {
		times[3].t = r.Process.Start
	}
	for _, e := range times {
		if !e.t.IsZero() && (e.t.Before(minTime) || !e.t.Before(maxTime)) {
			return fmt.Errorf("%s: %s is out of range", e.name, e.t.Format(time.RFC3339Nano))
		}
	}
	// Elasticsearch's long, the type of these fields, is signed.
	if r.NetNS > math.MaxInt64 {
		return fmt.Errorf("netns: %d is out of range", r.NetNS)
	}
	if ti := r.Info; ti != nil {
		for _, e := range [...]struct {
			name string
			n    uint64
		}{{"bytes_acked", ti.BytesAcked}, {"bytes_received", ti.BytesReceived}, {"bytes_sent", ti.BytesSent}, {"bytes_retrans", ti.BytesRetrans}} {
			if e.n > math.MaxInt64 {
				return fmt.Errorf("tcp_info.%s: %d is out of range", e.name, e.n)
			}
		}
	}
	for _, e := range [...]struct {
		name string
		ip   string
	}{{"local.ip", r.Local.IP}, {"remote.ip", r.Remote.IP}} {
		if _, err := netip.ParseAddr(e.ip); err != nil {
			return fmt.Errorf("%s: %q is not an IP address", e.name, e.ip)
		}
	}
	return nil
}

// stripZone drops an IPv6 zone ("%eth0"), which ECS ip fields do not take.
func stripZone(ip string) string {
	if i := strings.IndexByte(ip, '%'); i >= 0 {
		return ip[:i]
	}
	return ip
}

// userName is the user for related.user: the name, else the uid.
func userName(r *record.Record) string {
	if u := r.User; u != nil {
		if u.Name != "" {
			return u.Name
		}
		if u.ID != "" {
			return u.ID
		}
	}
	if r.HasUID {
		return strconv.FormatUint(uint64(r.UID), 10)
	}
	return ""
}
