package indextemplate

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rogpeppe/go-internal/txtar"

	"github.com/sockpipe/sockpipe/internal/ecs"
	"github.com/sockpipe/sockpipe/internal/sockecs"
)

const root = "../../.."

// committed is the template file users install, validated.
func committed(t *testing.T) *Template {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, Path))
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := Validate(b, "metrics-system.socket-default")
	if err != nil {
		t.Fatalf("%s: %v", Path, err)
	}
	return tpl
}

// TestGenerated fails when the committed template is not what the field
// definitions give now.
func TestGenerated(t *testing.T) {
	var paths []string
	for _, s := range Sources {
		paths = append(paths, filepath.Join(root, s))
	}
	tpl, err := Load(ecs.Version, paths...)
	if err != nil {
		t.Fatal(err)
	}
	want, err := tpl.JSON()
	if err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile(filepath.Join(root, Path))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, want) {
		t.Errorf("%s is out of date: run go generate ./internal/ecs/indextemplate", Path)
	}
	// What Validate reads back is what Build made.
	if diff := cmp.Diff(tpl.Template.Mappings, committed(t).Template.Mappings); diff != "" {
		t.Errorf("mappings read back (-built +read):\n%s", diff)
	}
}

// TestTypes checks the types the template gives: ip for addresses, long
// for ports and counters, date for times, ECS's own choices elsewhere.
func TestTypes(t *testing.T) {
	tpl := committed(t)
	types := map[string]string{}
	var walk func(prefix string, props map[string]*Property)
	walk = func(prefix string, props map[string]*Property) {
		for k, p := range props {
			if p.Properties != nil {
				walk(prefix+k+".", p.Properties)
				continue
			}
			types[prefix+k] = p.Type
			for mk, m := range p.Fields {
				types[prefix+k+"."+mk] = m.Type
			}
		}
	}
	walk("", tpl.Template.Mappings.Properties)
	for name, want := range map[string]string{
		"@timestamp": "date", "event.start": "date", "event.end": "date", "process.start": "date",
		"source.ip": "ip", "destination.ip": "ip", "client.ip": "ip", "server.ip": "ip", "related.ip": "ip",
		"system.socket.local.ip": "ip", "system.socket.remote.ip": "ip",
		"source.port": "long", "system.socket.local.port": "long", "system.socket.remote.port": "long",
		"network.bytes": "long", "event.duration": "long", "system.socket.netns": "long",
		"system.socket.tcp_info.bytes_acked": "long", "metricset.period": "long", "process.pid": "long",
		"network.iana_number": "keyword", "user.id": "keyword", "agent.hostname": "keyword",
		"system.socket.process.cmdline": "keyword", "system.socket.remote.host": "keyword",
		"process.command_line": "wildcard", "process.command_line.text": "match_only_text",
		"error.message": "match_only_text", "process.name.text": "match_only_text",
		"data_stream.dataset":     "constant_keyword",
		"system.socket.listening": "boolean", "system.socket.short_lived": "boolean",
	} {
		if types[name] != want {
			t.Errorf("%s: type %q, want %q", name, types[name], want)
		}
	}
	if tpl.Template.Mappings.Dynamic != "false" || tpl.Priority != Priority || tpl.IndexPatterns[0] != Pattern {
		t.Errorf("dynamic %q, priority %d, patterns %q", tpl.Template.Mappings.Dynamic, tpl.Priority, tpl.IndexPatterns)
	}
}

func TestValidate(t *testing.T) {
	good, err := os.ReadFile(filepath.Join(root, Path))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"priority of the built-in", `"priority": 200`, `"priority": 100`, "priority 100: want an integer above 100"},
		{"priority not a number", `"priority": 200`, `"priority": "200"`, "priority: want an integer"},
		{"pattern", `"metrics-system.socket-*"`, `"logs-system.socket-*"`, "none matches metrics-system.socket-default"},
		{"no data stream", `"data_stream": {},`, ``, "data_stream: want an object"},
		{"unknown member", `"priority": 200,`, `"priority": 200, "order": 1,`, `(template): unknown member "order"`},
		{"mappings beside template", `"template": {`, `"template": {"mapping": {},`, `template: unknown member "mapping"`},
		{"dynamic", `"dynamic": "false"`, `"dynamic": "no"`, `dynamic "no"`},
		{"unknown type", `"type": "ip"`, `"type": "inet"`, `type "inet"`},
		{"ignore_above on a long", `"type": "long"`, `"type": "long", "ignore_above": 5`, `ignore_above on type "long"`},
		{"ignore_above zero", `"ignore_above": 1024`, `"ignore_above": 0`, "ignore_above: want a positive integer"},
		{"object with a type", `"properties": {
            "hostname"`, `"type": "keyword", "properties": {
            "hostname"`, `properties under type "keyword"`},
		{"not JSON", `{`, `[`, "invalid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Replace(good, []byte(tc.old), []byte(tc.new), 1)
			if bytes.Equal(b, good) {
				t.Fatalf("%q not in the template", tc.old)
			}
			_, err := Validate(b, "metrics-system.socket-default")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	tpl := committed(t)
	for _, tc := range []struct {
		name string
		doc  string
		want []string
	}{
		{"good", `{"@timestamp":"2026-11-26T04:30:00.123Z","source":{"ip":"::1","port":65535},"event":{"type":["connection","start"],"duration":-1},"system":{"socket":{"listening":true}}}`, nil},
		{"dotted keys", `{"source.ip":"10.0.0.1","system.socket":{"local.port":1}}`, nil},
		{"null and empty", `{"source":{"ip":null},"related":{"ip":[]}}`, nil},
		{"unmapped", `{"source":{"ip":"10.0.0.1","mac":"00-00"},"foo":1}`, []string{"foo: " + NotMapped, "source.mac: " + NotMapped}},
		{"bad ip", `{"source":{"ip":"fe80::1%eth0"},"destination":{"ip":"10.0.0.256"},"client":{"ip":5}}`,
			[]string{"client.ip: ip: want an address string, have 5", `destination.ip: ip: not an IP address: "10.0.0.256"`, `source.ip: ip: not an IP address: "fe80::1%eth0"`}},
		{"longs", `{"source":{"port":9223372036854775807,"bytes":9223372036854775808,"packets":1.5},"destination":{"port":"22"}}`,
			[]string{`destination.port: long: want a number, have "22"`,
				"source.bytes: long: want an integer from -2^63 to 2^63-1, have 9223372036854775808",
				"source.packets: long: want an integer from -2^63 to 2^63-1, have 1.5"}},
		{"dates", `{"@timestamp":"2026-02-30T00:00:00Z","event":{"start":"2026-11-26","end":1764131400123},"process":{"start":"2026-11-26T04:30:00.123456789+01:00"}}`,
			[]string{`@timestamp: date: not strict_date_optional_time||epoch_millis: "2026-02-30T00:00:00Z"`}},
		{"date formats", `{"@timestamp":"26 Nov 2026","event":{"start":"2026-11-26T24:00:00Z","end":true}}`,
			[]string{`@timestamp: date: not strict_date_optional_time||epoch_millis: "26 Nov 2026"`,
				"event.end: date: want a date string or epoch_millis, have true",
				`event.start: date: not strict_date_optional_time||epoch_millis: "2026-11-26T24:00:00Z"`}},
		{"keywords", `{"event":{"type":["info",3]},"user":{"name":true},"host":{"name":"` + strings.Repeat("é", 1025) + `"}}`,
			[]string{"event.type: keyword: want a string, have 3", "host.name: keyword: longer than ignore_above 1024: not indexed", "user.name: keyword: want a string, have true"}},
		{"boolean", `{"system":{"socket":{"listening":"true"}}}`, []string{`system.socket.listening: boolean: want true or false, have "true"`}},
		{"object for a leaf", `{"source":{"ip":{"v4":"10.0.0.1"}}}`, []string{"source.ip: an object, but the template maps a ip"}},
		{"leaf for an object", `{"source":"10.0.0.1","host.name.x":"a"}`, []string{`host.name.x: under a field that is not an object`, `source: "10.0.0.1", but the template maps an object`}},
		{"not an object", `[1]`, []string{"(document): not a JSON object"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, f := range NewChecker(tpl).Check([]byte(tc.doc)) {
				got = append(got, f.String())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
	// constant_keyword: one value an index.
	c := NewChecker(tpl)
	c.Check([]byte(`{"data_stream":{"dataset":"system.socket"}}`))
	if got := c.Check([]byte(`{"data_stream":{"dataset":"system.process"}}`)); len(got) != 1 {
		t.Errorf("a second constant_keyword value: %v, want one finding", got)
	}
}

// checkLines checks every line of NDJSON that is a document (not a _bulk
// action) and returns how many it checked.
func checkLines(t *testing.T, c *Checker, where string, data []byte) int {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 || bytes.HasPrefix(line, []byte(`{"create":`)) {
			continue
		}
		n++
		for _, f := range c.Check(line) {
			t.Errorf("%s: %s\nin %s", where, f, line)
		}
	}
	return n
}

// TestGoldenDocuments checks the golden documents of internal/ecs and
// internal/sockecs, and the documents sockecs writes from the inputs of
// cmd/sockecs's scripts, default, --strict-ecs and --bulk.
func TestGoldenDocuments(t *testing.T) {
	tpl := committed(t)
	// The reference page's example document, pretty-printed.
	b, err := os.ReadFile(filepath.Join(root, "internal/ecs/testdata/metricbeat_example.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range NewChecker(tpl).Check(b) {
		t.Errorf("metricbeat_example.json: %s", f)
	}
	golden, _ := filepath.Glob(filepath.Join(root, "internal/sockecs/testdata/*.golden"))
	if len(golden) == 0 {
		t.Fatal("no golden files in internal/sockecs/testdata")
	}
	for _, g := range golden {
		b, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		if n := checkLines(t, NewChecker(tpl), filepath.Base(g), b); n == 0 {
			t.Errorf("%s: no documents", g)
		}
	}
	scripts, _ := filepath.Glob(filepath.Join(root, "cmd/sockecs/testdata/script/*.txtar"))
	inputs := 0
	for _, s := range scripts {
		a, err := txtar.ParseFile(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range a.Files {
			if !strings.HasSuffix(f.Name, ".ndjson") {
				continue
			}
			inputs++
			for _, args := range [][]string{
				{"--hostname", "web-1"},
				{"--hostname", "web-1", "--strict-ecs"},
				{"--hostname", "web-1", "--bulk", "--period", "10s"},
				{"--hostname", "web-1", "--bulk", "--strict-ecs", "--period", "10s"},
			} {
				var out, errb bytes.Buffer
				// Bad lines are part of some inputs: reported on stderr.
				if err := sockecs.Run(context.Background(), args, bytes.NewReader(f.Data), &out, &errb); err != nil {
					t.Fatalf("%s %s: sockecs %v: %v", filepath.Base(s), f.Name, args, err)
				}
				where := filepath.Base(s) + " " + strings.Join(args, " ")
				if n := checkLines(t, NewChecker(tpl), where, out.Bytes()); n == 0 {
					t.Errorf("%s: no documents", where)
				}
			}
		}
	}
	if inputs == 0 {
		t.Error("no inputs in cmd/sockecs/testdata/script")
	}
}
