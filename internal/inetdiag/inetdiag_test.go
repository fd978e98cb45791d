package inetdiag

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"
)

// msg builds an inet_diag_msg as the kernel lays it out.
func msg(s Socket, attrs ...[]byte) []byte {
	b := make([]byte, MsgLen)
	b[0], b[1], b[2], b[3] = s.Family, s.State, s.Timer, s.Retrans
	binary.BigEndian.PutUint16(b[4:], s.SrcPort)
	binary.BigEndian.PutUint16(b[6:], s.DstPort)
	if s.Family == AFInet {
		a, d := s.Src.As4(), s.Dst.As4()
		copy(b[8:], a[:])
		copy(b[24:], d[:])
	} else {
		a, d := s.Src.As16(), s.Dst.As16()
		copy(b[8:], a[:])
		copy(b[24:], d[:])
	}
	binary.NativeEndian.PutUint32(b[40:], s.Interface)
	binary.NativeEndian.PutUint32(b[44:], uint32(s.Cookie))
	binary.NativeEndian.PutUint32(b[48:], uint32(s.Cookie>>32))
	binary.NativeEndian.PutUint32(b[52:], s.Expires)
	binary.NativeEndian.PutUint32(b[56:], s.RQueue)
	binary.NativeEndian.PutUint32(b[60:], s.WQueue)
	binary.NativeEndian.PutUint32(b[64:], s.UID)
	binary.NativeEndian.PutUint32(b[68:], s.Inode)
	for _, a := range attrs {
		b = append(b, a...)
	}
	return b
}

func attr(typ uint16, data []byte) []byte {
	b := make([]byte, 4, 4+len(data)+3)
	binary.NativeEndian.PutUint16(b[0:], uint16(4+len(data)))
	binary.NativeEndian.PutUint16(b[2:], typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

var (
	v4 = Socket{Family: AFInet, State: 1, SrcPort: 8080, DstPort: 40000,
		Src: netip.MustParseAddr("127.0.0.1"), Dst: netip.MustParseAddr("127.0.0.2"),
		Cookie: 0x1234_0000_5678, UID: 1000, Inode: 4242, RQueue: 1, WQueue: 2}
	v6 = Socket{Family: AFInet6, State: 10, SrcPort: 443,
		Src: netip.MustParseAddr("::"), Dst: netip.MustParseAddr("::"), Inode: 7}
	mapped = Socket{Family: AFInet6, State: 6, SrcPort: 1, DstPort: 2,
		Src: netip.MustParseAddr("::ffff:127.0.0.1"), Dst: netip.MustParseAddr("::ffff:10.0.0.1")}
)

func TestParseMessage(t *testing.T) {
	t.Parallel()
	info := make([]byte, 232)
	info[0] = 7
	binary.NativeEndian.PutUint32(info[tiRTT:], 1500)
	binary.NativeEndian.PutUint64(info[tiBytesAcked:], 100)
	binary.NativeEndian.PutUint64(info[tiBytesRecv:], 200)
	binary.NativeEndian.PutUint32(info[tiSegsOut:], 3)
	withInfo := v4
	withInfo.Info = &TCPInfo{State: 7, RTT: 1500 * 1000, BytesAcked: 100, BytesRecv: 200, SegsOut: 3}
	shortInfo := v4
	shortInfo.Info = &TCPInfo{State: 7}
	udp := v4
	udp.Protocol = ProtoUDP

	for _, tt := range []struct {
		name string
		b    []byte
		want Socket
		err  bool
	}{
		{name: "ipv4", b: msg(v4), want: v4},
		{name: "ipv6 listener", b: msg(v6), want: v6},
		{name: "ipv4-mapped stays ipv6", b: msg(mapped), want: mapped},
		{name: "unknown attributes skipped", b: msg(v4, attr(99, []byte{1, 2, 3}), attr(0x8000|98, nil)), want: v4},
		{name: "tcp_info", b: msg(v4, attr(inetDiagInfo, info)), want: withInfo},
		{name: "protocol of a destroy notification", b: msg(v4, attr(inetDiagProtocol, []byte{ProtoUDP})), want: udp},
		{name: "empty protocol attribute ignored", b: msg(v4, attr(inetDiagProtocol, nil)), want: v4},
		{name: "short tcp_info from an old kernel", b: msg(v4, attr(inetDiagInfo, info[:8])), want: shortInfo},
		{name: "trailing bytes under an attribute header ignored", b: append(msg(v4), 1, 2), want: v4},
		{name: "empty", b: nil, err: true},
		{name: "short", b: msg(v4)[:71], err: true},
		{name: "unknown family", b: func() []byte { b := msg(v4); b[0] = 1; return b }(), err: true},
		{name: "attribute longer than message", b: append(msg(v4), 200, 0, 1, 0), err: true},
		{name: "attribute length under header", b: append(msg(v4), 2, 0, 1, 0), err: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMessage(tt.b)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if tt.err {
				return
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestRequest(t *testing.T) {
	t.Parallel()
	b := marshalRequest(AFInet6, ProtoUDP, AllStates, 1<<(inetDiagInfo-1))
	want := make([]byte, reqLen)
	want[0], want[1], want[2] = AFInet6, ProtoUDP, 2
	binary.NativeEndian.PutUint32(want[4:], AllStates)
	if diff := cmp.Diff(want, b); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func dumpReplies(t *testing.T, payloads ...[]byte) nltest.Func {
	return nltest.CheckRequest(
		[]netlink.HeaderType{sockDiagByFamily},
		[]netlink.HeaderFlags{netlink.Request | netlink.Dump},
		func(req []netlink.Message) ([]netlink.Message, error) {
			if len(req[0].Data) != reqLen || req[0].Data[1] != ProtoTCP {
				t.Errorf("request %x", req[0].Data)
			}
			var msgs []netlink.Message
			for _, p := range payloads {
				msgs = append(msgs, netlink.Message{
					Header: netlink.Header{Type: sockDiagByFamily, Sequence: req[0].Header.Sequence, PID: req[0].Header.PID},
					Data:   p,
				})
			}
			// The kernel ends a dump with an empty NLMSG_DONE; Multipart
			// turns the last message into it.
			msgs = append(msgs, netlink.Message{Header: netlink.Header{Sequence: req[0].Header.Sequence, PID: req[0].Header.PID}})
			return nltest.Multipart(msgs)
		})
}

func TestDump(t *testing.T) {
	t.Parallel()
	c := NewConn(nltest.Dial(dumpReplies(t, msg(v4), msg(mapped))))
	defer c.Close()
	var got []Socket
	if err := c.Dump(AFInet, ProtoTCP, AllStates, func(s *Socket) error { got = append(got, *s); return nil }); err != nil {
		t.Fatal(err)
	}
	w4, wm := v4, mapped
	w4.Protocol, wm.Protocol = ProtoTCP, ProtoTCP
	if diff := cmp.Diff([]Socket{w4, wm}, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestDumpBadMessage(t *testing.T) {
	t.Parallel()
	c := NewConn(nltest.Dial(dumpReplies(t, msg(v4), []byte{1, 2, 3})))
	defer c.Close()
	n := 0
	err := c.Dump(AFInet, ProtoTCP, AllStates, func(*Socket) error { n++; return nil })
	if !errors.Is(err, ErrShort) || n != 1 {
		t.Fatalf("err = %v after %d sockets, want ErrShort after 1", err, n)
	}
}

func TestDumpCallbackError(t *testing.T) {
	t.Parallel()
	c := NewConn(nltest.Dial(dumpReplies(t, msg(v4), msg(v6))))
	defer c.Close()
	stop := errors.New("stop")
	n := 0
	if err := c.Dump(AFInet, ProtoTCP, AllStates, func(*Socket) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("err = %v after %d calls", err, n)
	}
}

func TestDumpKernelErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		errno unix.Errno
		want  error
	}{
		{unix.ENOENT, ErrUnsupported},
		{unix.EINVAL, ErrUnsupported},
		{unix.EOPNOTSUPP, ErrUnsupported},
		{unix.EPERM, ErrPermission},
		{unix.EACCES, ErrPermission},
	} {
		c := NewConn(nltest.Dial(func(req []netlink.Message) ([]netlink.Message, error) {
			msgs, err := nltest.Error(int(tt.errno), req)
			// The kernel's NLMSG_ERROR carries no request flags (NLM_F_MATCH
			// would read as NLM_F_ACK_TLVS).
			msgs[0].Header.Flags = 0
			return msgs, err
		}))
		err := c.Dump(AFInet, ProtoTCP, AllStates, func(*Socket) error { return nil })
		if !errors.Is(err, tt.want) {
			t.Errorf("errno %v: err = %v, want %v", tt.errno, err, tt.want)
		}
		c.Close()
	}
}

func TestClassifyDialErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		err  error
		want error
	}{
		{unix.EPROTONOSUPPORT, ErrUnsupported},
		{unix.EAFNOSUPPORT, ErrUnsupported},
		{unix.EPERM, ErrPermission},
	} {
		if err := classify("open", tt.err); !errors.Is(err, tt.want) {
			t.Errorf("classify(%v) = %v", tt.err, err)
		}
	}
	if err := classify("open", unix.EIO); errors.Is(err, ErrUnsupported) || errors.Is(err, ErrPermission) || !errors.Is(err, unix.EIO) {
		t.Errorf("classify(EIO) = %v", err)
	}
}

func FuzzParseMessage(f *testing.F) {
	info := make([]byte, 232)
	for _, b := range [][]byte{msg(v4), msg(v6), msg(mapped), msg(v4, attr(inetDiagInfo, info)), msg(v4, attr(99, []byte{1})), msg(v4, attr(inetDiagProtocol, []byte{ProtoUDP})), {}, make([]byte, 80)} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseMessage(b)
		if err != nil {
			return
		}
		if !s.Src.IsValid() || !s.Dst.IsValid() {
			t.Fatalf("invalid addresses from %x", b)
		}
	})
}

// TestDumpBothFamilies: AFUnspec sends one TCPDIAG_GETSOCK request (struct
// inet_diag_req, no family) and reads replies of that type, of both
// families.
func TestDumpBothFamilies(t *testing.T) {
	t.Parallel()
	c := NewConn(nltest.Dial(nltest.CheckRequest(
		[]netlink.HeaderType{tcpDiagGetSock},
		[]netlink.HeaderFlags{netlink.Request | netlink.Dump},
		func(req []netlink.Message) ([]netlink.Message, error) {
			want := make([]byte, reqV1Len)
			binary.NativeEndian.PutUint32(want[52:56], AllStates)
			if diff := cmp.Diff(want, req[0].Data); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
			h := netlink.Header{Type: tcpDiagGetSock, Sequence: req[0].Header.Sequence, PID: req[0].Header.PID}
			return nltest.Multipart([]netlink.Message{
				{Header: h, Data: msg(v4)}, {Header: h, Data: msg(v6)},
				{Header: netlink.Header{Sequence: h.Sequence, PID: h.PID}},
			})
		})))
	defer c.Close()
	var got []uint8
	if err := c.Dump(AFUnspec, ProtoTCP, AllStates, func(s *Socket) error { got = append(got, s.Family); return nil }); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint8{AFInet, AFInet6}, got); diff != "" {
		t.Errorf("families (-want +got):\n%s", diff)
	}
	if err := c.Dump(AFUnspec, ProtoUDP, AllStates, func(*Socket) error { return nil }); !errors.Is(err, ErrUnsupported) {
		t.Errorf("UDP of both families: err = %v, want ErrUnsupported", err)
	}
}
