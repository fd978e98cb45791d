package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// root is the module's root, from this package's directory.
const root = "../../.."

// TestGenerated fails when a generated page differs from what the programs'
// -h texts and the notes give now.
func TestGenerated(t *testing.T) {
	files, err := generate(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(root, f.path))
		if err != nil {
			t.Errorf("%v; run: go generate ./internal/cli/docgen", err)
			continue
		}
		if !bytes.Equal(got, f.data) {
			t.Errorf("%s is out of date; run: go generate ./internal/cli/docgen\n(-generated +on disk):\n%s",
				f.path, cmp.Diff(string(f.data), string(got)))
		}
	}
}

// TestManPages checks that every man page has the sections a man page has,
// every option and exit code of its -h, and, when groff is installed, that
// it renders without a warning.
func TestManPages(t *testing.T) {
	groff, _ := exec.LookPath("groff")
	for _, p := range programs {
		t.Run(p.name, func(t *testing.T) {
			pg, err := load(root, p)
			if err != nil {
				t.Fatal(err)
			}
			h := parseHelp(pg.help)
			if len(h.synopsis) == 0 || len(h.options) == 0 || len(h.exits) == 0 {
				t.Fatalf("-h text has %d usage lines, %d options, %d exit codes; want some of each",
					len(h.synopsis), len(h.options), len(h.exits))
			}
			for _, o := range h.options {
				if len(o.text) == 0 {
					t.Errorf("option %q has no description", o.tag)
				}
			}
			page := string(man(pg))
			lines := strings.Split(page, "\n")
			var requests []string
			for _, l := range lines {
				if strings.HasPrefix(l, ".TH ") || strings.HasPrefix(l, ".SH ") {
					requests = append(requests, l)
				}
			}
			want := []string{
				`.TH ` + strings.ToUpper(p.name) + ` 1 "" "sockpipe" "sockpipe manual"`,
				".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH OPTIONS", `.SH "EXIT STATUS"`,
			}
			if len(requests) < len(want) {
				t.Fatalf("sections %q, want at least %q", requests, want)
			}
			if diff := cmp.Diff(want, requests[:len(want)]); diff != "" {
				t.Errorf("first sections (-want +got):\n%s", diff)
			}
			if !strings.Contains(page, ".SH NAME\n"+p.name+` \- `) {
				t.Errorf("NAME is not %q followed by a summary", p.name)
			}
			if strings.Count(page, ".TP\n") < len(h.options)+len(h.exits) {
				t.Errorf("fewer entries than the %d options and %d exit codes", len(h.options), len(h.exits))
			}
			for _, e := range h.exits {
				if !strings.Contains(page, ".B "+e.tag+"\n") {
					t.Errorf("exit code %s missing", e.tag)
				}
			}
			for i, l := range lines {
				if strings.ContainsFunc(l, func(r rune) bool { return r > 127 }) {
					t.Errorf("line %d is not ASCII: %q", i+1, l)
				}
			}
			if groff == "" {
				t.Log("groff not installed: not rendered")
				return
			}
			cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z")
			cmd.Stdin = strings.NewReader(page)
			out, err := cmd.CombinedOutput()
			if err != nil || len(out) > 0 {
				t.Errorf("groff: %v\n%s", err, out)
			}
		})
	}
}

// TestMarkdownHoldsHelp checks that the reference page quotes the -h text
// whole, and that the notes follow it.
func TestMarkdownHoldsHelp(t *testing.T) {
	for _, p := range programs {
		pg, err := load(root, p)
		if err != nil {
			t.Fatal(err)
		}
		md := string(markdown(pg))
		if !strings.Contains(md, "```text\n"+pg.help+"```\n") {
			t.Errorf("%s: the page does not quote the -h text", p.name)
		}
		if n := strings.TrimSpace(pg.notes); n != "" && !strings.HasSuffix(md, n+"\n") {
			t.Errorf("%s: the page does not end with the notes", p.name)
		}
	}
}

func TestParseHelp(t *testing.T) {
	text := `usage: prog [--a N]
       prog --b

Flags:
  -a N
    	do a N times (default 1)
  -b
    	be b

prog does things.

Output (NDJSON on stdout): one line
  {"type":"x"}
and more.

Exit codes:
  0  success
  3  locked
     for long
`
	got := parseHelp(text)
	want := help{
		synopsis: []string{"prog [--a N]", "prog --b"},
		options:  []option{{tag: "-a N", text: []string{"do a N times (default 1)"}}, {tag: "-b", text: []string{"be b"}}},
		desc: []section{
			{lines: []string{"prog does things."}},
			{heading: "Output", lines: []string{"(NDJSON on stdout)", "one line", `  {"type":"x"}`, "and more."}},
		},
		exits: []option{{tag: "0", text: []string{"success"}}, {tag: "3", text: []string{"locked", "for long"}}},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(help{}, option{}, section{})); diff != "" {
		t.Errorf("parseHelp (-want +got):\n%s", diff)
	}
}

func TestScriptOptions(t *testing.T) {
	para := []string{
		"Options (read from the",
		"environment):",
		"  PERIOD        how often",
		"                [WATCH_PERIOD]",
		"  -r, --rev     look up",
		"Every boolean has a --no- form.",
	}
	opts, lead, trail := parseScriptOptions(para)
	wantOpts := []option{{tag: "PERIOD", text: []string{"how often", "[WATCH_PERIOD]"}}, {tag: "-r, --rev", text: []string{"look up"}}}
	if diff := cmp.Diff(wantOpts, opts, cmp.AllowUnexported(option{})); diff != "" {
		t.Errorf("options (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(para[:2], lead); diff != "" {
		t.Errorf("lead (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(para[5:], trail); diff != "" {
		t.Errorf("trail (-want +got):\n%s", diff)
	}
	if got, want := optionTag("-r, --rev"), `\fB\-r\fR, \fB\-\-rev\fR`; got != want {
		t.Errorf("optionTag = %q, want %q", got, want)
	}
	if got, want := optionTag("-interval D"), `\fB\-\-interval\fR \fID\fR`; got != want {
		t.Errorf("optionTag = %q, want %q", got, want)
	}
}
