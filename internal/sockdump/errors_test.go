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
)

// TestKernelErrors checks that the errors a user can act on each give one
// clear line and their own exit code. A kernel cannot be made to refuse
// on demand, so a fake netlink socket answers with the kernel's errno.
func TestKernelErrors(t *testing.T) {
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
			open = func(string, []uint8) (*Dumper, error) {
				c := nltest.Dial(func(req []netlink.Message) ([]netlink.Message, error) {
					msgs, err := nltest.Error(int(tt.errno), req)
					msgs[0].Header.Flags = 0
					return msgs, err
				})
				return NewDumper(inetdiag.NewConn(c), 0, TCP), nil
			}
			t.Cleanup(func() { open = Open })
			var stdout, stderr bytes.Buffer
			err := Run(context.Background(), nil, nil, &stdout, &stderr)
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

// TestNoUDPDiag: a kernel without udp_diag still gives the TCP sockets of
// a --udp dump, with one warning.
func TestNoUDPDiag(t *testing.T) {
	listener := make([]byte, inetdiag.MsgLen) // 127.0.0.1:80, listening
	listener[0], listener[1] = inetdiag.AFInet, inetdiag.StateListen
	listener[4], listener[5] = 0, 80
	copy(listener[8:12], []byte{127, 0, 0, 1})
	udpAsked := 0
	c := nltest.Dial(func(req []netlink.Message) ([]netlink.Message, error) {
		if req[0].Data[1] == inetdiag.ProtoUDP && req[0].Header.Type == 20 {
			udpAsked++
			msgs, err := nltest.Error(int(unix.ENOENT), req)
			msgs[0].Header.Flags = 0
			return msgs, err
		}
		h := netlink.Header{Type: req[0].Header.Type, Sequence: req[0].Header.Sequence, PID: req[0].Header.PID}
		return nltest.Multipart([]netlink.Message{{Header: h, Data: listener}, {Header: netlink.Header{Sequence: h.Sequence, PID: h.PID}}})
	})
	d := NewDumper(inetdiag.NewConn(c), 0, []uint8{inetdiag.ProtoTCP, inetdiag.ProtoUDP})
	defer d.Close()
	var stderr bytes.Buffer
	n := &namespace{d: d}
	h := &host{self: n, nss: []*namespace{n}, stderr: &stderr}
	for i := range 2 {
		var out bytes.Buffer
		if err := h.Snapshot(func(b []byte) error { out.Write(b); return nil }, 0); err != nil {
			t.Fatalf("dump %d: %v", i, err)
		}
		if !strings.Contains(out.String(), `"local":{"ip":"127.0.0.1","port":80}`) {
			t.Errorf("dump %d: no TCP listener in %s", i, out.String())
		}
	}
	if strings.Count(stderr.String(), "udp_diag") != 1 {
		t.Errorf("warning %q, want one naming udp_diag", stderr.String())
	}
	if udpAsked != 1 {
		t.Errorf("UDP asked %d times, want once", udpAsked)
	}
}
