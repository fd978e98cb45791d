// Command sockdump writes every TCP socket of the host as NDJSON records.
// Run "sockdump -h" for its flags, output and exit codes.
package main

import (
	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/sockdump"
)

func main() { cli.Main("sockdump", sockdump.Run) }
