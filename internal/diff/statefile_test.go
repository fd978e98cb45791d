package diff

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/record"
)

// sample returns a state that knows a, b (seen twice) and c, after one
// complete snapshot and one truncated one.
func sample(t *testing.T) *State {
	t.Helper()
	s := New()
	play(t, s, []step{
		sock(0, a, "established", 2), sock(0, b, "syn-recv", 0), snap(0),
		sock(1, b, "established", 3), sock(1, c, "established", 4), cut(),
	})
	return s
}

func encode(t testing.TB, s *State) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := s.Encode(&buf, at(100)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestStateFileRoundTrip(t *testing.T) {
	t.Parallel()
	data := encode(t, sample(t))
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	wantLines := []string{
		`{"format":"sockdiff-state","version":1,"saved":"2026-11-26T04:31:40Z","complete":true,"snapshot":"2026-11-26T04:30:00Z","entries":3}`,
		`{"first_seen":"2026-11-26T04:30:00Z","last_seen":"2026-11-26T04:30:00Z","socket":{"type":"socket","time":"2026-11-26T04:30:00Z","family":"ipv4","transport":"tcp","state":"established","local":{"ip":"10.0.0.1","port":22},"remote":{"ip":"10.0.0.2","port":5000},"inode":2}}`,
		`{"first_seen":"2026-11-26T04:30:00Z","last_seen":"2026-11-26T04:30:01Z","socket":{"type":"socket","time":"2026-11-26T04:30:01Z","family":"ipv4","transport":"tcp","state":"established","local":{"ip":"10.0.0.1","port":22},"remote":{"ip":"10.0.0.3","port":5001},"inode":3}}`,
		`{"first_seen":"2026-11-26T04:30:01Z","last_seen":"2026-11-26T04:30:01Z","socket":{"type":"socket","time":"2026-11-26T04:30:01Z","family":"ipv4","transport":"tcp","state":"established","local":{"ip":"10.0.0.1","port":40000},"remote":{"ip":"10.0.0.4","port":443},"inode":4}}`,
		`{"end":"sockdiff-state","entries":3}`,
	}
	if diff := cmp.Diff(wantLines, lines); diff != "" {
		t.Errorf("state file (-want +got):\n%s", diff)
	}

	s, err := Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if !s.Complete() || !s.Snapshot().Equal(at(0)) || s.Len() != 3 || s.Dirty() {
		t.Errorf("decoded: Complete %v Snapshot %v Len %d Dirty %v", s.Complete(), s.Snapshot(), s.Len(), s.Dirty())
	}
	if diff := cmp.Diff(data, encode(t, s)); diff != "" {
		t.Errorf("re-encoded (-want +got):\n%s", diff)
	}
	// The next run compares with everything loaded.
	got := play(t, s, []step{sock(2, b, "time-wait", 0), sock(2, tw1, "time-wait", 0), snap(2)})
	want := []ev{
		{"opened", tw1.String(), "time-wait", 0, 2, 2, -1},
		{"closed", a.String(), "established", 2, 2, 0, 0},
		{"closed", c.String(), "established", 4, 2, 1, 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events after loading (-want +got):\n%s", diff)
	}
}

// TestStateFileNamespacesTransports saves and loads connections that share
// a 4-tuple in two namespaces and in TCP and UDP, and a UDP tombstone: each
// entry keeps its namespace and transport, in its socket record.
func TestStateFileNamespacesTransports(t *testing.T) {
	t.Parallel()
	s := New()
	play(t, s, []step{
		sockc(0, lo.in(1), "established", 2), sockc(0, lo.in(2), "established", 3),
		sockc(0, lo.in(2).udp(), "established", 4), sockc(0, udpLis.in(1), "closed", 5), snap(0),
		destroyed(1, udpLis.in(1), 5),
	})
	data := encode(t, s)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	wantLines := []string{
		`{"format":"sockdiff-state","version":1,"saved":"2026-11-26T04:31:40Z","complete":true,"snapshot":"2026-11-26T04:30:00Z","entries":4}`,
		`{"first_seen":"2026-11-26T04:30:00Z","last_seen":"2026-11-26T04:30:00Z","socket":{"type":"socket","time":"2026-11-26T04:30:00Z","family":"ipv4","transport":"tcp","state":"established","local":{"ip":"127.0.0.1","port":80},"remote":{"ip":"127.0.0.1","port":45000},"inode":2,"cookie":2,"netns":1}}`,
		`{"first_seen":"2026-11-26T04:30:00Z","last_seen":"2026-11-26T04:30:00Z","socket":{"type":"socket","time":"2026-11-26T04:30:00Z","family":"ipv4","transport":"tcp","state":"established","local":{"ip":"127.0.0.1","port":80},"remote":{"ip":"127.0.0.1","port":45000},"inode":3,"cookie":3,"netns":2}}`,
		`{"first_seen":"2026-11-26T04:30:00Z","last_seen":"2026-11-26T04:30:00Z","socket":{"type":"socket","time":"2026-11-26T04:30:00Z","family":"ipv4","transport":"udp","state":"established","local":{"ip":"127.0.0.1","port":80},"remote":{"ip":"127.0.0.1","port":45000},"inode":4,"cookie":4,"netns":2}}`,
		`{"first_seen":"2026-11-26T04:30:00Z","last_seen":"2026-11-26T04:30:00Z","ended":"2026-11-26T04:30:01Z","end_cookie":5,"socket":{"type":"socket","time":"2026-11-26T04:30:00Z","family":"ipv4","transport":"udp","state":"closed","local":{"ip":"0.0.0.0","port":5353},"remote":{"ip":"0.0.0.0","port":0},"inode":5,"cookie":5,"netns":1}}`,
		`{"end":"sockdiff-state","entries":4}`,
	}
	if diff := cmp.Diff(wantLines, lines); diff != "" {
		t.Errorf("state file (-want +got):\n%s", diff)
	}
	s, err := Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 3 || s.Tombstones() != 1 {
		t.Errorf("decoded: Len %d Tombstones %d, want 3 1", s.Len(), s.Tombstones())
	}
	if diff := cmp.Diff(data, encode(t, s)); diff != "" {
		t.Errorf("re-encoded (-want +got):\n%s", diff)
	}
	// Each connection is found again in its namespace and transport: the
	// TCP one of namespace 2 is gone, the others are still there, and
	// the same addresses in a third namespace are new.
	got := play(t, s, []step{
		sockc(2, lo.in(2).udp(), "established", 4), sockc(2, lo.in(1), "established", 2),
		sockc(2, lo.in(3), "established", 9), snap(2),
	})
	want := []ev{
		{"opened", lo.in(3).String(), "established", 9, 2, 2, -1},
		{"closed", lo.in(2).String(), "established", 3, 2, 0, 0},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events after loading (-want +got):\n%s", diff)
	}
}

// TestStateFileEarlierRecords loads a state file as earlier versions wrote
// it: the same format, with socket records that may lack "transport" (as
// hand-made or older records do) and "netns". Their connections are as
// their records say: TCP, in the namespace given or in namespace 0.
func TestStateFileEarlierRecords(t *testing.T) {
	t.Parallel()
	const old = `{"format":"sockdiff-state","version":1,"saved":"2026-11-26T04:31:40Z","complete":true,"snapshot":"2026-11-26T04:30:00Z","entries":3}
{"first_seen":"2026-11-26T04:30:00Z","last_seen":"2026-11-26T04:30:00Z","socket":{"type":"socket","time":"2026-11-26T04:30:00Z","family":"ipv4","state":"established","local":{"ip":"10.0.0.1","port":22},"remote":{"ip":"10.0.0.2","port":5000},"inode":2}}
{"first_seen":"2026-11-26T04:30:00Z","last_seen":"2026-11-26T04:30:00Z","socket":{"type":"socket","time":"2026-11-26T04:30:00Z","family":"ipv4","transport":"tcp","state":"established","local":{"ip":"10.0.0.1","port":22},"remote":{"ip":"10.0.0.3","port":5001},"inode":3,"netns":4026531840}}
{"first_seen":"2026-11-26T04:30:00Z","last_seen":"2026-11-26T04:30:00Z","ended":"2026-11-26T04:30:00.5Z","end_cookie":7,"socket":{"type":"socket","time":"2026-11-26T04:30:00Z","family":"ipv4","transport":"tcp","state":"time-wait","local":{"ip":"10.0.0.1","port":40000},"remote":{"ip":"10.0.0.4","port":443},"inode":0,"netns":4026531840}}
{"end":"sockdiff-state","entries":3}
`
	s, err := Decode(strings.NewReader(old))
	if err != nil {
		t.Fatal(err)
	}
	if s.Len() != 2 || s.Tombstones() != 1 {
		t.Errorf("decoded: Len %d Tombstones %d, want 2 1", s.Len(), s.Tombstones())
	}
	got := play(t, s, []step{
		sock(1, a, "established", 2),                // transport tcp now: the same connection
		sock(1, b.in(4026531840), "established", 3), // its namespace: the same
		sock(1, c.in(4026531840), "time-wait", 0),   // the twin of the ended one
		sock(1, b, "established", 3),                // namespace 0: another
		snap(1),
	})
	want := []ev{{"opened", b.String(), "established", 3, 1, 1, -1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events after loading (-want +got):\n%s", diff)
	}
}

// TestStateFileShared saves and loads a connection whose key two sockets
// held (SO_REUSEPORT): the destroy of one of them is still not its end.
func TestStateFileShared(t *testing.T) {
	t.Parallel()
	s := New()
	play(t, s, []step{sockc(0, udpLis, "closed", 7), sockc(0, udpLis, "closed", 8), snap(0)})
	data := encode(t, s)
	want := `{"first_seen":"2026-11-26T04:30:00Z","last_seen":"2026-11-26T04:30:00Z","shared":true,"socket":{"type":"socket","time":"2026-11-26T04:30:00Z","family":"ipv4","transport":"udp","state":"closed","local":{"ip":"0.0.0.0","port":5353},"remote":{"ip":"0.0.0.0","port":0},"inode":8,"cookie":8}}`
	if lines := strings.Split(string(data), "\n"); len(lines) < 2 || lines[1] != want {
		t.Errorf("state file:\n%s\nwant the entry\n%s", data, want)
	}
	s, err := Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if got := play(t, s, []step{destroyed(1, udpLis, 8)}); len(got) != 0 || s.Counts().Shared != 1 {
		t.Errorf("after loading, a destroy of one of the sockets: %v, counts %+v", got, s.Counts())
	}
}

func TestStateFileFirstRunKept(t *testing.T) {
	t.Parallel()
	// A first run cut short leaves a state that is not complete: the
	// next run still reports what it finds as existing.
	s := New()
	play(t, s, []step{sock(0, a, "established", 2), cut()})
	s, err := Decode(bytes.NewReader(encode(t, s)))
	if err != nil {
		t.Fatal(err)
	}
	got := play(t, s, []step{sock(1, a, "established", 2), sock(1, b, "established", 3), snap(1)})
	want := []ev{{"existing", b.String(), "established", 3, 1, 1, -1}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestStateFileBad(t *testing.T) {
	t.Parallel()
	good := string(encode(t, sample(t)))
	lines := strings.SplitAfter(good, "\n")
	header, e1, e2, trailer := lines[0], lines[1], lines[2], lines[4]
	tests := []struct {
		name, data, want string
	}{
		{"empty", "", "empty file"},
		{"blank", "\n\n  \n", "empty file"},
		{"binary", "\x00\x01\x02garbage", "line 1: not a sockdiff-state file"},
		{"foreign JSON", `{"hello":"world"}` + "\n", "line 1: not a sockdiff-state file"},
		{"JSON array", "[1,2,3]\n", "line 1: not a sockdiff-state file"},
		{"other version", strings.Replace(good, `"version":1`, `"version":2`, 1), "line 1: sockdiff-state version 2, this program reads version 1"},
		{"header only", header, "line 1: truncated: no end line"},
		{"truncated in an entry", header + e1 + e2[:40], "line 3: not a state entry"},
		{"truncated between entries", header + e1 + e2, "line 3: truncated: no end line"},
		{"entry missing", header + e1 + e2 + trailer, "line 4: 2 entries read, header says 3, end line says 3"},
		{"duplicate", header + e1 + e1 + e2 + trailer, "line 3: connection listed twice"},
		{"data after end", good + "{}\n", "line 6: data after the end line"},
		{"bad end", header + `{"end":"x"}` + "\n", "line 2: bad end line"},
		{"negative count", `{"format":"sockdiff-state","version":1,"entries":-1}`, "line 1: negative entry count -1"},
		{"not a socket", header + `{"first_seen":"2026-11-26T04:30:00Z","last_seen":"2026-11-26T04:30:00Z","socket":{"type":"snapshot","time":"2026-11-26T04:30:00Z"}}` + "\n", `line 2: socket: record of type "snapshot"`},
		{"invalid socket", header + `{"first_seen":"2026-11-26T04:30:00Z","last_seen":"2026-11-26T04:30:00Z","socket":{"type":"socket","family":"ipx"}}` + "\n", `line 2: socket: socket record: family "ipx" is neither "ipv4" nor "ipv6"`},
		{"no socket", header + `{"first_seen":"2026-11-26T04:30:00Z","last_seen":"2026-11-26T04:30:00Z"}` + "\n", `line 2: socket: not a JSON object`},
		{"times reversed", header + strings.Replace(e1, `"first_seen":"2026-11-26T04:30:00Z"`, `"first_seen":"2026-11-26T04:30:09Z"`, 1), "line 2: last_seen before first_seen"},
		{"time missing", header + strings.Replace(e1, `"first_seen":"2026-11-26T04:30:00Z",`, ``, 1), "line 2: first_seen: missing"},
		{"time out of range", header + strings.Replace(e1, `"last_seen":"2026`, `"last_seen":"9026`, 1), "line 2: last_seen: out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := Decode(strings.NewReader(tt.data))
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("Decode = %v, %v; want a *FileError", s, err)
			}
			if err.Error() != tt.want {
				t.Errorf("Decode error = %q, want %q", err, tt.want)
			}
		})
	}
}

func TestSaveLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "state")

	s, problem, err := Load(path)
	if err != nil || problem != nil || s.Len() != 0 || s.Complete() {
		t.Fatalf("Load of a missing file = %v, %v, %v; want a new state", s, problem, err)
	}
	want := sample(t)
	if err := Save(path, want, at(100)); err != nil {
		t.Fatal(err)
	}
	if want.Dirty() {
		t.Error("state still dirty after Save")
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v, want 0600", fi.Mode().Perm())
	}
	got, problem, err := Load(path)
	if err != nil || problem != nil {
		t.Fatalf("Load = %v, %v", problem, err)
	}
	if diff := cmp.Diff(encode(t, want), encode(t, got)); diff != "" {
		t.Errorf("loaded state (-want +got):\n%s", diff)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("directory holds %d files after Save, want only the state file", len(ents))
	}

	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, problem, err = Load(path)
	if err != nil || problem == nil || s == nil || s.Len() != 0 {
		t.Errorf("Load of garbage = %v, %v, %v; want a new state and a problem", s, problem, err)
	}
	if !strings.Contains(problem.Error(), path) {
		t.Errorf("problem %q does not name the file", problem)
	}

	if err := Save(filepath.Join(dir, "missing", "state"), want, at(1)); err == nil {
		t.Error("Save into a missing directory succeeded")
	}
	if _, _, err := Load(dir); err == nil {
		t.Error("Load of a directory succeeded")
	}
}

func TestLock(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	stale := filepath.Join(dir, "state.tmp-123")
	other := filepath.Join(dir, "other.tmp-123")
	for _, f := range []string{stale, other} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	l1, err := Lock(ctx, path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary file left after Lock: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another file's temporary file removed: %v", err)
	}

	// flock locks belong to open files, so a second open in this process
	// contends like another process would.
	start := time.Now()
	_, err = Lock(ctx, path, 200*time.Millisecond)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Lock = %v, want ErrLocked", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 5*time.Second {
		t.Errorf("second Lock gave up after %v, want about 200ms", d)
	}

	cctx, cancel := context.WithCancel(ctx)
	time.AfterFunc(50*time.Millisecond, cancel)
	if _, err := Lock(cctx, path, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("Lock with a cancelled context = %v, want context.Canceled", err)
	}

	// A waiter gets the lock once it is released.
	time.AfterFunc(100*time.Millisecond, func() { l1.Unlock() })
	l2, err := Lock(ctx, path, 10*time.Second)
	if err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	if err := l2.Unlock(); err != nil {
		t.Error(err)
	}
	if err := l2.Unlock(); err != nil {
		t.Errorf("second Unlock: %v", err)
	}

	if _, err := Lock(ctx, filepath.Join(dir, "missing", "state"), 0); err == nil {
		t.Error("Lock in a missing directory succeeded")
	}
}

// FuzzDecode checks that no state file, however broken, makes Decode panic,
// and that whatever it accepts encodes back to a file that decodes the same.
func sameEntry(a, b fileEntry) bool {
	return a.FirstSeen.Equal(b.FirstSeen) && a.LastSeen.Equal(b.LastSeen) &&
		(a.Ended == nil) == (b.Ended == nil) && (a.Ended == nil || a.Ended.Equal(*b.Ended)) &&
		a.EndCookie == b.EndCookie && a.Shared == b.Shared && bytes.Equal(a.Socket, b.Socket)
}

func FuzzDecode(f *testing.F) {
	s := New()
	play(f, s, []step{
		sock(0, a, "established", 2), sock(0, b, "syn-recv", 0), sock(0, a6m, "time-wait", 0), snap(0),
		sock(1, b, "established", 3), sock(1, ipv6, "established", 4), cut(),
	})
	good := encode(f, s)
	f.Add(good)
	f.Add(encode(f, New()))
	// Connections whose end a destroy notification reported.
	ended := New()
	play(f, ended, []step{
		sockc(0, a, "established", 2), sockc(0, c, "established", 4), snap(0),
		destroyed(1, a, 2), destroyed(1, b, 30), sockc(2, c, "time-wait", 0),
	})
	f.Add(encode(f, ended))
	// Namespaces and transports: one 4-tuple in two namespaces and in
	// UDP (held by two sockets), a UDP tombstone, and records without
	// transport or namespace.
	ns := New()
	play(f, ns, []step{
		sockc(0, lo.in(1), "established", 2), sockc(0, lo.in(4026532301), "established", 3),
		sockc(0, lo.udp(), "established", 4), sockc(0, udpLis.in(1), "closed", 5),
		sockc(0, lo.udp(), "established", 7), // shared
		noTransport(sockc(0, a, "established", 6)), snap(0),
		destroyed(1, udpLis.in(1), 5), destroyed(1, lo.in(2).udp(), 8),
	})
	nsFile := encode(f, ns)
	f.Add(nsFile)
	f.Add(bytes.Replace(nsFile, []byte(`"netns":4026532301`), []byte(`"netns":1`), 1)) // listed twice
	f.Add(bytes.Replace(nsFile, []byte(`"transport":"udp"`), []byte(`"transport":"sctp"`), 1))
	f.Add(bytes.Replace(nsFile, []byte(`"netns":1`), []byte(`"netns":-1`), 1))
	f.Add([]byte(""))
	f.Add(good[:len(good)/2])
	f.Add(bytes.Replace(good, []byte(`"version":1`), []byte(`"version":7`), 1))
	f.Add([]byte(`{"format":"sockdiff-state","version":1,"entries":1}` + "\n" +
		`{"first_seen":"2026-11-26T04:30:00Z","last_seen":"2026-11-26T04:30:00Z","socket":{"type":"socket","time":"2026-11-26T04:30:00Z","family":"ipv4","local":{"ip":"1.2.3.4","port":1},"remote":{"ip":"5.6.7.8","port":2},"x":{"y":null}}}` + "\n" +
		`{"end":"sockdiff-state","entries":1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Decode(bytes.NewReader(data))
		if err != nil {
			var fe *FileError
			if !errors.As(err, &fe) {
				t.Fatalf("Decode error %v is not a *FileError", err)
			}
			return
		}
		once := encode(t, s)
		s2, err := Decode(bytes.NewReader(once))
		if err != nil {
			t.Fatalf("re-encoded state does not decode: %v\n%s", err, once)
		}
		if twice := encode(t, s2); !bytes.Equal(once, twice) {
			t.Fatalf("encoding not stable:\n%s\n%s", once, twice)
		}
	})
}

// FuzzEntryParser checks the fast reader of state entries against the JSON
// decoder: what it accepts (with a socket that decodes), JSON reads the
// same.
func FuzzEntryParser(f *testing.F) {
	s := New()
	play(f, s, []step{
		sockc(0, a, "established", 2), sockc(0, c, "established", 4), sockc(0, lo.udp(), "established", 4),
		sockc(0, lo.udp(), "established", 7), snap(0), destroyed(1, a, 2),
	})
	for _, line := range bytes.Split(encode(f, s), []byte("\n")) {
		f.Add(line)
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		var p entryParser
		var fast, slow fileEntry
		var r record.Record
		if !p.parse(line, &fast) || codec.DecodeInto(fast.Socket, &r) != nil {
			return
		}
		if err := codec.Unmarshal(line, &slow); err != nil {
			t.Fatalf("fast parser accepts what JSON rejects (%v): %s", err, line)
		}
		if !sameEntry(slow, fast) {
			t.Fatalf("fast parser reads %s otherwise:\njson %+v\nfast %+v", line, slow, fast)
		}
	})
}
