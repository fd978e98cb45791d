package codec

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Numbers keep their text, beyond what a float64 holds exactly.
func TestUnmarshalNumbers(t *testing.T) {
	var v any
	if err := UnmarshalNumbers([]byte(`{"a":9223372036854775808,"b":[1.50,-2],"c":"3"}`), &v); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"a": Number("9223372036854775808"), "b": []any{Number("1.50"), Number("-2")}, "c": "3"}
	if diff := cmp.Diff(want, v); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// Maps come out with sorted keys, pointers in them too, indented.
func TestMarshalIndent(t *testing.T) {
	type leaf struct {
		Type string `json:"type"`
	}
	b, err := MarshalIndent(map[string]any{"z": &leaf{"ip"}, "a": map[string]*leaf{"y": {"long"}, "b": {"date"}}, "e": map[string]any{}}, "  ")
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "a": {
    "b": {
      "type": "date"
    },
    "y": {
      "type": "long"
    }
  },
  "e": {},
  "z": {
    "type": "ip"
  }
}`
	if diff := cmp.Diff(want, string(b)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
