package cli

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestStopSignals runs this test binary again, once as is and once with
// SIGINT ignored (as a shell starts a background command), and asks it
// which signals stop it.
func TestStopSignals(t *testing.T) {
	if os.Getenv("CLI_TEST_PRINT_SIGNALS") == "1" {
		var names []string
		for _, s := range stopSignals() {
			names = append(names, s.String())
		}
		os.Stdout.WriteString(strings.Join(names, ",") + "\n")
		return
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	for _, tc := range []struct {
		name, trap, want string
	}{
		{"default", "", "interrupt,terminated"},
		{"SIGINT ignored", `trap "" INT;`, "terminated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(sh, "-c", tc.trap+` exec "$0" -test.run='^TestStopSignals$'`, os.Args[0])
			cmd.Env = append(os.Environ(), "CLI_TEST_PRINT_SIGNALS=1")
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.SplitN(string(out), "\n", 2)[0]; got != tc.want {
				t.Errorf("stop signals = %q, want %q", got, tc.want)
			}
		})
	}
}
