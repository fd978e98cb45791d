package inetdiag

import (
	"errors"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// The kernel cannot be made to overflow a receive buffer or send a broken
// notification on demand; a fake socket stands in for those cases.
func TestEventsReceive(t *testing.T) {
	t.Parallel()
	calls := 0
	e := &Events{c: nltest.Dial(func(req []netlink.Message) ([]netlink.Message, error) {
		calls++
		switch calls {
		case 1:
			return []netlink.Message{
				{Header: netlink.Header{Type: sockDiagByFamily}, Data: msg(v4)},
				{Header: netlink.Header{Type: sockDiagByFamily}, Data: []byte{1, 2}},
				{Header: netlink.Header{Type: 99}, Data: msg(v6)},
				{Header: netlink.Header{Type: sockDiagByFamily}, Data: msg(mapped)},
			}, nil
		case 2:
			return nil, unix.ENOBUFS
		default:
			return []netlink.Message{{Header: netlink.Header{Type: sockDiagByFamily}, Data: msg(v6)}}, nil
		}
	})}
	defer e.Close()

	socks, err := e.Receive()
	if len(socks) != 2 || socks[0].Src != v4.Src || socks[1].Src != mapped.Src {
		t.Errorf("first receive: %+v", socks)
	}
	if !errors.Is(err, ErrShort) {
		t.Errorf("broken message: err = %v, want ErrShort", err)
	}
	if _, err := e.Receive(); !errors.Is(err, ErrOverflow) {
		t.Errorf("ENOBUFS: err = %v, want ErrOverflow", err)
	}
	if socks, err := e.Receive(); err != nil || len(socks) != 1 {
		t.Errorf("after an overflow: %v, %v", socks, err)
	}
}

// A notification says its protocol since Linux 4.4; before, a socket that
// joined the groups of one protocol knows it anyway.
func TestEventsProtocol(t *testing.T) {
	t.Parallel()
	msgs := []netlink.Message{
		{Header: netlink.Header{Type: sockDiagByFamily}, Data: msg(v4)},
		{Header: netlink.Header{Type: sockDiagByFamily}, Data: msg(v4, attr(inetDiagProtocol, []byte{ProtoTCP}))},
	}
	socks, err := parseEvents(msgs, ProtoUDP)
	if err != nil || len(socks) != 2 || socks[0].Protocol != ProtoUDP || socks[1].Protocol != ProtoTCP {
		t.Errorf("parseEvents = %+v, %v", socks, err)
	}
	if socks, _ := parseEvents(msgs[:1], 0); socks[0].Protocol != 0 {
		t.Errorf("no protocol known: got %d", socks[0].Protocol)
	}
}
