// Command sockecs turns socket records into Elastic Common Schema
// documents, one JSON object a line, or an Elasticsearch _bulk body.
// Run "sockecs -h" for its flags, output and exit codes.
package main

import (
	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/sockecs"
)

func main() { cli.Main("sockecs", sockecs.Run) }
