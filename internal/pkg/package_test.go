package pkg

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testVersion is the version the test packages are built with: past a
// tag, so that it has build metadata.
const testVersion = "1.2.3+4.gabcdef0"

// wantFiles are the files the packages hold, and their modes.
var wantFiles = map[string]os.FileMode{
	"/usr/bin/sockdump":                                       0o755,
	"/usr/bin/sockdiff":                                       0o755,
	"/usr/bin/sockproc":                                       0o755,
	"/usr/bin/sockresolve":                                    0o755,
	"/usr/bin/sockecs":                                        0o755,
	"/usr/bin/sockpipe-watch":                                 0o755,
	"/usr/lib/systemd/system/sockpipe.service":                0o644,
	"/usr/lib/systemd/system/sockpipe-once.service":           0o644,
	"/usr/lib/systemd/system/sockpipe-once.timer":             0o644,
	"/usr/share/man/man1/sockdump.1.gz":                       0o644,
	"/usr/share/man/man1/sockdiff.1.gz":                       0o644,
	"/usr/share/man/man1/sockproc.1.gz":                       0o644,
	"/usr/share/man/man1/sockresolve.1.gz":                    0o644,
	"/usr/share/man/man1/sockecs.1.gz":                        0o644,
	"/usr/share/man/man1/sockpipe-watch.1.gz":                 0o644,
	"/usr/share/doc/sockpipe/LICENSE":                         0o644,
	"/usr/share/doc/sockpipe/copyright":                       0o644,
	"/usr/share/doc/sockpipe/examples/systemd/all-netns.conf": 0o644,
	"/usr/share/doc/sockpipe/examples/systemd/owners.conf":    0o644,
	"/usr/share/doc/sockpipe/examples/cron/sockpipe":          0o644,
}

var built struct {
	once     sync.Once
	dir      string
	opts     Options
	deb, rpm string
	err      error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// packages builds the programs and both packages once for the tests
// that need them, and returns the paths of the .deb and the .rpm.
func packages(t *testing.T) (debPath, rpmPath string) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: not building the programs and the packages")
	}
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "sockpipe-pkg-test-")
		if built.err != nil {
			return
		}
		root, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			built.err = err
			return
		}
		bin := filepath.Join(built.dir, "bin")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if built.err = BuildPrograms(ctx, root, testVersion, runtime.GOARCH, bin); built.err != nil {
			return
		}
		built.opts = Options{
			Root:    root,
			Bin:     bin,
			Version: testVersion,
			Arch:    runtime.GOARCH,
			MTime:   time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		}
		var paths []string
		paths, built.err = Pack(built.opts, filepath.Join(built.dir, "out"))
		if built.err == nil {
			built.deb, built.rpm = paths[0], paths[1]
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.deb, built.rpm
}

func need(t *testing.T, progs ...string) {
	t.Helper()
	for _, p := range progs {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s is not installed (Debian: apt-get install %s)", p, map[string]string{
				"dpkg": "dpkg", "dpkg-deb": "dpkg", "rpm": "rpm", "systemd-analyze": "systemd", "man": "man-db",
			}[p])
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.Bytes())
	}
	return string(out)
}

// debArch is the Debian name of Go's architecture.
func debArch(goarch string) string {
	switch goarch {
	case "386":
		return "i386"
	case "arm":
		return "armhf"
	case "ppc64le":
		return "ppc64el"
	}
	return goarch
}

// TestDeb installs the .deb into a throwaway root with dpkg (its own
// database there: the host's is not touched), and checks its control
// data, its files and their modes, that the programs run and print the
// version, that systemd-analyze verify passes on the installed units
// (with and without the example drop-ins), and that the man pages render.
func TestDeb(t *testing.T) {
	need(t, "dpkg", "dpkg-deb")
	debPath, _ := packages(t)

	t.Run("control", func(t *testing.T) {
		fields := map[string]string{}
		for _, f := range []string{"Package", "Version", "Architecture", "Maintainer", "Homepage", "Section", "Priority", "Depends", "Pre-Depends", "Recommends"} {
			fields[f] = strings.TrimSpace(run(t, "dpkg-deb", "-f", debPath, f))
		}
		want := map[string]string{
			"Package":      "sockpipe",
			"Version":      testVersion + "-1",
			"Architecture": debArch(runtime.GOARCH),
			"Maintainer":   DefaultMaintainer,
			"Homepage":     Homepage,
			"Section":      "net",
			"Priority":     "optional",
			// The programs are static and need no other package.
			"Depends": "", "Pre-Depends": "", "Recommends": "",
		}
		if diff := cmp.Diff(want, fields); diff != "" {
			t.Errorf("control fields (-want +got):\n%s", diff)
		}
		desc := run(t, "dpkg-deb", "-f", debPath, "Description")
		if !strings.HasPrefix(desc, "TCP and UDP sockets") || !strings.Contains(desc, "\n sockpipe is a pipeline") {
			t.Errorf("Description:\n%s", desc)
		}
		// No maintainer scripts: nothing is enabled or started on install.
		ctl := t.TempDir()
		run(t, "dpkg-deb", "-e", debPath, ctl)
		var names []string
		entries, err := os.ReadDir(ctl)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if diff := cmp.Diff([]string{"control", "md5sums"}, names); diff != "" {
			t.Errorf("control archive (-want +got):\n%s", diff)
		}
	})

	t.Run("contents", func(t *testing.T) {
		got := map[string]os.FileMode{}
		for _, l := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "-c", debPath)), "\n") {
			// -rwxr-xr-x root/root   2908322 2026-01-02 03:04 ./usr/bin/sockdiff
			f := strings.Fields(l)
			if len(f) < 6 {
				t.Fatalf("dpkg-deb -c: %q", l)
			}
			if f[1] != "root/root" {
				t.Errorf("%s is owned by %s, want root/root", f[5], f[1])
			}
			if f[0][0] == 'd' {
				continue
			}
			got[strings.TrimPrefix(f[5], ".")] = parsePerms(t, f[0])
		}
		if diff := cmp.Diff(wantFiles, got); diff != "" {
			t.Errorf("files (-want +got):\n%s", diff)
		}
	})

	root := install(t, debPath)

	t.Run("installed", func(t *testing.T) {
		got := map[string]os.FileMode{}
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel := strings.TrimPrefix(p, root)
			if rel == "/var" {
				return fs.SkipDir // dpkg's database
			}
			if d.IsDir() || rel == "/dpkg.log" {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			got[rel] = info.Mode()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(wantFiles, got); diff != "" {
			t.Errorf("installed files (-want +got):\n%s", diff)
		}
		status := run(t, "dpkg", "--root="+root, "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-s", "sockpipe")
		if !strings.Contains(status, "\nStatus: install ok installed\n") {
			t.Errorf("dpkg -s:\n%s", status)
		}
	})

	t.Run("version", func(t *testing.T) {
		for _, p := range append(slices.Clone(Programs), "sockpipe-watch") {
			cmd := exec.Command(filepath.Join(root, "usr/bin", p), "--version")
			// The script finds the programs beside it, as in /usr/bin.
			cmd.Env = []string{"PATH=/usr/bin:/bin"}
			out, err := cmd.CombinedOutput()
			if want := p + " " + testVersion + "\n"; err != nil || string(out) != want {
				t.Errorf("%s --version: %v, %q; want %q", p, err, out, want)
			}
		}
	})

	t.Run("units", func(t *testing.T) {
		for _, u := range []string{"sockpipe.service", "sockpipe-once.service"} {
			b, err := os.ReadFile(filepath.Join(root, UnitDir, u))
			if err != nil {
				t.Fatal(err)
			}
			// The programs are where the unit tells the script to look.
			for _, l := range strings.Split(string(b), "\n") {
				if dir, ok := strings.CutPrefix(l, "Environment=SOCKPIPE_BIN="); ok {
					for _, p := range Programs {
						if _, err := os.Stat(filepath.Join(root, dir, p)); err != nil {
							t.Errorf("%s: SOCKPIPE_BIN=%s: %v", u, dir, err)
						}
					}
				}
			}
		}
		verify(t, root)
		// The drop-ins, installed as their comments say.
		dropIns := filepath.Join(root, "etc/systemd/system/sockpipe.service.d")
		if err := os.MkdirAll(dropIns, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, d := range DropIns {
			b, err := os.ReadFile(filepath.Join(root, ExampleDir, "systemd", d))
			if err != nil {
				t.Fatal(err)
			}
			if want := "install -D -m 644 " + ExampleDir + "/systemd/" + d + " /etc/systemd/system/sockpipe.service.d/" + d; !strings.Contains(string(b), want) {
				t.Errorf("%s does not say %q", d, want)
			}
			if err := os.WriteFile(filepath.Join(dropIns, d), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		verify(t, root)
	})

	t.Run("man", func(t *testing.T) {
		need(t, "man")
		for _, p := range append(slices.Clone(Programs), "sockpipe-watch") {
			page := filepath.Join(root, ManDir, p+".1.gz")
			checkGzip(t, page)
			cmd := exec.Command("man", "--warnings=w", "-E", "UTF-8", "-l", "-P", "cat", page)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "MANWIDTH=80", "LANG=C.UTF-8"}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil || stderr.Len() > 0 {
				t.Errorf("man -l %s: %v\n%s", p, err, stderr.Bytes())
			}
			for _, want := range []string{strings.ToUpper(p) + "(1)", "NAME", "SYNOPSIS", "OPTIONS"} {
				if !strings.Contains(string(out), want) {
					t.Errorf("man %s: no %q in:\n%.400s", p, want, out)
				}
			}
		}
	})

	t.Run("copyright", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(root, DocDir, "copyright"))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"License: Apache-2.0",
			"License: GPL-2.0-only OR BSD-2-Clause",
			"-------- Go (the standard library and runtime): LICENSE --------",
			"-------- github.com/mdlayher/netlink: LICENSE",
			"-------- github.com/json-iterator/go: LICENSE",
		} {
			if !bytes.Contains(b, []byte(want)) {
				t.Errorf("copyright: no %q", want)
			}
		}
		// nfpm builds the packages; it is not in the programs.
		if bytes.Contains(b, []byte("goreleaser")) {
			t.Errorf("copyright names goreleaser: it is not linked into the programs")
		}
	})
}

// install installs the .deb into a new root, with the root's own dpkg
// database and log, and returns the root.
func install(t *testing.T, debPath string) string {
	t.Helper()
	root := t.TempDir()
	admin := filepath.Join(root, "var/lib/dpkg")
	for _, d := range []string{"info", "updates"} {
		if err := os.MkdirAll(filepath.Join(admin, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"status", "available"} {
		if err := os.WriteFile(filepath.Join(admin, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("dpkg", "--root="+root, "--admindir="+admin, "--log="+filepath.Join(root, "dpkg.log"), "--force-not-root", "-i", debPath)
	// dpkg wants ldconfig and start-stop-daemon on PATH, even for a
	// package that needs neither.
	cmd.Env = append(os.Environ(), "PATH="+os.Getenv("PATH")+":/usr/sbin:/sbin")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}
	return root
}

// verify runs systemd-analyze verify on the units installed in root,
// which also checks that their ExecStart programs are there. The root
// has the host's targets, which the units name.
func verify(t *testing.T, root string) {
	t.Helper()
	need(t, "systemd-analyze")
	hostUnits := "/usr/lib/systemd/system"
	targets, _ := filepath.Glob(filepath.Join(hostUnits, "*.target"))
	if len(targets) == 0 {
		t.Skipf("no systemd targets in %s to verify the units against", hostUnits)
	}
	for _, tg := range targets {
		dst := filepath.Join(root, UnitDir, filepath.Base(tg))
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		b, err := os.ReadFile(tg)
		if err != nil {
			continue // a dangling alias
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"verify", "--man=no", "--root=" + root}
	for _, u := range Units {
		args = append(args, UnitDir+"/"+u)
	}
	out, err := exec.Command("systemd-analyze", args...).CombinedOutput()
	// Unknown keys and bad values are only warnings: any word is a failure.
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// checkGzip checks that a file is gzip with no name and no time in its
// header, as gzip -n writes.
func checkGzip(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("%s: gzip header has name %q, time %v; want neither", path, zr.Name, zr.ModTime)
	}
	if _, err := io.Copy(io.Discard, zr); err != nil {
		t.Errorf("%s: %v", path, err)
	}
}

// parsePerms turns ls-style permissions (-rwxr-xr-x) into a mode.
func parsePerms(t *testing.T, s string) os.FileMode {
	t.Helper()
	if len(s) != 10 {
		t.Fatalf("permissions %q", s)
	}
	var m os.FileMode
	for i, c := range s[1:] {
		if c != '-' {
			m |= 1 << (8 - i)
		}
	}
	if s[0] == 'l' {
		m |= os.ModeSymlink
	}
	return m
}

// TestRPM checks the .rpm with rpm itself (its own database, in a
// temporary directory): its digests, its metadata, its files with their
// modes and owners, and that it requires nothing but rpm's own features.
func TestRPM(t *testing.T) {
	need(t, "rpm")
	_, rpmPath := packages(t)
	db := "--dbpath=" + t.TempDir()

	if out := run(t, "rpm", db, "-K", "--nosignature", rpmPath); !strings.Contains(out, "digests OK") {
		t.Errorf("rpm -K: %s", out)
	}
	got := run(t, "rpm", db, "-qp", "--qf", "%{NAME}|%{VERSION}|%{RELEASE}|%{ARCH}|%{LICENSE}|%{URL}|%{SUMMARY}", rpmPath)
	rpmArch := map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "i386"}[runtime.GOARCH]
	if rpmArch == "" {
		rpmArch = runtime.GOARCH
	}
	want := strings.Join([]string{"sockpipe", testVersion, "1", rpmArch, License, Homepage,
		"TCP and UDP sockets of a host as Elastic Common Schema documents"}, "|")
	if got != want {
		t.Errorf("rpm -qp:\n got %s\nwant %s", got, want)
	}

	files := map[string]os.FileMode{}
	for _, l := range strings.Split(strings.TrimSpace(run(t, "rpm", db, "-qp", "--qf", "[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]", rpmPath)), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			t.Fatalf("rpm -qp: %q", l)
		}
		if f[1] != "root:root" {
			t.Errorf("%s is owned by %s, want root:root", f[2], f[1])
		}
		if f[0][0] == 'd' {
			continue
		}
		files[f[2]] = parsePerms(t, f[0])
	}
	if diff := cmp.Diff(wantFiles, files); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}

	for _, r := range strings.Split(run(t, "rpm", db, "-qpR", rpmPath), "\n") {
		if r != "" && !strings.HasPrefix(r, "rpmlib(") {
			t.Errorf("requires %q", r)
		}
	}
}

// TestReproducible packs the same programs again: the packages are the
// same, byte for byte.
func TestReproducible(t *testing.T) {
	debPath, rpmPath := packages(t)
	again, err := Pack(built.opts, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for i, first := range []string{debPath, rpmPath} {
		a, err := os.ReadFile(first)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(again[i])
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(first) != filepath.Base(again[i]) || !bytes.Equal(a, b) {
			t.Errorf("%s and %s differ", first, again[i])
		}
	}
}
