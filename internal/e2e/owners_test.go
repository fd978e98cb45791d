package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestWatchShortLivedOwners runs examples/watch (sockdump --events with
// its owner table) while connections live for a moment between two dumps,
// made by a client that runs as nobody and exits at once, to a listener
// that was open before the pipeline started and to one opened after. The
// documents of both ends carry the process and the user that made them,
// and no "process has exited" error: the client's from the owner table
// (its pid and name: the process is gone), the server's from /proc (the
// listener's process still lives).
//
// With --no-owners, the clients' documents say "process has exited", as
// the original does, and the servers' still name the listener's process.
func TestWatchShortLivedOwners(t *testing.T) {
	tr := setup(t)
	t.Run("owners", func(t *testing.T) { testShortLivedOwners(t, tr, true) })
	t.Run("--no-owners", func(t *testing.T) { testShortLivedOwners(t, tr, false) })
}

func testShortLivedOwners(t *testing.T, tr tree, owners bool) {
	uid, gid := nobody(t)
	nobodyID := strconv.Itoa(int(uid))
	server := startHelper(t, tr, "server", nil)
	older := server.do("listen " + serverIP)

	outPath := filepath.Join(t.TempDir(), "out.ndjson")
	out, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var stderr bytes.Buffer
	args := []string{"1s"}
	if !owners {
		args = append(args, "--no-owners")
	}
	cmd := watchCmd(t, tr, nil, args...)
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
	tl := openTail(t, outPath, serverIP, clientIP)
	tl.waitFor(t, 30*time.Second, "document of the older listener", set(older[1]), func(s []sock) bool { return len(s) > 0 })
	newer := server.do("listen " + serverIP)
	// Without the owner table, what a socket accepted is known from the
	// listeners that a dump saw: wait for one to see the newer listener.
	tl.waitFor(t, 30*time.Second, "document of the newer listener", set(newer[1]), func(s []sock) bool { return len(s) > 0 })

	// The end that closes abortively (RST) is wiped by the kernel: only
	// the owner table's record of its addresses tells it apart (a client
	// end); its peer is reported either way.
	var want []sock
	locals := set(older[1], newer[1])
	for _, ln := range [][]string{older, newer} {
		for _, clientResets := range []bool{true, false} {
			client := startHelper(t, tr, "client", &syscall.Credential{Uid: uid, Gid: gid})
			c := connect(server, ln[0], ln[1], client, clientIP)
			if clientResets {
				client.do("close " + c.ClientID)
				server.do("close " + c.ServerID)
				want = append(want, proc(t, sock{Action: "socket_opened", Direction: "ingress", Local: c.Server, Remote: c.Client}, server, "0", "root"))
				if owners {
					want = append(want, proc(t, sock{Action: "socket_opened", Direction: "egress", Local: c.Client, Remote: c.Server, PID: client.PID(), Name: "e2ehelper"}, nil, nobodyID, "nobody"))
				}
			} else {
				server.do("close " + c.ServerID)
				client.do("close " + c.ClientID)
				s := sock{Action: "socket_opened", Direction: "egress", Local: c.Client, Remote: c.Server}
				if owners {
					s = proc(t, sock{Action: s.Action, Direction: s.Direction, Local: s.Local, Remote: s.Remote, PID: client.PID(), Name: "e2ehelper"}, nil, nobodyID, "nobody")
				} else {
					s.Error = "process has exited. inode=0, tcp_state=UNCONN"
				}
				want = append(want, s)
			}
			client.stop() // gone before the next dump
			locals[c.Client] = true
		}
	}
	want = append(want,
		proc(t, sock{Action: "existing_socket", Direction: "listening", Local: older[1]}, server, "0", "root"),
		proc(t, sock{Action: "socket_opened", Direction: "listening", Local: newer[1]}, server, "0", "root"),
	)
	wanted := map[[3]string]bool{}
	for _, w := range want {
		wanted[[3]string{w.Action, w.Local, w.Remote}] = true
	}
	// Had a dump seen a connection (it lives a millisecond), both of its
	// ends would be reported, and /proc would give the client's
	// executable too: only the wanted documents are compared, and the
	// client's executable is not.
	mine := func() []sock {
		var got []sock
		for _, s := range docs(t, tl.lines, locals) {
			if wanted[[3]string{s.Action, s.Local, s.Remote}] {
				if s.Direction == "egress" {
					s.Exe, s.Args = "", nil
				}
				got = append(got, s)
			}
		}
		return got
	}
	deadline := time.Now().Add(30 * time.Second)
	for tl.read(); len(mine()) < len(want); tl.read() {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s, only these documents:\n%+v\nstderr:\n%s", mine(), stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err = <-done:
		stopped = true
	case <-time.After(30 * time.Second):
		t.Fatalf("watch still runs 30 s after SIGTERM; stderr:\n%s", stderr.String())
	}
	if code := exitCode(err); code != 0 {
		t.Errorf("watch exit status %d, want 0; stderr:\n%s", code, stderr.String())
	}
	tl.read()
	got := mine()
	sortSocks(want)
	sortSocks(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("documents (-want +got):\n%s\nstderr:\n%s", diff, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}
