// Package cli holds what every sockpipe program does the same way: signals,
// exit codes, a quiet end on a closed stdout, and flag usage text.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sockpipe/sockpipe/internal/ndjson"
	"github.com/sockpipe/sockpipe/internal/version"
)

// Exit codes shared by every program. Programs may add their own above 2.
const (
	ExitOK      = 0 // success, or stopped by SIGINT/SIGTERM or a closed stdout
	ExitFailure = 1 // a runtime failure: I/O, kernel, a bad line under --strict
	ExitUsage   = 2 // bad flags or arguments
)

// ExitError carries an exit code with an error.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *ExitError) Unwrap() error { return e.Err }

// Exit wraps err with an exit code.
func Exit(code int, err error) error {
	if err == nil {
		return nil
	}
	return &ExitError{Code: code, Err: err}
}

// UsageError marks err as a usage error (exit code 2).
func UsageError(format string, args ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, args...)}
}

// ErrVersion is what Parse returns for --version: Main then prints the
// program's name and version on stdout and exits 0.
var ErrVersion = errors.New("--version")

// RunFunc is the body of a program: its arguments (without the program
// name), its standard streams, and a context cancelled by SIGINT or SIGTERM.
type RunFunc func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error

// Main runs a program and exits with its code. It never returns.
func Main(name string, run RunFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), stopSignals()...)
	// With SIGPIPE handled, a write to a closed stdout returns EPIPE
	// instead of killing the program, so it can end quietly and cleanly.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	GrowPipe(os.Stdout)
	err := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, ErrVersion) {
		fmt.Fprintf(os.Stdout, "%s %s\n", name, version.String())
	}
	os.Exit(Code(name, err, os.Stderr))
}

// PipeSize is the capacity GrowPipe asks for: what an output buffer
// holds, and the most an unprivileged process may set by default
// (/proc/sys/fs/pipe-max-size).
const PipeSize = ndjson.WriterSize

// GrowPipe raises the capacity of f, when it is a pipe, from the kernel's
// 64 KiB to PipeSize, so that a stage writes and the next one reads a
// pipeline's records in large pieces rather than waking each other every
// 64 KiB: at 100,000 sockets that is most of the cost of passing records
// between five processes on two cores. It does nothing to anything else,
// and a refusal (a user over the pipe quota of fs/pipe-user-pages-soft)
// leaves the pipe as it was.
func GrowPipe(f *os.File) {
	sc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = sc.Control(func(fd uintptr) {
		if n, err := unix.FcntlInt(fd, unix.F_GETPIPE_SZ, 0); err == nil && n < PipeSize {
			_, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, PipeSize)
		}
	})
}

// stopSignals returns the signals that stop a program: SIGTERM, and
// SIGINT unless the program started with it ignored. A shell starts the
// commands it runs in the background with SIGINT ignored (as nohup does
// for SIGHUP), so that Ctrl-C reaches only the script: a script such as
// examples/watch then stops the first stage of a pipeline and lets the
// others drain their input and end at its end, losing nothing.
func stopSignals() []os.Signal {
	if signal.Ignored(os.Interrupt) {
		return []os.Signal{syscall.SIGTERM}
	}
	return []os.Signal{os.Interrupt, syscall.SIGTERM}
}

// Code reports err on stderr, prefixed by the program name, and returns
// the exit code for it. A closed stdout, a cancelled context and -h are
// not failures and print nothing.
func Code(name string, err error, stderr io.Writer) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp), errors.Is(err, ErrVersion):
		return ExitOK
	case IsClosedPipe(err), errors.Is(err, context.Canceled):
		return ExitOK
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return ExitFailure
}

// IsClosedPipe reports whether err comes from writing to a closed pipe.
func IsClosedPipe(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, os.ErrClosed)
}

// FlagSet returns a flag set whose -h prints the full usage (a text that
// describes the program, then its flags, then more) to stderr, and whose
// errors are returned instead of printed: Parse adds the synopsis to them.
func FlagSet(name, synopsis, about string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Bool("version", false, "print the program's name and version, and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s\n\n", synopsis)
		fmt.Fprintf(stderr, "Flags:\n")
		fs.PrintDefaults()
		if about != "" {
			fmt.Fprintf(stderr, "\n%s", about)
		}
	}
	synopses.Store(fs, synopsis)
	return fs
}

// synopses maps each flag set made by FlagSet to its synopsis, for the
// short usage of a usage error.
var synopses sync.Map // *flag.FlagSet → string

// Parse parses args and rejects positional arguments. A bad flag or an
// argument is a usage error that says what is wrong, the synopsis, and
// where the full usage is; only -h prints the full usage.
func Parse(fs *flag.FlagSet, args []string) error {
	// The flag package prints its error and the full usage on any error:
	// silence both, and print the usage ourselves for -h only.
	out, usage := fs.Output(), fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.SetOutput(out)
	fs.Usage = usage
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.Usage()
			return err
		}
		return shortUsage(fs, err)
	}
	if f := fs.Lookup("version"); f != nil && f.Value.String() == "true" {
		return ErrVersion
	}
	if fs.NArg() > 0 {
		return shortUsage(fs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	return nil
}

// shortUsage returns err as a usage error followed by the synopsis and a
// hint at -h.
func shortUsage(fs *flag.FlagSet, err error) error {
	syn, _ := synopses.Load(fs)
	if syn == nil {
		syn = fs.Name() + " [flags]"
	}
	return &ExitError{Code: ExitUsage, Err: &usageError{err: err, name: fs.Name(), synopsis: syn.(string)}}
}

// usageError is a bad flag or argument, with the one-line usage after it.
type usageError struct {
	err            error
	name, synopsis string
}

func (e *usageError) Error() string {
	return fmt.Sprintf("%v\nusage: %s\nrun '%s -h' for more", e.err, e.synopsis, e.name)
}

func (e *usageError) Unwrap() error { return e.err }
