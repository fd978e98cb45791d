package userdb

import (
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const passwd = `# comment
root:x:0:0:root:/root:/bin/bash
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
jaime:x:1000:1000:Jaime Soriano Pastor,,,:/home/jaime:/bin/bash
dup:x:1000:1000:Second Line:/home/dup:/bin/sh
nogecos:x:1001:1001::/home/nogecos:/bin/sh
short:x:1002:1002
+nis::::::
-excluded::::::
bad:x:notanumber:1:Bad:/:/bin/sh
big:x:4294967295:1:Max:/:/bin/sh
toobig:x:4294967296:1:Over:/:/bin/sh
:x:1003:1:No Name:/:/bin/sh
crlf:x:1004:1:Windows Line:/:/bin/sh` + "\r" + `
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
`

func TestParse(t *testing.T) {
	t.Parallel()
	got, err := Parse(strings.NewReader(passwd))
	if err != nil {
		t.Fatal(err)
	}
	want := map[uint32]Entry{
		0:          {0, "root", "root"},
		1:          {1, "daemon", "daemon"},
		1000:       {1000, "jaime", "Jaime Soriano Pastor"},
		1001:       {1001, "nogecos", ""},
		1002:       {1002, "short", ""},
		4294967295: {4294967295, "big", "Max"},
		1004:       {1004, "crlf", "Windows Line"},
		65534:      {65534, "nobody", "nobody"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
}

func TestParseRealPasswd(t *testing.T) {
	t.Parallel()
	f, err := os.Open(DefaultPath)
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	m, err := Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	// Agree with os/user on every entry (it reads the same file in a
	// build without cgo, and NSS's "files" source with cgo).
	for uid, e := range m {
		u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
		if err != nil {
			continue
		}
		if u.Username != e.Name {
			t.Errorf("uid %d: name %q, os/user says %q", uid, e.Name, u.Username)
		}
	}
}

func writeFile(t *testing.T, path, s string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

// uid 0 is root, name and full name, whatever the file says.
func TestDBRoot(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "passwd")
	writeFile(t, path, "toor:x:0:0:Charlie Root,,,:/root:/bin/sh\n", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	db := New(path, func(string) (*user.User, error) {
		t.Error("the fallback was asked about uid 0")
		return nil, user.UnknownUserIdError(0)
	})
	if e, ok := db.Lookup(0); !ok || e != (Entry{0, "root", "root"}) {
		t.Errorf("Lookup(0) = %+v, %v; want root, root", e, ok)
	}
}

func TestDB(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "passwd")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	writeFile(t, path, "jaime:x:1000:1000:Jaime Soriano Pastor,,,:/home/jaime:/bin/bash\n", t0)

	asked := 0
	fallback := func(uid string) (*user.User, error) {
		asked++
		if uid == "2000" {
			return &user.User{Uid: uid, Username: "ldapuser", Name: "LDAP User,Room 1"}, nil
		}
		return nil, user.UnknownUserIdError(7)
	}
	db := New(path, fallback)

	check := func(uid uint32, want Entry, wantOK bool) {
		t.Helper()
		got, ok := db.Lookup(uid)
		if ok != wantOK {
			t.Errorf("Lookup(%d) ok = %v, want %v", uid, ok, wantOK)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Lookup(%d) (-want +got):\n%s", uid, diff)
		}
	}
	check(1000, Entry{1000, "jaime", "Jaime Soriano Pastor"}, true)
	check(0, Entry{0, "root", "root"}, true) // not in the file: still root
	check(2000, Entry{2000, "ldapuser", "LDAP User"}, true)
	check(3000, Entry{UID: 3000}, false)
	check(3000, Entry{UID: 3000}, false)
	if asked != 2 {
		t.Errorf("fallback asked %d times, want 2 (misses are cached)", asked)
	}

	// A user added to the file is found after Refresh, not before.
	writeFile(t, path, "jaime:x:1000:1000:Jaime:/home/jaime:/bin/bash\nnew:x:3000:3000:New User:/:/bin/sh\n", t0.Add(time.Minute))
	check(3000, Entry{UID: 3000}, false)
	db.Refresh()
	check(3000, Entry{3000, "new", "New User"}, true)
	check(1000, Entry{1000, "jaime", "Jaime"}, true)

	// An unchanged file is not read again.
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	db.Refresh()
	check(3000, Entry{3000, "new", "New User"}, true)
}

func TestDBMissingFile(t *testing.T) {
	t.Parallel()
	var warned []error
	db := New(filepath.Join(t.TempDir(), "missing"), nil)
	db.Warn = func(err error) { warned = append(warned, err) }
	for i := 0; i < 3; i++ {
		db.Refresh()
		if e, ok := db.Lookup(1000); ok || e != (Entry{UID: 1000}) {
			t.Errorf("Lookup(1000) = %+v, %v; want only the uid", e, ok)
		}
	}
	if e, ok := db.Lookup(0); !ok || e.Name != "root" {
		t.Errorf("Lookup(0) = %+v, %v; want root", e, ok)
	}
	if len(warned) != 1 || !errors.Is(warned[0], os.ErrNotExist) {
		t.Errorf("warnings = %v, want one ErrNotExist", warned)
	}
}

func FuzzParseLine(f *testing.F) {
	if b, err := os.ReadFile(DefaultPath); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			f.Add(l)
		}
	}
	for _, l := range strings.Split(passwd, "\n") {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, line string) {
		e, ok := ParseLine(line)
		if !ok {
			return
		}
		if e.Name == "" || strings.Contains(e.Name, ":") || strings.Contains(e.FullName, ",") || strings.Contains(e.FullName, ":") {
			t.Fatalf("ParseLine(%q) = %+v", line, e)
		}
		if !strings.HasPrefix(line, e.Name+":") {
			t.Fatalf("ParseLine(%q): name %q is not the first field", line, e.Name)
		}
	})
}
