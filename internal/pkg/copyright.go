package pkg

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// module is a Go module linked into the programs.
type module struct {
	path, version, dir string
}

// linkedModules lists the modules, other than sockpipe's own, whose
// packages the Programs link, as go list sees them from root.
func linkedModules(root string) ([]module, error) {
	args := []string{"list", "-deps", "-f", "{{with .Module}}{{if not .Main}}{{.Path}} {{.Version}} {{.Dir}}{{end}}{{end}}"}
	for _, p := range Programs {
		args = append(args, "./cmd/"+p)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=linux", "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list: %w\n%s", err, stderr.Bytes())
	}
	seen := map[string]bool{}
	var mods []module
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 || seen[f[0]] {
			continue
		}
		seen[f[0]] = true
		mods = append(mods, module{f[0], f[1], f[2]})
	}
	slices.SortFunc(mods, func(a, b module) int { return strings.Compare(a.path, b.path) })
	return mods, nil
}

// licenceFiles returns the licence and notice files at the top of dir.
func licenceFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		n := strings.ToUpper(e.Name())
		if e.Type().IsRegular() && (strings.HasPrefix(n, "LICENSE") || strings.HasPrefix(n, "LICENCE") ||
			strings.HasPrefix(n, "COPYING") || strings.HasPrefix(n, "NOTICE") || n == "PATENTS") {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

const copyrightHead = `sockpipe
Homepage: https://github.com/sockpipe/sockpipe

Copyright: the sockpipe authors
License: Apache-2.0
 The full text of the licence is in LICENSE beside this file (on Debian
 systems also in /usr/share/common-licenses/Apache-2.0).

The eBPF program that sockdump loads (internal/ownertable/owner.bpf.c,
and its compiled objects embedded in /usr/bin/sockdump):
License: GPL-2.0-only OR BSD-2-Clause
 The BSD-2-Clause licence, under which it is distributed with sockpipe:
 .
 Redistribution and use in source and binary forms, with or without
 modification, are permitted provided that the following conditions are
 met:
 1. Redistributions of source code must retain the above copyright
    notice, this list of conditions and the following disclaimer.
 2. Redistributions in binary form must reproduce the above copyright
    notice, this list of conditions and the following disclaimer in the
    documentation and/or other materials provided with the distribution.
 .
 THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS
 "AS IS" AND ANY EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT
 LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A
 PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT
 HOLDER OR CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL,
 SPECIAL, EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT
 LIMITED TO, PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE,
 DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY
 THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT
 (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
 OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.

The programs are statically linked Go programs. They include the Go
standard library and the Go modules below, under their own licences,
whose texts follow.
`

// Copyright returns the copyright file of the packages: sockpipe's
// licence, the eBPF program's, and the licence and notice texts of the Go
// standard library and of every module linked into the programs.
func Copyright(root, goroot string) ([]byte, error) {
	mods, err := linkedModules(root)
	if err != nil {
		return nil, err
	}
	if goroot == "" {
		out, err := exec.Command("go", "env", "GOROOT").Output()
		if err != nil {
			return nil, fmt.Errorf("go env GOROOT: %w", err)
		}
		goroot = strings.TrimSpace(string(out))
	}
	all := append([]module{{path: "Go (the standard library and runtime)", version: goVersion(goroot), dir: goroot}}, mods...)

	var b bytes.Buffer
	b.WriteString(copyrightHead)
	b.WriteString("\n")
	for _, m := range all {
		fmt.Fprintf(&b, "  %s %s\n", m.path, m.version)
	}
	for _, m := range all {
		names, err := licenceFiles(m.dir)
		if err != nil {
			return nil, fmt.Errorf("licence of %s: %w", m.path, err)
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("licence of %s: no LICENSE, COPYING or NOTICE file in %s", m.path, m.dir)
		}
		for _, n := range names {
			text, err := os.ReadFile(filepath.Join(m.dir, n))
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(&b, "\n\n-------- %s: %s --------\n\n", m.path, n)
			b.Write(bytes.TrimRight(text, "\n"))
			b.WriteString("\n")
		}
	}
	return b.Bytes(), nil
}

// goVersion is the version of the Go tree at goroot, from its VERSION file.
func goVersion(goroot string) string {
	b, err := os.ReadFile(filepath.Join(goroot, "VERSION"))
	if err != nil {
		return ""
	}
	v, _, _ := strings.Cut(string(b), "\n")
	return v
}
