package sockproc

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/sockfiles"
)

// fixture writes a fake proc filesystem holding one process, pid 100, with
// sockets 1001 and 1002, and a passwd file; it returns their paths.
func fixture(t testing.TB) (procRoot, passwd string) {
	t.Helper()
	dir := t.TempDir()
	procRoot = filepath.Join(dir, "proc")
	p := filepath.Join(procRoot, "100")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(p, "fd"), 0o755))
	must(os.WriteFile(filepath.Join(procRoot, "stat"), []byte("btime 1700000000\n"), 0o644))
	must(os.WriteFile(filepath.Join(p, "stat"), []byte("100 (nginx) S 1 100 100 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0\n"), 0o644))
	must(os.WriteFile(filepath.Join(p, "cmdline"), []byte("nginx\x00-g\x00daemon off;\x00"), 0o644))
	must(os.Symlink("/usr/sbin/nginx", filepath.Join(p, "exe")))
	must(os.Symlink("socket:[1001]", filepath.Join(p, "fd", "3")))
	must(os.Symlink("socket:[1002]", filepath.Join(p, "fd", "4")))
	must(os.Symlink("/dev/null", filepath.Join(p, "fd", "0")))
	passwd = filepath.Join(dir, "passwd")
	must(os.WriteFile(passwd, []byte("root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:Web Server,,,:/var/www:/usr/sbin/nologin\n"), 0o644))
	return procRoot, passwd
}

const nginxJSON = `"process":{"pid":100,"ppid":1,"name":"nginx","executable":"/usr/sbin/nginx","args":["nginx","-g","daemon off;"],"cmdline":"nginx -g daemon off;","start":"2023-11-14T22:13:25Z"}`

func sockLine(state string, inode int, uid int, extra string) string {
	s := `{"type":"socket","time":"2026-11-26T04:30:00Z","family":"ipv4","transport":"tcp","state":"` + state +
		`","local":{"ip":"127.0.0.1","port":80},"remote":{"ip":"127.0.0.1","port":5000},"direction":"ingress","inode":` + strconv.Itoa(inode)
	if uid >= 0 {
		s += `,"uid":` + strconv.Itoa(uid)
	}
	return s + extra + "}"
}

const snapLine = `{"type":"snapshot","time":"2026-11-26T04:30:00Z","schema":1,"sockets":3,"duration_ns":1000}`

// readFDLinks is an Env.SocketFiles that makes sockproc read the
// /proc/PID/fd links.
func readFDLinks(string) (*sockfiles.Lister, error) { return nil, nil }

func runWith(t *testing.T, privileged bool, args []string, input string) (stdout, stderr string, err error) {
	t.Helper()
	e := Env{
		Privileged: func() (bool, error) { return privileged, nil },
		Geteuid:    func() int { return 1000 },
		// The fixture's processes are not the kernel's.
		SocketFiles: readFDLinks,
		NSS: func(uid string) (*user.User, error) {
			if uid == "4000" {
				return &user.User{Uid: uid, Username: "ldap", Name: "From NSS"}, nil
			}
			return nil, user.UnknownUserIdError(0)
		},
	}
	var out, errb bytes.Buffer
	err = e.Run(context.Background(), args, strings.NewReader(input), &out, &errb)
	return out.String(), errb.String(), err
}

func TestRun(t *testing.T) {
	t.Parallel()
	procRoot, passwd := fixture(t)
	flags := []string{"--proc", procRoot, "--passwd", passwd}
	unprivWarning := "sockproc: warning: without CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, attribution is limited to the processes of uid 1000; other sockets get no process and no error\n"

	tests := []struct {
		name       string
		privileged bool
		args       []string
		in         []string
		want       []string
		wantErr    string
	}{{
		name:       "found, not found, exited, unknown uid",
		privileged: true,
		in: []string{
			sockLine("listening", 1001, 33, ""),
			sockLine("established", 7777, 1234, ""),
			sockLine("time-wait", 0, 0, ""),
			snapLine,
		},
		want: []string{
			sockLine("listening", 1001, 33, ","+nginxJSON+`,"user":{"id":"33","name":"www","full_name":"Web Server"}`),
			sockLine("established", 7777, 1234, `,"process_error":"process not found. inode=7777, tcp_state=ESTAB","user":{"id":"1234"}`),
			sockLine("time-wait", 0, 0, `,"process_error":"process has exited. inode=0, tcp_state=TIME-WAIT","user":{"id":"0","name":"root","full_name":"root"}`),
			snapLine,
		},
	}, {
		name: "unprivileged: no error for what cannot be seen",
		in: []string{
			sockLine("listening", 1001, 33, ""),
			sockLine("established", 7777, 1234, ""),
			sockLine("time-wait", 0, 0, ""),
		},
		want: []string{
			sockLine("listening", 1001, 33, ","+nginxJSON+`,"user":{"id":"33","name":"www","full_name":"Web Server"}`),
			sockLine("established", 7777, 1234, `,"user":{"id":"1234"}`),
			sockLine("time-wait", 0, 0, `,"user":{"id":"0","name":"root","full_name":"root"}`),
		},
	}, {
		name:       "passes through what it does not own",
		privileged: true,
		in: []string{
			`{"type":"note","text":"hello"}`,
			sockLine("listening", 1002, -1, `,"x-tag":{"a":[1,2]}`),
		},
		want: []string{
			`{"type":"note","text":"hello"}`,
			sockLine("listening", 1002, -1, ","+nginxJSON+`,"x-tag":{"a":[1,2]}`),
		},
	}, {
		name:       "closed events: attributed from the index, never an error",
		privileged: true,
		in: []string{
			sockLine("established", 1001, -1, `,"event":"closed"`),
			sockLine("established", 1002, -1, `,"event":"opened"`),
			sockLine("established", 1001, -1, `,"event":"closed"`),
			sockLine("established", 5555, -1, `,"event":"closed"`),
		},
		want: []string{
			// The processes are walked at the start: a closed event,
			// which never walks, finds them.
			sockLine("established", 1001, -1, `,"event":"closed",`+nginxJSON),
			sockLine("established", 1002, -1, `,"event":"opened",`+nginxJSON),
			sockLine("established", 1001, -1, `,"event":"closed",`+nginxJSON),
			sockLine("established", 5555, -1, `,"event":"closed"`),
		},
	}, {
		name:       "an accepted connection without an inode: its listener's process and uid",
		privileged: true,
		in: []string{
			sockLine("time-wait", 0, 0, `,"owner":{"uid":33,"via":"listener","inode":1001}`),
			sockLine("closed", 0, -1, `,"owner":{"uid":33,"via":"listener","inode":4444}`),
			sockLine("closed", 0, -1, `,"owner":{"pid":100,"name":"nginx","uid":33,"gid":33,"start":"2023-11-14T22:13:25Z","via":"accept"}`),
			sockLine("closed", 0, -1, `,"owner":{"pid":100,"name":"old","uid":0,"gid":0,"start":"2023-11-14T22:13:24Z","via":"connect"}`),
		},
		want: []string{
			sockLine("time-wait", 0, 0, `,"owner":{"uid":33,"via":"listener","inode":1001},`+nginxJSON+`,"user":{"id":"33","name":"www","full_name":"Web Server"}`),
			sockLine("closed", 0, -1, `,"owner":{"uid":33,"via":"listener","inode":4444},"process_error":"process has exited. inode=0, tcp_state=UNCONN","user":{"id":"33","name":"www","full_name":"Web Server"}`),
			sockLine("closed", 0, -1, `,"owner":{"pid":100,"name":"nginx","uid":33,"gid":33,"start":"2023-11-14T22:13:25Z","via":"accept"},`+nginxJSON+`,"user":{"id":"33","name":"www","full_name":"Web Server"}`),
			sockLine("closed", 0, -1, `,"owner":{"pid":100,"name":"old","uid":0,"gid":0,"start":"2023-11-14T22:13:24Z","via":"connect"},"process":{"pid":100,"name":"old","start":"2023-11-14T22:13:24Z"},"user":{"id":"0","name":"root","full_name":"root"}`),
		},
	}, {
		name:       "--nss asks the system for uids not in the file",
		privileged: true,
		args:       []string{"--nss"},
		in:         []string{sockLine("time-wait", 0, 4000, "")},
		want:       []string{sockLine("time-wait", 0, 4000, `,"process_error":"process has exited. inode=0, tcp_state=TIME-WAIT","user":{"id":"4000","name":"ldap","full_name":"From NSS"}`)},
	}, {
		name:       "bad lines are reported and skipped",
		privileged: true,
		in:         []string{`{"type":"socket"`, `{"type":"socket","family":"ipx"}`, sockLine("time-wait", 0, -1, "")},
		want:       []string{sockLine("time-wait", 0, -1, `,"process_error":"process has exited. inode=0, tcp_state=TIME-WAIT"`)},
	}, {
		name:       "--strict stops at the first bad line",
		privileged: true,
		args:       []string{"--strict"},
		in:         []string{sockLine("time-wait", 0, -1, ""), `nope`},
		want:       []string{sockLine("time-wait", 0, -1, `,"process_error":"process has exited. inode=0, tcp_state=TIME-WAIT"`)},
		wantErr:    "line 2",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, err := runWith(t, tt.privileged, append(append([]string{}, flags...), tt.args...), strings.Join(tt.in, "\n")+"\n")
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			want := strings.Join(tt.want, "\n") + "\n"
			if diff := cmp.Diff(want, stdout); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			if !tt.privileged && !strings.HasPrefix(stderr, unprivWarning) {
				t.Errorf("stderr = %q, want the warning first", stderr)
			}
			if tt.privileged && strings.Contains(stderr, "warning") {
				t.Errorf("stderr = %q, want no warning", stderr)
			}
		})
	}
}

func TestRunBadLinesReported(t *testing.T) {
	t.Parallel()
	procRoot, passwd := fixture(t)
	_, stderr, err := runWith(t, true, []string{"--proc", procRoot, "--passwd", passwd}, "{\"type\":\"socket\"\n"+sockLine("time-wait", 0, -1, "")+"\n")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stderr, "sockproc: line 1: ") || !strings.HasSuffix(stderr, "(skipped)\n") {
		t.Errorf("stderr = %q", stderr)
	}
}

// TestRunStats checks the counters: one walk for the first snapshot, none
// for a snapshot of known sockets, nothing at all for a quiet snapshot.
func TestRunStats(t *testing.T) {
	t.Parallel()
	procRoot, passwd := fixture(t)
	in := strings.Join([]string{
		sockLine("listening", 1001, 0, ""),
		sockLine("established", 1002, 0, ""),
		sockLine("established", 9999, 0, ""),
		sockLine("established", 9998, 0, ""),
		snapLine,
		sockLine("listening", 1001, 0, ""),
		snapLine,
		snapLine,
	}, "\n") + "\n"
	_, stderr, err := runWith(t, true, []string{"--proc", procRoot, "--passwd", passwd, "--stats"}, in)
	if err != nil {
		t.Fatal(err)
	}
	want := `sockproc: stats: snapshot=2026-11-26T04:30:00.000Z sockets=4 lookups=4 hits=2 not_found=2 walks=1 fd_dirs=1 fd_links=3 proc_files=5
sockproc: stats: snapshot=2026-11-26T04:30:00.000Z sockets=1 lookups=1 hits=1 not_found=0 walks=0 fd_dirs=0 fd_links=0 proc_files=1
sockproc: stats: snapshot=2026-11-26T04:30:00.000Z sockets=0 lookups=0 hits=0 not_found=0 walks=0 fd_dirs=0 fd_links=0 proc_files=0
sockproc: stats: end sockets=0 lookups=0 hits=0 not_found=0 walks=0 fd_dirs=0 fd_links=0 proc_files=0
sockproc: stats: total sockets=5 lookups=5 hits=3 not_found=2 walks=1 fd_dirs=1 fd_links=3 proc_files=6
`
	// The walk's duration varies; its presence is checked, not its value.
	got := regexp.MustCompile(` walk_ms=[0-9]+\.[0-9]`).ReplaceAllString(stderr, "")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stderr without walk_ms (-want +got):\n%s", diff)
	}
	if n := strings.Count(stderr, " walk_ms="); n != 5 {
		t.Errorf("walk_ms in %d lines, want 5:\n%s", n, stderr)
	}
}

func TestRunUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--nope"}, {"extra"}} {
		_, _, err := runWith(t, true, args, "")
		if got := cli.Code("sockproc", err, &bytes.Buffer{}); got != cli.ExitUsage {
			t.Errorf("%v: exit %d (%v), want %d", args, got, err, cli.ExitUsage)
		}
	}
	_, _, err := runWith(t, true, []string{"--proc", filepath.Join(t.TempDir(), "missing")}, "")
	if err == nil || cli.Code("sockproc", err, &bytes.Buffer{}) != cli.ExitFailure {
		t.Errorf("missing --proc: %v, want exit 1", err)
	}
	_, _, err = runWith(t, true, []string{"-h"}, "")
	if !errors.Is(err, errHelp()) {
		t.Errorf("-h: %v", err)
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		inode uint64
		state string
		want  string
	}{
		{0, "time-wait", "process has exited. inode=0, tcp_state=TIME-WAIT"},
		{0, "fin-wait-2", "process has exited. inode=0, tcp_state=FIN-WAIT-2"},
		{0, "syn-recv", "process has exited. inode=0, tcp_state=SYN-RECV"},
		{0, "closed", "process has exited. inode=0, tcp_state=UNCONN"},
		{123, "established", "process not found. inode=123, tcp_state=ESTAB"},
		{123, "listening", "process not found. inode=123, tcp_state=LISTEN"},
		{7, "syn-sent", "process not found. inode=7, tcp_state=SYN-SENT"},
		{7, "fin-wait-1", "process not found. inode=7, tcp_state=FIN-WAIT-1"},
		{7, "close-wait", "process not found. inode=7, tcp_state=CLOSE-WAIT"},
		{7, "last-ack", "process not found. inode=7, tcp_state=LAST-ACK"},
		{7, "closing", "process not found. inode=7, tcp_state=CLOSING"},
		{7, "unknown-13", "process not found. inode=7, tcp_state=UNKNOWN-13"},
	} {
		if got := NotFound(tt.inode, tt.state); got != tt.want {
			t.Errorf("NotFound(%d, %q) = %q, want %q", tt.inode, tt.state, got, tt.want)
		}
	}
}

func errHelp() error { return flag.ErrHelp }

// TestRunContainer checks container.id: set for a process found in a
// container, the input's container kept (its id replaced) otherwise
// untouched, nothing for a host process.
func TestRunContainer(t *testing.T) {
	t.Parallel()
	const id = "9e1987cf07ac408dc51d2803c828d32d4efea2ef46e426a60f143a8444b7f5ed"
	const other = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	inContainer := func(t *testing.T, cgroup string) []string {
		procRoot, passwd := fixture(t)
		if cgroup != "" {
			if err := os.WriteFile(filepath.Join(procRoot, "100", "cgroup"), []byte(cgroup), 0o444); err != nil {
				t.Fatal(err)
			}
		}
		return []string{"--proc", procRoot, "--passwd", passwd}
	}
	ctr := `,"container":{"id":"` + id + `"}`
	tests := []struct {
		name   string
		cgroup string
		in     []string
		want   []string
	}{{
		name:   "docker, cgroup v2",
		cgroup: "0::/system.slice/docker-" + id + ".scope\n",
		in:     []string{sockLine("listening", 1001, -1, ""), sockLine("established", 1002, -1, "")},
		want:   []string{sockLine("listening", 1001, -1, ","+nginxJSON+ctr), sockLine("established", 1002, -1, ","+nginxJSON+ctr)},
	}, {
		name:   "kubernetes, cgroup v1",
		cgroup: "2:memory:/kubepods/besteffort/pod8a3f1f0c-3a4d-4b1e-9c57-2f6e0d9b7a11/" + id + "\n1:name=systemd:/kubepods/besteffort/pod8a3f1f0c-3a4d-4b1e-9c57-2f6e0d9b7a11/" + id + "\n",
		in:     []string{sockLine("listening", 1001, -1, "")},
		want:   []string{sockLine("listening", 1001, -1, ","+nginxJSON+ctr)},
	}, {
		name:   "an input container keeps its other members",
		cgroup: "0::/system.slice/docker-" + id + ".scope\n",
		in:     []string{sockLine("listening", 1001, -1, `,"container":{"id":"`+other+`","name":"web"}`)},
		want:   []string{sockLine("listening", 1001, -1, ","+nginxJSON+`,"container":{"id":"`+id+`","name":"web"}`)},
	}, {
		name:   "process not found: the input's container is kept",
		cgroup: "0::/system.slice/docker-" + id + ".scope\n",
		in:     []string{sockLine("established", 7777, -1, `,"container":{"id":"`+other+`"}`)},
		want:   []string{sockLine("established", 7777, -1, `,"process_error":"process not found. inode=7777, tcp_state=ESTAB","container":{"id":"`+other+`"}`)},
	}, {
		name:   "host process",
		cgroup: "0::/system.slice/nginx.service\n",
		in:     []string{sockLine("listening", 1001, -1, "")},
		want:   []string{sockLine("listening", 1001, -1, ","+nginxJSON)},
	}, {
		name:   "conmon",
		cgroup: "0::/machine.slice/libpod-conmon-" + id + ".scope\n",
		in:     []string{sockLine("listening", 1001, -1, "")},
		want:   []string{sockLine("listening", 1001, -1, ","+nginxJSON)},
	}, {
		name: "no cgroup file",
		in:   []string{sockLine("listening", 1001, -1, "")},
		want: []string{sockLine("listening", 1001, -1, ","+nginxJSON)},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stdout, stderr, err := runWith(t, true, inContainer(t, tt.cgroup), strings.Join(tt.in, "\n")+"\n")
			if err != nil || stderr != "" {
				t.Fatalf("err = %v, stderr = %q", err, stderr)
			}
			if diff := cmp.Diff(strings.Join(tt.want, "\n")+"\n", stdout); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
		})
	}
}
