package ecs

import (
	"fmt"
	"time"

	"github.com/sockpipe/sockpipe/internal/record"
)

var t0 = time.Date(2026, 11, 26, 4, 30, 0, 123456789, time.UTC)

type family struct {
	name, fam             string
	local, remote         string
	listenLocal, listenRm string
}

var families = []family{
	{name: "v4", fam: record.FamilyIPv4, local: "10.0.0.5", remote: "93.184.216.34", listenLocal: "0.0.0.0", listenRm: "0.0.0.0"},
	{name: "v6", fam: record.FamilyIPv6, local: "2001:db8::5", remote: "2001:db8:1::99", listenLocal: "::", listenRm: "::"},
	{name: "mapped", fam: record.FamilyIPv6, local: "::ffff:10.0.0.5", remote: "::ffff:93.184.216.34", listenLocal: "::", listenRm: "::"},
}

// Enrichment bits of a corpus record.
const (
	withProcess = 1 << iota
	withError
	withUser
	withHost
	withNetNS      // the host's network namespace
	withContainer  // a container and its network namespace
	allEnrichments = withProcess | withError | withUser | withHost | withContainer
)

// Network namespaces (their inodes) and a container id.
const (
	hostNetNS      = 4026531840
	containerNetNS = 4026532561
	containerID    = "3f4b2a6c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a"
)

// corpusRecord builds one socket record.
func corpusRecord(f family, direction, event string, mask int) *record.Record {
	r := &record.Record{
		Type: record.TypeSocket, Time: t0, Family: f.fam, Transport: record.TransportTCP,
		Direction: direction, Inode: 4242, Cookie: 99,
	}
	switch direction {
	case record.DirectionListening:
		r.State = "listening"
		r.Local = record.Endpoint{IP: f.listenLocal, Port: 8080}
		r.Remote = record.Endpoint{IP: f.listenRm}
	case record.DirectionIngress:
		r.State = "established"
		r.Local = record.Endpoint{IP: f.local, Port: 8080}
		r.Remote = record.Endpoint{IP: f.remote, Port: 51234}
	default:
		r.State = "syn-sent"
		r.Local = record.Endpoint{IP: f.local, Port: 40000}
		r.Remote = record.Endpoint{IP: f.remote, Port: 443}
	}
	r.Event = event
	if event == record.EventClosed {
		r.State = "time-wait"
		r.FirstSeen = t0.Add(-10 * time.Second)
		if mask&withHost == 0 {
			r.LastSeen = t0.Add(-time.Second)
		}
	}
	if mask != 0 {
		r.UID, r.HasUID = 1000, true
	}
	if mask&withProcess != 0 {
		r.Process = &record.Process{
			PID: 4321, PPID: 1, Name: "curl", Executable: "/usr/bin/curl",
			Args:    []string{"curl", "-s", "https://example.com/a b"},
			Cmdline: "curl -s https://example.com/a b",
			Start:   t0.Add(-time.Minute),
		}
		if mask&withUser != 0 {
			r.Process.PPID = 0
			r.Process.Start = time.Time{}
			r.Process.Cmdline = ""
		}
	}
	switch {
	case mask&withContainer != 0:
		r.NetNS = containerNetNS
		r.Container = &record.Container{ID: containerID}
	case mask&withNetNS != 0:
		r.NetNS = hostNetNS
	}
	if mask&withError != 0 {
		r.ProcessError = fmt.Sprintf("process not found. inode=%d, tcp_state=%s", r.Inode, r.State)
	}
	if mask&withUser != 0 {
		r.User = &record.User{ID: "1000", Name: "jaime", FullName: "Jaime Soriano Pastor"}
		if mask&withProcess != 0 {
			r.User = &record.User{ID: "1001", Name: "zoe", FullName: "Zoë \"Z\" Ünal\t"}
		}
	}
	if mask&withHost != 0 {
		r.Remote.Host, r.Remote.ETLDPlusOne = "edge-1.example.com.", "example.com."
		if mask&withProcess != 0 {
			r.Remote.Host, r.Remote.ETLDPlusOne = "localhost.", ""
		}
	} else if mask&withError != 0 {
		r.Remote.HostError = "lookup 93.184.216.34: no such host"
	}
	return r
}

// udp makes a corpus record a UDP socket's, in the states sockdump gives
// UDP sockets: an unconnected one is closed (and listening), a connected
// one established.
func udp(r *record.Record) *record.Record {
	r.Transport = record.TransportUDP
	r.State = "established"
	if r.Direction == record.DirectionListening || r.Direction == "" {
		r.State = "closed"
	}
	return r
}

// corpus is every transport, direction, event and family, each with every
// combination of enrichments, in no namespace, the host's or a
// container's.
func corpus() []*record.Record {
	var out []*record.Record
	for _, f := range families {
		for _, transport := range []string{record.TransportTCP, record.TransportUDP} {
			as := func(r *record.Record) *record.Record {
				if transport == record.TransportUDP {
					return udp(r)
				}
				return r
			}
			for _, dir := range []string{record.DirectionListening, record.DirectionIngress, record.DirectionEgress, ""} {
				for _, ev := range []string{"", record.EventExisting, record.EventOpened, record.EventClosed, "changed"} {
					for mask := 0; mask <= allEnrichments; mask++ {
						if mask&withContainer != 0 && mask&withNetNS != 0 {
							continue // a container's namespace is not the host's
						}
						out = append(out, as(corpusRecord(f, dir, ev, mask)))
					}
				}
				// Connections that destroy notifications told of: with
				// the kernel's counters, short-lived or not. A UDP
				// record with them has them left out.
				for _, ev := range []string{record.EventOpened, record.EventClosed} {
					for _, mask := range []int{0, withError, allEnrichments} {
						out = append(out, as(destroyedRecord(f, dir, ev, mask, false)), as(destroyedRecord(f, dir, ev, mask, true)))
					}
				}
			}
		}
	}
	return out
}

// destroyedRecord is a corpus record of a connection whose destroy
// notification sockdiff folded in.
func destroyedRecord(f family, direction, event string, mask int, short bool) *record.Record {
	r := corpusRecord(f, direction, event, mask)
	r.Info = &record.TCPInfo{
		BytesAcked: 1201, BytesReceived: 53000, BytesSent: 1201, BytesRetrans: 0,
		SegsOut: 12, SegsIn: 40, TotalRetrans: 1, RTTMicros: 250,
	}
	if short {
		r.ShortLived = true
		r.State, r.Inode, r.HasUID, r.UID, r.User = "closed", 0, false, 0, nil
		r.FirstSeen = time.Time{}
		if event == record.EventClosed {
			r.LastSeen = r.Time
		}
		if mask&withError != 0 {
			r.ProcessError = "process has exited. inode=0, tcp_state=closed"
		}
	}
	return r
}

// corpusOptions are the option sets every corpus record is built with.
func corpusOptions() []Options {
	ds := &DataStream{Type: "metrics", Dataset: "system.socket", Namespace: "default"}
	return []Options{
		{Hostname: "host.example.com"},
		{Hostname: "host.example.com", AgentName: "edge", AgentType: "sockpipe", AgentVersion: "1.2.3", DataStream: ds, Period: 10 * time.Second},
		{},
		{Strict: true, Hostname: "host.example.com"},
		{Strict: true, Hostname: "host.example.com", AgentName: "edge", AgentType: "metricbeat", AgentVersion: "1.2.3", DataStream: ds, Period: 1500 * time.Millisecond},
		{Strict: true},
	}
}
