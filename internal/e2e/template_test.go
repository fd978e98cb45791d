package e2e

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/ecs/indextemplate"
	"github.com/sockpipe/sockpipe/internal/revdns/dnstest"
)

// TestIndexTemplateProof proves the index template users install
// (examples/shipping/index-template.json) against the documents the real
// pipeline writes: examples/watch with the built programs, streaming
// every 200 ms with --closed --udp --bulk --reverse-lookup, by default
// and with --strict-ecs, while on loopback a listener (IPv4 and IPv6)
// takes a connection that lives across dumps and then closes, and
// connections that live for a moment between two dumps (short-lived,
// known from the kernel's destroy notifications, with its counters), an
// unconnected and a connected UDP socket stand, and the DNS server
// answers one address's reverse lookup and refuses the other's. Every
// field of every document the run writes (the host's other sockets'
// too) must have a mapping in the template whose type takes its value
// (indextemplate.Checker), every action line must be a create to the
// data stream the template's patterns match, and the template must
// have the shape PUT _index_template/NAME takes.
func TestIndexTemplateProof(t *testing.T) {
	tr := setup(t)
	b, err := os.ReadFile(filepath.Join(repoRoot, indextemplate.Path))
	if err != nil {
		t.Fatal(err)
	}
	const dataStream = "metrics-system.socket-default"
	tpl, err := indextemplate.Validate(b, dataStream)
	if err != nil {
		t.Fatalf("%s: %v", indextemplate.Path, err)
	}
	for _, mode := range []string{"default", "--strict-ecs"} {
		t.Run(mode, func(t *testing.T) {
			var args []string
			if mode != "default" {
				args = append(args, mode)
			}
			lines := proofRun(t, tr, args)
			checkAgainstTemplate(t, tpl, dataStream, lines, mode != "default")
		})
	}
}

// proofRun runs watch while the test's sockets come and go, and returns
// every line it wrote.
func proofRun(t *testing.T, tr tree, args []string) [][]byte {
	uid, gid := nobody(t)
	dns := dnstest.Start(t)
	dns.Set(serverIP, dnstest.Answer{Names: []string{serverName}})
	dns.Set(clientIP, dnstest.NX)
	server := startHelper(t, tr, "server", nil)
	client := startHelper(t, tr, "client", &syscall.Credential{Uid: uid, Gid: gid})
	ln4 := server.do("listen " + serverIP)
	ln6 := server.do("listen ::1")

	// UDP: an unconnected socket (a listener) and a client connected to
	// it, in this process.
	udpSrv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(serverIP)})
	if err != nil {
		t.Fatal(err)
	}
	defer udpSrv.Close()
	udpCli, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP(clientIP)}, udpSrv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer udpCli.Close()

	outPath := filepath.Join(t.TempDir(), "out.ndjson")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var stderr bytes.Buffer
	cmd := watchCmd(t, tr, []string{"WATCH_DNS_SERVER=" + dns.Addr},
		append([]string{"200ms", "--closed", "--udp", "--bulk", "--reverse-lookup"}, args...)...)
	cmd.Stdout, cmd.Stderr = out, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	tl := openTail(t, outPath, serverIP, clientIP, `"::1"`)
	tl.waitFor(t, 30*time.Second, "documents of the listeners", set(ln4[1], ln6[1]), func(s []sock) bool { return len(s) >= 2 })

	// A connection that lives across dumps, on each family.
	c4 := connect(server, ln4[0], ln4[1], client, clientIP)
	c6 := connect(server, ln6[0], ln6[1], client, "::1")
	locals := set(c4.Client, c4.Server, c6.Client, c6.Server)
	tl.waitFor(t, 30*time.Second, "opened documents of both connections", locals, func(s []sock) bool { return countAction(s, "socket_opened") >= 4 })
	// Connections born and gone between two dumps: the first is closed
	// by the client, the second by the server (either end that resets
	// is wiped by the kernel; its peer is reported).
	for _, clientCloses := range []bool{true, false} {
		c := connect(server, ln4[0], ln4[1], client, clientIP)
		if clientCloses {
			client.do("close " + c.ClientID)
			server.do("close " + c.ServerID)
		} else {
			server.do("close " + c.ServerID)
			client.do("close " + c.ClientID)
		}
	}
	waitUntil(t, 30*time.Second, "document of a short-lived connection", func() bool {
		tl.read()
		for _, l := range tl.lines {
			if bytes.Contains(l, []byte(`"short_lived":true`)) {
				return true
			}
		}
		return false
	})
	client.do("close " + c4.ClientID)
	server.do("close " + c4.ServerID)
	server.do("close " + c6.ServerID)
	client.do("close " + c6.ClientID)
	tl.waitFor(t, 30*time.Second, "closed documents of both connections", locals, func(s []sock) bool { return countAction(s, "socket_closed") >= 2 })

	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case err = <-done:
		stopped = true
	case <-time.After(30 * time.Second):
		t.Fatalf("watch still runs 30 s after SIGTERM; stderr:\n%s", stderr.String())
	}
	if code := exitCode(err); code != 0 {
		t.Errorf("watch exit status %d, want 0; stderr:\n%s", code, stderr.String())
	}
	all, err := os.ReadFile(outPath)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(all, []byte("\n")), []byte("\n"))
}

func countAction(s []sock, action string) int {
	n := 0
	for _, x := range s {
		if x.Action == action {
			n++
		}
	}
	return n
}

// checkAgainstTemplate checks a _bulk body against the template, and
// that the run gave every kind of document the test is after.
func checkAgainstTemplate(t *testing.T, tpl *indextemplate.Template, dataStream string, lines [][]byte, strict bool) {
	t.Helper()
	if len(lines) == 0 || len(lines)%2 != 0 {
		t.Fatalf("%d lines, want action and document pairs", len(lines))
	}
	c := indextemplate.NewChecker(tpl)
	// What the documents must show between them, by a piece of their JSON.
	want := []string{`"action":"existing_socket"`, `"action":"socket_opened"`, `"action":"socket_closed"`,
		`"short_lived":true`, `"tcp_info":{`, `"transport":"udp"`, `"type":"ipv6"`, `"process":{`, `"user":{`,
		`"host":"` + serverName + `"`, `"host_error":`, `"start":"`, `"data_stream":{`}
	if strict {
		want = append(want, `"listening":true`, `"client":{`, `"server":{`, `"related":{`, `"error":{"code"`)
	} else {
		want = append(want, `"direction":"listening"`, `"hostname":`)
	}
	seen := map[string]bool{}
	fields := map[string]bool{}
	for i := 0; i+1 < len(lines); i += 2 {
		var action struct {
			Create *struct {
				Index string `json:"_index"`
			} `json:"create"`
		}
		if err := codec.Unmarshal(lines[i], &action); err != nil || action.Create == nil || action.Create.Index != dataStream {
			t.Fatalf("line %d: %q is not a create action to %s", i+1, lines[i], dataStream)
		}
		doc := lines[i+1]
		for _, f := range c.Check(doc) {
			t.Errorf("%s\nin %s", f, doc)
		}
		for _, w := range want {
			if bytes.Contains(doc, []byte(w)) {
				seen[w] = true
			}
		}
		collectFields(t, doc, fields)
	}
	var missing []string
	for _, w := range want {
		if !seen[w] {
			missing = append(missing, w)
		}
	}
	if len(missing) > 0 {
		t.Errorf("no document with %s", strings.Join(missing, ", "))
	}
	names := make([]string, 0, len(fields))
	for f := range fields {
		names = append(names, f)
	}
	sort.Strings(names)
	t.Logf("%d documents checked against the template; their fields: %s", len(lines)/2, strings.Join(names, " "))
}

// collectFields adds the dotted names of a document's leaves.
func collectFields(t *testing.T, doc []byte, into map[string]bool) {
	t.Helper()
	var m map[string]any
	if err := codec.Unmarshal(doc, &m); err != nil {
		t.Fatalf("bad document %q: %v", doc, err)
	}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				walk(prefix+k+".", sub)
				continue
			}
			into[prefix+k] = true
		}
	}
	walk("", m)
}
