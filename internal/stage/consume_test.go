package stage

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestInputConsume checks that lines that Consume takes are not decoded or
// returned, and that the others are, bad ones reported as usual.
func TestInputConsume(t *testing.T) {
	t.Parallel()
	in := strings.Join([]string{good, `{"type":"mine"}`, `not json`, `{"type":"other"}`}, "\n")
	var stderr bytes.Buffer
	i := NewInput(context.Background(), strings.NewReader(in), 0)
	i.Name, i.Stderr = "stage", &stderr
	var offered []string
	i.Consume = func(raw []byte) bool {
		offered = append(offered, string(raw))
		return bytes.Contains(raw, []byte("mine"))
	}
	var got []int
	for {
		l, err := i.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, l.Num)
	}
	if diff := cmp.Diff([]int{1, 4}, got); diff != "" {
		t.Errorf("lines returned (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{good, `{"type":"mine"}`, `not json`, `{"type":"other"}`}, offered); diff != "" {
		t.Errorf("lines offered (-want +got):\n%s", diff)
	}
	if i.Bad != 1 || !strings.Contains(stderr.String(), "line 3:") {
		t.Errorf("Bad %d, stderr %q", i.Bad, stderr.String())
	}
}
