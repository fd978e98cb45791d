// Command sockdump writes every TCP (and UDP) socket of the host, or of
// every network namespace of it, as NDJSON records.
// Run "sockdump -h" for its flags, output and exit codes.
package main

import (
	"os"
	"runtime"

	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/sockdump"
)

func main() {
	// A dump is one serial conversation with the kernel: more than one P
	// only adds garbage-collector threads and their wake-ups, which cost
	// more system time than they save (measured by examples/bench).
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	cli.Main("sockdump", sockdump.Run)
}
