package testprog

import (
	"testing"
	"time"

	"github.com/prometheus/procfs"
)

// ProcStart is when process pid started, as /proc/PID/stat and the boot
// time of /proc/stat give it (in clock ticks of 10 ms, USER_HZ), in UTC.
func ProcStart(t testing.TB, pid int) time.Time {
	t.Helper()
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		t.Fatal(err)
	}
	p, err := fs.Proc(pid)
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Stat()
	if err != nil {
		t.Fatal(err)
	}
	ks, err := fs.Stat()
	if err != nil {
		t.Fatal(err)
	}
	const tick = 10 * time.Millisecond
	return time.Unix(int64(ks.BootTime), 0).Add(time.Duration(st.Starttime) * tick).UTC()
}
