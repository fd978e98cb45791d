// Package codec turns records into NDJSON lines and back. It is the only
// package of sockpipe that imports github.com/json-iterator/go: the library
// is archived upstream, so it stays behind this one small API.
//
// Records are decoded and encoded field by field with json-iterator's
// streaming API, without reflection, and members that the schema does not
// know are kept as raw JSON so they pass through unchanged.
package codec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	jsoniter "github.com/json-iterator/go"

	"github.com/sockpipe/sockpipe/internal/record"
)

var api = jsoniter.Config{EscapeHTML: false, ValidateJsonRawMessage: true}.Froze()

// Marshal encodes any value as compact JSON, as encoding/json would.
func Marshal(v any) ([]byte, error) { return api.Marshal(v) }

// Unmarshal decodes JSON into v, as encoding/json would.
func Unmarshal(data []byte, v any) error { return api.Unmarshal(data, v) }

// numbers keeps numbers as their text, and writes maps with sorted keys.
var numbers = jsoniter.Config{EscapeHTML: false, UseNumber: true, SortMapKeys: true}.Froze()

// Number is a JSON number as its text, which UnmarshalNumbers gives for
// numbers decoded into an any.
type Number = json.Number

// UnmarshalNumbers decodes JSON into v as Unmarshal does, but a number
// decoded into an any is a Number, its exact text, not a float64 (which
// holds integers exactly only up to 2^53).
func UnmarshalNumbers(data []byte, v any) error { return numbers.Unmarshal(data, v) }

// MarshalIndent encodes v as indented JSON, with the keys of maps sorted,
// for files that people read and diff.
func MarshalIndent(v any, indent string) ([]byte, error) {
	// json-iterator's own indentation breaks on pointers held in maps.
	b, err := numbers.Marshal(v)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", indent); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// Valid reports whether data is one valid JSON value.
func Valid(data []byte) bool { return api.Valid(data) }

// Decode parses one NDJSON line into a record. Members of unknown names are
// kept in the Extra fields; null members count as absent. It fails on
// anything that is not a single JSON object or whose known members have the
// wrong JSON type. Decode does not call Validate.
func Decode(line []byte) (*record.Record, error) {
	r := new(record.Record)
	if err := DecodeInto(line, r); err != nil {
		return nil, err
	}
	return r, nil
}

// DecodeInto is Decode into a record that the caller provides; r is reset
// first.
func DecodeInto(line []byte, r *record.Record) error {
	*r = record.Record{}
	line = bytes.TrimSpace(line)
	if len(line) == 0 || line[0] != '{' {
		return errors.New("not a JSON object")
	}
	it := api.BorrowIterator(line)
	defer api.ReturnIterator(it)
	d := decoder{it: it}
	it.ReadObjectCB(d.top(r))
	if d.err != nil {
		return d.err
	}
	if it.Error != nil {
		return jsonError(it.Error)
	}
	it.WhatIsNext()
	if it.Error != io.EOF {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

// jsonError shortens json-iterator's messages, which quote the input.
func jsonError(err error) error {
	msg := err.Error()
	if i := strings.Index(msg, ", error found in"); i > 0 {
		msg = msg[:i]
	}
	return fmt.Errorf("invalid JSON: %s", msg)
}

type decoder struct {
	it  *jsoniter.Iterator
	err error
}

func (d *decoder) fail(format string, args ...any) bool {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
	return false
}

// null consumes a JSON null and reports whether there was one.
func (d *decoder) null() bool {
	if d.it.WhatIsNext() == jsoniter.NilValue {
		d.it.ReadNil()
		return true
	}
	return false
}

func (d *decoder) str(key string, dst *string) bool {
	if d.null() {
		return true
	}
	if d.it.WhatIsNext() != jsoniter.StringValue {
		return d.fail("%q: want a string", key)
	}
	*dst = d.it.ReadString()
	return d.it.Error == nil
}

func (d *decoder) num(key string) (jsoniter.ValueType, bool) {
	t := d.it.WhatIsNext()
	if t != jsoniter.NumberValue {
		return t, d.fail("%q: want a number", key)
	}
	return t, true
}

func (d *decoder) uint64(key string, dst *uint64) bool {
	if d.null() {
		return true
	}
	if _, ok := d.num(key); !ok {
		return false
	}
	n := d.it.ReadNumber()
	if d.it.Error != nil {
		return false
	}
	v, err := strconv.ParseUint(string(n), 10, 64)
	if err != nil {
		return d.fail("%q: want a non-negative integer, got %s", key, n)
	}
	*dst = v
	return true
}

func (d *decoder) int(key string, dst *int) bool {
	if d.null() {
		return true
	}
	if _, ok := d.num(key); !ok {
		return false
	}
	n := d.it.ReadNumber()
	if d.it.Error != nil {
		return false
	}
	v, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		return d.fail("%q: want an integer, got %s", key, n)
	}
	*dst = int(v)
	return true
}

func (d *decoder) uint32(key string, dst *uint32) bool {
	var v uint64
	if !d.uint64(key, &v) {
		return false
	}
	if v > 1<<32-1 {
		return d.fail("%q: %d out of range", key, v)
	}
	*dst = uint32(v)
	return true
}

func (d *decoder) port(key string, dst *uint16) bool {
	var v uint64
	if !d.uint64(key, &v) {
		return false
	}
	if v > 65535 {
		return d.fail("%q: port %d out of range", key, v)
	}
	*dst = uint16(v)
	return true
}

func (d *decoder) time(key string, dst *time.Time) bool {
	var s string
	if !d.str(key, &s) || s == "" {
		return d.err == nil && d.it.Error == nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return d.fail("%q: want an RFC 3339 time, got %q", key, s)
	}
	*dst = t
	return true
}

func (d *decoder) object(key string, cb func(*jsoniter.Iterator, string) bool) bool {
	if d.null() {
		return true
	}
	if d.it.WhatIsNext() != jsoniter.ObjectValue {
		return d.fail("%q: want an object", key)
	}
	return d.it.ReadObjectCB(cb)
}

func (d *decoder) extra(dst *[]record.Field, key string) bool {
	raw := d.it.SkipAndReturnBytes()
	if d.it.Error != nil {
		return false
	}
	*dst = append(*dst, record.Field{Key: key, Value: raw})
	return true
}

func (d *decoder) top(r *record.Record) func(*jsoniter.Iterator, string) bool {
	return func(_ *jsoniter.Iterator, key string) bool {
		switch key {
		case "type":
			return d.str(key, &r.Type)
		case "time":
			return d.time(key, &r.Time)
		case "family":
			return d.str(key, &r.Family)
		case "transport":
			return d.str(key, &r.Transport)
		case "state":
			return d.str(key, &r.State)
		case "local":
			return d.object(key, d.endpoint("local", &r.Local))
		case "remote":
			return d.object(key, d.endpoint("remote", &r.Remote))
		case "direction":
			return d.str(key, &r.Direction)
		case "inode":
			return d.uint64(key, &r.Inode)
		case "uid":
			if d.null() {
				return true
			}
			r.HasUID = true
			return d.uint32(key, &r.UID)
		case "cookie":
			return d.uint64(key, &r.Cookie)
		case "netns":
			return d.uint64(key, &r.NetNS)
		case "owner":
			if d.null() {
				return true
			}
			r.Owner = new(record.Owner)
			return d.object(key, d.owner(r.Owner))
		case "event":
			return d.str(key, &r.Event)
		case "first_seen":
			return d.time(key, &r.FirstSeen)
		case "last_seen":
			return d.time(key, &r.LastSeen)
		case "process":
			if d.null() {
				return true
			}
			r.Process = new(record.Process)
			return d.object(key, d.process(r.Process))
		case "process_error":
			return d.str(key, &r.ProcessError)
		case "user":
			if d.null() {
				return true
			}
			r.User = new(record.User)
			return d.object(key, d.user(r.User))
		case "container":
			if d.null() {
				return true
			}
			r.Container = new(record.Container)
			return d.object(key, d.container(r.Container))
		case "namespaces":
			return d.int(key, &r.Namespaces)
		case "namespaces_skipped":
			return d.int(key, &r.NamespacesSkipped)
		case "tcp_info":
			if d.null() {
				return true
			}
			r.Info = new(record.TCPInfo)
			return d.object(key, d.tcpInfo(r.Info))
		case "short_lived":
			if d.null() {
				return true
			}
			if d.it.WhatIsNext() != jsoniter.BoolValue {
				return d.fail("%q: want true or false", key)
			}
			r.ShortLived = d.it.ReadBool()
			return true
		case "event_overflows":
			return d.int(key, &r.EventOverflows)
		case "schema":
			return d.int(key, &r.Schema)
		case "sockets":
			return d.int(key, &r.Sockets)
		case "duration_ns":
			var v int
			if !d.int(key, &v) {
				return false
			}
			r.Duration = time.Duration(v)
			return true
		case "interval_ns":
			var v int
			if !d.int(key, &v) {
				return false
			}
			r.Interval = time.Duration(v)
			return true
		}
		return d.extra(&r.Extra, key)
	}
}

func (d *decoder) endpoint(name string, e *record.Endpoint) func(*jsoniter.Iterator, string) bool {
	return func(_ *jsoniter.Iterator, key string) bool {
		switch key {
		case "ip":
			return d.str(name+".ip", &e.IP)
		case "port":
			return d.port(name+".port", &e.Port)
		case "host":
			return d.str(name+".host", &e.Host)
		case "etld_plus_one":
			return d.str(name+".etld_plus_one", &e.ETLDPlusOne)
		case "host_error":
			return d.str(name+".host_error", &e.HostError)
		}
		return d.extra(&e.Extra, key)
	}
}

func (d *decoder) process(p *record.Process) func(*jsoniter.Iterator, string) bool {
	return func(it *jsoniter.Iterator, key string) bool {
		switch key {
		case "pid":
			return d.int("process.pid", &p.PID)
		case "ppid":
			return d.int("process.ppid", &p.PPID)
		case "name":
			return d.str("process.name", &p.Name)
		case "executable":
			return d.str("process.executable", &p.Executable)
		case "cmdline":
			return d.str("process.cmdline", &p.Cmdline)
		case "start":
			return d.time("process.start", &p.Start)
		case "args":
			if d.null() {
				return true
			}
			if it.WhatIsNext() != jsoniter.ArrayValue {
				return d.fail(`"process.args": want an array of strings`)
			}
			p.Args = []string{}
			return it.ReadArrayCB(func(it *jsoniter.Iterator) bool {
				if it.WhatIsNext() != jsoniter.StringValue {
					return d.fail(`"process.args": want an array of strings`)
				}
				p.Args = append(p.Args, it.ReadString())
				return it.Error == nil
			})
		}
		return d.extra(&p.Extra, key)
	}
}

func (d *decoder) tcpInfo(ti *record.TCPInfo) func(*jsoniter.Iterator, string) bool {
	u32 := d.uint32
	return func(_ *jsoniter.Iterator, key string) bool {
		switch key {
		case "bytes_acked":
			return d.uint64("tcp_info.bytes_acked", &ti.BytesAcked)
		case "bytes_received":
			return d.uint64("tcp_info.bytes_received", &ti.BytesReceived)
		case "bytes_sent":
			return d.uint64("tcp_info.bytes_sent", &ti.BytesSent)
		case "bytes_retrans":
			return d.uint64("tcp_info.bytes_retrans", &ti.BytesRetrans)
		case "segs_out":
			return u32("tcp_info.segs_out", &ti.SegsOut)
		case "segs_in":
			return u32("tcp_info.segs_in", &ti.SegsIn)
		case "total_retrans":
			return u32("tcp_info.total_retrans", &ti.TotalRetrans)
		case "rtt_us":
			return u32("tcp_info.rtt_us", &ti.RTTMicros)
		}
		return d.extra(&ti.Extra, key)
	}
}

func (d *decoder) user(u *record.User) func(*jsoniter.Iterator, string) bool {
	return func(_ *jsoniter.Iterator, key string) bool {
		switch key {
		case "id":
			return d.str("user.id", &u.ID)
		case "name":
			return d.str("user.name", &u.Name)
		case "full_name":
			return d.str("user.full_name", &u.FullName)
		}
		return d.extra(&u.Extra, key)
	}
}

func (d *decoder) owner(o *record.Owner) func(*jsoniter.Iterator, string) bool {
	return func(_ *jsoniter.Iterator, key string) bool {
		switch key {
		case "pid":
			return d.int("owner.pid", &o.PID)
		case "name":
			return d.str("owner.name", &o.Name)
		case "uid":
			return d.uint32("owner.uid", &o.UID)
		case "gid":
			return d.uint32("owner.gid", &o.GID)
		case "cgroup_id":
			return d.uint64("owner.cgroup_id", &o.CgroupID)
		case "start":
			return d.time("owner.start", &o.Start)
		case "via":
			return d.str("owner.via", &o.Via)
		case "inode":
			return d.uint64("owner.inode", &o.Inode)
		}
		return d.extra(&o.Extra, key)
	}
}

func (d *decoder) container(c *record.Container) func(*jsoniter.Iterator, string) bool {
	return func(_ *jsoniter.Iterator, key string) bool {
		if key == "id" {
			return d.str("container.id", &c.ID)
		}
		return d.extra(&c.Extra, key)
	}
}
