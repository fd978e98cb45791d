// Command sockproc adds to each socket record the process that holds the
// socket open and the user that owns it. Run "sockproc -h" for its flags,
// output and exit codes.
package main

import (
	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/sockproc"
)

func main() { cli.Main("sockproc", sockproc.Run) }
