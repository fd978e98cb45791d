package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseTruthLine(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 5, 0, 0, 123456789, time.UTC)
	tests := []struct {
		name    string
		line    string
		want    truthConn
		wantErr bool
	}{
		{
			name: "ipv4",
			line: "127.0.0.3:20000 127.0.0.2:40000 2026-11-26T05:00:00.123456789Z 2026-11-26T05:00:00.128456789Z",
			want: truthConn{
				Client: netip.MustParseAddrPort("127.0.0.3:20000"), Server: netip.MustParseAddrPort("127.0.0.2:40000"),
				Opened: t0, Closed: t0.Add(5 * time.Millisecond),
			},
		},
		{
			name: "ipv6",
			line: "[::1]:20000 [::1]:40000 2026-11-26T05:00:00.123456789Z 2026-11-26T05:00:00.123456789Z",
			want: truthConn{
				Client: netip.MustParseAddrPort("[::1]:20000"), Server: netip.MustParseAddrPort("[::1]:40000"),
				Opened: t0, Closed: t0,
			},
		},
		{name: "short", line: "127.0.0.3:20000 127.0.0.2:40000", wantErr: true},
		{name: "bad address", line: "127.0.0.3 127.0.0.2:40000 2026-11-26T05:00:00Z 2026-11-26T05:00:00Z", wantErr: true},
		{name: "bad time", line: "127.0.0.3:1 127.0.0.2:40000 yesterday 2026-11-26T05:00:00Z", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseTruthLine(tt.line)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("parseTruthLine (-want +got):\n%s", diff)
			}
		})
	}
}

const truthLog = `# client server opened closed
127.0.0.3:20000 127.0.0.2:40000 2026-11-26T05:00:00Z 2026-11-26T05:00:00.005Z
127.0.0.3:20001 127.0.0.2:40000 2026-11-26T05:00:00.001Z 2026-11-26T05:00:00.006Z
127.0.0.3:20002 127.0.0.2:40000 2026-11-26T05:00:00.002Z 2026-11-26T05:00:00.007Z
127.0.0.3:20003 127.0.0.2:40000 2026-11-26T05:00:00.003Z 2026-11-26T05:00:00.008Z
127.0.0.3:20004 127.0.0.2:40000 2026-11-26T05:00:00.004Z 2026-11-26T05:00:00.009Z
`

func TestScore(t *testing.T) {
	const (
		sock = `{"type":"socket","time":"2026-11-26T05:00:01Z","family":"ipv4","transport":"tcp","state":"established",`
		dest = `{"type":"destroyed","time":"2026-11-26T05:00:00.1Z","family":"ipv4","transport":"tcp","state":"closed",`
	)
	tests := []struct {
		name  string
		input string
		want  result
	}{
		{
			name:  "nothing",
			input: `{"type":"snapshot","time":"2026-11-26T05:00:01Z","schema":1,"sockets":0,"duration_ns":1}`,
			want:  result{Connections: 5, Snapshots: 1, Missed: []int{0, 1, 2, 3, 4}},
		},
		{
			name: "every kind",
			input: strings.Join([]string{
				// Server end, short-lived opened, and its closed event.
				sock + `"local":{"ip":"127.0.0.2","port":40000},"remote":{"ip":"127.0.0.3","port":20000},"direction":"egress","event":"opened","short_lived":true}`,
				sock + `"local":{"ip":"127.0.0.2","port":40000},"remote":{"ip":"127.0.0.3","port":20000},"event":"closed"}`,
				// Client end opened by a poll.
				sock + `"local":{"ip":"127.0.0.3","port":20001},"remote":{"ip":"127.0.0.2","port":40000},"event":"opened"}`,
				// Server end destroyed record, client end wiped.
				dest + `"local":{"ip":"127.0.0.2","port":40000},"remote":{"ip":"127.0.0.3","port":20002}}`,
				dest + `"local":{"ip":"127.0.0.3","port":20002},"remote":{"ip":"127.0.0.2","port":0}}`,
				// Only the wiped client end: not found.
				dest + `"local":{"ip":"127.0.0.3","port":20003},"remote":{"ip":"127.0.0.2","port":0}}`,
				// An existing event is no sighting of a churned connection.
				sock + `"local":{"ip":"127.0.0.2","port":40000},"remote":{"ip":"127.0.0.3","port":20004},"event":"existing"}`,
				// A socket of somebody else, opened twice.
				sock + `"local":{"ip":"10.0.0.1","port":1},"remote":{"ip":"10.0.0.2","port":2},"event":"opened"}`,
				sock + `"local":{"ip":"10.0.0.1","port":1},"remote":{"ip":"10.0.0.2","port":2},"event":"opened"}`,
				`{"type":"snapshot","time":"2026-11-26T05:00:01Z","schema":1,"sockets":3,"duration_ns":1,"event_overflows":2}`,
				`not json`,
				`{"type":"snapshot","time":"2026-11-26T05:00:02Z","schema":1,"sockets":3,"duration_ns":1,"event_overflows":1}`,
			}, "\n"),
			want: result{
				Connections: 5, Found: 3, Opened: 2, ShortLived: 1, DestroyedOnly: 1,
				ServerEnd: 2, ClientEnd: 1, Closed: 1, ClientWiped: 2, ServerEgress: 1, Overflows: 3, Snapshots: 2,
				DoubleOpened: 1, Destroyed: 3, Missed: []int{3, 4},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			truth, err := parseTruth(strings.NewReader(truthLog))
			if err != nil {
				t.Fatal(err)
			}
			s := newScorer(truth)
			if _, err := scoreReader(s, strings.NewReader(tt.input)); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, s.result(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
		})
	}
}

func TestScoreDuplicateTruth(t *testing.T) {
	truth, err := parseTruth(strings.NewReader(truthLog + strings.SplitN(truthLog, "\n", 3)[1] + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := newScorer(truth).result().DupTruth; got != 1 {
		t.Errorf("DupTruth = %d, want 1", got)
	}
}

func FuzzParseTruthLine(f *testing.F) {
	for _, l := range strings.Split(truthLog, "\n") {
		f.Add(l)
	}
	f.Add("[::1]:1 [::1]:2 2026-11-26T05:00:00Z 2026-11-26T05:00:00Z")
	f.Fuzz(func(t *testing.T, line string) {
		c, err := parseTruthLine(line)
		if err != nil {
			return
		}
		if !c.Client.IsValid() || !c.Server.IsValid() {
			t.Errorf("%q: invalid address accepted: %+v", line, c)
		}
	})
}

func TestScoreOwners(t *testing.T) {
	const sock = `{"type":"socket","time":"2026-11-26T05:00:01Z","family":"ipv4","transport":"tcp","state":"closed","inode":0,"event":"opened","short_lived":true,`
	truth, owner, err := parseTruthOwner(strings.NewReader("# owner pid=4242 name=churn uid=1000\n" + truthLog))
	if err != nil {
		t.Fatal(err)
	}
	if want := (&truthOwner{PID: 4242, Name: "churn", UID: 1000}); !cmp.Equal(owner, want) {
		t.Fatalf("owner %+v, want %+v", owner, want)
	}
	s := newScorer(truth)
	s.owner = owner
	input := strings.Join([]string{
		// Right, from the server end.
		sock + `"local":{"ip":"127.0.0.2","port":40000},"remote":{"ip":"127.0.0.3","port":20000},"owner":{"pid":4242,"name":"churn","uid":1000,"gid":0,"via":"accept"}}`,
		// Right, from the client end; the server end has none.
		sock + `"local":{"ip":"127.0.0.3","port":20001},"remote":{"ip":"127.0.0.2","port":40000},"owner":{"pid":4242,"name":"churn","uid":1000,"gid":0,"via":"connect"}}`,
		sock + `"local":{"ip":"127.0.0.2","port":40000},"remote":{"ip":"127.0.0.3","port":20001}}`,
		// Wrong pid, wrong uid.
		sock + `"local":{"ip":"127.0.0.2","port":40000},"remote":{"ip":"127.0.0.3","port":20002},"owner":{"pid":4243,"name":"churn","uid":1000,"gid":0,"via":"accept"}}`,
		sock + `"local":{"ip":"127.0.0.2","port":40000},"remote":{"ip":"127.0.0.3","port":20003},"owner":{"pid":4242,"name":"churn","uid":0,"gid":0,"via":"accept"}}`,
		// No owner at all.
		sock + `"local":{"ip":"127.0.0.2","port":40000},"remote":{"ip":"127.0.0.3","port":20004}}`,
	}, "\n")
	// sockproc's output: the process and the user count, not the owner.
	procs := strings.Join([]string{
		sock + `"local":{"ip":"127.0.0.2","port":40000},"remote":{"ip":"127.0.0.3","port":20000},"process":{"pid":4242,"name":"churn"},"user":{"id":"1000"}}`,
		sock + `"local":{"ip":"127.0.0.2","port":40000},"remote":{"ip":"127.0.0.3","port":20001},"owner":{"pid":4242,"name":"churn","uid":1000,"gid":0,"via":"accept"},"process":{"pid":4242,"name":"churn"},"user":{"id":"0"}}`,
	}, "\n")
	if _, err := scoreReader(s, strings.NewReader(input)); err != nil {
		t.Fatal(err)
	}
	r := s.result()
	if r.Owned != 2 || r.OwnerWrong != 2 || r.Opened != 5 {
		t.Errorf("owned %d, wrong %d, opened %d; want 2, 2, 5", r.Owned, r.OwnerWrong, r.Opened)
	}
	if got, want := r.ownerString(), " owned=2 owned_percent=40.00 owned_of_opened_percent=40.00 owner_wrong=2"; got != want {
		t.Errorf("score %q, want %q", got, want)
	}

	s = newScorer(truth)
	s.owner = owner
	if _, err := scoreReader(s, strings.NewReader(procs)); err != nil {
		t.Fatal(err)
	}
	if r := s.result(); r.Owned != 1 || r.OwnerWrong != 1 {
		t.Errorf("from sockproc: owned %d, wrong %d; want 1, 1", r.Owned, r.OwnerWrong)
	}
}
