package version

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	for _, tt := range []struct {
		bi   debug.BuildInfo
		want string
	}{
		{debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "1.2.3"},
		{debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "0.0.0-dev"},
		{debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "84ee9dc0123456789abcdef"}, {Key: "vcs.modified", Value: "true"}}}, "0.0.0-dev+84ee9dc01234.dirty"},
	} {
		if got := fromBuildInfo(&tt.bi); got != tt.want {
			t.Errorf("fromBuildInfo(%+v) = %q, want %q", tt.bi, got, tt.want)
		}
	}
}

func TestStringLdflags(t *testing.T) {
	old := version
	t.Cleanup(func() { version = old })
	version = "v2.0.0"
	if got := String(); got != "2.0.0" {
		t.Errorf("String() = %q", got)
	}
}
