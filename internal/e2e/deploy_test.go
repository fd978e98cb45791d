package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/ecs/indextemplate"
)

var examples = filepath.Join(repoRoot, "examples")

// unit is a parsed systemd unit file: section -> key -> values, in order.
type unit map[string]map[string][]string

// unitKeys are the keys that the example units may use, by section:
// systemd ignores an unknown key with only a warning, so a typo would
// silently drop a setting (a hardening option, a capability).
var unitKeys = map[string][]string{
	"Unit":    {"Description", "Documentation", "After", "Wants", "Requires"},
	"Install": {"WantedBy"},
	"Timer":   {"OnBootSec", "OnUnitActiveSec", "OnCalendar", "AccuracySec", "Persistent", "Unit"},
	"Service": {
		"Type", "ExecStart", "Environment", "StateDirectory", "LogsDirectory", "UMask",
		"KillMode", "TimeoutStopSec", "TimeoutStartSec", "Restart", "RestartSec",
		"DynamicUser", "User", "Group", "AmbientCapabilities", "CapabilityBoundingSet",
		"NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateMounts",
		"PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
		"ProtectControlGroups", "ProtectClock", "ProtectHostname", "RestrictNamespaces",
		"RestrictAddressFamilies", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality",
		"MemoryDenyWriteExecute", "SystemCallArchitectures", "SystemCallFilter",
		"SystemCallErrorNumber", "ProtectProc", "ProcSubset", "PrivateNetwork", "PrivateUsers",
	},
}

// parseUnit reads a unit file as systemd does: sections, KEY=VALUE lines,
// comments starting with # or ;, a backslash at the end continuing a line.
func parseUnit(b []byte) (unit, error) {
	u := unit{}
	var sec string
	var cont string
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if cont != "" {
			line, cont = cont+" "+line, ""
		}
		if strings.HasSuffix(line, "\\") {
			cont = strings.TrimSuffix(line, "\\")
			continue
		}
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("line %d: bad section %q", i+1, line)
			}
			sec = line[1 : len(line)-1]
			if _, ok := unitKeys[sec]; !ok {
				return nil, fmt.Errorf("line %d: unknown section [%s]", i+1, sec)
			}
			if u[sec] == nil {
				u[sec] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return nil, fmt.Errorf("line %d: not KEY=VALUE: %q", i+1, line)
			}
			if sec == "" {
				return nil, fmt.Errorf("line %d: %q before any section", i+1, line)
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if !slices.Contains(unitKeys[sec], k) {
				return nil, fmt.Errorf("line %d: unknown key %s= in [%s]", i+1, k, sec)
			}
			u[sec][k] = append(u[sec][k], v)
		}
	}
	return u, nil
}

// last returns the value of a key as systemd takes it: the last one.
func (u unit) last(sec, key string) string {
	v := u[sec][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// words returns the space-separated words of every value of a list key.
func (u unit) words(sec, key string) []string {
	var w []string
	for _, v := range u[sec][key] {
		w = append(w, strings.Fields(v)...)
	}
	return w
}

// watchHelp is examples/watch --help: every option and variable that the
// examples use must be in it.
func watchHelp(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("sh", filepath.Join(examples, "watch"), "--help").Output()
	if err != nil {
		t.Fatalf("watch --help: %v", err)
	}
	return string(out)
}

var optionRE = regexp.MustCompile(`^--[a-z-]+$`)

// checkWatchArgs checks a command line of sockpipe-watch against its help.
func checkWatchArgs(t *testing.T, where string, args []string, help string) {
	t.Helper()
	for _, a := range args {
		if optionRE.MatchString(a) && !strings.Contains(help, a) {
			t.Errorf("%s: sockpipe-watch has no option %s", where, a)
		}
	}
}

// checkWatchEnv checks VAR=value words against watch's help.
func checkWatchEnv(t *testing.T, where string, words []string, help string) {
	t.Helper()
	for _, w := range words {
		k, _, ok := strings.Cut(w, "=")
		if !ok {
			t.Errorf("%s: %q is not VAR=value", where, w)
			continue
		}
		if !strings.Contains(help, k) {
			t.Errorf("%s: watch does not read %s", where, k)
		}
	}
}

// argAfter returns the word after flag in args.
func argAfter(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// TestSystemdUnits checks the example units: well formed (with
// systemd-analyze verify where it is installed), running examples/watch
// as an unprivileged user with exactly the capabilities that sockproc
// needs, /proc left visible, the state and documents where the units say,
// stopping by a signal to the script alone.
func TestSystemdUnits(t *testing.T) {
	help := watchHelp(t)
	dir := filepath.Join(examples, "systemd")
	units := map[string]unit{}
	for _, name := range []string{"sockpipe.service", "sockpipe-once.service", "sockpipe-once.timer"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		u, err := parseUnit(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		units[name] = u
	}

	for name, u := range units {
		if !strings.HasSuffix(name, ".service") {
			continue
		}
		t.Run(name, func(t *testing.T) {
			s := func(k string) string { return u.last("Service", k) }
			if s("DynamicUser") != "yes" && (s("User") == "" || s("User") == "root") {
				t.Errorf("runs as root: want DynamicUser=yes or a User= other than root")
			}
			want := []string{"CAP_DAC_READ_SEARCH", "CAP_SYS_PTRACE"}
			for _, k := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
				got := u.words("Service", k)
				slices.Sort(got)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("%s (-want +got):\n%s", k, diff)
				}
			}
			for k, want := range map[string]string{
				"NoNewPrivileges": "yes",
				"KillMode":        "mixed", // SIGTERM to the script alone
				"ProtectSystem":   "strict",
			} {
				if s(k) != want {
					t.Errorf("%s=%q, want %q", k, s(k), want)
				}
			}
			// sockproc reads /proc/PID/fd of every process and /proc/stat;
			// sockdump needs the host's network namespace.
			for k, bad := range map[string][]string{
				"ProtectProc":    {"invisible", "noaccess", "ptraceable"},
				"ProcSubset":     {"pid"},
				"PrivateNetwork": {"yes", "true", "1"},
				"PrivateUsers":   {"yes", "true", "1"},
			} {
				if slices.Contains(bad, s(k)) {
					t.Errorf("%s=%s hides what the pipeline needs", k, s(k))
				}
			}
			families := u.words("Service", "RestrictAddressFamilies")
			for _, f := range []string{"AF_NETLINK", "AF_INET", "AF_INET6", "AF_UNIX"} {
				if len(families) > 0 && !slices.Contains(families, f) {
					t.Errorf("RestrictAddressFamilies leaves out %s", f)
				}
			}

			exec := strings.Fields(s("ExecStart"))
			if len(exec) == 0 || exec[0] != "/usr/local/bin/sockpipe-watch" {
				t.Fatalf("ExecStart=%q does not run /usr/local/bin/sockpipe-watch", s("ExecStart"))
			}
			checkWatchArgs(t, "ExecStart", exec[1:], help)
			checkWatchEnv(t, "Environment", u.words("Service", "Environment"), help)
			if got, want := argAfter(exec, "--state-dir"), "/var/lib/"+s("StateDirectory"); got != want {
				t.Errorf("--state-dir %q, want %q (StateDirectory=%s)", got, want, s("StateDirectory"))
			}
			if got, want := filepath.Dir(argAfter(exec, "--output")), "/var/log/"+s("LogsDirectory"); got != want {
				t.Errorf("--output in %q, want in %q (LogsDirectory=%s)", got, want, s("LogsDirectory"))
			}
			once := slices.Contains(exec, "--once")
			switch name {
			case "sockpipe.service":
				if s("Type") != "simple" || once {
					t.Errorf("streaming service: Type=%s, --once %v; want simple, without --once", s("Type"), once)
				}
				if got := u.words("Install", "WantedBy"); !slices.Contains(got, "multi-user.target") {
					t.Errorf("WantedBy=%v, want multi-user.target", got)
				}
			case "sockpipe-once.service":
				if s("Type") != "oneshot" || !once {
					t.Errorf("cron-style service: Type=%s, --once %v; want oneshot, --once", s("Type"), once)
				}
			}
		})
	}

	timer := units["sockpipe-once.timer"]
	if got := timer.last("Timer", "Unit"); units[got] == nil {
		t.Errorf("sockpipe-once.timer: Unit=%q is not one of the example units", got)
	}
	if timer.last("Timer", "OnUnitActiveSec") == "" && timer.last("Timer", "OnCalendar") == "" {
		t.Errorf("sockpipe-once.timer: neither OnUnitActiveSec= nor OnCalendar=")
	}
	if got := timer.words("Install", "WantedBy"); !slices.Contains(got, "timers.target") {
		t.Errorf("sockpipe-once.timer: WantedBy=%v, want timers.target", got)
	}
	if units["sockpipe.service"].last("Service", "StateDirectory") == units["sockpipe-once.service"].last("Service", "StateDirectory") {
		t.Errorf("the streaming and the cron-style services share a StateDirectory (and sockdiff's lock)")
	}

	t.Run("systemd-analyze verify", func(t *testing.T) {
		analyze, err := exec.LookPath("systemd-analyze")
		if err != nil {
			t.Skip("systemd-analyze is not installed (the parser checks above still ran)")
		}
		// verify wants ExecStart's program to exist: point it at the script.
		watch, err := filepath.Abs(filepath.Join(examples, "watch"))
		if err != nil {
			t.Fatal(err)
		}
		tmp := t.TempDir()
		var files []string
		for name := range units {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			b = bytes.ReplaceAll(b, []byte("/usr/local/bin/sockpipe-watch"), []byte(watch))
			f := filepath.Join(tmp, name)
			if err := os.WriteFile(f, b, 0o644); err != nil {
				t.Fatal(err)
			}
			files = append(files, f)
		}
		// The drop-ins, where systemd looks for them beside the unit.
		if err := os.Mkdir(filepath.Join(tmp, "sockpipe.service.d"), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"all-netns.conf", "owners.conf"} {
			dropIn, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(tmp, "sockpipe.service.d", name), dropIn, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		slices.Sort(files)
		out, err := exec.Command(analyze, append([]string{"verify", "--man=no"}, files...)...).CombinedOutput()
		// Unknown keys and bad values are only warnings: any word about
		// the units is a failure.
		if err != nil || bytes.Contains(out, []byte("sockpipe")) {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	})
}

// TestCronLine checks examples/cron/sockpipe: a cron.d line (five time
// fields, a user, a command) running watch --once with a state directory.
func TestCronLine(t *testing.T) {
	help := watchHelp(t)
	b, err := os.ReadFile(filepath.Join(examples, "cron", "sockpipe"))
	if err != nil {
		t.Fatal(err)
	}
	envRE := regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`)
	timeRE := regexp.MustCompile(`^[0-9*/,-]+$`)
	var jobs int
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || line[0] == '#':
		case envRE.MatchString(line):
			if k, _, _ := strings.Cut(line, "="); strings.HasPrefix(k, "WATCH_") {
				checkWatchEnv(t, "cron", []string{line}, help)
			}
		default:
			jobs++
			f := strings.Fields(line)
			if len(f) < 7 {
				t.Fatalf("cron line %q: want 5 time fields, a user and a command", line)
			}
			for _, x := range f[:5] {
				if !timeRE.MatchString(x) {
					t.Errorf("cron line %q: bad time field %q", line, x)
				}
			}
			if f[5] == "root" {
				t.Errorf("cron line %q runs as root", line)
			}
			if f[6] != "sockpipe-watch" {
				t.Errorf("cron line %q does not run sockpipe-watch", line)
			}
			checkWatchArgs(t, "cron", f[7:], help)
			if !slices.Contains(f, "--once") || argAfter(f, "--state-dir") == "" {
				t.Errorf("cron line %q: want --once and --state-dir", line)
			}
		}
	}
	if jobs != 1 {
		t.Errorf("%d cron lines, want 1", jobs)
	}
}

// TestFilebeatConfig checks examples/shipping/filebeat.yml: valid YAML, a
// filestream input with the ndjson parser at the top of the event, reading
// the files that the systemd units write, to the metricset's data stream.
func TestFilebeatConfig(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(examples, "shipping", "filebeat.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Inputs []struct {
			Type    string   `yaml:"type"`
			ID      string   `yaml:"id"`
			Paths   []string `yaml:"paths"`
			Parsers []map[string]struct {
				Target        *string `yaml:"target"`
				OverwriteKeys bool    `yaml:"overwrite_keys"`
			} `yaml:"parsers"`
		} `yaml:"filebeat.inputs"`
		Output struct {
			Index string `yaml:"index"`
		} `yaml:"output.elasticsearch"`
		Template bool `yaml:"setup.template.enabled"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Inputs) != 1 || cfg.Inputs[0].Type != "filestream" || cfg.Inputs[0].ID == "" {
		t.Fatalf("want one filestream input with an id, got %+v", cfg.Inputs)
	}
	in := cfg.Inputs[0]
	if len(in.Parsers) != 1 {
		t.Fatalf("want one parser, got %+v", in.Parsers)
	}
	nd, ok := in.Parsers[0]["ndjson"]
	if !ok || nd.Target == nil || *nd.Target != "" || !nd.OverwriteKeys {
		t.Errorf(`want the ndjson parser with target "" and overwrite_keys, got %+v`, in.Parsers)
	}
	// The files the units write.
	var outputs []string
	for _, name := range []string{"sockpipe.service", "sockpipe-once.service"} {
		ub, err := os.ReadFile(filepath.Join(examples, "systemd", name))
		if err != nil {
			t.Fatal(err)
		}
		u, err := parseUnit(ub)
		if err != nil {
			t.Fatal(err)
		}
		outputs = append(outputs, argAfter(strings.Fields(u.last("Service", "ExecStart")), "--output"))
	}
	slices.Sort(outputs)
	paths := slices.Clone(in.Paths)
	slices.Sort(paths)
	if diff := cmp.Diff(outputs, paths); diff != "" {
		t.Errorf("paths, against the units' --output (-want +got):\n%s", diff)
	}
	if cfg.Output.Index != "metrics-system.socket-default" {
		t.Errorf("output.elasticsearch.index %q", cfg.Output.Index)
	}
}

// fakeES is an Elasticsearch on 127.0.0.1: a _bulk endpoint that answers
// with the status and body it is told to, and an _index_template endpoint
// that takes a template of the shape PUT _index_template/NAME takes
// (indextemplate.Validate) and then checks every document that _bulk
// takes against its mappings, as Elasticsearch would map them
// (indextemplate.Checker): a document it would refuse or not index
// fails the bulk request's item, and its findings are kept.
type fakeES struct {
	mu        sync.Mutex
	status    int
	errors    bool
	bodies    [][]byte
	ctype     []string
	auth      []string
	requests  int
	templates map[string][]byte // by name, as PUT
	puts      int               // template requests
	checker   *indextemplate.Checker
	findings  []string
	checked   int // documents checked against the template
}

func (f *fakeES) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	if name, ok := strings.CutPrefix(r.URL.Path, "/_index_template/"); ok && r.Method == http.MethodPut {
		f.puts++
		t, err := indextemplate.Validate(body, "metrics-system.socket-default")
		if err != nil || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, fmt.Sprintf(`{"error":%q}`, fmt.Sprint(err)), http.StatusBadRequest)
			return
		}
		if f.templates == nil {
			f.templates = map[string][]byte{}
		}
		f.templates[name] = body
		f.checker = indextemplate.NewChecker(t)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"acknowledged":true}`)
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/_bulk" {
		http.Error(w, "not _bulk", http.StatusNotFound)
		return
	}
	f.bodies = append(f.bodies, body)
	f.ctype = append(f.ctype, r.Header.Get("Content-Type"))
	f.auth = append(f.auth, r.Header.Get("Authorization"))
	if f.status != http.StatusOK {
		http.Error(w, `{"error":"try later"}`, f.status)
		return
	}
	refused := false
	if f.checker != nil {
		for i, line := range bytes.Split(bytes.TrimSpace(body), []byte("\n")) {
			if i%2 == 0 {
				continue // the action
			}
			f.checked++
			for _, finding := range f.checker.Check(line) {
				refused = true
				f.findings = append(f.findings, finding.String()+" in "+string(line))
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"took":3,"errors":%v,"items":[]}`, f.errors || refused)
}

func (f *fakeES) set(status int, errors bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status, f.errors = status, errors
}

func (f *fakeES) last() (body []byte, ctype, auth string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n = len(f.bodies)
	if n == 0 {
		return nil, "", "", 0
	}
	return f.bodies[n-1], f.ctype[n-1], f.auth[n-1], n
}

// TestBulkShipping runs examples/shipping/bulk.sh against a fake
// Elasticsearch: it installs the index template (ES_TEMPLATE) once,
// before any document; what it sends is a _bulk body of create actions
// and documents, each of which the template maps; a body that
// Elasticsearch cannot take now is kept and sent on the next run, byte
// for byte; one it refuses in part is set aside.
func TestBulkShipping(t *testing.T) {
	tr := setup(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	es := &fakeES{status: http.StatusServiceUnavailable}
	srv := httptest.NewServer(es)
	defer srv.Close()
	state := t.TempDir()
	script := filepath.Join(tr.Dir, "shipping", "bulk.sh")
	if err := os.MkdirAll(filepath.Dir(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := copyFile(filepath.Join(examples, "shipping", "bulk.sh"), script); err != nil {
		t.Fatal(err)
	}
	tplFile := filepath.Join(tr.Dir, "shipping", "index-template.json")
	if err := copyFile(filepath.Join(examples, "shipping", "index-template.json"), tplFile); err != nil {
		t.Fatal(err)
	}
	const apiKey = "c2VjcmV0OmtleQ=="
	run := func() (int, string) {
		t.Helper()
		var stderr bytes.Buffer
		cmd := exec.Command(script)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "TMPDIR=" + t.TempDir(), "ES_URL=" + srv.URL,
			"ES_API_KEY=" + apiKey, "WATCH_STATE_DIR=" + state, "ES_TEMPLATE=" + tplFile}
		cmd.Stdout, cmd.Stderr = io.Discard, &stderr
		return exitCode(cmd.Run()), stderr.String()
	}
	spool := func() []string {
		t.Helper()
		m, _ := filepath.Glob(filepath.Join(state, "spool", "*"))
		for i := range m {
			m[i] = filepath.Base(m[i])
		}
		return m
	}
	ln, err := net.Listen("tcp", serverIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	// Elasticsearch is unavailable: the documents stay in the spool.
	code, stderr := run()
	if code != 1 || !strings.Contains(stderr, "kept for the next run") {
		t.Fatalf("ES unavailable: exit status %d, want 1 and the file kept; stderr:\n%s", code, stderr)
	}
	first, ctype, auth, _ := es.last()
	if ctype != "application/x-ndjson" || auth != "ApiKey "+apiKey {
		t.Errorf("Content-Type %q, Authorization %q", ctype, auth)
	}
	// The template went first, as the file holds it.
	want, err := os.ReadFile(tplFile)
	if err != nil {
		t.Fatal(err)
	}
	es.mu.Lock()
	got, puts := es.templates[indextemplate.Name], es.puts
	es.mu.Unlock()
	if puts != 1 || !bytes.Equal(got, want) {
		t.Errorf("template requests: %d, body as the file: %v; want 1, true", puts, bytes.Equal(got, want))
	}
	kept := spool()
	if len(kept) == 0 || slices.ContainsFunc(kept, func(f string) bool { return !strings.HasSuffix(f, ".ndjson") }) {
		t.Fatalf("spool after a failed send: %v, want the .ndjson files kept", kept)
	}
	// The documents are in requests of at most 10,000 lines; the first
	// was sent as it is in the spool; all of them are a _bulk body.
	var all []byte
	for i, f := range kept {
		b, err := os.ReadFile(filepath.Join(state, "spool", f))
		if err != nil {
			t.Fatal(err)
		}
		if n := bytes.Count(b, []byte("\n")); n > 10000 {
			t.Errorf("%s: %d lines, want at most 10000 a request", f, n)
		}
		if i == 0 && !bytes.Equal(b, first) {
			t.Errorf("the first request is not the first spool file")
		}
		all = append(all, b...)
	}
	checkBulk(t, all, ln.Addr().String())

	// Back: the kept body goes first, unchanged, and the spool empties
	// (what changed on the host meanwhile goes too).
	es.set(http.StatusOK, false)
	if code, stderr := run(); code != 0 {
		t.Fatalf("ES back: exit status %d; stderr:\n%s", code, stderr)
	}
	es.mu.Lock()
	resent := slices.ContainsFunc(es.bodies[1:], func(b []byte) bool { return bytes.Equal(b, first) })
	es.mu.Unlock()
	if !resent {
		t.Errorf("the kept body was not sent again as it was")
	}
	if s := spool(); len(s) != 0 {
		t.Errorf("spool after a good send: %v", s)
	}
	// Every document had a mapping that takes it; the template, the
	// same file, was not sent again.
	es.mu.Lock()
	if es.checked == 0 || len(es.findings) > 0 || es.puts != 1 {
		t.Errorf("%d documents checked against the template, %d template requests; findings:\n%s",
			es.checked, es.puts, strings.Join(es.findings, "\n"))
	}
	es.mu.Unlock()

	// Some documents refused: the body is set aside, with the answer.
	es.set(http.StatusOK, true)
	ln2, err := net.Listen("tcp", serverIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	code, stderr = run()
	if code != 1 || !strings.Contains(stderr, "refused some documents") {
		t.Errorf("ES refusing: exit status %d, want 1; stderr:\n%s", code, stderr)
	}
	s := spool()
	if len(s) == 0 || len(s)%2 != 0 {
		t.Errorf("spool after a refusal: %v, want pairs of NAME.rejected and NAME.rejected.response", s)
	}
	for i := 0; i+1 < len(s); i += 2 {
		if !strings.HasSuffix(s[i], ".ndjson.rejected") || s[i+1] != s[i]+".response" {
			t.Errorf("spool after a refusal: %v, want pairs of NAME.rejected and NAME.rejected.response", s)
			break
		}
	}

	// A template Elasticsearch refuses (here: below the built-in
	// template's priority): nothing is sent, the documents wait.
	es.set(http.StatusOK, false)
	if err := os.WriteFile(tplFile, bytes.Replace(want, []byte(`"priority": 200`), []byte(`"priority": 50`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, _, before := es.last()
	code, stderr = run()
	_, _, _, after := es.last()
	if code != 1 || !strings.Contains(stderr, "did not take the index template") || after != before {
		t.Errorf("template refused: exit status %d, %d _bulk requests; want 1, none; stderr:\n%s", code, after-before, stderr)
	}
	if s := spool(); !slices.ContainsFunc(s, func(f string) bool { return strings.HasSuffix(f, ".ndjson") }) {
		t.Errorf("spool after a refused template: %v, want the documents kept", s)
	}
}

// checkBulk checks a _bulk body: create actions to the default data
// stream, each followed by a document; one of them of the listener at
// local.
func checkBulk(t *testing.T, body []byte, local string) {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(nil, 1<<20)
	var n int
	found := false
	for sc.Scan() {
		n++
		if n%2 == 1 {
			var action struct {
				Create *struct {
					Index string `json:"_index"`
				} `json:"create"`
			}
			if err := codec.Unmarshal(sc.Bytes(), &action); err != nil || action.Create == nil || action.Create.Index != "metrics-system.socket-default" {
				t.Fatalf("line %d: %q is not a create action to metrics-system.socket-default", n, sc.Bytes())
			}
			continue
		}
		if len(docs(t, [][]byte{sc.Bytes()}, set(local))) > 0 {
			found = true
		}
	}
	if n == 0 || n%2 != 0 {
		t.Errorf("_bulk body of %d lines, want action and document pairs", n)
	}
	if !found {
		t.Errorf("no document of the test's listener %s in the _bulk body", local)
	}
}

// TestCronFileCapabilities follows examples/cron: sockproc with
// CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH as file capabilities, run by an
// unprivileged user through watch --once, finds the process of a root
// socket.
func TestCronFileCapabilities(t *testing.T) {
	tr := setup(t)
	setcap, err := exec.LookPath("setcap")
	if err != nil {
		for _, p := range []string{"/usr/sbin/setcap", "/sbin/setcap"} {
			if _, err := os.Stat(p); err == nil {
				setcap = p
			}
		}
		if setcap == "" {
			t.Skip("setcap is not installed")
		}
	}
	uid, gid := nobody(t)
	dir := privateDir(t, uid, gid)
	// A copy of the tree whose sockproc has the capabilities.
	if err := copyFile(tr.Watch, filepath.Join(dir, "watch")); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range programs {
		if err := copyFile(filepath.Join(tr.Bin, p), filepath.Join(bin, p)); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(setcap, "cap_sys_ptrace,cap_dac_read_search=ep", filepath.Join(bin, "sockproc")).CombinedOutput(); err != nil {
		t.Skipf("setcap (the file system may not keep capabilities): %v: %s", err, out)
	}
	server := startHelper(t, tr, "server", nil)
	ln := server.do("listen " + serverIP)

	var stdout, stderr bytes.Buffer
	cmd := exec.Command(filepath.Join(dir, "watch"), "--once", "--state-dir", filepath.Join(dir, "state"))
	cmd.Env = []string{"PATH=/usr/bin:/bin", "TMPDIR=" + dir}
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	if err := cmd.Run(); err != nil {
		t.Fatalf("watch --once as nobody: %v\nstderr:\n%s", err, stderr.String())
	}
	got := docs(t, bytes.Split(bytes.TrimSpace(stdout.Bytes()), []byte("\n")), set(ln[1]))
	want := []sock{proc(t, sock{Action: "existing_socket", Direction: "listening", Local: ln[1]}, server, "0", "root")}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("documents (-want +got):\n%s\nstderr:\n%s", diff, stderr.String())
	}
}
