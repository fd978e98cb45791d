package main

import (
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/sockdump"
	"github.com/sockpipe/sockpipe/internal/sockecs"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"sockecs":  func() { cli.Main("sockecs", sockecs.Run) },
		"sockdump": func() { cli.Main("sockdump", sockdump.Run) },
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		Setup: func(env *testscript.Env) error {
			env.Setenv("PATH", os.Getenv("PATH"))
			return nil
		},
	})
}
