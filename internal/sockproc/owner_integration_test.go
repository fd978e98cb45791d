package sockproc

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/sockpipe/sockpipe/internal/proctable"
	"github.com/sockpipe/sockpipe/internal/record"
	"github.com/sockpipe/sockpipe/internal/testprog"
)

// TestIntegrationOwnerPIDReuse: the owner table recorded a process that has
// exited, and another process now runs under its pid (made so through
// /proc/sys/kernel/ns_last_pid). sockproc writes the recorded owner (pid,
// name, start, and its user), not the process that holds the pid now; and
// an owner that still lives is enriched from /proc.
func TestIntegrationOwnerPIDReuse(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a helper as nobody and to set ns_last_pid")
	}
	if ok, _ := proctable.Privileged(); !ok {
		t.Skip("root without CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH")
	}
	bin, passwd := helperBin(t) // its processes are named sockproc-helper
	other := testprog.CopySelf(t, "pid-reuser")

	owner := startChild(t, bin, nobodyCred, "hold", "owner")
	pid := owner.cmd.Process.Pid
	ownerStart := testprog.ProcStart(t, pid)
	owner.stop()
	time.Sleep(30 * time.Millisecond) // a later clock tick for the next one

	var reuser *child
	for try := 0; try < 200 && reuser == nil; try++ {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
			t.Skipf("cannot set ns_last_pid: %v", err)
		}
		c := startChild(t, other, nil, "hold", "reuser")
		if c.cmd.Process.Pid == pid {
			reuser = c
			break
		}
		c.stop() // another process took the pid first: again
	}
	if reuser == nil {
		t.Fatalf("pid %d not reused in 200 tries", pid)
	}
	reuserStart := testprog.ProcStart(t, pid)
	if reuserStart.Equal(ownerStart) {
		t.Fatalf("the two processes of pid %d started in the same clock tick", pid)
	}

	now := time.Now().UTC().Truncate(time.Millisecond)
	short := func(port uint16, o *record.Owner) *record.Record {
		return &record.Record{
			Type: record.TypeSocket, Time: now, Family: record.FamilyIPv4, Transport: record.TransportTCP,
			State: "closed", Direction: record.DirectionEgress,
			Local:  record.Endpoint{IP: "127.0.0.1", Port: port},
			Remote: record.Endpoint{IP: "127.0.0.1", Port: 80},
			Event:  record.EventOpened, ShortLived: true, Owner: o,
		}
	}
	in := []*record.Record{
		short(40001, &record.Owner{PID: pid, Name: "sockproc-helper", UID: testprog.Nobody, GID: testprog.Nobody, Start: ownerStart, Via: record.OwnerConnect}),
		short(40002, &record.Owner{PID: pid, Name: "pid-reuser", UID: 0, Start: reuserStart, Via: record.OwnerConnect}),
		{Type: record.TypeSnapshot, Time: now, Schema: record.SchemaVersion},
	}
	var stdout, stderr bytes.Buffer
	if err := Run(context.Background(), []string{"--passwd", passwd}, bytes.NewReader(encode(in)), &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Errorf("stderr: %s", stderr.String())
	}
	out := decodeAll(t, stdout.Bytes())
	if len(out) != len(in) {
		t.Fatalf("%d records out, %d in", len(out), len(in))
	}

	gone := out[0]
	if diff := cmp.Diff(&record.Process{PID: pid, Name: "sockproc-helper", Start: ownerStart}, gone.Process); diff != "" {
		t.Errorf("the exited owner, its pid reused (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&record.User{ID: "65534", Name: "nobody", FullName: "Nobody Here"}, gone.User); diff != "" {
		t.Errorf("the exited owner's user (-want +got):\n%s", diff)
	}
	if gone.ProcessError != "" {
		t.Errorf("the exited owner: process_error %q", gone.ProcessError)
	}

	live := out[1]
	want := &record.Process{
		PID: pid, PPID: os.Getpid(), Name: "pid-reuser", Executable: other,
		Args: []string{other, "hold", "reuser"}, Cmdline: other + " hold reuser", Start: reuserStart,
	}
	if diff := cmp.Diff(want, live.Process); diff != "" {
		t.Errorf("a living owner (-want +got):\n%s", diff)
	}
	if live.User == nil || live.User.ID != "0" || live.ProcessError != "" {
		t.Errorf("a living owner: user %+v, process_error %q", live.User, live.ProcessError)
	}
}
