// Command docgen writes each program's reference page (docs/PROGRAM.md) and
// man page (docs/man/PROGRAM.1) from the text that the program prints for
// -h, so that the three cannot drift: the -h text is their one source, and
// the notes in notes/PROGRAM.md add what goes beyond it.
//
// Run it from anywhere in the module:
//
//	go generate ./internal/cli/docgen
//
// TestGenerated fails when a file it writes differs from what the -h texts
// give now.
package main

//go:generate go run . -root ../../..

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/sockpipe/sockpipe/internal/cli"
	"github.com/sockpipe/sockpipe/internal/sockdiff"
	"github.com/sockpipe/sockpipe/internal/sockdump"
	"github.com/sockpipe/sockpipe/internal/sockecs"
	"github.com/sockpipe/sockpipe/internal/sockproc"
	"github.com/sockpipe/sockpipe/internal/sockresolve"
)

//go:embed notes/*.md
var notes embed.FS

// A program is one page: its name, the one line of its NAME section, and how
// to get its -h text.
type program struct {
	name    string // the page's name, as installed
	command string // the name its -h text calls it by
	summary string // the NAME line, after the dash
	run     cli.RunFunc
	script  string // a shell script, relative to the root, run with -h instead of run
}

var programs = []program{
	{name: "sockdump", summary: "dump the TCP and UDP sockets of a Linux host as NDJSON records", run: sockdump.Run},
	{name: "sockdiff", summary: "turn socket snapshots into opened, existing and closed events", run: sockdiff.Run},
	{name: "sockproc", summary: "add the process, user and container of each socket", run: sockproc.Run},
	{name: "sockresolve", summary: "add the reverse DNS name of each socket's remote address", run: sockresolve.Run},
	{name: "sockecs", summary: "turn socket records into Elastic Common Schema documents", run: sockecs.Run},
	{name: "sockpipe-watch", command: "watch", summary: "report every new socket of this host as an ECS document, by running the sockpipe stages", script: "examples/watch"},
}

// A page is a program's -h text and notes, ready to render.
type page struct {
	program
	help  string // what -h prints
	notes string // markdown, from notes/NAME.md
}

func main() {
	root := flag.String("root", ".", "the module's root directory")
	check := flag.Bool("check", false, "write nothing; fail when a generated file is out of date")
	flag.Parse()
	files, err := generate(*root)
	if err != nil {
		fmt.Fprintf(os.Stderr, "docgen: %v\n", err)
		os.Exit(1)
	}
	stale := 0
	for _, f := range files {
		path := filepath.Join(*root, f.path)
		old, err := os.ReadFile(path)
		if err == nil && bytes.Equal(old, f.data) {
			continue
		}
		if *check {
			fmt.Fprintf(os.Stderr, "docgen: %s is out of date\n", f.path)
			stale++
			continue
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			fmt.Fprintf(os.Stderr, "docgen: %v\n", err)
			os.Exit(1)
		}
		if err := os.WriteFile(path, f.data, 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "docgen: %v\n", err)
			os.Exit(1)
		}
	}
	if stale > 0 {
		fmt.Fprintln(os.Stderr, "docgen: run go generate ./internal/cli/docgen")
		os.Exit(1)
	}
}

// A file is one generated file, its path relative to the root.
type file struct {
	path string
	data []byte
}

// generate renders every page of the programs, found under root.
func generate(root string) ([]file, error) {
	var files []file
	for _, p := range programs {
		pg, err := load(root, p)
		if err != nil {
			return nil, err
		}
		files = append(files,
			file{path: "docs/" + p.name + ".md", data: markdown(pg)},
			file{path: "docs/man/" + p.name + ".1", data: man(pg)},
		)
	}
	return files, nil
}

// load reads a program's -h text and its notes.
func load(root string, p program) (page, error) {
	if p.command == "" {
		p.command = p.name
	}
	help, err := helpText(root, p)
	if err != nil {
		return page{}, fmt.Errorf("%s -h: %w", p.command, err)
	}
	n, err := notes.ReadFile("notes/" + p.name + ".md")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return page{}, err
	}
	return page{program: p, help: help, notes: string(n)}, nil
}

// helpText returns what the program prints for -h, on stdout or stderr.
func helpText(root string, p program) (string, error) {
	var stdout, stderr bytes.Buffer
	if p.script != "" {
		cmd := exec.Command("sh", filepath.Join(root, p.script), "-h")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Env = scriptEnv()
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("%w: %s", err, stderr.Bytes())
		}
	} else {
		err := p.run(context.Background(), []string{"-h"}, strings.NewReader(""), &stdout, &stderr)
		if err != nil && !errors.Is(err, flag.ErrHelp) {
			return "", err
		}
	}
	help := stdout.String() + stderr.String()
	if strings.TrimSpace(help) == "" {
		return "", errors.New("no help text")
	}
	return strings.TrimRight(help, "\n") + "\n", nil
}

// scriptEnv is the environment for a script's -h: the caller's, without
// the variables that could change what it prints.
func scriptEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "WATCH_") && !strings.HasPrefix(kv, "SOCKPIPE_") {
			env = append(env, kv)
		}
	}
	return env
}

// markdown renders a page as docs/NAME.md.
func markdown(p page) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", p.name)
	fmt.Fprintf(&b, "<!-- Generated by internal/cli/docgen from `%s -h` and internal/cli/docgen/notes/%s.md; edit those, then run: go generate ./internal/cli/docgen -->\n\n", p.command, p.name)
	fmt.Fprintf(&b, "%s: %s. The man page, of the same text: [man/%s.1](man/%s.1).\n\n", p.name, p.summary, p.name, p.name)
	fmt.Fprintf(&b, "## %s -h\n\n```text\n%s```\n", p.command, p.help)
	if n := strings.TrimSpace(p.notes); n != "" {
		fmt.Fprintf(&b, "\n%s\n", n)
	}
	return []byte(b.String())
}
