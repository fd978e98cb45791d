package pkg

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestVersionFromDescribe(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		wantErr  bool
	}{
		{in: "v1.2.3\n", want: "1.2.3"},
		{in: "1.2.3", want: "1.2.3"},
		{in: "v1.2.3-dirty", want: "1.2.3+dirty"},
		{in: "v1.2.3-4-gabcdef0", want: "1.2.3+4.gabcdef0"},
		{in: "v1.2.3-4-gabcdef0-dirty", want: "1.2.3+4.gabcdef0.dirty"},
		{in: "v2.0.0-rc.1", want: "2.0.0-rc.1"},
		{in: "v2.0.0-rc.1-7-g0123abc", want: "2.0.0-rc.1+7.g0123abc"},
		// No tag: git describe --always gives the commit.
		{in: "44883a9", want: "0.0.0-dev+44883a9"},
		{in: "44883a9-dirty", want: "0.0.0-dev+44883a9.dirty"},
		{in: "release-one", wantErr: true},
		{in: "", wantErr: true},
	} {
		got, err := VersionFromDescribe(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("VersionFromDescribe(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestForPackage checks the packaged units and examples against the
// repository's: every setting the same but for /usr/local/bin, which is
// /usr/bin; no manual install step left in the comments, and the
// systemctl enable lines kept.
func TestForPackage(t *testing.T) {
	for _, name := range []string{
		"systemd/sockpipe.service", "systemd/sockpipe-once.service", "systemd/sockpipe-once.timer",
		"systemd/all-netns.conf", "systemd/owners.conf", "cron/sockpipe",
	} {
		t.Run(name, func(t *testing.T) {
			example, err := os.ReadFile(filepath.Join("..", "..", "examples", name))
			if err != nil {
				t.Fatal(err)
			}
			got := string(ForPackage(example))
			if strings.Contains(got, "/usr/local") {
				t.Errorf("still names /usr/local:\n%s", got)
			}
			settings := func(s string) []string {
				var out []string
				for _, l := range strings.Split(s, "\n") {
					if l != "" && !strings.HasPrefix(l, "#") {
						out = append(out, l)
					}
				}
				return out
			}
			var want []string
			for _, l := range settings(string(example)) {
				l = strings.ReplaceAll(l, "/usr/local/bin:", "")
				want = append(want, strings.ReplaceAll(l, "/usr/local/bin", "/usr/bin"))
			}
			if diff := cmp.Diff(want, settings(got)); diff != "" {
				t.Errorf("settings (-want +got):\n%s", diff)
			}
			for _, bad := range []string{"go build", "install -m 755", "install -m 644 examples/", "in a clone"} {
				if strings.Contains(got, bad) {
					t.Errorf("still says %q:\n%s", bad, got)
				}
			}
			for _, l := range strings.Split(string(example), "\n") {
				if strings.HasPrefix(l, "#   systemctl enable") && !strings.Contains(got, l+"\n") {
					t.Errorf("lost %q", l)
				}
			}
			if strings.HasSuffix(name, ".service") {
				if !strings.Contains(got, "\nExecStart=/usr/bin/sockpipe-watch ") {
					t.Errorf("ExecStart does not run /usr/bin/sockpipe-watch:\n%s", got)
				}
				if !strings.Contains(got, "\nEnvironment=SOCKPIPE_BIN=/usr/bin\n") {
					t.Errorf("SOCKPIPE_BIN is not /usr/bin:\n%s", got)
				}
				if !strings.Contains(got, "# Installed by the sockpipe package, not enabled.") {
					t.Errorf("no word on enabling it:\n%s", got)
				}
			}
		})
	}
}

func TestGzipMan(t *testing.T) {
	page := []byte(".TH X 1\n.SH NAME\nx \\- y\n")
	z, err := gzipMan(page)
	if err != nil {
		t.Fatal(err)
	}
	// The header: magic, deflate, no flags (no name), no time, best
	// compression (Debian policy: gzip -9n).
	if want := []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2}; !bytes.HasPrefix(z, want) {
		t.Errorf("gzip header % x, want % x", z[:9], want)
	}
}
