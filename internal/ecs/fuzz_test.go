package ecs

import (
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/ecs/ecscheck"
	"github.com/sockpipe/sockpipe/internal/record"
)

// FuzzDocument feeds arbitrary input lines through the decoder and, for
// every socket record that sockecs accepts, checks that both modes give one
// valid UTF-8 JSON object without duplicate fields, and that the strict
// document passes the ECS validation.
func FuzzDocument(f *testing.F) {
	enc := codec.NewEncoder()
	for _, mask := range []int{0, withProcess | withUser | withNetNS, allEnrichments} {
		for _, ev := range []string{"", record.EventClosed} {
			f.Add(append([]byte(nil), enc.Encode(corpusRecord(families[2], record.DirectionIngress, ev, mask))...))
			f.Add(append([]byte(nil), enc.Encode(corpusRecord(families[0], record.DirectionListening, ev, mask))...))
			f.Add(append([]byte(nil), enc.Encode(udp(corpusRecord(families[0], record.DirectionListening, ev, mask)))...))
			f.Add(append([]byte(nil), enc.Encode(udp(corpusRecord(families[1], record.DirectionEgress, ev, mask)))...))
		}
	}
	f.Add(append([]byte(nil), enc.Encode(udp(destroyedRecord(families[1], record.DirectionIngress, record.EventClosed, allEnrichments, true)))...))
	for _, name := range []string{"testdata/metricbeat_example.record.json", "../sockecs/testdata/input.ndjson"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		for line := range strings.Lines(string(data)) {
			f.Add([]byte(line))
		}
	}
	schema := loadSchema(f)
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := codec.Decode(line)
		if err != nil || r.Validate() != nil || r.Type != record.TypeSocket || Check(r) != nil {
			return
		}
		for _, o := range []Options{{Hostname: "h"}, {Strict: true, Hostname: "h", DataStream: &DataStream{"metrics", "a", "b"}}} {
			doc := New(r, r.Time.Add(time.Millisecond), &o).AppendJSON(nil)
			if !utf8.Valid(doc) || !codec.Valid(doc) {
				t.Fatalf("not valid UTF-8 JSON: %q", doc)
			}
			if _, err := ecscheck.Flatten(doc); err != nil {
				t.Fatalf("%v: %s", err, doc)
			}
			if !o.Strict {
				continue
			}
			for _, finding := range schema.Check(doc) {
				t.Errorf("%s\nin %s\nfrom %s", finding, doc, line)
			}
		}
	})
}
