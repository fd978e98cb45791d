package socktable

import (
	"fmt"
	"os"
	"testing"

	"github.com/sockpipe/sockpipe/internal/inetdiag"
)

// Real sockstat and sockstat6 files (Linux 6.18).
const (
	sockstatText = `sockets: used 100210
TCP: inuse 100101 orphan 0 tw 3 alloc 100101 mem 398
UDP: inuse 4 mem 0
UDPLITE: inuse 0
RAW: inuse 0
FRAG: inuse 0 memory 0
`
	sockstat6Text = `TCP6: inuse 7
UDP6: inuse 2
UDPLITE6: inuse 0
RAW6: inuse 0
FRAG6: inuse 0 memory 0
`
)

func TestParseSockstat(t *testing.T) {
	var st Sockstat
	if err := ParseSockstat([]byte(sockstatText), &st); err != nil {
		t.Fatal(err)
	}
	if err := ParseSockstat([]byte(sockstat6Text), &st); err != nil {
		t.Fatal(err)
	}
	if want := (Sockstat{TCPInUse: 100101, TCP6InUse: 7, TimeWait: 3, UDPInUse: 4, UDP6InUse: 2}); st != want {
		t.Errorf("got %+v, want %+v", st, want)
	}
	for _, bad := range []string{"", "UDP: inuse 1\n", "TCP: inuse x tw 0\n", "TCP: inuse 1\n", "TCP: inuse -1 tw 0\n", "TCP6: tw 1\n", "TCP: inuse 1 tw 0\nUDP: inuse x\n", "TCP: inuse 1 tw 0\nUDP6: mem 1\n"} {
		if err := ParseSockstat([]byte(bad), &Sockstat{}); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestReadSockstat(t *testing.T) {
	st, err := ReadSockstat("/proc/self/net")
	if err != nil {
		t.Fatal(err)
	}
	if st.TCPInUse < 0 || st.TCP6InUse < 0 || st.TimeWait < 0 {
		t.Errorf("%+v", st)
	}
	dir := t.TempDir()
	os.WriteFile(dir+"/sockstat", []byte(sockstatText), 0o644)
	if st, err := ReadSockstat(dir); err != nil || st.TCPInUse != 100101 || st.TCP6InUse != 0 || st.UDPInUse != 4 {
		t.Errorf("without sockstat6: %+v, %v", st, err)
	}
}

func TestCovered(t *testing.T) {
	const tcp, udp = inetdiag.ProtoTCP, inetdiag.ProtoUDP
	const v4, v6 = inetdiag.AFInet, inetdiag.AFInet6
	socks := []Socket{{Family: v4, Protocol: tcp, SrcPort: 80, State: 10, Cookie: 1}, {Family: v6, Protocol: tcp, SrcPort: 80, DstPort: 5000, State: 1, Cookie: 2}, {Family: v4, Protocol: udp, SrcPort: 53, State: 7, Cookie: 3}}
	st := Sockstat{TCPInUse: 1, TCP6InUse: 1}
	if states, err := Covered(socks, st, st); err != nil || states != 0 {
		t.Errorf("covered: %v, states %#x", err, states)
	}
	tw := Sockstat{TCPInUse: 1, TCP6InUse: 1, TimeWait: 1}
	if states, err := Covered(socks, tw, tw); err != nil || states != 1<<StateTimeWait {
		t.Errorf("time-wait: %v, states %#x", err, states)
	}
	synq := []Socket{{Family: v4, Protocol: tcp, State: 10, Cookie: 1, SynQueue: 1}, socks[1]}
	if states, err := Covered(synq, tw, tw); err != nil || states != 1<<StateTimeWait|1<<StateNewSynRecv {
		t.Errorf("time-wait and SYN queue: %v, states %#x", err, states)
	}
	if states, err := Covered(socks, st, tw); err != nil || states != 1<<StateTimeWait {
		t.Errorf("a time-wait socket since the walk began: %v, states %#x", err, states)
	}
	for name, c := range map[string]struct {
		socks         []Socket
		before, after Sockstat
	}{
		"changed": {socks, st, Sockstat{TCPInUse: 2, TCP6InUse: 1}},
		"missing": {socks[:1], st, st},
		"cookie":  {[]Socket{socks[0], {Family: v6, Protocol: tcp, State: 1}}, st, st},
		// One IPv4 socket too many (a raw one, say) and one IPv6 missing.
		"families": {[]Socket{socks[0], {Family: v4, Protocol: tcp, State: 1, Cookie: 9}}, st, st},
	} {
		if _, err := Covered(c.socks, c.before, c.after); err == nil {
			t.Errorf("%s: covered", name)
		}
	}
	// UDP: the one UDP socket of socks, against the UDP counts.
	u := Sockstat{UDPInUse: 1}
	if err := CoveredUDP(socks, u, u); err != nil {
		t.Errorf("UDP covered: %v", err)
	}
	for name, c := range map[string]struct {
		socks         []Socket
		before, after Sockstat
	}{
		"changed": {socks, u, Sockstat{UDP6InUse: 1}},
		"missing": {socks[:2], u, u},
		"cookie":  {[]Socket{{Protocol: udp, State: 7}}, u, u},
	} {
		if err := CoveredUDP(c.socks, c.before, c.after); err == nil {
			t.Errorf("UDP %s: covered", name)
		}
	}
}

func FuzzParseSockstat(f *testing.F) {
	f.Add([]byte(sockstatText))
	f.Add([]byte(sockstat6Text))
	f.Add([]byte("TCP: inuse 1 tw"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var st Sockstat
		if err := ParseSockstat(b, &st); err != nil {
			return
		}
		if st.TCPInUse < 0 || st.TCP6InUse < 0 || st.TimeWait < 0 || st.UDPInUse < 0 || st.UDP6InUse < 0 {
			t.Fatalf("negative count %+v", st)
		}
		// What it read, written back, reads the same.
		text := fmt.Sprintf("TCP: inuse %d orphan 0 tw %d\nUDP: inuse %d mem 0\n", st.TCPInUse, st.TimeWait, st.UDPInUse)
		text6 := fmt.Sprintf("TCP6: inuse %d\nUDP6: inuse %d\n", st.TCP6InUse, st.UDP6InUse)
		var again Sockstat
		if ParseSockstat([]byte(text), &again) != nil || ParseSockstat([]byte(text6), &again) != nil || again != st {
			t.Fatalf("%+v reads back as %+v", st, again)
		}
	})
}
