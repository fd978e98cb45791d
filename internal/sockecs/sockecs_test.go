package sockecs

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/ecs/ecscheck"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// t0 is the time of the first record of testdata/input.ndjson.
var t0 = time.Date(2026, 11, 26, 4, 30, 0, 123456789, time.UTC)

// inputDocs is how many documents testdata/input.ndjson makes: one per
// good socket record.
const inputDocs = 9

// fixedEnv builds every document 1.5 ms after the last record's time, on
// host "web-1".
var fixedEnv = Env{
	Now:      func() time.Time { return t0.Add(2*time.Second + 1500*time.Microsecond) },
	Hostname: func() (string, error) { return "web-1", nil },
	Version:  func() string { return "1.2.3" },
}

func run(t testing.TB, env Env, args []string, stdin []byte) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	err = env.Run(context.Background(), args, bytes.NewReader(stdin), &out, &errb)
	return out.String(), errb.String(), err
}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if diff := cmp.Diff(string(readFile(t, path)), got); diff != "" {
		t.Errorf("%s (-want +got):\n%s", path, diff)
	}
}

func schema(t testing.TB) *ecscheck.Schema {
	t.Helper()
	dir := filepath.Join("..", "..", "testdata", "ecs")
	s, err := ecscheck.Load(filepath.Join(dir, "ecs_flat.yml"), filepath.Join(dir, "custom_fields.yml"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

const wantStderr = `sockecs: line 6: not a JSON object: "not json at all" (skipped)
sockecs: line 7: socket record: family "ipx" is neither "ipv4" nor "ipv6" (skipped)
sockecs: line 11: local.ip: "10.0.0.300" is not an IP address (skipped)
`

func TestGolden(t *testing.T) {
	in := readFile(t, "testdata/input.ndjson")
	tests := []struct {
		golden string
		args   []string
	}{
		{"default.golden", nil},
		{"strict.golden", []string{"--strict-ecs"}},
		{"bulk.golden", []string{"--bulk", "--name", "edge-agent"}},
		{"bulk-strict.golden", []string{"--bulk", "--strict-ecs", "--index", "sockets", "--hostname", "db-1"}},
	}
	s := schema(t)
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			stdout, stderr, err := run(t, fixedEnv, tt.args, in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(wantStderr, stderr); diff != "" {
				t.Errorf("stderr (-want +got):\n%s", diff)
			}
			golden(t, tt.golden, stdout)
			lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			if strings.Contains(tt.golden, "bulk") {
				var docs []string
				for i := 1; i < len(lines); i += 2 {
					docs = append(docs, lines[i])
				}
				lines = docs
			}
			if len(lines) != inputDocs {
				t.Errorf("%d documents, want %d (one per good socket record)", len(lines), inputDocs)
			}
			if !strings.Contains(tt.golden, "strict") {
				return
			}
			for _, doc := range lines {
				for _, f := range s.Check([]byte(doc)) {
					t.Errorf("%s\nin %s", f, doc)
				}
			}
		})
	}
}

func TestRunErrors(t *testing.T) {
	in := readFile(t, "testdata/input.ndjson")
	tests := []struct {
		name       string
		args       []string
		stdin      []byte
		wantCode   int
		wantStdout string
		wantErr    string
	}{
		{name: "index without bulk", args: []string{"--index", "x"}, wantCode: cli.ExitUsage, wantErr: "--index needs --bulk"},
		{name: "empty index", args: []string{"--bulk", "--index", ""}, wantCode: cli.ExitUsage, wantErr: "--index must not be empty"},
		{name: "argument", args: []string{"extra"}, wantCode: cli.ExitUsage, wantErr: `unexpected argument "extra"`},
		{name: "bad flag", args: []string{"--nope"}, wantCode: cli.ExitUsage, wantErr: "flag provided but not defined: -nope"},
		{name: "strict stops at a bad line", args: []string{"--strict"}, stdin: in, wantCode: cli.ExitFailure, wantErr: "line 6: not a JSON object"},
		{name: "strict stops at a bad address", args: []string{"--strict"}, stdin: []byte(`{"type":"socket","time":"2026-11-26T04:30:02Z","family":"ipv4","local":{"ip":"1.2.3","port":1},"remote":{"ip":"1.2.3.4","port":2}}` + "\n"), wantCode: cli.ExitFailure, wantErr: `sockecs: line 1: local.ip: "1.2.3" is not an IP address`},
		{name: "empty input", stdin: nil, wantCode: cli.ExitOK},
		{name: "negative period", args: []string{"--period", "-1s"}, wantCode: cli.ExitUsage, wantErr: "--period must not be negative"},
		{name: "only snapshots", stdin: []byte(`{"type":"snapshot","time":"2026-11-26T04:30:00Z","sockets":0}` + "\n"), wantCode: cli.ExitOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, _, err := run(t, fixedEnv, tt.args, tt.stdin)
			var errb bytes.Buffer
			if code := cli.Code("sockecs", err, &errb); code != tt.wantCode {
				t.Errorf("exit code %d, want %d (%v)", code, tt.wantCode, err)
			}
			if !strings.Contains(errb.String(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", errb.String(), tt.wantErr)
			}
			if tt.name == "strict stops at a bad line" {
				// What came before the bad line was written.
				if n := strings.Count(stdout, "\n"); n != 3 {
					t.Errorf("%d documents before the bad line, want 3", n)
				}
			} else if stdout != tt.wantStdout {
				t.Errorf("stdout %q, want %q", stdout, tt.wantStdout)
			}
		})
	}
}

func TestHostnameFailure(t *testing.T) {
	env := fixedEnv
	env.Hostname = func() (string, error) { return "", errors.New("uname: no") }
	in := readFile(t, "testdata/input.ndjson")
	stdout, stderr, err := run(t, env, nil, in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "sockecs: host name: uname: no (agent.hostname and host.name left out)") {
		t.Errorf("stderr: %s", stderr)
	}
	if strings.Contains(stdout, `"agent":{"hostname"`) || strings.Contains(stdout, `"agent":{"name"`) || strings.Contains(stdout, `"host":{`) || strings.Count(stdout, "\n") != inputDocs {
		t.Errorf("stdout:\n%s", stdout)
	}
}

// A closed stdout ends the program quietly, as a failure that cli.Code
// maps to 0.
type closedWriter struct{}

func (closedWriter) Write([]byte) (int, error) { return 0, os.ErrClosed }

func TestClosedStdout(t *testing.T) {
	in := readFile(t, "testdata/input.ndjson")
	err := fixedEnv.Run(context.Background(), nil, bytes.NewReader(in), closedWriter{}, &bytes.Buffer{})
	if !cli.IsClosedPipe(err) {
		t.Fatalf("err = %v, want a closed pipe", err)
	}
	var errb bytes.Buffer
	if code := cli.Code("sockecs", err, &errb); code != 0 || errb.Len() != 0 {
		t.Errorf("code %d, stderr %q", code, errb.String())
	}
}

// Cancelling the context (SIGINT, SIGTERM) flushes what was written and
// ends with the context's error, which cli.Code maps to 0.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestCancel(t *testing.T) {
	in := readFile(t, "testdata/input.ndjson")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pr.Close(); pw.Close() })
	first, _, _ := bytes.Cut(in, []byte("\n"))
	if _, err := pw.Write(append(first, '\n')); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out lockedBuffer
	done := make(chan error, 1)
	// A stream without snapshot records: the record waits for one (for
	// its period) until the input has been quiet for env.hold.
	env := fixedEnv
	env.hold = 10 * time.Millisecond
	go func() { done <- env.Run(ctx, nil, pr, &out, &bytes.Buffer{}) }()
	// The document is flushed once the input has paused that long.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "\n") {
		if time.Now().After(deadline) {
			t.Fatal("the document was not flushed while the input paused")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not end after cancel")
	}
}

// TestAgentAndPeriod checks agent.type, agent.version and metricset.period:
// the period is what the snapshot record after a dump's sockets says
// (sockdump --interval), --period overrides it, and a one-shot dump, or a
// stream without snapshot records, has none.
func TestAgentAndPeriod(t *testing.T) {
	sock := func(sec, port int) string {
		return fmt.Sprintf(`{"type":"socket","time":"2026-11-26T04:30:%02dZ","family":"ipv4","transport":"tcp","state":"listening","local":{"ip":"0.0.0.0","port":%d},"remote":{"ip":"0.0.0.0","port":0},"direction":"listening"}`, sec, port) + "\n"
	}
	snap := func(sec int, interval string) string {
		return fmt.Sprintf(`{"type":"snapshot","time":"2026-11-26T04:30:%02dZ","schema":1,"sockets":2,"duration_ns":1%s}`, sec, interval) + "\n"
	}
	watch := sock(0, 1) + sock(0, 2) + snap(0, `,"interval_ns":10000000000`) + sock(10, 3) + snap(10, `,"interval_ns":10000000000`)
	tests := []struct {
		name  string
		args  []string
		in    string
		agent string
		want  []string // metricset per document
	}{
		{
			name:  "watch 10s: every document, the first dump's too",
			in:    watch,
			agent: `"agent":{"hostname":"web-1","name":"web-1","type":"sockpipe","version":"1.2.3"}`,
			want:  []string{`"metricset":{"name":"socket","period":10000}`, `"metricset":{"name":"socket","period":10000}`, `"metricset":{"name":"socket","period":10000}`},
		},
		{
			name:  "one-shot dump",
			args:  []string{"--agent-type", "metricbeat"},
			in:    sock(0, 1) + snap(0, ""),
			agent: `"agent":{"hostname":"web-1","name":"web-1","type":"metricbeat","version":"1.2.3"}`,
			want:  []string{`"metricset":{"name":"socket"}`},
		},
		{
			name:  "--period overrides the snapshot records",
			args:  []string{"--period", "1m", "--agent-type", ""},
			in:    watch,
			agent: `"agent":{"hostname":"web-1","name":"web-1","version":"1.2.3"}`,
			want:  []string{`"metricset":{"name":"socket","period":60000}`, `"metricset":{"name":"socket","period":60000}`, `"metricset":{"name":"socket","period":60000}`},
		},
		{
			name:  "no snapshot records",
			in:    sock(0, 1) + sock(1, 2),
			agent: `"agent":{"hostname":"web-1","name":"web-1","type":"sockpipe","version":"1.2.3"}`,
			want:  []string{`"metricset":{"name":"socket"}`, `"metricset":{"name":"socket"}`},
		},
		{
			name:  "the period changes at a snapshot record",
			in:    sock(0, 1) + snap(0, `,"interval_ns":1000000000`) + sock(1, 2) + snap(1, `,"interval_ns":2500000000`),
			agent: `"agent":{"hostname":"web-1","name":"web-1","type":"sockpipe","version":"1.2.3"}`,
			want:  []string{`"metricset":{"name":"socket","period":1000}`, `"metricset":{"name":"socket","period":2500}`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, err := run(t, fixedEnv, tt.args, []byte(tt.in))
			if err != nil || stderr != "" {
				t.Fatalf("err %v, stderr %s", err, stderr)
			}
			docs := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
			var got []string
			for _, d := range docs {
				if !strings.Contains(d, tt.agent) {
					t.Errorf("no %s in %s", tt.agent, d)
				}
				i := strings.Index(d, `"metricset":`)
				j := strings.Index(d[i:], "}")
				got = append(got, d[i:i+j+1])
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("metricset (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHoldBound checks that a first dump larger than maxHeld is not held
// whole for its period: the maxHeld held documents go without it, all in
// input order, and the next dump's carry the period that the snapshot
// record said.
func TestHoldBound(t *testing.T) {
	var in strings.Builder
	const n = maxHeld + 10
	for i := range n {
		fmt.Fprintf(&in, `{"type":"socket","time":"2026-11-26T04:30:00Z","family":"ipv4","transport":"tcp","state":"established","local":{"ip":"10.0.0.1","port":%d},"remote":{"ip":"10.0.0.2","port":443},"direction":"egress"}`+"\n", 1024+i%60000)
	}
	in.WriteString(`{"type":"snapshot","time":"2026-11-26T04:30:00Z","schema":1,"sockets":1,"duration_ns":1,"interval_ns":10000000000}` + "\n")
	in.WriteString(`{"type":"socket","time":"2026-11-26T04:30:10Z","family":"ipv4","transport":"tcp","state":"established","local":{"ip":"10.0.0.1","port":1},"remote":{"ip":"10.0.0.2","port":443},"direction":"egress"}` + "\n")
	stdout, stderr, err := run(t, fixedEnv, nil, []byte(in.String()))
	if err != nil || stderr != "" {
		t.Fatalf("err %v, stderr %s", err, stderr)
	}
	docs := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(docs) != n+1 {
		t.Fatalf("%d documents, want %d", len(docs), n+1)
	}
	for i, d := range docs[:n] {
		if i < maxHeld && !strings.Contains(d, `"metricset":{"name":"socket"}`) {
			t.Fatalf("document %d has a period: %.300s", i, d)
		}
		if want := fmt.Sprintf(`"source":{"ip":"10.0.0.1","port":%d}`, 1024+i%60000); !strings.Contains(d, want) {
			t.Fatalf("document %d out of order: no %s in %.300s", i, want, d)
		}
	}
	if !strings.Contains(docs[n], `"metricset":{"name":"socket","period":10000}`) {
		t.Errorf("the next dump's document has no period: %.300s", docs[n])
	}
}
