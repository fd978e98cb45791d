package inetdiag

import (
	"encoding/binary"
	"time"
)

// TCPInfo holds the counters of struct tcp_info that say what a connection
// did. Fields the kernel did not send (an older, shorter tcp_info) are zero.
type TCPInfo struct {
	State        uint8
	Retransmits  uint8
	RTT          time.Duration // smoothed round-trip time
	RTTVar       time.Duration
	TotalRetrans uint32
	BytesAcked   uint64 // bytes sent and acknowledged
	BytesRecv    uint64 // bytes received
	SegsOut      uint32
	SegsIn       uint32
	BytesSent    uint64 // bytes sent, retransmissions included
	BytesRetrans uint64
}

// Offsets in struct tcp_info (linux/tcp.h), stable since each was added.
const (
	tiState        = 0
	tiRetransmits  = 2
	tiRTT          = 68 // tcpi_rtt, µs
	tiRTTVar       = 72
	tiTotalRetrans = 100
	tiBytesAcked   = 120 // Linux 4.1
	tiBytesRecv    = 128
	tiSegsOut      = 136 // Linux 4.2
	tiSegsIn       = 140
	tiBytesSent    = 200 // Linux 5.5
	tiBytesRetrans = 208
)

func parseTCPInfo(b []byte) *TCPInfo {
	u32 := func(off int) uint32 {
		if off+4 > len(b) {
			return 0
		}
		return binary.NativeEndian.Uint32(b[off:])
	}
	u64 := func(off int) uint64 {
		if off+8 > len(b) {
			return 0
		}
		return binary.NativeEndian.Uint64(b[off:])
	}
	ti := &TCPInfo{}
	if len(b) > tiState {
		ti.State = b[tiState]
	}
	if len(b) > tiRetransmits {
		ti.Retransmits = b[tiRetransmits]
	}
	ti.RTT = time.Duration(u32(tiRTT)) * time.Microsecond
	ti.RTTVar = time.Duration(u32(tiRTTVar)) * time.Microsecond
	ti.TotalRetrans = u32(tiTotalRetrans)
	ti.BytesAcked = u64(tiBytesAcked)
	ti.BytesRecv = u64(tiBytesRecv)
	ti.SegsOut = u32(tiSegsOut)
	ti.SegsIn = u32(tiSegsIn)
	ti.BytesSent = u64(tiBytesSent)
	ti.BytesRetrans = u64(tiBytesRetrans)
	return ti
}
