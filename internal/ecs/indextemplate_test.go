package ecs

import (
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sockpipe/sockpipe/internal/ecs/indextemplate"
)

// TestIndexTemplate checks every corpus document, in every option set,
// against the index template users install
// (examples/shipping/index-template.json): every field has a mapping
// whose type takes its value. And every field the template maps is one
// that some document carries.
func TestIndexTemplate(t *testing.T) {
	b, err := os.ReadFile("../../" + indextemplate.Path)
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := indextemplate.Validate(b, "metrics-system.socket-default")
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	var d Doc
	for _, o := range corpusOptions() {
		// One checker a data stream: its constant_keyword values are one.
		c := indextemplate.NewChecker(tpl)
		for _, r := range corpus() {
			d.Build(r, t0.Add(time.Millisecond), &o)
			doc := d.AppendJSON(nil)
			for i := range d.Fields {
				used[d.Fields[i].Name] = true
			}
			for _, f := range c.Check(doc) {
				t.Errorf("strict=%v: %s\nin %s", o.Strict, f, doc)
			}
		}
	}
	var unused []string
	for _, f := range tpl.Fields() {
		if !used[f] {
			unused = append(unused, f)
		}
	}
	if diff := cmp.Diff([]string(nil), unused); diff != "" {
		t.Errorf("fields the template maps that no document carries (-want +got):\n%s", diff)
	}
}
