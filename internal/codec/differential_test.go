package codec

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sockpipe/sockpipe/internal/record"
)

// The oracle of the differential test: the record's members as
// encoding/json reads them, written down here again on purpose, apart
// from the tables of schema.go. kind is the JSON kind of the member; for
// numbers the Go field's type gives the range.
type spec struct {
	field string
	kind  string // string, time, uint, int, bool, strings, object, uid
	sub   map[string]spec
}

var (
	endpointSpec = map[string]spec{
		"ip": {"IP", "string", nil}, "port": {"Port", "uint", nil}, "host": {"Host", "string", nil},
		"etld_plus_one": {"ETLDPlusOne", "string", nil}, "host_error": {"HostError", "string", nil},
	}
	recordSpec = map[string]spec{
		"type": {"Type", "string", nil}, "time": {"Time", "time", nil},
		"family": {"Family", "string", nil}, "transport": {"Transport", "string", nil}, "state": {"State", "string", nil},
		"local": {"Local", "object", endpointSpec}, "remote": {"Remote", "object", endpointSpec},
		"direction": {"Direction", "string", nil}, "inode": {"Inode", "uint", nil}, "uid": {"UID", "uid", nil},
		"cookie": {"Cookie", "uint", nil}, "netns": {"NetNS", "uint", nil},
		"owner": {"Owner", "object", map[string]spec{
			"pid": {"PID", "int", nil}, "name": {"Name", "string", nil}, "uid": {"UID", "uint", nil},
			"gid": {"GID", "uint", nil}, "cgroup_id": {"CgroupID", "uint", nil}, "start": {"Start", "time", nil},
			"via": {"Via", "string", nil}, "inode": {"Inode", "uint", nil},
		}},
		"event": {"Event", "string", nil}, "first_seen": {"FirstSeen", "time", nil}, "last_seen": {"LastSeen", "time", nil},
		"process": {"Process", "object", map[string]spec{
			"pid": {"PID", "int", nil}, "ppid": {"PPID", "int", nil}, "name": {"Name", "string", nil},
			"executable": {"Executable", "string", nil}, "args": {"Args", "strings", nil},
			"cmdline": {"Cmdline", "string", nil}, "start": {"Start", "time", nil},
		}},
		"process_error": {"ProcessError", "string", nil},
		"user": {"User", "object", map[string]spec{
			"id": {"ID", "string", nil}, "name": {"Name", "string", nil}, "full_name": {"FullName", "string", nil},
		}},
		"container": {"Container", "object", map[string]spec{"id": {"ID", "string", nil}}},
		"tcp_info": {"Info", "object", map[string]spec{
			"bytes_acked": {"BytesAcked", "uint", nil}, "bytes_received": {"BytesReceived", "uint", nil},
			"bytes_sent": {"BytesSent", "uint", nil}, "bytes_retrans": {"BytesRetrans", "uint", nil},
			"segs_out": {"SegsOut", "uint", nil}, "segs_in": {"SegsIn", "uint", nil},
			"total_retrans": {"TotalRetrans", "uint", nil}, "rtt_us": {"RTTMicros", "uint", nil},
		}},
		"short_lived": {"ShortLived", "bool", nil}, "schema": {"Schema", "int", nil}, "sockets": {"Sockets", "int", nil},
		"duration_ns": {"Duration", "int", nil}, "interval_ns": {"Interval", "int", nil},
		"event_overflows": {"EventOverflows", "int", nil}, "namespaces": {"Namespaces", "int", nil},
		"namespaces_skipped": {"NamespacesSkipped", "int", nil},
	}
)

type oracleError string

func (e oracleError) Error() string { return string(e) }

// oracle decodes line with encoding/json and the spec above.
func oracle(line []byte) (*record.Record, error) {
	if !json.Valid(line) {
		return nil, oracleError("invalid JSON")
	}
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, oracleError("not an object")
	}
	var r record.Record
	if err := apply(reflect.ValueOf(&r).Elem(), m, recordSpec); err != nil {
		return nil, err
	}
	return &r, nil
}

func apply(dst reflect.Value, m map[string]any, sp map[string]spec) error {
	var extra []record.Field
	for k, v := range m {
		s, ok := sp[k]
		if !ok {
			b, _ := json.Marshal(v)
			extra = append(extra, record.Field{Key: k, Value: b})
			continue
		}
		f := dst.FieldByName(s.field)
		if v == nil {
			continue // absent
		}
		bad := oracleError(k + ": wrong type")
		switch s.kind {
		case "string":
			str, ok := v.(string)
			if !ok {
				return bad
			}
			f.SetString(str)
		case "time":
			str, ok := v.(string)
			if !ok {
				return bad
			}
			if str == "" {
				continue
			}
			t, err := time.Parse(time.RFC3339Nano, str)
			if err != nil {
				return err
			}
			f.Set(reflect.ValueOf(t))
		case "uint", "uid":
			n, ok := v.(json.Number)
			if !ok {
				return bad
			}
			u, err := strconv.ParseUint(string(n), 10, f.Type().Bits())
			if err != nil {
				return err
			}
			f.SetUint(u)
			if s.kind == "uid" {
				dst.FieldByName("HasUID").SetBool(true)
			}
		case "int":
			n, ok := v.(json.Number)
			if !ok {
				return bad
			}
			i, err := strconv.ParseInt(string(n), 10, 64)
			if err != nil {
				return err
			}
			f.SetInt(i)
		case "bool":
			b, ok := v.(bool)
			if !ok {
				return bad
			}
			f.SetBool(b)
		case "strings":
			a, ok := v.([]any)
			if !ok {
				return bad
			}
			ss := []string{}
			for _, e := range a {
				str, ok := e.(string)
				if !ok {
					return bad
				}
				ss = append(ss, str)
			}
			f.Set(reflect.ValueOf(ss))
		case "object":
			om, ok := v.(map[string]any)
			if !ok {
				return bad
			}
			if f.Kind() == reflect.Pointer {
				f.Set(reflect.New(f.Type().Elem()))
				f = f.Elem()
			}
			if err := apply(f, om, s.sub); err != nil {
				return err
			}
		}
	}
	if extra != nil {
		dst.FieldByName("Extra").Set(reflect.ValueOf(extra))
	}
	return nil
}

// canonical rewrites every Extra of r in one form: the last member of a
// name counts (as for encoding/json), sorted by name, values re-encoded.
func canonical(t *testing.T, v reflect.Value) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			canonical(t, v.Elem())
		}
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			return
		}
		for i := range v.NumField() {
			canonical(t, v.Field(i))
		}
		f := v.FieldByName("Extra")
		if !f.IsValid() || f.Len() == 0 {
			return
		}
		last := map[string][]byte{}
		for _, e := range f.Interface().([]record.Field) {
			d := json.NewDecoder(bytes.NewReader(e.Value))
			d.UseNumber()
			var x any
			if err := d.Decode(&x); err != nil {
				t.Fatalf("extra %q: %q: %v", e.Key, e.Value, err)
			}
			b, _ := json.Marshal(x)
			last[e.Key] = b
		}
		var fs []record.Field
		for k, b := range last {
			fs = append(fs, record.Field{Key: k, Value: b})
		}
		slices.SortFunc(fs, func(a, b record.Field) int { return strings.Compare(a.Key, b.Key) })
		f.Set(reflect.ValueOf(fs))
	}
}

// testdataLines returns the record lines of the repository's test data
// and scripts, as seeds.
func testdataLines(tb testing.TB) [][]byte {
	var files []string
	for _, g := range []string{"../../cmd/*/testdata/script/*.txtar", "../../internal/*/testdata/*"} {
		m, _ := filepath.Glob(g)
		files = append(files, m...)
	}
	var lines [][]byte
	seen := map[string]bool{}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			l := bytes.TrimSpace(sc.Bytes())
			if len(l) > 0 && l[0] == '{' && !seen[string(l)] {
				seen[string(l)] = true
				lines = append(lines, bytes.Clone(l))
			}
		}
		f.Close()
	}
	if len(lines) == 0 {
		tb.Fatal("no record lines in the test data")
	}
	return lines
}

// FuzzDifferential checks that Decode agrees with encoding/json on every
// input: it accepts what encoding/json and the schema accept, rejects the
// rest, and decodes the same values; and that what it decodes encodes to
// valid JSON that decodes back to the same record.
func FuzzDifferential(f *testing.F) {
	for _, l := range testdataLines(f) {
		f.Add(l)
	}
	for _, s := range []string{sockdumpLine, snapshotLine, enrichedLine, closedLine, destroyLine, shortLine, lostLine, ownedLine, listenerLine, udpLine, nsSnapLine,
		`{}`, `{"type":null}`, `{"local":{"port":1e3}}`, ` {"a\u0000b":"\ud800\udc00\udc00","type":"\u00e9\xff"} `, `{"uid":-0}`, `{"inode":01}`,
		`{"time":"2026-02-29T00:00:00Z"}`, `{"time":"2024-02-29T23:59:59.123456789Z"}`, `{"local":{"ip":"a"},"local":{"port":2}}`, `{"x":[[[{"y":{}}]]]}`,
		// members out of table order, twice, or names that begin as a
		// member's: the decoder's guess of the next member must not matter
		`{"netns":1,"cookie":2,"state":"listening","family":"ipv4","type":"socket"}`, `{"type":"a","type":"b","time" :"2026-02-29T00:00:00Z","family":"ipv4","family":"ipv6"}`,
		`{"type":"socket","transportx":"tcp","family\u0022":1,"state":"closed"}`, `{"local":{"port":2,"ip":"::1","port":3}}`} {
		f.Add([]byte(s))
	}
	enc := NewEncoder()
	f.Fuzz(func(t *testing.T, line []byte) {
		got, err := Decode(line)
		want, werr := oracle(line)
		if (err == nil) != (werr == nil) {
			t.Fatalf("%q: Decode error %v, encoding/json error %v", line, err, werr)
		}
		if err != nil {
			return
		}
		out := enc.Encode(got)
		if !json.Valid(out) {
			t.Fatalf("%q: encoded invalid JSON %q", line, out)
		}
		back, err := Decode(out)
		if err != nil {
			t.Fatalf("%q: re-decode of %q: %v", line, out, err)
		}
		canonical(t, reflect.ValueOf(want))
		canonical(t, reflect.ValueOf(got))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("%q: Decode and encoding/json differ (-json +Decode):\n%s", line, diff)
		}
		canonical(t, reflect.ValueOf(back))
		if diff := cmp.Diff(got, back); diff != "" {
			t.Fatalf("%q: round trip through %q (-first +second):\n%s", line, out, diff)
		}
	})
}
