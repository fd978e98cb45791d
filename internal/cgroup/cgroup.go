// Package cgroup finds the container a process runs in from its
// /proc/PID/cgroup file.
//
// Container runtimes put every container in a cgroup of its own, named
// after the container's id, 64 lower-case hex digits:
//
//	Docker, cgroupfs driver           /docker/ID
//	Docker, systemd driver            /system.slice/docker-ID.scope
//	Kubernetes, cgroupfs driver       /kubepods/burstable/podUID/ID
//	                                  /kubepods/besteffort/podUID/ID
//	                                  /kubepods/podUID/ID  (guaranteed)
//	Kubernetes, systemd driver        /kubepods.slice/kubepods-burstable.slice/
//	                                    kubepods-burstable-podUID.slice/cri-containerd-ID.scope
//	                                  (crio-ID.scope for CRI-O, docker-ID.scope
//	                                  for Docker; no QoS slice when guaranteed)
//	CRI-O, cgroupfs driver            /kubepods/besteffort/podUID/crio-ID
//	Podman                            /machine.slice/libpod-ID.scope
//	                                  /machine.slice/libpod-ID.scope/container
//	Podman, rootless                  /user.slice/user-1000.slice/user@1000.service/
//	                                    user.slice/libpod-ID.scope
//
// A path component names a container when it is the id itself, or a name,
// a dash and the id, with or without ".scope": that covers the layouts
// above and runtimes that follow the same systemd convention (a
// "RUNTIME-ID.scope" unit). Components after the container's own (a
// systemd inside the container puts itself in "init.scope"; Podman and
// CRI-O may add "container") are looked through: the innermost component
// that names a container wins, so a process of a container nested in
// another (Docker in Docker: /docker/OUTER/docker/INNER) gets the inner one.
//
// Conmon, the monitor that CRI-O and Podman start for each container, runs
// in "crio-conmon-ID.scope" or "libpod-conmon-ID.scope". It runs outside
// the container it watches, in the host's namespaces, so those components
// name no container.
//
// The file has one line per hierarchy, "ID:CONTROLLERS:PATH": one line
// "0::PATH" under cgroup v2, one line per controller hierarchy under
// cgroup v1, both on hybrid hosts. The v2 line wins when it names a
// container, then the first v1 line that does; v1 hierarchies where the
// runtime did not place the process show "/" and name none.
//
// Paths are relative to the cgroup namespace of the process that reads the
// file: a reader in a container with a private cgroup namespace sees
// "/../docker-ID.scope" for another container (handled: ".." is just
// another component) and "/" for the processes of its own container (no
// container found).
//
// Ids of other shapes (Cloud Foundry's UUIDs, ECS task ids) are not
// recognized.
package cgroup

import "bytes"

// IDLen is the length of a container id: 64 hex digits.
const IDLen = 64

// ContainerID returns the id of the container that the contents b of a
// /proc/PID/cgroup file place the process in, or "" when it names none.
// Malformed lines are ignored.
func ContainerID(b []byte) string {
	var v1 []byte
	for len(b) > 0 {
		var line []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			line, b = b, nil
		}
		v2, path, ok := splitLine(line)
		if !ok {
			continue
		}
		id := fromPath(path)
		if id == nil {
			continue
		}
		if v2 {
			return string(id)
		}
		if v1 == nil {
			v1 = id
		}
	}
	return string(v1)
}

// splitLine splits a line "HIERARCHY:CONTROLLERS:PATH" and reports whether
// it is the cgroup v2 line ("0::PATH"). The path itself may hold colons.
func splitLine(line []byte) (v2 bool, path []byte, ok bool) {
	i := bytes.IndexByte(line, ':')
	if i < 0 {
		return false, nil, false
	}
	j := bytes.IndexByte(line[i+1:], ':')
	if j < 0 {
		return false, nil, false
	}
	hier, ctrls := line[:i], line[i+1:i+1+j]
	path = line[i+1+j+1:]
	// The kernel marks the path of a removed cgroup (a process that
	// outlived its container, a zombie) under cgroup v2.
	path = bytes.TrimSuffix(bytes.TrimRight(path, " \r\t"), []byte(" (deleted)"))
	return string(hier) == "0" && len(ctrls) == 0, path, true
}

// fromPath returns the id named by the innermost component of path that
// names a container, or nil.
func fromPath(path []byte) []byte {
	for len(path) > 0 {
		k := bytes.LastIndexByte(path, '/')
		comp := path[k+1:]
		if k < 0 {
			path = nil
		} else {
			path = path[:k]
		}
		if id := fromComponent(comp); id != nil {
			return id
		}
	}
	return nil
}

// fromComponent returns the container id that one path component names:
// "ID", "NAME-ID" or either followed by ".scope", where NAME does not end
// in "conmon".
func fromComponent(c []byte) []byte {
	c = bytes.TrimSuffix(c, []byte(".scope"))
	if len(c) < IDLen {
		return nil
	}
	id := c[len(c)-IDLen:]
	if !isID(id) {
		return nil
	}
	name := c[:len(c)-IDLen]
	if len(name) == 0 {
		return id
	}
	if len(name) < 2 || name[len(name)-1] != '-' {
		return nil
	}
	if bytes.HasSuffix(name[:len(name)-1], []byte("conmon")) {
		return nil
	}
	return id
}

// isID reports whether b is IDLen lower-case hex digits.
func isID(b []byte) bool {
	if len(b) != IDLen {
		return false
	}
	for _, c := range b {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// IsID reports whether s has the shape of a container id: 64 lower-case
// hex digits.
func IsID(s string) bool { return isID([]byte(s)) }
