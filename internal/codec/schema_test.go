package codec

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sockpipe/sockpipe/internal/record"
)

// fill sets every field of v, nested structs and pointers included, to a
// value that is not zero, so that a member missing from a table is lost in
// a round trip.
func fill(t *testing.T, v reflect.Value, name string) {
	t.Helper()
	switch v.Type() {
	case reflect.TypeFor[time.Time]():
		v.Set(reflect.ValueOf(time.Date(2026, 11, 26, 4, 34, 58, 609946165, time.UTC).Add(time.Duration(len(name)) * time.Second)))
		return
	case reflect.TypeFor[[]record.Field]():
		v.Set(reflect.ValueOf([]record.Field{{Key: "zz_" + strings.ToLower(name), Value: []byte(`{"a":[1,"b",null]}`)}}))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("s-" + name + " \"é\"\n")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(-int64(len(name)) - 1)
	case reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(len(name)) + 1)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			t.Fatalf("%s: no filler for %s", name, v.Type())
		}
		v.Set(reflect.ValueOf([]string{name, "", "x y"}))
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(t, v.Elem(), name)
	case reflect.Struct:
		for i := range v.NumField() {
			f := v.Type().Field(i)
			fill(t, v.Field(i), name+"."+f.Name)
		}
	default:
		t.Fatalf("%s: no filler for %s", name, v.Type())
	}
}

func TestEveryFieldRoundTrips(t *testing.T) {
	t.Parallel()
	for _, typ := range []string{record.TypeSocket, record.TypeSnapshot, record.TypeDestroyed, "other"} {
		var r record.Record
		fill(t, reflect.ValueOf(&r).Elem(), "Record")
		r.Type = typ
		line := NewEncoder().Encode(&r)
		if !Valid(line) {
			t.Fatalf("%s: invalid JSON %s", typ, line)
		}
		got, err := Decode(line)
		if err != nil {
			t.Fatalf("%s: Decode(%s): %v", typ, line, err)
		}
		if diff := cmp.Diff(&r, got); diff != "" {
			t.Errorf("%s: round trip of %s (-want +got):\n%s", typ, line, diff)
		}
	}
}

func TestUnknownMembersPassThrough(t *testing.T) {
	t.Parallel()
	for _, line := range []string{
		`{"type":"socket","x":{"a" : [1, 2.50, "\u00e9"] },"local":{"ip":"1.2.3.4","port":1,"y":  -0.0e+1},"z":"\ud800"}`,
		`{"type":"new-type","time":"2026-11-26T04:35:00Z","what":[ true,false,null ]}`,
	} {
		r, err := Decode([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		out := string(NewEncoder().Encode(r))
		for _, raw := range []string{`{"a" : [1, 2.50, "\u00e9"] }`, `-0.0e+1`, `"\ud800"`, `[ true,false,null ]`} {
			if strings.Contains(line, raw) && !strings.Contains(out, raw) {
				t.Errorf("%s not passed through byte for byte: %s", raw, out)
			}
		}
	}
}

// Unknown member names are written escaped: the decoder gives them
// unescaped.
func TestUnknownNamesEscaped(t *testing.T) {
	t.Parallel()
	line := `{"type":"socket","a\"b\\c\u0001":1,"local":{"ip":"1.2.3.4","port":1,"q\"":2}}`
	r, err := Decode([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if r.Extra[0].Key != "a\"b\\c\x01" {
		t.Errorf("key %q", r.Extra[0].Key)
	}
	out := NewEncoder().Encode(r)
	if !Valid(out) {
		t.Fatalf("invalid JSON %s", out)
	}
	back, err := Decode(out)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, back); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestTablesHashed(t *testing.T) {
	t.Parallel()
	for name, slots := range map[string][]uint8{
		"record": recordTable.slots, "endpoint": endpointTable.slots, "owner": ownerTable.slots,
		"process": processTable.slots, "user": userTable.slots, "tcp_info": tcpInfoTable.slots, "container": containerTable.slots,
	} {
		if slots == nil {
			t.Errorf("%s: no seed separates the member names", name)
		}
	}
}
