package netnsdump

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"

	"github.com/sockpipe/sockpipe/internal/inetdiag"
)

// TestNoUDPDiag: a kernel without udp_diag still gives the TCP sockets of
// a --udp dump, with one warning.
func TestNoUDPDiag(t *testing.T) {
	t.Parallel()
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
	var stderr bytes.Buffer
	h := NewHost(d, "", Config{Stderr: &stderr})
	defer h.Close()
	for i := range 2 {
		var out bytes.Buffer
		if err := h.Snapshot(context.Background(), Lines(func(b []byte) error { out.Write(b); return nil })); err != nil {
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
