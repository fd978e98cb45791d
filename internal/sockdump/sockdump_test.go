package sockdump

import (
	"slices"
	"testing"

	"github.com/sockpipe/sockpipe/internal/inetdiag"
)

func TestParseProtocols(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		want []uint8
		err  bool
	}{
		{in: "tcp", want: []uint8{inetdiag.ProtoTCP}},
		{in: "udp", want: []uint8{inetdiag.ProtoUDP}},
		{in: "tcp,udp", want: []uint8{inetdiag.ProtoTCP, inetdiag.ProtoUDP}},
		{in: "UDP, tcp,udp", want: []uint8{inetdiag.ProtoUDP, inetdiag.ProtoTCP}},
		{in: "", err: true},
		{in: "tcp,sctp", err: true},
	} {
		got, err := ParseProtocols(tt.in)
		if (err != nil) != tt.err || !slices.Equal(got, tt.want) {
			t.Errorf("ParseProtocols(%q) = %v, %v; want %v (error %v)", tt.in, got, err, tt.want, tt.err)
		}
	}
}
