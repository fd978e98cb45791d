// Command sockdiff reads snapshots of sockets and writes what changed
// between them. Run "sockdiff -h" for its flags, output and exit codes.
package main

import (
	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/sockdiff"
)

func main() { cli.Main("sockdiff", sockdiff.Run) }
