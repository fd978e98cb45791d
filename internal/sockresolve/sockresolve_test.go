package sockresolve

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"

	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/revdns"
	"github.com/sockpipe/sockpipe/internal/revdns/dnstest"
)

// sock returns a socket record line to a remote address.
func sock(ip string, port int) string {
	family := "ipv4"
	if strings.Contains(ip, ":") {
		family = "ipv6"
	}
	return fmt.Sprintf(`{"type":"socket","time":"2026-11-26T05:00:00Z","family":%q,"transport":"tcp","state":"established",`+
		`"local":{"ip":"10.0.0.1","port":40000},"remote":{"ip":%q,"port":%d},"direction":"egress","inode":1}`, family, ip, port)
}

// remote is what a test looks at in an output line.
type remote struct {
	IP, Host, ETLD, Error string
	Raw                   string // the whole line, for lines that are not enriched
}

func parseOut(t *testing.T, out string) []remote {
	t.Helper()
	var got []remote
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		r, err := codec.Decode([]byte(line))
		if err != nil {
			t.Fatalf("output line %q: %v", line, err)
		}
		if r.Type != "socket" || r.Remote.Port == 0 {
			got = append(got, remote{Raw: line})
			continue
		}
		got = append(got, remote{IP: r.Remote.IP, Host: r.Remote.Host, ETLD: r.Remote.ETLDPlusOne, Error: r.Remote.HostError})
	}
	return got
}

func run(t *testing.T, args []string, input string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	err = Run(context.Background(), args, strings.NewReader(input), &o, &e)
	return o.String(), e.String(), err
}

func TestRun(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t)
	srv.Set("192.0.2.1", dnstest.Answer{Names: []string{"www.example.com."}})
	srv.Set("192.0.2.2", dnstest.Answer{Names: []string{"localhost."}})
	srv.Set("192.0.2.3", dnstest.NX)
	srv.Set("192.0.2.4", dnstest.Answer{})
	srv.Set("192.0.2.5", dnstest.Answer{Rcode: dns.RcodeRefused})
	srv.Set("192.0.2.6", dnstest.Answer{Rcode: dns.RcodeServerFailure})
	srv.Set("192.0.2.7", dnstest.Answer{Drop: true})
	srv.Set("192.0.2.8", dnstest.Answer{Names: []string{`x\010\013y.example.com.`}})
	srv.Set("2001:db8::1", dnstest.Answer{Names: []string{"v6.example.co.uk."}})

	listener := `{"type":"socket","time":"2026-11-26T05:00:00Z","family":"ipv4","transport":"tcp","state":"listening","local":{"ip":"0.0.0.0","port":22},"remote":{"ip":"0.0.0.0","port":0,"x":1},"direction":"listening","inode":2}`
	other := `{"type":"custom","anything":[1,2,3]}`
	snapshot := `{"type":"snapshot","time":"2026-11-26T05:00:00Z","schema":1,"sockets":12,"duration_ns":1000}`
	stale := strings.Replace(sock("192.0.2.3", 443), `"port":443}`, `"port":443,"host":"stale.example.","etld_plus_one":"example."}`, 1)
	input := strings.Join([]string{
		sock("192.0.2.1", 443),
		listener,
		sock("192.0.2.2", 80),
		"this is not json",
		sock("192.0.2.3", 443),
		other,
		sock("192.0.2.4", 443),
		sock("192.0.2.5", 443),
		sock("192.0.2.6", 443),
		sock("192.0.2.7", 443),
		sock("192.0.2.8", 443),
		sock("2001:db8::1", 443),
		sock("::ffff:192.0.2.1", 443),
		stale,
		snapshot,
	}, "\n") + "\n"
	stdout, stderr, err := run(t, []string{"--server", srv.Addr, "--timeout", "300ms"}, input)
	if err != nil {
		t.Fatal(err)
	}
	want := []remote{
		{IP: "192.0.2.1", Host: "www.example.com.", ETLD: "example.com."},
		{Raw: listener},
		{IP: "192.0.2.2", Host: "localhost."},
		{IP: "192.0.2.3", Error: "no PTR record (NXDOMAIN)"},
		{Raw: other},
		{IP: "192.0.2.4", Error: "empty dns response"},
		{IP: "192.0.2.5", Error: "server refused the query (REFUSED)"},
		{IP: "192.0.2.6", Error: "server failure (SERVFAIL)"},
		{IP: "192.0.2.7", Error: "timed out after 300ms"},
		{IP: "192.0.2.8", Error: "invalid host name in answer: escaped character in label 1"},
		{IP: "2001:db8::1", Host: "v6.example.co.uk.", ETLD: "example.co.uk."},
		{IP: "::ffff:192.0.2.1", Host: "www.example.com.", ETLD: "example.com."},
		{IP: "192.0.2.3", Error: "no PTR record (NXDOMAIN)"},
		{Raw: snapshot},
	}
	if diff := cmp.Diff(want, parseOut(t, stdout)); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
	if want := "sockresolve: line 4: not a JSON object: \"this is not json\" (skipped)"; !strings.HasPrefix(stderr, want) || strings.Count(stderr, "\n") != 1 {
		t.Errorf("stderr = %q, want one line starting with %q", stderr, want)
	}
	if n := srv.Queries("192.0.2.1"); n != 1 {
		t.Errorf("%d queries for 192.0.2.1, want 1 (the mapped address shares it)", n)
	}
	if n := srv.Queries("192.0.2.3"); n != 1 {
		t.Errorf("%d queries for 192.0.2.3, want 1 (the failure is cached)", n)
	}
}

// timedWriter notes when each line is written.
type timedWriter struct {
	mu    sync.Mutex
	start time.Time
	buf   bytes.Buffer
	at    []time.Duration
}

func (w *timedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := time.Since(w.start)
	for range bytes.Count(p, []byte("\n")) {
		w.at = append(w.at, d)
	}
	return w.buf.Write(p)
}

// TestOrder interleaves fast addresses, slow ones (answered after 600 ms)
// and silent ones (never answered, 800 ms timeout): the output keeps the
// input order, records wait only for their own lookup or the ones before
// them, and nothing waits longer than the timeout.
func TestOrder(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t)
	var want []remote
	var lines []string
	kinds := []string{"fast", "fast", "slow", "fast", "silent", "fast", "slow", "silent", "fast", "fast"}
	for i, kind := range kinds {
		ip := fmt.Sprintf("192.0.2.%d", i+1)
		switch kind {
		case "fast":
			srv.Set(ip, dnstest.Answer{Names: []string{fmt.Sprintf("fast%d.example.com.", i)}})
			want = append(want, remote{IP: ip, Host: fmt.Sprintf("fast%d.example.com.", i), ETLD: "example.com."})
		case "slow":
			srv.Set(ip, dnstest.Answer{Names: []string{fmt.Sprintf("slow%d.example.com.", i)}, Delay: 600 * time.Millisecond})
			want = append(want, remote{IP: ip, Host: fmt.Sprintf("slow%d.example.com.", i), ETLD: "example.com."})
		case "silent":
			srv.Set(ip, dnstest.Answer{Drop: true})
			want = append(want, remote{IP: ip, Error: "timed out after 800ms"})
		}
		lines = append(lines, sock(ip, 443))
	}
	// A second round for the same addresses: answered from the caches,
	// behind the first round.
	want = append(want, want...)
	lines = append(lines, lines...)

	w := &timedWriter{start: time.Now()}
	var stderr bytes.Buffer
	err := Run(context.Background(), []string{"--server", srv.Addr, "--timeout", "800ms"}, strings.NewReader(strings.Join(lines, "\n")), w, &stderr)
	total := time.Since(w.start)
	if err != nil {
		t.Fatal(err, stderr.String())
	}
	if diff := cmp.Diff(want, parseOut(t, w.buf.String())); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
	t.Logf("first two records out after %s, all %d after %s", w.at[1], len(w.at), total)
	// The first two fast records do not wait for the slow one behind them.
	if w.at[1] > 500*time.Millisecond {
		t.Errorf("the first fast records came out after %s", w.at[1])
	}
	// Everything is bounded by one timeout (800 ms), not by the sum of
	// the slow and silent lookups (600+800+600+800 ms).
	if total > 1800*time.Millisecond {
		t.Errorf("took %s, want about 800ms", total)
	}
	if n := srv.Total(); n != len(kinds) {
		t.Errorf("%d queries, want %d", n, len(kinds))
	}
}

// TestOneQueryForConcurrentRecords sends many records for one slow
// address: they share one lookup.
func TestOneQueryForConcurrentRecords(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t)
	srv.Set("198.51.100.7", dnstest.Answer{Names: []string{"busy.example.net."}, Delay: 200 * time.Millisecond})
	var in strings.Builder
	for range 500 {
		in.WriteString(sock("198.51.100.7", 443) + "\n")
	}
	stdout, stderr, err := run(t, []string{"--server", srv.Addr, "--stats"}, in.String())
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range parseOut(t, stdout) {
		if r.Host != "busy.example.net." {
			t.Fatalf("record %d: %+v", i, r)
		}
	}
	if n := srv.Queries("198.51.100.7"); n != 1 {
		t.Errorf("%d queries, want 1", n)
	}
	if !strings.Contains(stderr, "queries=1 ") {
		t.Errorf("stats: %q", stderr)
	}
}

// TestMaxPending runs with a queue of one record.
func TestMaxPending(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t)
	srv.SetDefault(func(ip netip.Addr) dnstest.Answer {
		return dnstest.Answer{Names: []string{"h" + strings.ReplaceAll(ip.String(), ".", "-") + ".example."}, Delay: 5 * time.Millisecond}
	})
	var in strings.Builder
	var want []remote
	for i := range 50 {
		ip := fmt.Sprintf("10.9.0.%d", i%10)
		in.WriteString(sock(ip, 443) + "\n")
		want = append(want, remote{IP: ip, Host: "h" + strings.ReplaceAll(ip, ".", "-") + ".example.", ETLD: "h" + strings.ReplaceAll(ip, ".", "-") + ".example."})
	}
	stdout, _, err := run(t, []string{"--server", srv.Addr, "--max-pending", "1"}, in.String())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, parseOut(t, stdout)); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
}

func TestCacheFile(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t)
	srv.Set("192.0.2.1", dnstest.Answer{Names: []string{"a.example.com."}})
	srv.Set("192.0.2.2", dnstest.NX)
	cache := filepath.Join(t.TempDir(), "resolve.cache")
	input := sock("192.0.2.1", 443) + "\n" + sock("192.0.2.2", 443) + "\n"
	args := []string{"--server", srv.Addr, "--cache", cache}
	want := []remote{
		{IP: "192.0.2.1", Host: "a.example.com.", ETLD: "example.com."},
		{IP: "192.0.2.2", Error: "no PTR record (NXDOMAIN)"},
	}
	for i := range 3 {
		stdout, stderr, err := run(t, args, input)
		if err != nil || stderr != "" {
			t.Fatalf("run %d: %v %s", i, err, stderr)
		}
		if diff := cmp.Diff(want, parseOut(t, stdout)); diff != "" {
			t.Errorf("run %d: output (-want +got):\n%s", i, diff)
		}
	}
	if n := srv.Total(); n != 2 {
		t.Errorf("%d queries in three runs, want 2", n)
	}
	if fi, err := os.Stat(cache); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("cache file: %v %v", fi, err)
	}

	// A damaged file is reported, ignored, and replaced.
	if err := os.WriteFile(cache, []byte(`{"format":"sockresolve-cache","version":1,"success":[{"ip":"192.0.2.1","host":"bad host.","expires":"2999-01-01T00:00:00Z"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err := run(t, args, input)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, parseOut(t, stdout)); diff != "" {
		t.Errorf("after damage: output (-want +got):\n%s", diff)
	}
	if !strings.Contains(stderr, "damaged cache file: success entry 1: bad host (ignored") {
		t.Errorf("stderr = %q", stderr)
	}
	if n := srv.Total(); n != 4 {
		t.Errorf("%d queries, want 4", n)
	}
	if _, stderr, _ := run(t, args, input); stderr != "" {
		t.Errorf("the damaged file was not replaced: %s", stderr)
	}

	// Unwritable: the records still come out, then exit 1.
	args = []string{"--server", srv.Addr, "--cache", filepath.Join(t.TempDir(), "missing", "dir", "cache")}
	stdout, _, err = run(t, args, input)
	if err == nil || cli.Code("sockresolve", err, io.Discard) != cli.ExitFailure {
		t.Errorf("unwritable cache: err = %v", err)
	}
	if diff := cmp.Diff(want, parseOut(t, stdout)); diff != "" {
		t.Errorf("unwritable cache: output (-want +got):\n%s", diff)
	}
}

func TestFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--timeout", "0s"},
		{"--workers", "0"},
		{"--success-ttl", "-1s"},
		{"--cache-size", "-1"},
		{"--max-pending", "0"},
		{"--server", "1.2.3.4:99999"},
		{"--server", ":53"},
		{"--nope"},
		{"extra"},
	} {
		_, _, err := run(t, args, "")
		if code := cli.Code("sockresolve", err, io.Discard); code != cli.ExitUsage {
			t.Errorf("%q: exit %d (%v), want %d", args, code, err, cli.ExitUsage)
		}
	}
	for in, want := range map[string]string{
		"127.0.0.1:5353": "127.0.0.1:5353",
		"127.0.0.1":      "127.0.0.1:53",
		"::1":            "[::1]:53",
		"[::1]:5353":     "[::1]:5353",
		"dns.example":    "dns.example:53",
	} {
		if got, err := serverAddr(in); got != want || err != nil {
			t.Errorf("serverAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// TestFlushWhileWaiting checks that a record whose lookup is over is
// written before sockresolve waits for more input.
func TestFlushWhileWaiting(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t)
	srv.Set("192.0.2.1", dnstest.Answer{Names: []string{"live.example.com."}})
	pr, pw := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- Run(context.Background(), []string{"--server", srv.Addr}, pr, outW, io.Discard)
		outW.Close()
	}()
	lines := bufio.NewReader(outR)
	for i := range 3 {
		if _, err := io.WriteString(pw, sock("192.0.2.1", 443)+"\n"); err != nil {
			t.Fatal(err)
		}
		got := make(chan string, 1)
		go func() {
			l, _ := lines.ReadString('\n')
			got <- l
		}()
		select {
		case l := <-got:
			if !strings.Contains(l, `"host":"live.example.com."`) {
				t.Fatalf("line %d: %s", i, l)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("line %d was held back while input was idle", i)
		}
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestCancel stops sockresolve (as SIGINT does) while a lookup is running:
// the record that was read still comes out, with its name, and the cache
// is saved.
func TestCancel(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t)
	srv.Set("192.0.2.1", dnstest.Answer{Names: []string{"late.example.com."}, Delay: 200 * time.Millisecond})
	cache := filepath.Join(t.TempDir(), "cache")
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	defer pw.Close()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, []string{"--server", srv.Addr, "--cache", cache}, pr, &out, io.Discard)
	}()
	io.WriteString(pw, sock("192.0.2.1", 443)+"\n")
	for i := 0; srv.Queries("192.0.2.1") == 0; i++ {
		if i > 500 {
			t.Fatal("no query")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != context.Canceled {
			t.Errorf("Run = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	want := []remote{{IP: "192.0.2.1", Host: "late.example.com.", ETLD: "example.com."}}
	if diff := cmp.Diff(want, parseOut(t, out.String())); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
	if data, err := os.ReadFile(cache); err != nil || !strings.Contains(string(data), "late.example.com.") {
		t.Errorf("cache file: %v %s", err, data)
	}
}

// TestCacheSavedAtSnapshots checks that a long-running sockresolve saves
// its cache at snapshot records, not only at the end.
func TestCacheSavedAtSnapshots(t *testing.T) {
	t.Parallel()
	srv := dnstest.Start(t)
	srv.Set("192.0.2.1", dnstest.Answer{Names: []string{"kept.example.com."}})
	cache := filepath.Join(t.TempDir(), "cache")
	// The clock stands still but for one step, past saveEvery, before
	// the snapshot record.
	t0 := time.Date(2026, 11, 26, 5, 0, 0, 0, time.UTC)
	var elapsed atomic.Int64
	env := Env{
		Lookuper: &revdns.Client{Server: srv.Addr},
		Now:      func() time.Time { return t0.Add(time.Duration(elapsed.Load())) },
	}
	args := []string{"--server", srv.Addr, "--timeout", "1s", "--workers", "2", "--success-ttl", "1h", "--failure-ttl", "1h",
		"--cache-size", "10", "--cache", cache, "--max-pending", "10"}
	pr, pw := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- env.Run(context.Background(), args, pr, outW, io.Discard)
		outW.Close()
	}()
	out := bufio.NewReader(outR)
	io.WriteString(pw, sock("192.0.2.1", 443)+"\n")
	// Once the record is out, its name is in the cache.
	if l, err := out.ReadString('\n'); err != nil || !strings.Contains(l, "kept.example.com.") {
		t.Fatalf("%q %v", l, err)
	}
	if data, err := os.ReadFile(cache); err == nil {
		t.Fatalf("cache saved before the snapshot record: %q", data)
	}
	elapsed.Store(int64(saveEvery))
	io.WriteString(pw, `{"type":"snapshot","time":"2026-11-26T05:00:00Z","schema":1,"sockets":1,"duration_ns":1}`+"\n")
	var data []byte
	for i := 0; !bytes.Contains(data, []byte("kept.example.com.")); i++ {
		if i > 500 {
			t.Fatalf("cache not saved at the snapshot: %q", data)
		}
		time.Sleep(5 * time.Millisecond)
		data, _ = os.ReadFile(cache)
	}
	go io.Copy(io.Discard, out)
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
