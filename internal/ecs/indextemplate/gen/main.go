// Command gen writes the index template of the documents,
// examples/shipping/index-template.json, from the field definitions
// (indextemplate.Sources); with -check it writes nothing and fails when
// the file is out of date. Run it with go generate ./internal/ecs/indextemplate.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sockpipe/sockpipe/internal/ecs"
	"github.com/sockpipe/sockpipe/internal/ecs/indextemplate"
)

func main() {
	root := flag.String("root", ".", "the top of the module")
	check := flag.Bool("check", false, "write nothing; fail when the template is out of date")
	flag.Parse()
	if err := run(*root, *check); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(root string, check bool) error {
	var paths []string
	for _, s := range indextemplate.Sources {
		paths = append(paths, filepath.Join(root, s))
	}
	t, err := indextemplate.Load(ecs.Version, paths...)
	if err != nil {
		return err
	}
	b, err := t.JSON()
	if err != nil {
		return err
	}
	out := filepath.Join(root, indextemplate.Path)
	if check {
		have, err := os.ReadFile(out)
		if err != nil {
			return err
		}
		if !bytes.Equal(have, b) {
			return fmt.Errorf("%s is out of date: run go generate ./internal/ecs/indextemplate", indextemplate.Path)
		}
		return nil
	}
	return os.WriteFile(out, b, 0o644)
}
