package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/rogpeppe/go-internal/testscript"

	"github.com/sockpipe/sockpipe/internal/revdns/dnstest"
)

var update = flag.Bool("update", false, "rewrite the expected output in testdata/script")

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"sockresolve": main})
}

// TestScripts runs the scripts of testdata/script. Each gets a DNS server
// on 127.0.0.1, its address in $DNS, driven by the dns command.
func TestScripts(t *testing.T) {
	t.Parallel()
	testscript.Run(t, testscript.Params{
		Dir:           "testdata/script",
		UpdateScripts: *update,
		Setup: func(env *testscript.Env) error {
			srv, err := dnstest.Listen()
			if err != nil {
				return err
			}
			env.Defer(srv.Close)
			env.Values["dns"] = srv
			env.Setenv("DNS", srv.Addr)
			// A race-enabled program sleeps a second at exit by default.
			env.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){"dns": cmdDNS},
	})
}

// cmdDNS drives the test server:
//
//	dns set IP name NAME...   answer with PTR names
//	dns set IP nx|empty|refused|servfail|drop
//	dns set IP slow DURATION NAME
//	dns queries IP N          check that IP was asked N times
//	dns total N               check the number of questions
func cmdDNS(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("unsupported: ! dns")
	}
	srv := ts.Value("dns").(*dnstest.Server)
	if len(args) < 2 {
		ts.Fatalf("usage: dns set|queries|total ...")
	}
	count := func(got int, want string) {
		n, err := strconv.Atoi(want)
		ts.Check(err)
		if got != n {
			ts.Fatalf("%d queries, want %d", got, n)
		}
	}
	switch args[0] {
	case "set":
		if len(args) < 3 {
			ts.Fatalf("usage: dns set IP KIND ...")
		}
		var a dnstest.Answer
		switch args[2] {
		case "name":
			a.Names = args[3:]
		case "nx":
			a = dnstest.NX
		case "empty":
		case "refused":
			a.Rcode = dns.RcodeRefused
		case "servfail":
			a.Rcode = dns.RcodeServerFailure
		case "drop":
			a.Drop = true
		case "slow":
			if len(args) != 5 {
				ts.Fatalf("usage: dns set IP slow DURATION NAME")
			}
			d, err := time.ParseDuration(args[3])
			ts.Check(err)
			a.Delay, a.Names = d, args[4:]
		default:
			ts.Fatalf("unknown answer %q", args[2])
		}
		srv.Set(args[1], a)
	case "queries":
		if len(args) != 3 {
			ts.Fatalf("usage: dns queries IP N")
		}
		count(srv.Queries(args[1]), args[2])
	case "total":
		count(srv.Total(), args[1])
	default:
		ts.Fatalf("unknown dns command %q", fmt.Sprint(args[0]))
	}
}
