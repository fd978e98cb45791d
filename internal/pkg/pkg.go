// Package pkg builds sockpipe's .deb and .rpm packages with nfpm: the
// five programs and the watch script in /usr/bin, the man pages, the
// systemd units (installed, not enabled), the drop-ins and the cron file
// as examples, and the licences.
//
// internal/pkg/build is the command that runs it.
package pkg

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
	"github.com/goreleaser/nfpm/v2/rpm"
)

// Programs are the Go programs the packages hold, built from cmd/<name>.
var Programs = []string{"sockdump", "sockdiff", "sockproc", "sockresolve", "sockecs"}

// Units are the systemd units the packages install in UnitDir.
var Units = []string{"sockpipe.service", "sockpipe-once.service", "sockpipe-once.timer"}

// DropIns are the optional drop-ins for the units, installed as examples.
var DropIns = []string{"all-netns.conf", "owners.conf"}

// The installed layout.
const (
	Name       = "sockpipe"
	BinDir     = "/usr/bin"
	UnitDir    = "/usr/lib/systemd/system"
	ManDir     = "/usr/share/man/man1"
	DocDir     = "/usr/share/doc/sockpipe"
	ExampleDir = DocDir + "/examples"
	Homepage   = "https://github.com/sockpipe/sockpipe"
	License    = "Apache-2.0"

	// exampleBinDir is where the examples expect the programs: a manual
	// install in /usr/local/bin.
	exampleBinDir = "/usr/local/bin"
)

// DefaultMaintainer is the Maintainer (deb) and Packager (rpm) unless the
// builder names another.
const DefaultMaintainer = "sockpipe developers <https://github.com/sockpipe/sockpipe/issues>"

// Description is the package's description: a summary line, then the
// long description.
const Description = `TCP and UDP sockets of a host as Elastic Common Schema documents
sockpipe is a pipeline of small programs that read and write NDJSON:
sockdump dumps the kernel's sockets (sock_diag, and destroy notifications
for short-lived connections), sockdiff reports what changed, sockproc adds
the owning process and user, sockresolve the reverse DNS name, and sockecs
writes one ECS document per socket event, like Metricbeat's system/socket
metricset. sockpipe-watch runs the pipeline; the systemd units run it as
a service or every minute from a timer, and are not enabled on install.`

// Options say what to package.
type Options struct {
	// Root is the top of the repository: examples/, docs/man/, LICENSE.
	Root string
	// Bin is the directory that holds the built Programs.
	Bin string
	// Version is the package version, the one the programs were built with.
	Version string
	// Arch is the target architecture, in Go's names (amd64, arm64, ...).
	Arch string
	// Maintainer names who maintains the packages; DefaultMaintainer if empty.
	Maintainer string
	// MTime is the time of every file in the packages (for reproducible
	// packages: the commit's time); now if zero.
	MTime time.Time
}

// describeTag matches git describe's output on a tagged history:
// v1.2.3, or v1.2.3-4-gabcdef0 past the tag, with -dirty after either.
var describeTag = regexp.MustCompile(`^v?([0-9][0-9A-Za-z.~-]*?)(?:-([0-9]+)-g([0-9a-f]+))?(-dirty)?$`)

// describeUntagged matches git describe --always on a history without a
// tag: the abbreviated commit, with -dirty.
var describeUntagged = regexp.MustCompile(`^([0-9a-f]{4,40})(-dirty)?$`)

// VersionFromDescribe turns the output of git describe --tags --always
// --dirty into a version that the programs print and that both package
// formats order rightly: a tag gives its version (v1.2.3: 1.2.3); commits
// past it are build metadata after a "+", so they sort after the tag
// (1.2.3+4.gabcdef0, .dirty for uncommitted changes); with no tag at all
// it is 0.0.0-dev+<commit>, as internal/version says for a build from a
// checkout, and sorts before any release.
func VersionFromDescribe(s string) (string, error) {
	s = strings.TrimSpace(s)
	if m := describeUntagged.FindStringSubmatch(s); m != nil {
		v := "0.0.0-dev+" + m[1]
		if m[2] != "" {
			v += ".dirty"
		}
		return v, nil
	}
	m := describeTag.FindStringSubmatch(s)
	if m == nil {
		return "", fmt.Errorf("git describe gave %q: not a version tag (vX.Y.Z)", s)
	}
	var meta []string
	if m[2] != "" {
		meta = append(meta, m[2], "g"+m[3])
	}
	if m[4] != "" {
		meta = append(meta, "dirty")
	}
	if len(meta) == 0 {
		return m[1], nil
	}
	return m[1] + "+" + strings.Join(meta, "."), nil
}

// Describe returns the version of the checkout at root, from git describe
// --tags --always --dirty (see VersionFromDescribe).
func Describe(ctx context.Context, root string) (string, error) {
	out, err := exec.CommandContext(ctx, "git", "-C", root, "describe", "--tags", "--always", "--dirty").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("git describe: %w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return "", fmt.Errorf("git describe: %w", err)
	}
	return VersionFromDescribe(string(out))
}

// CommitTime returns the time of the checkout's last commit at root.
func CommitTime(ctx context.Context, root string) (time.Time, error) {
	out, err := exec.CommandContext(ctx, "git", "-C", root, "log", "-1", "--format=%ct").Output()
	if err != nil {
		return time.Time{}, fmt.Errorf("git log: %w", err)
	}
	var sec int64
	if _, err := fmt.Sscan(string(out), &sec); err != nil {
		return time.Time{}, fmt.Errorf("git log: commit time %q: %w", out, err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// LDFlags are the linker flags of the packaged programs: stripped, and
// the version set.
func LDFlags(version string) string {
	return "-s -w -X github.com/sockpipe/sockpipe/internal/version.version=" + version
}

// BuildPrograms builds the Programs from the module at root into dir, for
// Linux on goarch, without cgo (so they depend on no shared library), with
// the version in their -ldflags.
func BuildPrograms(ctx context.Context, root, version, goarch, dir string) error {
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags", LDFlags(version), "-o", dir + string(filepath.Separator)}
	for _, p := range Programs {
		args = append(args, "./cmd/"+p)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	return nil
}

// ForPackage rewrites an example unit, drop-in or cron file for the
// package: the programs are in /usr/bin, not /usr/local/bin (ExecStart=,
// SOCKPIPE_BIN, PATH), the drop-ins are copied from ExampleDir, and the
// comment that tells how to install the file by hand is replaced by one
// that says how to enable it (the systemctl enable lines it held are kept).
func ForPackage(b []byte) []byte {
	lines := strings.SplitAfter(string(b), "\n")
	var out []string
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if !strings.HasPrefix(l, "# Install, as root") {
			out = append(out, l)
			continue
		}
		// The paragraph: its text lines, then the indented commands.
		var enable []string
		seenCommand := false
		for ; i < len(lines); i++ {
			l := lines[i]
			command := strings.HasPrefix(l, "#   ")
			if !strings.HasPrefix(l, "#") || l == "#\n" || (seenCommand && !command) {
				break
			}
			seenCommand = seenCommand || command
			if strings.HasPrefix(l, "#   systemctl enable") {
				enable = append(enable, l)
			}
		}
		i--
		if len(enable) > 0 {
			out = append(out, "# Installed by the sockpipe package, not enabled. To start it, as root:\n")
			out = append(out, enable...)
		} else {
			out = append(out, "# Installed by the sockpipe package.\n")
		}
	}
	s := strings.Join(out, "")
	s = strings.ReplaceAll(s, exampleBinDir+"/", BinDir+"/")
	s = strings.ReplaceAll(s, "SOCKPIPE_BIN="+exampleBinDir+"\n", "SOCKPIPE_BIN="+BinDir+"\n")
	s = strings.ReplaceAll(s, "PATH="+exampleBinDir+":"+BinDir+":", "PATH="+BinDir+":")
	s = strings.ReplaceAll(s, "programs in "+exampleBinDir, "programs in "+BinDir)
	s = strings.ReplaceAll(s, " examples/systemd/", " "+ExampleDir+"/systemd/")
	return []byte(s)
}

// gzipMan compresses a man page as Debian policy asks: gzip -9, with no
// name or time in the header.
func gzipMan(b []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// stager writes the files the packages hold into a directory and lists
// them as nfpm contents.
type stager struct {
	dir      string
	mtime    time.Time
	contents files.Contents
}

func (s *stager) add(src, dst string, mode os.FileMode) {
	s.contents = append(s.contents, &files.Content{
		Source:      src,
		Destination: dst,
		Type:        files.TypeFile,
		FileInfo:    &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode, MTime: s.mtime},
	})
}

func (s *stager) write(dst string, b []byte, mode os.FileMode) error {
	src := filepath.Join(s.dir, filepath.FromSlash(strings.TrimPrefix(dst, "/")))
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(src, b, 0o644); err != nil {
		return err
	}
	s.add(src, dst, mode)
	return nil
}

// Contents writes into dir the files that are generated for the packages
// (units for /usr/bin, gzipped man pages, the copyright file given) and returns
// every file of the packages, generated or taken from opts.Root and
// opts.Bin.
func Contents(opts Options, dir string, copyright []byte) (files.Contents, error) {
	s := &stager{dir: dir, mtime: opts.MTime}
	read := func(rel string) ([]byte, error) {
		return os.ReadFile(filepath.Join(opts.Root, filepath.FromSlash(rel)))
	}

	for _, p := range Programs {
		src := filepath.Join(opts.Bin, p)
		if _, err := os.Stat(src); err != nil {
			return nil, fmt.Errorf("program %s: %w", p, err)
		}
		s.add(src, BinDir+"/"+p, 0o755)
	}
	// The watch script finds the programs beside it (../bin from /usr/bin
	// is /usr/bin), so the installed copy is the example unchanged.
	s.add(filepath.Join(opts.Root, "examples", "watch"), BinDir+"/sockpipe-watch", 0o755)

	for _, u := range Units {
		b, err := read("examples/systemd/" + u)
		if err != nil {
			return nil, err
		}
		if err := s.write(UnitDir+"/"+u, ForPackage(b), 0o644); err != nil {
			return nil, err
		}
	}
	for _, d := range DropIns {
		b, err := read("examples/systemd/" + d)
		if err != nil {
			return nil, err
		}
		if err := s.write(ExampleDir+"/systemd/"+d, ForPackage(b), 0o644); err != nil {
			return nil, err
		}
	}
	cron, err := read("examples/cron/sockpipe")
	if err != nil {
		return nil, err
	}
	if err := s.write(ExampleDir+"/cron/sockpipe", ForPackage(cron), 0o644); err != nil {
		return nil, err
	}

	pages, err := filepath.Glob(filepath.Join(opts.Root, "docs", "man", "*.1"))
	if err != nil {
		return nil, err
	}
	if len(pages) == 0 {
		return nil, fmt.Errorf("no man pages in %s", filepath.Join(opts.Root, "docs", "man"))
	}
	slices.Sort(pages)
	for _, p := range pages {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		z, err := gzipMan(b)
		if err != nil {
			return nil, fmt.Errorf("man page %s: %w", p, err)
		}
		if err := s.write(ManDir+"/"+filepath.Base(p)+".gz", z, 0o644); err != nil {
			return nil, err
		}
	}

	s.add(filepath.Join(opts.Root, "LICENSE"), DocDir+"/LICENSE", 0o644)
	if err := s.write(DocDir+"/copyright", copyright, 0o644); err != nil {
		return nil, err
	}
	return s.contents, nil
}

// info is the package metadata around contents.
func info(opts Options, contents files.Contents) *nfpm.Info {
	maintainer := opts.Maintainer
	if maintainer == "" {
		maintainer = DefaultMaintainer
	}
	summary, _, _ := strings.Cut(Description, "\n")
	i := &nfpm.Info{
		Name:        Name,
		Arch:        opts.Arch,
		Platform:    "linux",
		Version:     opts.Version,
		Release:     "1",
		Section:     "net",
		Priority:    "optional",
		Maintainer:  maintainer,
		Description: Description,
		Vendor:      "sockpipe",
		Homepage:    Homepage,
		License:     License,
		MTime:       opts.MTime,
		Overridables: nfpm.Overridables{
			// No Depends: the programs are static (no cgo) and read the
			// kernel themselves (no ss, no iproute2); the script needs
			// only a POSIX sh and coreutils, which every system has.
			Contents: contents,
			RPM: nfpm.RPM{
				Summary:   summary,
				Group:     "Applications/System",
				Packager:  maintainer,
				BuildHost: "sockpipe",
			},
		},
	}
	return nfpm.WithDefaults(i)
}

// Pack writes the .deb and the .rpm of the programs in opts.Bin into out
// and returns their paths, .deb first.
func Pack(opts Options, out string) ([]string, error) {
	if opts.MTime.IsZero() {
		opts.MTime = time.Now().UTC().Truncate(time.Second)
	}
	stage, err := os.MkdirTemp("", "sockpipe-pkg-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(stage)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	copyright, err := Copyright(opts.Root, "")
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, p := range []nfpm.Packager{deb.Default, rpm.DefaultRPM} {
		// Each packager prepares (and changes) the contents it is given.
		contents, err := Contents(opts, stage, copyright)
		if err != nil {
			return nil, err
		}
		i := info(opts, contents)
		path := filepath.Join(out, p.ConventionalFileName(i))
		if err := writePackage(p, i, path); err != nil {
			return nil, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}

func writePackage(p nfpm.Packager, i *nfpm.Info, path string) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	i.Target = path
	if err := p.Package(i, f); err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return nil
}
