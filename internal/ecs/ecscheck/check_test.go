package ecscheck

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// defs are a few field definitions in the format of ecs_flat.yml.
const defs = `
'@timestamp':
  flat_name: '@timestamp'
  type: date
  required: true
event.category:
  type: keyword
  normalize: [array]
  allowed_values:
  - name: network
    expected_event_types: [connection, start, end]
event.type:
  type: keyword
  normalize: [array]
event.kind:
  type: keyword
  allowed_values:
  - name: event
event.duration:
  type: long
event.start:
  type: date
event.end:
  type: date
network.transport:
  type: keyword
network.iana_number:
  type: keyword
source.ip:
  type: ip
source.port:
  type: long
process.pid:
  type: long
agent.type:
  type: keyword
  expected_values: [sockpipe]
process.interactive:
  type: boolean
`

func schema(t *testing.T) *Schema {
	t.Helper()
	s, err := Parse([]byte(defs))
	if err != nil {
		t.Fatal(err)
	}
	s.Custom = []string{"system.socket."}
	return s
}

func TestParse(t *testing.T) {
	s := schema(t)
	if f := s.Fields["@timestamp"]; f == nil || f.Type != "date" || !f.Required {
		t.Errorf("@timestamp: %+v", f)
	}
	if f := s.Fields["event.type"]; f == nil || f.Name != "event.type" || !f.IsArray() {
		t.Errorf("event.type: %+v (a missing flat_name is the key)", f)
	}
	if _, err := Parse([]byte("x:\n  flat_name: x\n")); err == nil || !strings.Contains(err.Error(), "has no type") {
		t.Errorf("a field without type: %v", err)
	}
	if _, err := Parse([]byte("[")); err == nil {
		t.Errorf("bad YAML: no error")
	}
}

func TestCheck(t *testing.T) {
	s := schema(t)
	for _, tt := range []struct {
		name string
		doc  string
		want []string
	}{{
		name: "a good document",
		doc: `{"@timestamp":"2026-11-26T04:30:00.123Z","event":{"category":["network"],"type":["connection","start"],"kind":"event",
			"start":"2026-11-26T04:30:00Z","end":"2026-11-26T04:30:01Z","duration":1000000000},
			"network":{"transport":"tcp","iana_number":"6"},"source":{"ip":"::ffff:127.0.0.1","port":80},
			"agent":{"type":"sockpipe"},"process":{"interactive":false},"system":{"socket":{"anything":1}}}`,
	}, {
		name: "every kind of problem",
		doc: `{"event":{"category":"network","type":["denied"],"kind":"alert","duration":5},
			"network":{"transport":"udp","iana_number":"6"},"source":{"ip":"localhost","port":1.5},
			"process":{"pid":"42","interactive":"no"},"agent":{"type":"metricbeat"},"host":{"name":"h"}}`,
		want: []string{
			"@timestamp: required field missing",
			"agent.type: " + NotExpected + `: "metricbeat"`,
			"event.category: ECS normalizes it to an array",
			"event.kind: " + NotAllowed + `: "alert"`,
			"event.type: " + NotExpectedType + `: "denied"`,
			"host.name: " + NotInECS,
			"network.iana_number: " + IANAMismatch + `: "6" for "udp"`,
			"process.interactive: want true or false: \"no\"",
			"process.pid: want an integer: \"42\"",
			"source.ip: not an IP address: \"localhost\"",
			"source.port: want an integer: 1.5",
		},
	}, {
		name: "a duration that is not end - start",
		doc:  `{"@timestamp":"2026-11-26T04:30:00Z","event":{"start":"2026-11-26T04:30:00Z","end":"2026-11-26T04:30:01Z","duration":5}}`,
		want: []string{"event.duration: 5ns is not event.end - event.start (1s)"},
	}, {
		name: "not a document",
		doc:  `[1]`,
		want: []string{"(document): invalid JSON: "},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, f := range s.Check([]byte(tt.doc)) {
				got = append(got, f.String())
			}
			if len(tt.want) == 1 && strings.HasSuffix(tt.want[0], ": ") {
				if len(got) != 1 || !strings.HasPrefix(got[0], tt.want[0]) {
					t.Errorf("findings %q, want one starting %q", got, tt.want[0])
				}
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFlatten(t *testing.T) {
	got, err := Flatten([]byte(`{"a":{"b":1,"c":{"d":"x"}},"e":[1,2]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"a.b": 1.0, "a.c.d": "x", "e": []any{1.0, 2.0}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Flatten (-want +got):\n%s", diff)
	}
	for _, bad := range []string{`{"a":[{"b":1}]}`, `{"a.b":1,"a":{"b":2}}`, `null`, `{`} {
		if _, err := Flatten([]byte(bad)); err == nil {
			t.Errorf("Flatten(%s): no error", bad)
		}
	}
}
