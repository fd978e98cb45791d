// Command churn is a load generator of short-lived TCP connections on
// loopback, and the scorer that compares what a pipeline reported with
// what it generated.
//
// Generate: open -rate connections a second for -duration, from
// -client (one explicit port each, from -ports, so that no two
// connections of a run share a 4-tuple) to a listener on -listen. Each
// connection writes a few bytes, lives -lifetime, and is closed by the
// client with RST (SO_LINGER 0); the server end reads until it sees the
// reset and closes. Neither end enters TIME_WAIT, so a later dump finds
// no trace of the connection. One line per connection goes to the ground
// truth log (-log):
//
//	CLIENT-IP:PORT SERVER-IP:PORT OPENED CLOSED
//
// with times in RFC 3339 (nanoseconds): OPENED when connect returned,
// CLOSED when the client's close returned. A summary goes to stdout.
//
// Score: churn -score TRUTH FILE... reads sockdiff's (or sockdump's)
// NDJSON output and reports, on one line of key=value pairs, how many
// connections of TRUTH reached it: a connection is found when an
// "opened" event or a "destroyed" record exists for either of its ends
// (the server end: local=server, remote=client; the client end:
// local=client, remote=server).
//
// Only loopback addresses are accepted.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "churn:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("churn", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	fs.IntVar(&cfg.rate, "rate", 1000, "connections opened per `second`")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long to open connections")
	fs.DurationVar(&cfg.lifetime, "lifetime", 5*time.Millisecond, "how long each connection lives")
	fs.StringVar(&cfg.listen, "listen", "127.0.0.2:0", "loopback `address:port` of the listener (port 0: any)")
	fs.StringVar(&cfg.client, "client", "127.0.0.3", "loopback `address` the clients bind to")
	fs.StringVar(&cfg.ports, "ports", "20000-60999", "client `ports` to bind, each used once")
	fs.StringVar(&cfg.log, "log", "", "ground-truth log `file` (required to generate)")
	fs.IntVar(&cfg.inflight, "max-inflight", 2000, "most connections open at once")
	score := fs.Bool("score", false, "score: churn -score TRUTH FILE... (NDJSON from sockdiff or sockdump)")
	misses := fs.Int("misses", 5, "with -score, list at most this many missed connections on stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *score {
		if fs.NArg() < 2 {
			return fmt.Errorf("-score needs a truth log and at least one NDJSON file")
		}
		return scoreFiles(fs.Arg(0), fs.Args()[1:], *misses, stdout, stderr)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if cfg.log == "" {
		return fmt.Errorf("-log is required")
	}
	sum, err := generate(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, sum)
	return nil
}
