// Command sockresolve adds to each socket record the host name of its
// remote address, by reverse DNS. Run "sockresolve -h" for its flags,
// output and exit codes.
package main

import (
	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/sockresolve"
)

func main() { cli.Main("sockresolve", sockresolve.Run) }
