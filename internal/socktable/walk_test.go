package socktable

import (
	"bytes"
	"encoding/binary"
	"errors"
	"golang.org/x/sys/unix"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sockpipe/sockpipe/internal/inetdiag"
	"github.com/sockpipe/sockpipe/internal/testprog"
)

// seedFile holds real records of the iterator, written by
// TestWriteSeeds: an MPTCP listener, plain and IPv6 ones, connections, a
// UDP socket.
var seedFile = filepath.Join("testdata", "records.bin")

// TestWriteSeeds writes seedFile from this process's own sockets when
// SOCKTABLE_WRITE_SEEDS is set (as root), the sockets' kernel addresses
// replaced by small numbers.
func TestWriteSeeds(t *testing.T) {
	if os.Getenv("SOCKTABLE_WRITE_SEEDS") == "" {
		t.Skip("set SOCKTABLE_WRITE_SEEDS=1 to write " + seedFile)
	}
	l4, err := net.Listen("tcp4", "127.0.0.1:0") // MPTCP where the kernel has it
	if err != nil {
		t.Fatal(err)
	}
	defer l4.Close()
	lc := net.ListenConfig{}
	lc.SetMultipathTCP(false)
	l6, err := lc.Listen(t.Context(), "tcp6", "[::1]:0")
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	defer l6.Close()
	c, err := net.Dial("tcp6", l6.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := l6.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	u, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	w, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	r, err := w.link.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []byte
	ports := map[uint16]bool{}
	for _, a := range []net.Addr{l4.Addr(), l6.Addr()} {
		ports[uint16(a.(*net.TCPAddr).Port)] = true
	}
	ports[uint16(u.LocalAddr().(*net.UDPAddr).Port)] = true
	n := uint64(0)
	if err := Decode(r, func(s *Socket) {
		if !ports[s.SrcPort] && !ports[s.DstPort] {
			return
		}
		n++
		s.Addr = n
		out = append(out, encode(s)...)
	}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(seedFile, out, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d records", n)
}

// encode is the inverse of parse.
func encode(s *Socket) []byte {
	ne := binary.NativeEndian
	e := make([]byte, entrySize)
	ne.PutUint64(e[0:], s.Addr)
	ne.PutUint64(e[8:], s.Cookie)
	ne.PutUint64(e[16:], s.Inode)
	ne.PutUint32(e[24:], uint32(s.NetNS))
	ne.PutUint32(e[28:], s.UID)
	ne.PutUint32(e[32:], s.SynQueue)
	ne.PutUint32(e[36:], s.AcceptQueue)
	ne.PutUint32(e[40:], s.Interface)
	ne.PutUint16(e[44:], s.SrcPort)
	ne.PutUint16(e[46:], s.DstPort)
	e[48], e[49] = s.Family, s.State
	if s.MPTCP {
		e[50] |= flagMPTCP
	}
	if s.Protocol == inetdiag.ProtoUDP {
		e[50] |= flagUDP
	}
	if s.Family == inetdiag.AFInet6 {
		copy(e[52:68], s.Src[:])
		copy(e[68:84], s.Dst[:])
	} else {
		copy(e[52:56], s.Src[12:])
		copy(e[68:72], s.Dst[12:])
	}
	return e
}

// oneByte reads one byte at a time, as a reader of a pipe may.
type oneByte struct{ r *bytes.Reader }

func (o oneByte) Read(p []byte) (int, error) { return o.r.Read(p[:min(1, len(p))]) }

func seeds(t testing.TB) []byte {
	b, err := os.ReadFile(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecode(t *testing.T) {
	b := seeds(t)
	var got []Socket
	if err := Decode(bytes.NewReader(b), func(s *Socket) { got = append(got, *s) }); err != nil {
		t.Fatal(err)
	}
	if len(got) < 4 {
		t.Fatalf("%d records in %s, want at least 4", len(got), seedFile)
	}
	var mptcp, v6, listen, udp bool
	for i := range got {
		s := &got[i]
		if !bytes.Equal(encode(s), b[i*entrySize:(i+1)*entrySize]) {
			t.Errorf("record %d: decoded %+v encodes otherwise", i, *s)
		}
		d := s.Inetdiag()
		if d.Src.Is4() != (s.Family == inetdiag.AFInet) || !d.Src.IsLoopback() {
			t.Errorf("record %d: local address %v, family %d", i, d.Src, s.Family)
		}
		mptcp = mptcp || s.MPTCP
		v6 = v6 || s.Family == inetdiag.AFInet6
		listen = listen || s.State == inetdiag.StateListen
		udp = udp || s.Protocol == inetdiag.ProtoUDP
	}
	if !mptcp || !v6 || !listen || !udp {
		t.Errorf("%s: MPTCP %v, IPv6 %v, listener %v, UDP %v; want all", seedFile, mptcp, v6, listen, udp)
	}
	var again []Socket
	if err := Decode(oneByte{bytes.NewReader(b)}, func(s *Socket) { again = append(again, *s) }); err != nil || !slices.Equal(again, got) {
		t.Errorf("one byte at a time: %v, %d records, want %d", err, len(again), len(got))
	}
	if err := Decode(bytes.NewReader(b[:entrySize+3]), func(*Socket) {}); err == nil {
		t.Error("a torn record: no error")
	}
	// The kernel's EAGAIN after a million files without a socket: read
	// on.
	var after []Socket
	if err := Decode(&eagain{r: oneByte{bytes.NewReader(b)}}, func(s *Socket) { after = append(after, *s) }); err != nil || !slices.Equal(after, got) {
		t.Errorf("with EAGAIN between reads: %v, %d records, want %d", err, len(after), len(got))
	}
	if err := Decode(&eagain{r: bytes.NewReader(b), always: true}, func(*Socket) {}); !errors.Is(err, unix.EAGAIN) {
		t.Errorf("EAGAIN for ever: %v, want it after a bound", err)
	}
}

// eagain fails every other read with EAGAIN, or every one.
type eagain struct {
	r      io.Reader
	n      int
	always bool
}

func (e *eagain) Read(p []byte) (int, error) {
	if e.n++; e.always || e.n%2 == 1 {
		return 0, unix.EAGAIN
	}
	return e.r.Read(p)
}

func FuzzDecode(f *testing.F) {
	b := seeds(f)
	f.Add(b)
	for i := 0; i+entrySize <= len(b); i += entrySize {
		f.Add(b[i : i+entrySize])
	}
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		err := Decode(bytes.NewReader(b), func(s *Socket) {
			n++
			_ = s.Inetdiag()
		})
		if (err == nil) != (len(b)%entrySize == 0) || n != len(b)/entrySize {
			t.Fatalf("%d bytes: %d records, %v", len(b), n, err)
		}
	})
}

// TestUnprivileged checks that, without privileges, Open says so.
func TestUnprivileged(t *testing.T) {
	if os.Getuid() != 0 {
		// Where the test itself runs in a container, another namespace
		// or a kernel without BTF may be what Open names first.
		if _, err := Open(); !errors.Is(err, ErrPermission) && !errors.Is(err, ErrPidNamespace) &&
			!errors.Is(err, ErrUserNamespace) && !errors.Is(err, ErrNoBTF) {
			t.Errorf("Open: %v, want %v", err, ErrPermission)
		}
		return
	}
	bin := testprog.CopySelf(t, "socktable-nobody")
	cmd := exec.Command(bin, "-test.run", "^TestUnprivileged$")
	testprog.AsNobody(t, cmd)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("as nobody: %v\n%s", err, out)
	}
}

// BenchmarkWalk walks the host's sockets: its cost follows the open
// files of every process, whatever the number of namespaces.
func BenchmarkWalk(b *testing.B) {
	if os.Getuid() != 0 {
		b.Skip("the walk needs root")
	}
	w, err := Open()
	if err != nil {
		b.Skip(err)
	}
	defer w.Close()
	n := 0
	for b.Loop() {
		m, err := w.Walk()
		if err != nil {
			b.Fatal(err)
		}
		n = 0
		for _, s := range m {
			n += len(s)
		}
	}
	b.ReportMetric(float64(n), "sockets")
}
