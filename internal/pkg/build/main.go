// Command build builds sockpipe's .deb and .rpm packages:
//
//	go run ./internal/pkg/build [-version V] [-out DIR] [-arch GOARCH]
//
// It builds the five programs for Linux with the version in their
// -ldflags, then packs them with the watch script, the man pages, the
// systemd units and the examples (see internal/pkg). Without -version the
// version comes from git describe --tags --always --dirty: a tag v1.2.3
// gives 1.2.3, commits past it 1.2.3+4.gabcdef0, and a history with no
// tag 0.0.0-dev+<commit>. Every file carries the time of the last commit
// (or $SOURCE_DATE_EPOCH), so two builds of one commit give the same
// packages. Run it at the top of the repository.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"github.com/sockpipe/sockpipe/internal/pkg"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	version := fs.String("version", "", "the version of the programs and the packages (default: from git describe --tags --always --dirty)")
	out := fs.String("out", "dist", "the directory to write the packages into")
	arch := fs.String("arch", runtime.GOARCH, "the target architecture, as GOARCH names it")
	root := fs.String("root", ".", "the top of the repository")
	bin := fs.String("bin", "", "pack the programs already built in this directory instead of building them (built with -ldflags "+`"`+pkg.LDFlags("VERSION")+`"`+")")
	maintainer := fs.String("maintainer", pkg.DefaultMaintainer, "the packages' maintainer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *version == "" {
		v, err := pkg.Describe(ctx, *root)
		if err != nil {
			return fmt.Errorf("%w (give -version)", err)
		}
		*version = v
	}
	mtime, err := fileTime(ctx, *root)
	if err != nil {
		return err
	}
	if *bin == "" {
		dir, err := os.MkdirTemp("", "sockpipe-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if err := pkg.BuildPrograms(ctx, *root, *version, *arch, dir); err != nil {
			return err
		}
		*bin = dir
	}
	paths, err := pkg.Pack(pkg.Options{
		Root:       *root,
		Bin:        *bin,
		Version:    *version,
		Arch:       *arch,
		Maintainer: *maintainer,
		MTime:      mtime,
	}, *out)
	if err != nil {
		return err
	}
	for _, p := range paths {
		fmt.Println(p)
	}
	return nil
}

// fileTime is the time every file in the packages carries, so that two
// builds of one commit give the same packages: $SOURCE_DATE_EPOCH when
// set, else the last commit's time; outside a checkout, now.
func fileTime(ctx context.Context, root string) (time.Time, error) {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", s, err)
		}
		return time.Unix(sec, 0).UTC(), nil
	}
	t, err := pkg.CommitTime(ctx, root)
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v: the files carry the current time\n", err)
		return time.Now().UTC().Truncate(time.Second), nil
	}
	return t, nil
}
