package record

import (
	"strings"
	"testing"
	"time"
)

func TestStateName(t *testing.T) {
	for s, want := range map[uint8]string{
		1: "established", 2: "syn-sent", 3: "syn-recv", 4: "fin-wait-1", 5: "fin-wait-2",
		6: "time-wait", 7: "closed", 8: "close-wait", 9: "last-ack", 10: "listening",
		11: "closing", 12: "syn-recv", 0: "unknown-0", 13: "unknown-13", 255: "unknown-255",
	} {
		if got := StateName(s); got != want {
			t.Errorf("StateName(%d) = %q, want %q", s, got, want)
		}
	}
}

func TestKey(t *testing.T) {
	r := Record{
		Type: TypeSocket, Family: FamilyIPv6, NetNS: 7,
		Local: Endpoint{IP: "::1", Port: 80}, Remote: Endpoint{IP: "::1", Port: 4000},
		Inode: 1, Cookie: 2,
	}
	want := Key{NetNS: 7, Transport: TransportTCP, Family: FamilyIPv6, LocalIP: "::1", LocalPort: 80, RemoteIP: "::1", RemotePort: 4000}
	if got := r.Key(); got != want {
		t.Errorf("Key() = %+v, want %+v (a record without a transport is TCP)", got, want)
	}
	// Neither the inode nor the cookie is part of it.
	r2 := r
	r2.Inode, r2.Cookie = 0, 99
	if r2.Key() != r.Key() {
		t.Errorf("inode and cookie changed the key")
	}
	r2.Transport = TransportUDP
	if r2.Key() == r.Key() {
		t.Errorf("the transport did not change the key")
	}
	r2 = r
	r2.NetNS = 8
	if r2.Key() == r.Key() {
		t.Errorf("the network namespace did not change the key")
	}
}

func TestValidate(t *testing.T) {
	now := time.Date(2026, 11, 26, 4, 30, 0, 0, time.UTC)
	sock := func(f func(*Record)) *Record {
		r := &Record{Type: TypeSocket, Time: now, Family: FamilyIPv4,
			Local: Endpoint{IP: "127.0.0.1", Port: 80}, Remote: Endpoint{IP: "0.0.0.0"}}
		if f != nil {
			f(r)
		}
		return r
	}
	for _, tt := range []struct {
		name    string
		r       *Record
		wantErr string
	}{
		{"socket", sock(nil), ""},
		{"destroyed", sock(func(r *Record) { r.Type = TypeDestroyed }), ""},
		{"snapshot", &Record{Type: TypeSnapshot, Time: now}, ""},
		{"unknown type", &Record{Type: "note"}, ""},
		{"no type", &Record{}, `no "type"`},
		{"bad family", sock(func(r *Record) { r.Family = "ipx" }), `socket record: family "ipx" is neither "ipv4" nor "ipv6"`},
		{"no family", sock(func(r *Record) { r.Family = "" }), `socket record: no "family"`},
		{"destroyed without family", sock(func(r *Record) { r.Type, r.Family = TypeDestroyed, "" }), `destroyed record: no "family"`},
		{"no local ip", sock(func(r *Record) { r.Local.IP = "" }), `socket record: no "local.ip"`},
		{"no remote ip", sock(func(r *Record) { r.Remote.IP = "" }), `socket record: no "remote.ip"`},
		{"no time", sock(func(r *Record) { r.Time = time.Time{} }), `socket record: no "time"`},
		{"destroyed without time", sock(func(r *Record) { r.Type, r.Time = TypeDestroyed, time.Time{} }), `destroyed record: no "time"`},
		{"snapshot without time", &Record{Type: TypeSnapshot}, `snapshot record: no "time"`},
	} {
		err := tt.r.Validate()
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: Validate() = %v, want %q", tt.name, err, tt.wantErr)
		}
	}
}
