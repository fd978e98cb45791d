package main

import (
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/sockpipe/sockpipe/internal/proctable"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"sockproc": main})
}

func TestScript(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Condition: func(cond string) (bool, error) {
			if cond == "privileged" {
				return proctable.Privileged()
			}
			return false, os.ErrNotExist
		},
	})
}
