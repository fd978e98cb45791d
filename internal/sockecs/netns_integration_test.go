package sockecs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/ecs/ecscheck"
	"github.com/sockpipe/sockpipe/internal/record"
	"github.com/sockpipe/sockpipe/internal/sockdump"
	"github.com/sockpipe/sockpipe/internal/sockproc"
	"github.com/sockpipe/sockpipe/internal/testprog"
)

// TestIntegrationNamespaces runs sockdump --all-netns --udp | sockproc |
// sockecs over two network namespaces that hold the same TCP and UDP
// sockets (same addresses and ports), one of whose processes sits in a
// cgroup named like a Docker container's: every socket becomes exactly
// one document, with its own namespace's inode in system.socket.netns,
// its process, its transport and direction, and container.id for the
// container's sockets only; no ECS finding with --strict-ecs.
func TestIntegrationNamespaces(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	bin := testprog.Build(t, "github.com/sockpipe/sockpipe/internal/testprog/sockfix")
	a, b := testprog.NewNetNS(t), testprog.NewNetNS(t)
	args := []string{"-tcp", "127.0.0.1:8080", "-udp", "127.0.0.1:5353", "-udp", "[::1]:5353"}
	fixtures := map[uint64]*testprog.Fixture{
		a.Ino: testprog.StartFixture(t, a, bin, args...),
		b.Ino: testprog.StartFixture(t, b, bin, args...),
	}
	containers := map[uint64]string{}
	if id, err := intoContainerCgroup(t, fixtures[b.Ino].PID); err != nil {
		t.Logf("no container: %v", err)
	} else {
		containers[b.Ino] = id
	}

	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	// Other tests on the host may hold many sockets in namespaces of
	// their own: only this test's go on.
	ours := func(_ context.Context, _ []string, stdin io.Reader, stdout, _ io.Writer) error {
		sc := bufio.NewScanner(stdin)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			r, err := codec.Decode(sc.Bytes())
			if err != nil {
				return err
			}
			if r.Type == record.TypeSocket && fixtures[r.NetNS] == nil {
				continue
			}
			if _, err := stdout.Write(append(sc.Bytes(), '\n')); err != nil {
				return err
			}
		}
		return sc.Err()
	}
	records := runStages(t, ctx, []stageRun{
		{"sockdump", sockdump.Run, []string{"--all-netns", "--udp"}},
		{"ours", ours, nil},
		{"sockproc", sockproc.Run, nil},
	})

	s := schema(t)
	for _, args := range [][]string{{"--strict-ecs"}, nil} {
		var out, errb bytes.Buffer
		if err := Run(ctx, args, bytes.NewReader(records), &out, &errb); err != nil || errb.Len() > 0 {
			t.Fatalf("sockecs %v: %v %s", args, err, errb.String())
		}
		// The documents of the test's namespaces, by namespace and socket.
		type key struct {
			netns                          uint64
			transport, local, remote, role string
		}
		got := map[key][]map[string]any{}
		sc := bufio.NewScanner(&out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			doc := sc.Bytes()
			for _, f := range s.Check(doc) {
				if args != nil || !departures[f.String()] {
					t.Errorf("sockecs %v: %s\nin %s", args, f, doc)
				}
			}
			f, err := ecscheck.Flatten(doc)
			if err != nil {
				t.Fatal(err)
			}
			ns, _ := f["system.socket.netns"].(float64)
			if fixtures[uint64(ns)] == nil {
				continue
			}
			dir, _ := f["network.direction"].(string)
			if f["system.socket.listening"] == true {
				dir = record.DirectionListening
			}
			k := key{uint64(ns), str(f["network.transport"]), endpoint(f, "local"), endpoint(f, "remote"), dir}
			got[k] = append(got[k], f)
		}
		n := 0
		for ns, fx := range fixtures {
			for _, sock := range fx.Socks {
				k := key{ns, sock.Transport, sock.Local, sock.Remote, roleDirection[sock.Role]}
				docs := got[k]
				if len(docs) != 1 {
					t.Errorf("sockecs %v: %d documents of %+v, want 1", args, len(docs), k)
					continue
				}
				n++
				f := docs[0]
				if pid := f["process.pid"]; pid != float64(fx.PID) {
					t.Errorf("sockecs %v: %+v: process.pid %v, want %d", args, k, pid, fx.PID)
				}
				if id, want := f["container.id"], containers[ns]; want == "" && id != nil || want != "" && id != want {
					t.Errorf("sockecs %v: %+v: container.id %v, want %q", args, k, id, want)
				}
			}
		}
		t.Logf("sockecs %v: %d sockets in 2 namespaces, each one document; containers %v", args, n, containers)
	}
}

// roleDirection is the direction of each role of a sockfix socket.
var roleDirection = map[string]string{
	"listener": "listening", "bound": "listening",
	"client": "egress", "server": "ingress",
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// endpoint is a document's system.socket.local or .remote as Go prints
// addresses, "-" when absent.
func endpoint(f map[string]any, end string) string {
	ip, ok := f["system.socket."+end+".ip"].(string)
	if !ok {
		return "-"
	}
	port, _ := f["system.socket."+end+".port"].(float64)
	return net.JoinHostPort(ip, strconv.Itoa(int(port)))
}

// intoContainerCgroup moves pid into a new cgroup v2 group whose path is
// a Docker container's, /sockpipe-test-PID.slice/docker-ID.scope, moves
// it back when the test ends, and returns ID.
func intoContainerCgroup(t *testing.T, pid int) (string, error) {
	mount, err := cgroup2Mount()
	if err != nil {
		return "", err
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	origin := ""
	for line := range strings.Lines(string(self)) {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			origin = p
		}
	}
	if origin == "" {
		return "", errors.New("no cgroup v2 line in /proc/self/cgroup")
	}
	if strings.Contains(origin, "docker") || strings.Contains(origin, "containerd") || strings.Contains(origin, "crio") || strings.Contains(origin, "libpod") {
		return "", errors.New("the test already runs in a container's cgroup: " + origin)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	id := hex.EncodeToString(raw[:])
	slice := filepath.Join(mount, "sockpipe-test-"+strconv.Itoa(os.Getpid())+".slice")
	dir := filepath.Join(slice, "docker-"+id+".scope")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	t.Cleanup(func() {
		for _, d := range []string{dir, slice} {
			for i := 0; i < 100; i++ {
				if err := os.Remove(d); err == nil || errors.Is(err, os.ErrNotExist) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
		return "", err
	}
	// Runs before the fixture is stopped, and before the removal above.
	t.Cleanup(func() {
		os.WriteFile(filepath.Join(mount, origin, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
	})
	return id, nil
}

// cgroup2Mount is where the cgroup v2 hierarchy is mounted at its root.
func cgroup2Mount() (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(b)) {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		a, f := strings.Fields(pre), strings.Fields(post)
		if len(a) >= 5 && len(f) >= 1 && f[0] == "cgroup2" && a[3] == "/" {
			return a[4], nil
		}
	}
	return "", errors.New("no cgroup v2 hierarchy mounted at its root")
}
