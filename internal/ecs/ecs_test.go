package ecs

import (
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/ecs/ecscheck"
	"github.com/sockpipe/sockpipe/internal/record"
)

// ecsCopy is the project's copy of the ECS entries the documents use;
// customFields defines the documents' own fields: the original's
// system.socket.*, with the project's additions, and the Beats
// metricset.name.
var (
	ecsCopy      = filepath.Join("..", "..", "testdata", "ecs", "ecs_flat.yml")
	customFields = filepath.Join("..", "..", "testdata", "ecs", "custom_fields.yml")
)

// customNamespaces are where the document's own fields live.
var customNamespaces = []string{"system.socket.", "metricset."}

// loadSchema loads the ECS and the custom field definitions: every field
// of a document is checked, the custom ones too.
func loadSchema(t testing.TB) *ecscheck.Schema {
	t.Helper()
	s, err := ecscheck.Load(ecsCopy, customFields)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func flatten(t testing.TB, doc []byte) map[string]any {
	t.Helper()
	m, err := ecscheck.Flatten(doc)
	if err != nil {
		t.Fatalf("%v in %s", err, doc)
	}
	return m
}

// The record of the reference page's example (a listening :: socket with
// its process and user) gives the page's document back, field for field,
// apart from the fields the project adds.
func TestMetricbeatExample(t *testing.T) {
	line, err := os.ReadFile("testdata/metricbeat_example.record.json")
	if err != nil {
		t.Fatal(err)
	}
	r, err := codec.Decode(line)
	if err != nil {
		t.Fatal(err)
	}
	wantDoc, err := os.ReadFile("testdata/metricbeat_example.json")
	if err != nil {
		t.Fatal(err)
	}
	// The page's event.duration is 115 µs after the poll began.
	now := r.Time.Add(115 * time.Microsecond)
	got := flatten(t, New(r, now, &Options{Hostname: "host.example.com"}).AppendJSON(nil))
	added := map[string]any{
		"ecs.version":       "9.4.0",
		"host.name":         "host.example.com",
		"network.transport": "tcp",
		"event.kind":        "state",
		"event.category":    []any{"network"},
		"event.type":        []any{"info"},
		"event.action":      "existing_socket",
	}
	for k, v := range added {
		if diff := cmp.Diff(v, got[k]); diff != "" {
			t.Errorf("added field %s (-want +got):\n%s", k, diff)
		}
		delete(got, k)
	}
	if diff := cmp.Diff(flatten(t, wantDoc), got); diff != "" {
		t.Errorf("document differs from the reference page's (-want +got):\n%s", diff)
	}
}

// Every document's fields are sorted by segment, so that AppendJSON
// writes each object once, and no leaf is also an object.
func TestFieldOrder(t *testing.T) {
	var d Doc
	for _, o := range corpusOptions() {
		for _, r := range corpus() {
			d.Build(r, t0, &o)
			for i := 1; i < len(d.Fields); i++ {
				a, b := d.Fields[i-1].Name, d.Fields[i].Name
				if compareSegments(a, b) >= 0 || strings.HasPrefix(b, a+".") {
					t.Fatalf("options %+v: %q then %q", o, a, b)
				}
			}
		}
	}
}

func compareSegments(a, b string) int {
	return slices.Compare(strings.Split(a, "."), strings.Split(b, "."))
}

func TestBuild(t *testing.T) {
	v4 := families[0]
	tests := []struct {
		name string
		r    *record.Record
		o    Options
		now  time.Time
		want string
	}{
		{
			name: "bare egress, no enrichment",
			r:    corpusRecord(v4, record.DirectionEgress, "", 0),
			now:  t0.Add(3 * time.Millisecond),
			want: `{"@timestamp":"2026-11-26T04:30:00.123Z","destination":{"ip":"93.184.216.34","port":443},"ecs":{"version":"9.4.0"},"event":{"action":"existing_socket","category":["network"],"dataset":"system.socket","duration":3000000,"kind":"state","module":"system","type":["connection","info"]},"metricset":{"name":"socket"},"network":{"direction":"egress","iana_number":"4","transport":"tcp","type":"ipv4"},"service":{"type":"system"},"source":{"ip":"10.0.0.5","port":40000},"system":{"socket":{"local":{"ip":"10.0.0.5","port":40000},"remote":{"ip":"93.184.216.34","port":443}}}}`,
		},
		{
			name: "ingress opened, uid only, clock behind",
			r:    corpusRecord(v4, record.DirectionIngress, record.EventOpened, withError),
			o:    Options{Hostname: "h1", AgentName: "a1"},
			now:  t0.Add(-time.Second),
			want: `{"@timestamp":"2026-11-26T04:30:00.123Z","agent":{"hostname":"h1","name":"a1"},"destination":{"ip":"10.0.0.5","port":8080},"ecs":{"version":"9.4.0"},"error":{"code":"process not found. inode=4242, tcp_state=established"},"event":{"action":"socket_opened","category":["network"],"dataset":"system.socket","duration":0,"kind":"event","module":"system","type":["connection","start"]},"host":{"name":"h1"},"metricset":{"name":"socket"},"network":{"direction":"ingress","iana_number":"4","transport":"tcp","type":"ipv4"},"service":{"type":"system"},"source":{"ip":"93.184.216.34","port":51234},"system":{"socket":{"local":{"ip":"10.0.0.5","port":8080},"remote":{"host_error":"lookup 93.184.216.34: no such host","ip":"93.184.216.34","port":51234}}},"user":{"id":"1000"}}`,
		},
		{
			name: "strict ingress closed, everything",
			r:    corpusRecord(families[2], record.DirectionIngress, record.EventClosed, withProcess|withHost|withUser),
			o:    Options{Strict: true, Hostname: "h1"},
			now:  t0.Add(time.Hour),
			want: `{"@timestamp":"2026-11-26T04:30:00.123Z","agent":{"name":"h1"},"client":{"domain":"localhost","ip":"93.184.216.34","port":51234},"destination":{"ip":"10.0.0.5","port":8080},"ecs":{"version":"9.4.0"},"event":{"action":"socket_closed","category":["network"],"dataset":"system.socket","duration":10000000000,"end":"2026-11-26T04:30:00.123Z","kind":"event","module":"system","start":"2026-11-26T04:29:50.123Z","type":["connection","end"]},"host":{"hostname":"h1","name":"h1"},"metricset":{"name":"socket"},"network":{"direction":"ingress","iana_number":"6","transport":"tcp","type":"ipv6"},"process":{"args":["curl","-s","https://example.com/a b"],"command_line":"curl -s https://example.com/a b","executable":"/usr/bin/curl","name":"curl","pid":4321},"related":{"hosts":["localhost"],"ip":["10.0.0.5","93.184.216.34"],"user":["zoe"]},"server":{"ip":"10.0.0.5","port":8080},"service":{"type":"system"},"source":{"domain":"localhost","ip":"93.184.216.34","port":51234},"system":{"socket":{"local":{"ip":"10.0.0.5","port":8080},"process":{"cmdline":"curl -s https://example.com/a b"},"remote":{"host":"localhost.","ip":"93.184.216.34","port":51234}}},"user":{"full_name":"Zoë \"Z\" Ünal\t","id":"1001","name":"zoe"}}`,
		},
		{
			name: "ipv4-mapped peer of a dual-stack listener, dotted",
			r:    corpusRecord(families[2], record.DirectionIngress, record.EventOpened, 0),
			now:  t0,
			want: `{"@timestamp":"2026-11-26T04:30:00.123Z","destination":{"ip":"10.0.0.5","port":8080},"ecs":{"version":"9.4.0"},"event":{"action":"socket_opened","category":["network"],"dataset":"system.socket","duration":0,"kind":"event","module":"system","type":["connection","start"]},"metricset":{"name":"socket"},"network":{"direction":"ingress","iana_number":"41","transport":"tcp","type":"ipv6"},"service":{"type":"system"},"source":{"ip":"93.184.216.34","port":51234},"system":{"socket":{"local":{"ip":"10.0.0.5","port":8080},"remote":{"ip":"93.184.216.34","port":51234}}}}`,
		},
		{
			name: "strict listener opened, data stream",
			r:    corpusRecord(families[1], record.DirectionListening, record.EventOpened, withProcess),
			o:    Options{Strict: true, DataStream: &DataStream{"metrics", "system.socket", "prod"}},
			now:  t0.Add(time.Microsecond),
			want: `{"@timestamp":"2026-11-26T04:30:00.123Z","data_stream":{"dataset":"system.socket","namespace":"prod","type":"metrics"},"ecs":{"version":"9.4.0"},"event":{"action":"socket_opened","category":["network"],"dataset":"system.socket","duration":1000,"kind":"event","module":"system","type":["start"]},"metricset":{"name":"socket"},"network":{"iana_number":"6","transport":"tcp","type":"ipv6"},"process":{"args":["curl","-s","https://example.com/a b"],"command_line":"curl -s https://example.com/a b","executable":"/usr/bin/curl","name":"curl","parent":{"pid":1},"pid":4321,"start":"2026-11-26T04:29:00.123Z"},"related":{"ip":["::"],"user":["1000"]},"server":{"ip":"::","port":8080},"service":{"type":"system"},"system":{"socket":{"listening":true,"local":{"ip":"::","port":8080},"process":{"cmdline":"curl -s https://example.com/a b"}}},"user":{"id":"1000"}}`,
		},
		{
			name: "strict egress with host names",
			r:    corpusRecord(v4, record.DirectionEgress, record.EventExisting, withHost),
			o:    Options{Strict: true},
			now:  t0,
			want: `{"@timestamp":"2026-11-26T04:30:00.123Z","client":{"ip":"10.0.0.5","port":40000},"destination":{"domain":"edge-1.example.com","ip":"93.184.216.34","port":443,"registered_domain":"example.com"},"ecs":{"version":"9.4.0"},"event":{"action":"existing_socket","category":["network"],"dataset":"system.socket","duration":0,"kind":"state","module":"system","type":["connection","info"]},"metricset":{"name":"socket"},"network":{"direction":"egress","iana_number":"6","transport":"tcp","type":"ipv4"},"related":{"hosts":["edge-1.example.com"],"ip":["10.0.0.5","93.184.216.34"],"user":["1000"]},"server":{"domain":"edge-1.example.com","ip":"93.184.216.34","port":443,"registered_domain":"example.com"},"service":{"type":"system"},"source":{"ip":"10.0.0.5","port":40000},"system":{"socket":{"local":{"ip":"10.0.0.5","port":40000},"remote":{"etld_plus_one":"example.com.","host":"edge-1.example.com.","ip":"93.184.216.34","port":443}}},"user":{"id":"1000"}}`,
		},
		{
			name: "unknown direction",
			r:    corpusRecord(v4, "", "", withUser),
			o:    Options{Strict: true},
			now:  t0,
			want: `{"@timestamp":"2026-11-26T04:30:00.123Z","ecs":{"version":"9.4.0"},"event":{"action":"existing_socket","category":["network"],"dataset":"system.socket","duration":0,"kind":"state","module":"system","type":["connection","info"]},"metricset":{"name":"socket"},"network":{"direction":"unknown","iana_number":"6","transport":"tcp","type":"ipv4"},"related":{"ip":["10.0.0.5","93.184.216.34"],"user":["jaime"]},"service":{"type":"system"},"system":{"socket":{"local":{"ip":"10.0.0.5","port":40000},"remote":{"ip":"93.184.216.34","port":443}}},"user":{"full_name":"Jaime Soriano Pastor","id":"1000","name":"jaime"}}`,
		},
		{
			// No first_seen: no event.start nor event.duration. What each
			// end sent: the local end (source) its bytes acked, the
			// remote end (destination) the bytes received.
			name: "short-lived egress closed, with the kernel's counters",
			r:    destroyedRecord(v4, record.DirectionEgress, record.EventClosed, withError, true),
			o:    Options{Hostname: "h1"},
			now:  t0.Add(time.Millisecond),
			want: `{"@timestamp":"2026-11-26T04:30:00.123Z","agent":{"hostname":"h1","name":"h1"},"destination":{"bytes":53000,"ip":"93.184.216.34","packets":40,"port":443},"ecs":{"version":"9.4.0"},"error":{"code":"process has exited. inode=0, tcp_state=closed"},"event":{"action":"socket_closed","category":["network"],"dataset":"system.socket","end":"2026-11-26T04:30:00.123Z","kind":"event","module":"system","type":["connection","end"]},"host":{"name":"h1"},"metricset":{"name":"socket"},"network":{"bytes":54201,"direction":"egress","iana_number":"4","packets":52,"transport":"tcp","type":"ipv4"},"service":{"type":"system"},"source":{"bytes":1201,"ip":"10.0.0.5","packets":12,"port":40000},"system":{"socket":{"local":{"ip":"10.0.0.5","port":40000},"remote":{"host_error":"lookup 93.184.216.34: no such host","ip":"93.184.216.34","port":443},"short_lived":true,"tcp_info":{"bytes_acked":1201,"bytes_received":53000,"bytes_retrans":0,"bytes_sent":1201,"rtt_us":250,"segs_in":40,"segs_out":12,"total_retrans":1}}}}`,
		},
		{
			// Ingress: the remote end is the source and the client.
			name: "strict short-lived ingress opened",
			r:    destroyedRecord(v4, record.DirectionIngress, record.EventOpened, withError, true),
			o:    Options{Strict: true, Hostname: "h1"},
			now:  t0.Add(time.Millisecond),
			want: `{"@timestamp":"2026-11-26T04:30:00.123Z","agent":{"name":"h1"},"client":{"bytes":53000,"ip":"93.184.216.34","packets":40,"port":51234},"destination":{"bytes":1201,"ip":"10.0.0.5","packets":12,"port":8080},"ecs":{"version":"9.4.0"},"error":{"code":"process has exited. inode=0, tcp_state=closed","message":"process has exited. inode=0, tcp_state=closed"},"event":{"action":"socket_opened","category":["network"],"dataset":"system.socket","duration":1000000,"kind":"event","module":"system","type":["connection","start"]},"host":{"hostname":"h1","name":"h1"},"metricset":{"name":"socket"},"network":{"bytes":54201,"direction":"ingress","iana_number":"6","packets":52,"transport":"tcp","type":"ipv4"},"related":{"ip":["10.0.0.5","93.184.216.34"]},"server":{"bytes":1201,"ip":"10.0.0.5","packets":12,"port":8080},"service":{"type":"system"},"source":{"bytes":53000,"ip":"93.184.216.34","packets":40,"port":51234},"system":{"socket":{"local":{"ip":"10.0.0.5","port":8080},"remote":{"host_error":"lookup 93.184.216.34: no such host","ip":"93.184.216.34","port":51234},"short_lived":true,"tcp_info":{"bytes_acked":1201,"bytes_received":53000,"bytes_retrans":0,"bytes_sent":1201,"rtt_us":250,"segs_in":40,"segs_out":12,"total_retrans":1}}}}`,
		},
		{
			// A listener has no flow: the counters stay custom.
			name: "listener closed with counters",
			r:    destroyedRecord(v4, record.DirectionListening, record.EventClosed, 0, false),
			o:    Options{Strict: true},
			now:  t0,
			want: `{"@timestamp":"2026-11-26T04:30:00.123Z","ecs":{"version":"9.4.0"},"event":{"action":"socket_closed","category":["network"],"dataset":"system.socket","duration":9000000000,"end":"2026-11-26T04:29:59.123Z","kind":"event","module":"system","start":"2026-11-26T04:29:50.123Z","type":["end"]},"metricset":{"name":"socket"},"network":{"iana_number":"6","transport":"tcp","type":"ipv4"},"related":{"ip":["0.0.0.0"]},"server":{"ip":"0.0.0.0","port":8080},"service":{"type":"system"},"system":{"socket":{"listening":true,"local":{"ip":"0.0.0.0","port":8080},"tcp_info":{"bytes_acked":1201,"bytes_received":53000,"bytes_retrans":0,"bytes_sent":1201,"rtt_us":250,"segs_in":40,"segs_out":12,"total_retrans":1}}}}`,
		},
		{
			// An unconnected UDP socket: a listener, as the original's
			// vocabulary goes, with the family's iana_number.
			name: "udp unconnected, host namespace",
			r:    udp(corpusRecord(v4, record.DirectionListening, "", withNetNS)),
			o:    Options{Hostname: "h1"},
			now:  t0,
			want: `{"@timestamp":"2026-11-26T04:30:00.123Z","agent":{"hostname":"h1","name":"h1"},"ecs":{"version":"9.4.0"},"event":{"action":"existing_socket","category":["network"],"dataset":"system.socket","duration":0,"kind":"state","module":"system","type":["info"]},"host":{"name":"h1"},"metricset":{"name":"socket"},"network":{"direction":"listening","iana_number":"4","transport":"udp","type":"ipv4"},"server":{"ip":"0.0.0.0","port":8080},"service":{"type":"system"},"system":{"socket":{"local":{"ip":"0.0.0.0","port":8080},"netns":4026531840}},"user":{"id":"1000"}}`,
		},
		{
			name: "strict udp unconnected",
			r:    udp(corpusRecord(families[1], record.DirectionListening, record.EventOpened, withNetNS)),
			o:    Options{Strict: true},
			now:  t0,
			want: `{"@timestamp":"2026-11-26T04:30:00.123Z","ecs":{"version":"9.4.0"},"event":{"action":"socket_opened","category":["network"],"dataset":"system.socket","duration":0,"kind":"event","module":"system","type":["start"]},"metricset":{"name":"socket"},"network":{"iana_number":"17","transport":"udp","type":"ipv6"},"related":{"ip":["::"],"user":["1000"]},"server":{"ip":"::","port":8080},"service":{"type":"system"},"system":{"socket":{"listening":true,"local":{"ip":"::","port":8080},"netns":4026531840}},"user":{"id":"1000"}}`,
		},
		{
			name: "udp connected over ipv6 in a container",
			r:    udp(corpusRecord(families[1], record.DirectionEgress, record.EventOpened, withProcess|withContainer)),
			o:    Options{Hostname: "h1"},
			now:  t0,
			want: `{"@timestamp":"2026-11-26T04:30:00.123Z","agent":{"hostname":"h1","name":"h1"},"container":{"id":"` + containerID + `"},"destination":{"ip":"2001:db8:1::99","port":443},"ecs":{"version":"9.4.0"},"event":{"action":"socket_opened","category":["network"],"dataset":"system.socket","duration":0,"kind":"event","module":"system","type":["connection","start"]},"host":{"name":"h1"},"metricset":{"name":"socket"},"network":{"direction":"egress","iana_number":"41","transport":"udp","type":"ipv6"},"process":{"args":["curl","-s","https://example.com/a b"],"executable":"/usr/bin/curl","name":"curl","parent":{"pid":1},"pid":4321,"start":"2026-11-26T04:29:00.123Z"},"service":{"type":"system"},"source":{"ip":"2001:db8::5","port":40000},"system":{"socket":{"local":{"ip":"2001:db8::5","port":40000},"netns":4026532561,"process":{"cmdline":"curl -s https://example.com/a b"},"remote":{"ip":"2001:db8:1::99","port":443}}},"user":{"id":"1000"}}`,
		},
		{
			name: "strict udp connected over ipv6 in a container",
			r:    udp(corpusRecord(families[1], record.DirectionIngress, record.EventExisting, withContainer)),
			o:    Options{Strict: true},
			now:  t0,
			want: `{"@timestamp":"2026-11-26T04:30:00.123Z","client":{"ip":"2001:db8:1::99","port":51234},"container":{"id":"` + containerID + `"},"destination":{"ip":"2001:db8::5","port":8080},"ecs":{"version":"9.4.0"},"event":{"action":"existing_socket","category":["network"],"dataset":"system.socket","duration":0,"kind":"state","module":"system","type":["connection","info"]},"metricset":{"name":"socket"},"network":{"direction":"ingress","iana_number":"17","transport":"udp","type":"ipv6"},"related":{"ip":["2001:db8::5","2001:db8:1::99"],"user":["1000"]},"server":{"ip":"2001:db8::5","port":8080},"service":{"type":"system"},"source":{"ip":"2001:db8:1::99","port":51234},"system":{"socket":{"local":{"ip":"2001:db8::5","port":8080},"netns":4026532561,"remote":{"ip":"2001:db8:1::99","port":51234}}},"user":{"id":"1000"}}`,
		},
		{
			// The kernel's counters are TCP's: not believed of UDP.
			name: "udp with tcp_info",
			r:    udp(destroyedRecord(v4, record.DirectionEgress, record.EventClosed, 0, false)),
			o:    Options{Strict: true},
			now:  t0,
			want: `{"@timestamp":"2026-11-26T04:30:00.123Z","client":{"ip":"10.0.0.5","port":40000},"destination":{"ip":"93.184.216.34","port":443},"ecs":{"version":"9.4.0"},"event":{"action":"socket_closed","category":["network"],"dataset":"system.socket","duration":9000000000,"end":"2026-11-26T04:29:59.123Z","kind":"event","module":"system","start":"2026-11-26T04:29:50.123Z","type":["connection","end"]},"metricset":{"name":"socket"},"network":{"direction":"egress","iana_number":"17","transport":"udp","type":"ipv4"},"related":{"ip":["10.0.0.5","93.184.216.34"]},"server":{"ip":"93.184.216.34","port":443},"service":{"type":"system"},"source":{"ip":"10.0.0.5","port":40000},"system":{"socket":{"local":{"ip":"10.0.0.5","port":40000},"remote":{"ip":"93.184.216.34","port":443}}}}`,
		},
		{
			// A direction this version does not know: "unknown", and
			// no system.socket.listening.
			name: "strict, a direction this version does not know",
			r:    corpusRecord(v4, "sideways", "", withNetNS),
			o:    Options{Strict: true},
			now:  t0,
			want: `{"@timestamp":"2026-11-26T04:30:00.123Z","ecs":{"version":"9.4.0"},"event":{"action":"existing_socket","category":["network"],"dataset":"system.socket","duration":0,"kind":"state","module":"system","type":["connection","info"]},"metricset":{"name":"socket"},"network":{"direction":"unknown","iana_number":"6","transport":"tcp","type":"ipv4"},"related":{"ip":["10.0.0.5","93.184.216.34"],"user":["1000"]},"service":{"type":"system"},"system":{"socket":{"local":{"ip":"10.0.0.5","port":40000},"netns":4026531840,"remote":{"ip":"93.184.216.34","port":443}}},"user":{"id":"1000"}}`,
		},
		{
			name: "process found without arguments: empty cmdline",
			r: func() *record.Record {
				r := corpusRecord(v4, record.DirectionEgress, record.EventOpened, 0)
				r.Process = &record.Process{PID: 4242, Name: "curl"}
				return r
			}(),
			now:  t0,
			want: `{"@timestamp":"2026-11-26T04:30:00.123Z","destination":{"ip":"93.184.216.34","port":443},"ecs":{"version":"9.4.0"},"event":{"action":"socket_opened","category":["network"],"dataset":"system.socket","duration":0,"kind":"event","module":"system","type":["connection","start"]},"metricset":{"name":"socket"},"network":{"direction":"egress","iana_number":"4","transport":"tcp","type":"ipv4"},"process":{"name":"curl","pid":4242},"service":{"type":"system"},"source":{"ip":"10.0.0.5","port":40000},"system":{"socket":{"local":{"ip":"10.0.0.5","port":40000},"process":{"cmdline":""},"remote":{"ip":"93.184.216.34","port":443}}}}`,
		},
		{
			name: "agent type and version, the period of the dumps",
			r:    corpusRecord(v4, record.DirectionListening, "", withProcess),
			o:    Options{Hostname: "h1", AgentType: "sockpipe", AgentVersion: "1.2.3", Period: 10 * time.Second},
			now:  t0,
			want: `{"@timestamp":"2026-11-26T04:30:00.123Z","agent":{"hostname":"h1","name":"h1","type":"sockpipe","version":"1.2.3"},"ecs":{"version":"9.4.0"},"event":{"action":"existing_socket","category":["network"],"dataset":"system.socket","duration":0,"kind":"state","module":"system","type":["info"]},"host":{"name":"h1"},"metricset":{"name":"socket","period":10000},"network":{"direction":"listening","iana_number":"4","transport":"tcp","type":"ipv4"},"process":{"args":["curl","-s","https://example.com/a b"],"executable":"/usr/bin/curl","name":"curl","parent":{"pid":1},"pid":4321,"start":"2026-11-26T04:29:00.123Z"},"server":{"ip":"0.0.0.0","port":8080},"service":{"type":"system"},"system":{"socket":{"local":{"ip":"0.0.0.0","port":8080},"process":{"cmdline":"curl -s https://example.com/a b"}}},"user":{"id":"1000"}}`,
		},
		{
			// A record from before transports were written is TCP's.
			name: "no transport, container without id",
			r: func() *record.Record {
				r := corpusRecord(v4, record.DirectionEgress, "", 0)
				r.Transport, r.Container = "", &record.Container{}
				return r
			}(),
			o:    Options{Strict: true},
			now:  t0,
			want: `{"@timestamp":"2026-11-26T04:30:00.123Z","client":{"ip":"10.0.0.5","port":40000},"destination":{"ip":"93.184.216.34","port":443},"ecs":{"version":"9.4.0"},"event":{"action":"existing_socket","category":["network"],"dataset":"system.socket","duration":0,"kind":"state","module":"system","type":["connection","info"]},"metricset":{"name":"socket"},"network":{"direction":"egress","iana_number":"6","transport":"tcp","type":"ipv4"},"related":{"ip":["10.0.0.5","93.184.216.34"]},"server":{"ip":"93.184.216.34","port":443},"service":{"type":"system"},"source":{"ip":"10.0.0.5","port":40000},"system":{"socket":{"local":{"ip":"10.0.0.5","port":40000},"remote":{"ip":"93.184.216.34","port":443}}}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(New(tt.r, tt.now, &tt.o).AppendJSON(nil))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if !codec.Valid([]byte(got)) {
				t.Errorf("not valid JSON: %s", got)
			}
		})
	}
}

func TestParseDataStream(t *testing.T) {
	tests := []struct {
		index string
		want  DataStream
		ok    bool
	}{
		{"metrics-system.socket-default", DataStream{"metrics", "system.socket", "default"}, true},
		{"logs-a-b", DataStream{"logs", "a", "b"}, true},
		{"sockets", DataStream{}, false},
		{"metrics-system.socket", DataStream{}, false},
		{"metrics-a-b-c", DataStream{}, false},
		{"foo-a-b", DataStream{}, false},
		{"metrics--b", DataStream{}, false},
	}
	for _, tt := range tests {
		got, ok := ParseDataStream(tt.index)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseDataStream(%q) = %+v, %v; want %+v, %v", tt.index, got, ok, tt.want, tt.ok)
		}
	}
}

// Every document of the corpus passes the ECS validation in strict mode;
// in the default mode the only findings are the documented departures.
func TestValidation(t *testing.T) {
	schema := loadSchema(t)
	departures := map[string]bool{
		"agent.hostname: " + ecscheck.NotInECS:                               true,
		"network.direction: " + ecscheck.NotExpected + `: "listening"`:       true,
		"network.iana_number: " + ecscheck.IANAMismatch + `: "4" for "tcp"`:  true,
		"network.iana_number: " + ecscheck.IANAMismatch + `: "41" for "tcp"`: true,
		"network.iana_number: " + ecscheck.IANAMismatch + `: "4" for "udp"`:  true,
		"network.iana_number: " + ecscheck.IANAMismatch + `: "41" for "udp"`: true,
	}
	seen := map[string]int{}
	used := map[string]bool{}
	docs := 0
	var d Doc
	for _, o := range corpusOptions() {
		for _, r := range corpus() {
			d.Build(r, t0.Add(time.Millisecond), &o)
			doc := d.AppendJSON(nil)
			docs++
			for i := range d.Fields {
				used[d.Fields[i].Name] = true
			}
			for _, f := range schema.Check(doc) {
				if o.Strict || !departures[f.String()] {
					t.Errorf("strict=%v: %s\nin %s", o.Strict, f, doc)
					continue
				}
				seen[f.String()]++
			}
		}
	}
	for f := range departures {
		if seen[f] == 0 {
			t.Errorf("default mode never showed the departure %q", f)
		}
	}
	custom, err := ecscheck.Load(customFields)
	if err != nil {
		t.Fatal(err)
	}
	for name := range custom.Fields {
		if !used[name] {
			t.Errorf("%s defines %s, which no document uses", customFields, name)
		}
	}
	t.Logf("%d documents; departures in default mode: %v", docs, seen)
}

// The checker finds what it is meant to find.
func TestCheckerFindings(t *testing.T) {
	schema := loadSchema(t)
	tests := []struct {
		doc  string
		want []string
	}{
		{`{"@timestamp":"2026-11-26T04:30:00.123Z","ecs":{"version":"9.4.0"}}`, nil},
		{`{}`, []string{"@timestamp: required field missing", "ecs.version: required field missing"}},
		{`{"@timestamp":"yesterday","ecs":{"version":"9.4.0"},"source":{"ip":"1.2.3","port":"80"}}`, []string{
			`@timestamp: want an RFC 3339 date: "yesterday"`,
			`source.ip: not an IP address: "1.2.3"`,
			`source.port: want an integer: "80"`,
		}},
		{`{"@timestamp":"2026-11-26T04:30:00Z","ecs":{"version":"9.4.0"},"event":{"category":"network","kind":"news","type":["creation"],"duration":1.5},"network":{"direction":"sideways"},"process":{"args":"x"},"agent":{"hostname":"h"},"system":{"socket":{"anything":1}}}`, []string{
			"agent.hostname: not an ECS field",
			"event.category: ECS normalizes it to an array",
			"event.duration: want an integer: 1.5",
			`event.kind: not an allowed value: "news"`,
			`event.type: event.type not expected for the event.category: "creation"`,
			`network.direction: not an expected value: "sideways"`,
			"process.args: ECS normalizes it to an array",
			"system.socket.anything: not an ECS field",
		}},
		// The custom fields are checked against their definitions.
		{`{"@timestamp":"2026-11-26T04:30:00Z","ecs":{"version":"9.4.0"},"system":{"socket":{"netns":"4026531840","listening":"yes","short_lived":1,"local":{"ip":"::1%lo","port":22}}}}`, []string{
			`system.socket.listening: want true or false: "yes"`,
			`system.socket.local.ip: not an IP address: "::1%lo"`,
			`system.socket.netns: want an integer: "4026531840"`,
			"system.socket.short_lived: want true or false: 1",
		}},
		{`{"@timestamp":"2026-11-26T04:30:00Z","ecs":{"version":"9.4.0"},"network":{"iana_number":"41","transport":"tcp"},"event":{"start":"2026-11-26T04:30:00Z","end":"2026-11-26T04:30:01Z","duration":5}}`, []string{
			"event.duration: 5ns is not event.end - event.start (1s)",
			`network.iana_number: not the IANA number of network.transport: "41" for "tcp"`,
		}},
		{`{"@timestamp":"2026-11-26T04:30:00Z","ecs":{"version":"9.4.0"},"host":{"name":["a"]}}`, []string{"host.name: an array, but ECS does not normalize it to one"}},
		{`[1]`, []string{"(document): invalid JSON*"}},
		{`{"a":{"b":1},"a.b":2}`, []string{"(document): a.b: given twice"}},
	}
	for _, tt := range tests {
		var got []string
		for _, f := range schema.Check([]byte(tt.doc)) {
			got = append(got, f.String())
		}
		for i, w := range tt.want {
			if p, ok := strings.CutSuffix(w, "*"); ok && i < len(got) && strings.HasPrefix(got[i], p) {
				got[i] = w
			}
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.doc, diff)
		}
	}
}

// The ECS copy in testdata holds, verbatim, the upstream entry of every
// field the documents use, and the documents' other fields are absent
// upstream too. Run with -ecs-flat PATH (ECS's generated/ecs/ecs_flat.yml);
// -update-ecs rewrites the copy from it.
var (
	ecsFlat   = flag.String("ecs-flat", "", "path to ECS's generated/ecs/ecs_flat.yml, to check or rewrite the copy in testdata")
	updateECS = flag.Bool("update-ecs", false, "rewrite testdata/ecs/ecs_flat.yml from -ecs-flat")
)

func TestECSCopy(t *testing.T) {
	if *ecsFlat == "" {
		t.Skip("needs -ecs-flat PATH")
	}
	upstream, err := os.ReadFile(*ecsFlat)
	if err != nil {
		t.Fatal(err)
	}
	entries, order := splitEntries(string(upstream))
	used := map[string]bool{}
	var d Doc
	for _, o := range corpusOptions() {
		for _, r := range corpus() {
			d.Build(r, t0, &o)
			for name := range flatten(t, d.AppendJSON(nil)) {
				used[name] = true
			}
		}
	}
	// Fields the checker itself reads.
	for _, name := range []string{"@timestamp", "event.category", "event.type", "event.start", "event.end", "event.duration", "network.transport", "network.iana_number"} {
		used[name] = true
	}
	var b strings.Builder
	b.WriteString(copyHeader)
	for _, name := range order {
		if used[name] {
			b.WriteString(entries[name])
		}
	}
	for name := range used {
		if _, ok := entries[name]; !ok && !slices.ContainsFunc(customNamespaces, func(p string) bool { return strings.HasPrefix(name, p) }) {
			t.Logf("%s: not in ECS (a documented departure)", name)
		}
	}
	if *updateECS {
		if err := os.WriteFile(ecsCopy, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	have, err := os.ReadFile(ecsCopy)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(b.String(), string(have)); diff != "" {
		t.Errorf("%s is not the upstream entries of the fields used; run with -update-ecs (-want +got):\n%s", ecsCopy, diff)
	}
}

const copyHeader = `# Entries of the Elastic Common Schema 9.4.0 flat field list
# (generated/ecs/ecs_flat.yml in github.com/elastic/ecs), copied verbatim:
# only the fields that sockecs documents use or that the checker reads.
# Copyright Elasticsearch B.V., licensed under the Apache License 2.0
# (see LICENSE.txt beside this file). Rewritten by:
#   go test ./internal/ecs -run TestECSCopy -ecs-flat PATH/ecs_flat.yml -update-ecs
`

// splitEntries splits ecs_flat.yml into its top-level entries, as text.
func splitEntries(s string) (map[string]string, []string) {
	entries := map[string]string{}
	var order []string
	var name string
	var cur strings.Builder
	flush := func() {
		if name != "" {
			entries[name] = cur.String()
			order = append(order, name)
		}
		cur.Reset()
	}
	for line := range strings.SplitAfterSeq(s, "\n") {
		if line != "" && line[0] != ' ' && line[0] != '#' && line[0] != '\n' {
			flush()
			name = strings.Trim(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(line), ":")), "'")
		}
		cur.WriteString(line)
	}
	flush()
	return entries, order
}

func TestCheck(t *testing.T) {
	ok := corpusRecord(families[0], record.DirectionEgress, record.EventClosed, allEnrichments)
	tests := []struct {
		name   string
		change func(r *record.Record)
		want   string
	}{
		{"good", func(*record.Record) {}, ""},
		{"zone", func(r *record.Record) { r.Local.IP = "fe80::1%eth0" }, ""},
		{"bad local ip", func(r *record.Record) { r.Local.IP = "10.0.0.300" }, `local.ip: "10.0.0.300" is not an IP address`},
		{"bad remote ip", func(r *record.Record) { r.Remote.IP = "localhost" }, `remote.ip: "localhost" is not an IP address`},
		{"time before 1970", func(r *record.Record) { r.Time = time.Date(1969, 12, 31, 0, 0, 0, 0, time.UTC) }, "time: 1969-12-31T00:00:00Z is out of range"},
		{"last_seen after 2261", func(r *record.Record) { r.LastSeen = time.Date(2262, 1, 1, 0, 0, 0, 0, time.UTC) }, "last_seen: 2262-01-01T00:00:00Z is out of range"},
		{"process start", func(r *record.Record) { r.Process.Start = time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC) }, "process.start: 0001-01-01T00:00:01Z is out of range"},
		{"largest netns", func(r *record.Record) { r.NetNS = math.MaxInt64 }, ""},
		{"netns beyond a long", func(r *record.Record) { r.NetNS = math.MaxInt64 + 1 }, "netns: 9223372036854775808 is out of range"},
		{"counter beyond a long", func(r *record.Record) { r.Info = &record.TCPInfo{BytesReceived: math.MaxUint64} }, "tcp_info.bytes_received: 18446744073709551615 is out of range"},
	}
	for _, tt := range tests {
		r := *ok
		p := *ok.Process
		r.Process = &p
		tt.change(&r)
		got := ""
		if err := Check(&r); err != nil {
			got = err.Error()
		}
		if got != tt.want {
			t.Errorf("%s: Check = %q, want %q", tt.name, got, tt.want)
		}
	}
}

// The builders run in name order, which is what keeps the fields sorted.
func TestObjectOrder(t *testing.T) {
	for i := 1; i < len(objects); i++ {
		if a, b := objects[i-1].name, objects[i].name; a >= b {
			t.Errorf("builder %q before %q", a, b)
		}
	}
}

func TestDocIP(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"127.0.0.1", "127.0.0.1"},
		{"::ffff:127.0.0.1", "127.0.0.1"},
		{"::FFFF:10.0.0.5", "10.0.0.5"},
		{"::ffff:a00:5", "10.0.0.5"},
		{"::ffff:1.2.3", "::ffff:1.2.3"}, // not an address: Check refuses it
		{"::1", "::1"},
		{"fe80::1%eth0", "fe80::1"},
		{"::ffff:192.0.2.1%eth0", "192.0.2.1"},
		{"64:ff9b::192.0.2.1", "64:ff9b::192.0.2.1"}, // NAT64, not mapped
		{"", ""},
	} {
		if got := docIP(tt.in); got != tt.want {
			t.Errorf("docIP(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestAppendMillis checks the date writer against time's, over the range
// of Unix nanoseconds.
func TestAppendMillis(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 100000 {
		ns := int64(rng.Uint64())
		switch i {
		case 0:
			ns = 0
		case 1:
			ns = -1
		case 2:
			ns = math.MaxInt64
		case 3:
			ns = math.MinInt64
		}
		want := time.Unix(0, ns).UTC().AppendFormat(nil, TimeLayout)
		if got := appendMillis(nil, ns); string(got) != string(want) {
			t.Fatalf("appendMillis(%d) = %s, want %s", ns, got, want)
		}
	}
}

// TestProcessFieldsRemembered checks that a Doc that writes the fields of
// processes it wrote before, from memory, writes what a new Doc writes,
// for processes met again in the other mode and with records that have
// and lack other fields, and with more processes than it remembers.
func TestProcessFieldsRemembered(t *testing.T) {
	for _, n := range []int{150, 600} {
		testProcessFieldsRemembered(t, n)
	}
}

func testProcessFieldsRemembered(t *testing.T, n int) {
	var procs []*record.Process
	for i := range n {
		procs = append(procs, &record.Process{PID: 100 + i, PPID: i % 3, Name: "p" + strconv.Itoa(i), Executable: "/bin/p", Args: []string{"p", strconv.Itoa(i), "a\"b"}, Start: t0.Add(-time.Duration(i) * time.Second)})
	}
	var reused Doc
	for i := range 5000 {
		r := corpusRecord(families[i%len(families)], record.DirectionIngress, record.EventOpened, withProcess|withUser)
		r.Process = procs[(i*7919)%len(procs)]
		if i%3 == 0 {
			r.User = nil
		}
		o := Options{Hostname: "web-1", Strict: i%7 < 3} // a process is met again in either mode
		reused.Build(r, t0, &o)
		got := string(reused.AppendJSON(nil))
		want := string(New(r, t0, &o).AppendJSON(nil))
		if got != want {
			t.Fatalf("document %d:\n%s\nwant\n%s", i, got, want)
		}
	}
}
