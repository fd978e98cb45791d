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
	d.proc, d.procFrom, d.procTo = nil, 0, 0
	d.in.set(r, now, o)
	for _, obj := range objects {
		obj.add(d, &d.in)
	}
	d.in = input{}
}

// objects are the builders of a document's top-level fields and objects,
// in name order, so that the fields come out sorted (see Doc).
var objects = [...]struct {
	name string
	add  func(*Doc, *input)
}{
	{"@timestamp", (*Doc).timestamp},
	{"agent", (*Doc).agent},
	{"client", (*Doc).client},
	{"container", (*Doc).container},
	{"data_stream", (*Doc).dataStream},
	{"destination", (*Doc).destination},
	{"ecs", (*Doc).ecs},
	{"error", (*Doc).error},
	{"event", (*Doc).event},
	{"host", (*Doc).host},
	{"metricset", (*Doc).metricset},
	{"network", (*Doc).network},
	{"process", (*Doc).process},
	{"related", (*Doc).related},
	{"server", (*Doc).server},
	{"service", (*Doc).service},
	{"source", (*Doc).source},
	{"system", (*Doc).system},
	{"user", (*Doc).user},
}

// input is what the builders of one document share: the record, the
// options and what is derived from them once.
type input struct {
	r      *record.Record
	o      *Options
	now    time.Time
	strict bool

	listener  bool   // the socket listens
	conn      bool   // ingress or egress
	hasRemote bool   // the remote end is written
	rl        roles  // the endpoint objects of each end
	transport string // the record's, tcp when it has none
	// info is the kernel's counters (TCP's struct tcp_info); a record of
	// another transport that carries them is not believed.
	info *record.TCPInfo
	// What each end sent, from the kernel's counters of a destroyed
	// connection: ECS's source.bytes is what the source sent.
	localSent, remoteSent flow

	remoteHost, remoteDomain string // without the trailing dot
	cmdline                  string // the process's, or its args joined
}

func (in *input) set(r *record.Record, now time.Time, o *Options) {
	*in = input{r: r, o: o, now: now, strict: o.Strict}
	in.listener = r.Direction == record.DirectionListening
	in.conn = r.Direction == record.DirectionIngress || r.Direction == record.DirectionEgress
	in.hasRemote = r.Remote.Port != 0 && !in.listener
	in.rl = rolesOf(r.Direction, in.strict)
	in.remoteHost = strings.TrimSuffix(r.Remote.Host, ".")
	in.remoteDomain = strings.TrimSuffix(r.Remote.ETLDPlusOne, ".")
	in.transport = r.Transport
	if in.transport == "" {
		in.transport = record.TransportTCP
	}
	if in.transport == record.TransportTCP {
		in.info = r.Info
	}
	if ti := in.info; ti != nil && in.hasRemote && in.conn {
		in.localSent = flow{int64(ti.BytesAcked), int64(ti.SegsOut), true}
		in.remoteSent = flow{int64(ti.BytesReceived), int64(ti.SegsIn), true}
	}
	if p := r.Process; p != nil {
		in.cmdline = p.Cmdline
		if in.cmdline == "" && len(p.Args) > 0 {
			in.cmdline = strings.Join(p.Args, " ")
		}
	}
}

// endpointOf adds the endpoint object obj when an end of the socket fills it.
func (d *Doc) endpointOf(obj string, in *input) {
	r := in.r
	switch obj {
	case in.rl.local[0], in.rl.local[1]:
		d.endpoint(obj, &r.Local, "", "", in.strict, in.localSent)
	case in.rl.remote[0], in.rl.remote[1]:
		if in.hasRemote {
			d.endpoint(obj, &r.Remote, in.remoteHost, in.remoteDomain, in.strict, in.remoteSent)
		}
	}
}

func (d *Doc) client(in *input)      { d.endpointOf("client", in) }
func (d *Doc) destination(in *input) { d.endpointOf("destination", in) }
func (d *Doc) server(in *input)      { d.endpointOf("server", in) }
func (d *Doc) source(in *input)      { d.endpointOf("source", in) }

func (d *Doc) timestamp(in *input) { d.time("@timestamp", in.r.Time) }

func (d *Doc) agent(in *input) {
	o := in.o
	if !in.strict {
		d.str("agent.hostname", o.Hostname)
	}
	name := o.AgentName
	if name == "" {
		name = o.Hostname
	}
	d.str("agent.name", name)
	d.str("agent.type", o.AgentType)
	d.str("agent.version", o.AgentVersion)
}

func (d *Doc) container(in *input) {
	if c := in.r.Container; c != nil {
		d.str("container.id", c.ID)
	}
}

func (d *Doc) dataStream(in *input) {
	if ds := in.o.DataStream; ds != nil {
		d.str("data_stream.dataset", ds.Dataset)
		d.str("data_stream.namespace", ds.Namespace)
		d.str("data_stream.type", ds.Type)
	}
}

func (d *Doc) ecs(*input) { d.str("ecs.version", Version) }

func (d *Doc) error(in *input) {
	if e := in.r.ProcessError; e != "" {
		d.str("error.code", e)
		if in.strict {
			d.str("error.message", e)
		}
	}
}

func (d *Doc) event(in *input) {
	r := in.r
	action, kind := ActionExisting, "state"
	types := typeConnInfo
	switch r.Event {
	case record.EventOpened:
		action, kind, types = ActionOpened, "event", typeConnStart
	case record.EventClosed:
		action, kind, types = ActionClosed, "event", typeConnEnd
	}
	if in.listener {
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
		duration = max(in.now.Sub(r.Time), 0)
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
}

func (d *Doc) host(in *input) {
	if in.strict {
		d.str("host.hostname", in.o.Hostname)
	}
	d.str("host.name", in.o.Hostname)
}

func (d *Doc) metricset(in *input) {
	d.str("metricset.name", "socket")
	if p := in.o.Period; p > 0 {
		// Beats write the period in milliseconds.
		d.long("metricset.period", p.Milliseconds())
	}
}

func (d *Doc) network(in *input) {
	r := in.r
	if in.localSent.ok {
		d.long("network.bytes", in.localSent.bytes+in.remoteSent.bytes)
	}
	switch {
	case !in.strict, in.conn:
		d.str("network.direction", r.Direction)
	case in.listener:
	default:
		d.str("network.direction", directionUnknown)
	}
	if in.strict {
		d.str("network.iana_number", ianaByTransport[in.transport])
	} else {
		d.str("network.iana_number", ianaByFamily[r.Family])
	}
	if in.localSent.ok {
		d.long("network.packets", in.localSent.packets+in.remoteSent.packets)
	}
	d.str("network.transport", in.transport)
	d.str("network.type", r.Family)
}

func (d *Doc) process(in *input) {
	p := in.r.Process
	if p == nil {
		return
	}
	// The process's fields are p's alone: AppendJSON may write them as
	// it wrote them for p before (see Doc.procs).
	d.proc, d.procFrom = p, len(d.Fields)
	defer func() { d.procTo = len(d.Fields) }()
	if len(p.Args) > 0 {
		d.strs("process.args", p.Args)
	}
	if in.strict {
		d.str("process.command_line", in.cmdline)
	}
	d.str("process.executable", p.Executable)
	d.str("process.name", p.Name)
	if p.PPID > 0 {
		d.long("process.parent.pid", int64(p.PPID))
	}
	d.long("process.pid", int64(p.PID))
	d.time("process.start", p.Start)
}

func (d *Doc) related(in *input) {
	if !in.strict {
		return
	}
	r := in.r
	ips := d.rel[0][:0]
	local := docIP(r.Local.IP)
	ips = append(ips, local)
	if remote := docIP(r.Remote.IP); in.hasRemote && remote != local {
		ips = append(ips, remote)
	}
	hosts := d.rel[1][:0]
	if in.hasRemote && in.remoteHost != "" {
		hosts = append(hosts, in.remoteHost)
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

func (d *Doc) service(*input) { d.str("service.type", "system") }

func (d *Doc) system(in *input) {
	r := in.r
	if in.strict && in.listener {
		// Where ECS's network.direction has no value for it. Not
		// system.socket.direction: Metricbeat's fields define that as
		// an alias of network.direction, and Elasticsearch refuses a
		// document that writes to an alias.
		d.add(Field{Name: "system.socket.listening", Kind: Bool, Int: 1})
	}
	d.str("system.socket.local.ip", docIP(r.Local.IP))
	d.long("system.socket.local.port", int64(r.Local.Port))
	if r.NetNS != 0 {
		d.long("system.socket.netns", int64(r.NetNS))
	}
	if r.Process != nil {
		// Written when empty too: Metricbeat writes it for every
		// process it finds.
		d.add(Field{Name: "system.socket.process.cmdline", Kind: String, Str: in.cmdline})
	}
	if in.hasRemote {
		d.str("system.socket.remote.etld_plus_one", r.Remote.ETLDPlusOne)
		d.str("system.socket.remote.host", r.Remote.Host)
		d.str("system.socket.remote.host_error", r.Remote.HostError)
		d.str("system.socket.remote.ip", docIP(r.Remote.IP))
		d.long("system.socket.remote.port", int64(r.Remote.Port))
	}
	if r.ShortLived {
		d.add(Field{Name: "system.socket.short_lived", Kind: Bool, Int: 1})
	}
	if ti := in.info; ti != nil {
		d.long("system.socket.tcp_info.bytes_acked", int64(ti.BytesAcked))
		d.long("system.socket.tcp_info.bytes_received", int64(ti.BytesReceived))
		d.long("system.socket.tcp_info.bytes_retrans", int64(ti.BytesRetrans))
		d.long("system.socket.tcp_info.bytes_sent", int64(ti.BytesSent))
		d.long("system.socket.tcp_info.rtt_us", int64(ti.RTTMicros))
		d.long("system.socket.tcp_info.segs_in", int64(ti.SegsIn))
		d.long("system.socket.tcp_info.segs_out", int64(ti.SegsOut))
		d.long("system.socket.tcp_info.total_retrans", int64(ti.TotalRetrans))
	}
}

func (d *Doc) user(in *input) {
	r := in.r
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

// docIP is an address as the documents write it: without an IPv6 zone
// ("%eth0"), which ECS ip fields do not take, and an IPv4-mapped IPv6
// address (::ffff:127.0.0.1, a dual-stack listener's IPv4 peer) dotted,
// as Metricbeat writes it (Go prints them so); network.type stays ipv6.
func docIP(ip string) string {
	if i := strings.IndexByte(ip, '%'); i >= 0 {
		ip = ip[:i]
	}
	const mapped = "::ffff:"
	if len(ip) <= len(mapped) || !strings.EqualFold(ip[:len(mapped)], mapped) {
		return ip
	}
	a, err := netip.ParseAddr(ip)
	if err != nil || !a.Is4In6() {
		return ip
	}
	if strings.IndexByte(ip, '.') >= 0 {
		return ip[len(mapped):] // as sockdump writes them: no new string
	}
	return a.Unmap().String()
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
