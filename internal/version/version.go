// Package version is the version of sockpipe's programs: the one that
// --version prints and that sockecs writes as agent.version.
//
// A release build sets it with
//
//	go build -ldflags "-X github.com/sockpipe/sockpipe/internal/version.version=1.2.3"
//
// (examples/bench and the packages do so from git describe). Otherwise it
// comes from the module's build information: the module version when
// installed with go install, or 0.0.0-dev with the commit when built from
// a checkout.
package version

import (
	"runtime/debug"
	"strings"
)

var version string

// String returns the version, without a leading "v".
func String() string {
	if version != "" {
		return strings.TrimPrefix(version, "v")
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "0.0.0-dev"
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) string {
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return strings.TrimPrefix(v, "v")
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = ".dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return "0.0.0-dev"
	}
	return "0.0.0-dev+" + rev + dirty
}
