package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/sockdump"
	"github.com/sockpipe/sockpipe/internal/sockecs"
	"github.com/sockpipe/sockpipe/internal/testprog"
)

// asMain makes the test binary run sockecs itself (for TestUnprivileged).
const asMain = "SOCKECS_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		main()
	}
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

// sockecs needs no privilege: run as nobody, it writes every document.
func TestUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch to nobody; as this user the other tests already run unprivileged")
	}
	// The test binary's own directory is private to root: copy it out.
	bin := testprog.CopySelf(t, "sockecs")
	dir := filepath.Dir(bin)
	in, err := os.ReadFile("../../internal/sockecs/testdata/input.ndjson")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--strict-ecs", "--hostname", "h")
	cmd.Env = []string{asMain + "=1"}
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %s", err, stderr.String())
	}
	// One per good socket record of input.ndjson.
	if n := strings.Count(stdout.String(), "\n"); n != 9 {
		t.Errorf("%d documents, want 9:\n%s", n, stdout.String())
	}
	if n := strings.Count(stderr.String(), "(skipped)"); n != 3 {
		t.Errorf("stderr: %s", stderr.String())
	}
}
