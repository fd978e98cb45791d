package sockdump

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"

	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/inetdiag"
	"github.com/sockpipe/sockpipe/internal/netnsdump"
)

// TestKernelErrors checks that the errors a user can act on each give one
// clear line and their own exit code. A kernel cannot be made to refuse
// on demand, so a fake netlink socket answers with the kernel's errno.
func TestKernelErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		errno unix.Errno
		code  int
		msg   string
	}{
		{unix.EPERM, ExitPermission, "permission denied"},
		{unix.ENOENT, ExitUnsupported, "load module tcp_diag"},
		{unix.EINVAL, ExitUnsupported, "Linux 3.3 or newer"},
		{unix.EIO, cli.ExitFailure, "input/output error"},
	} {
		t.Run(tt.errno.Error(), func(t *testing.T) {
			t.Parallel()
			env := Env{Open: func(string, []uint8) (*netnsdump.Dumper, error) {
				c := nltest.Dial(func(req []netlink.Message) ([]netlink.Message, error) {
					msgs, err := nltest.Error(int(tt.errno), req)
					msgs[0].Header.Flags = 0
					return msgs, err
				})
				return netnsdump.NewDumper(inetdiag.NewConn(c), 0, netnsdump.TCP), nil
			}}
			var stdout, stderr bytes.Buffer
			err := env.Run(context.Background(), nil, nil, &stdout, &stderr)
			code := cli.Code("sockdump", err, &stderr)
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if code != tt.code || len(lines) != 1 || !strings.Contains(lines[0], tt.msg) || !strings.HasPrefix(lines[0], "sockdump: ") {
				t.Errorf("exit %d, stderr %q; want exit %d and one line with %q", code, stderr.String(), tt.code, tt.msg)
			}
			if stdout.Len() != 0 {
				t.Errorf("wrote %q on failure", stdout.String())
			}
		})
	}
}
