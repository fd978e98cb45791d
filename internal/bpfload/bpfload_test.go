package bpfload

import (
	"errors"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

func TestError(t *testing.T) {
	perm := errors.New("needs privileges")
	for _, c := range []struct {
		err, want error
	}{
		{fmt.Errorf("loading: %w", unix.EPERM), perm},
		{fmt.Errorf("attaching: %w", unix.EACCES), perm},
		{unix.ENOENT, unix.ENOENT},
	} {
		if got := Error(c.err, perm); !errors.Is(got, c.want) {
			t.Errorf("Error(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestIsNamespace(t *testing.T) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/net", &st); err != nil {
		t.Skip("no /proc/self/ns/net")
	}
	if ok, err := IsNamespace("/proc/self/ns/net", st.Ino); !ok || err != nil {
		t.Errorf("own namespace: %v, %v", ok, err)
	}
	if ok, err := IsNamespace("/proc/self/ns/net", st.Ino+1); ok || err != nil {
		t.Errorf("another inode: %v, %v", ok, err)
	}
	if _, err := IsNamespace("/nonexistent", 1); err == nil {
		t.Error("a missing file: no error")
	}
}
