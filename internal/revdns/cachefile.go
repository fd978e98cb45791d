package revdns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"time"
	"unicode/utf8"

	"github.com/sockpipe/sockpipe/internal/atomicfile"
	"github.com/sockpipe/sockpipe/internal/codec"
)

// The cache file is one JSON object:
//
//	{"format":"sockresolve-cache","version":1,"written":"2026-11-26T05:00:00Z",
//	 "success":[{"ip":"192.0.2.1","host":"a.example.com.","expires":"2026-11-26T05:01:00Z"}],
//	 "failure":[{"ip":"192.0.2.9","error":"no PTR record (NXDOMAIN)","expires":"2026-11-26T05:01:00Z"}]}
//
// Expiry times are absolute, so a later run honours what is left of each
// TTL. Entries are listed most recently used first.
const (
	fileFormat  = "sockresolve-cache"
	fileVersion = 1
	// maxFileSize bounds what is read of a cache file: far more than
	// the largest cache (100,000 entries take about 10 MB).
	maxFileSize = 256 << 20
	// maxErrorLen bounds a failure message read from the file.
	maxErrorLen = 256
	// lockWait bounds the wait for another run to finish with the file.
	lockWait = 10 * time.Second
)

// ErrDamaged is the cause of every error about the content of a cache file.
var ErrDamaged = errors.New("damaged cache file")

type fileDoc struct {
	Format  string      `json:"format"`
	Version int         `json:"version"`
	Written string      `json:"written"`
	Success []fileEntry `json:"success"`
	Failure []fileEntry `json:"failure"`
}

type fileEntry struct {
	IP      string `json:"ip"`
	Host    string `json:"host,omitempty"`
	Error   string `json:"error,omitempty"`
	Expires string `json:"expires"`
}

// EncodeCache returns the cache file content for s.
func EncodeCache(s Snapshot, written time.Time) []byte {
	doc := fileDoc{
		Format:  fileFormat,
		Version: fileVersion,
		Written: written.UTC().Format(time.RFC3339Nano),
		Success: make([]fileEntry, 0, len(s.Success)),
		Failure: make([]fileEntry, 0, len(s.Failure)),
	}
	for _, e := range s.Success {
		doc.Success = append(doc.Success, fileEntry{IP: e.IP.String(), Host: e.Value, Expires: e.Expires.UTC().Format(time.RFC3339Nano)})
	}
	for _, e := range s.Failure {
		doc.Failure = append(doc.Failure, fileEntry{IP: e.IP.String(), Error: e.Value, Expires: e.Expires.UTC().Format(time.RFC3339Nano)})
	}
	b, err := codec.Marshal(doc)
	if err != nil {
		panic(err) // strings and slices always encode
	}
	return append(b, '\n')
}

// DecodeCache parses cache file content. Every problem is an error that
// wraps ErrDamaged; nothing of a damaged file is returned, since none of
// it can be trusted.
func DecodeCache(data []byte) (Snapshot, error) {
	var doc fileDoc
	if err := codec.Unmarshal(data, &doc); err != nil {
		return Snapshot{}, fmt.Errorf("%w: not the JSON expected", ErrDamaged)
	}
	if doc.Format != fileFormat {
		return Snapshot{}, fmt.Errorf("%w: format %q, want %q", ErrDamaged, doc.Format, fileFormat)
	}
	if doc.Version != fileVersion {
		return Snapshot{}, fmt.Errorf("%w: version %d, this program reads version %d", ErrDamaged, doc.Version, fileVersion)
	}
	var s Snapshot
	var err error
	if s.Success, err = decodeEntries("success", doc.Success, true); err != nil {
		return Snapshot{}, err
	}
	if s.Failure, err = decodeEntries("failure", doc.Failure, false); err != nil {
		return Snapshot{}, err
	}
	return s, nil
}

func decodeEntries(list string, fes []fileEntry, success bool) ([]Entry, error) {
	out := make([]Entry, 0, len(fes))
	for i, fe := range fes {
		bad := func(format string, args ...any) error {
			return fmt.Errorf("%w: %s entry %d: %s", ErrDamaged, list, i+1, fmt.Sprintf(format, args...))
		}
		ip, err := netip.ParseAddr(fe.IP)
		if err != nil {
			return nil, bad("bad ip")
		}
		exp, err := time.Parse(time.RFC3339Nano, fe.Expires)
		if err != nil {
			return nil, bad("bad expires")
		}
		e := Entry{IP: ip, Expires: exp}
		if success {
			if fe.Error != "" {
				return nil, bad("an error in a success entry")
			}
			if err := ValidateName(fe.Host); err != nil || fe.Host[len(fe.Host)-1] != '.' {
				return nil, bad("bad host")
			}
			e.Value = fe.Host
		} else {
			if fe.Host != "" {
				return nil, bad("a host in a failure entry")
			}
			if !printable(fe.Error) {
				return nil, bad("bad error")
			}
			e.Value = fe.Error
		}
		out = append(out, e)
	}
	return out, nil
}

// printable reports whether s is a short line of valid UTF-8 without
// control characters: safe to write into a record.
func printable(s string) bool {
	if s == "" || len(s) > maxErrorLen || !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}

// LoadFile adds the entries of a cache file to the caches. A missing file
// is no error: the caches stay empty. A damaged file adds nothing and
// returns an error wrapping ErrDamaged.
func (r *Resolver) LoadFile(path string) error {
	s, err := readCache(path)
	if err != nil {
		return err
	}
	r.Import(s)
	return nil
}

func readCache(path string) (Snapshot, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Snapshot{}, nil
	}
	if err != nil {
		return Snapshot{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return Snapshot{}, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return Snapshot{}, fmt.Errorf("%s: %w: larger than %d bytes", path, ErrDamaged, maxFileSize)
	}
	s, err := DecodeCache(data)
	if err != nil {
		return Snapshot{}, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// SaveFile writes the caches to a cache file. Under an exclusive lock on
// PATH.lock, it first adds what another run may have written meanwhile
// (entries this run does not have), then writes a temporary file beside
// the target, syncs it, and renames it over the target, so a reader sees
// the old file or the new one, whole.
func (r *Resolver) SaveFile(path string) error {
	l, err := atomicfile.Lock(context.Background(), path, lockWait)
	if err != nil {
		return fmt.Errorf("cache file %w", err)
	}
	defer l.Unlock()
	if s, err := readCache(path); err == nil {
		r.Import(s)
	}
	data := EncodeCache(r.Export(), r.cfg.Now())
	if err := atomicfile.Write(path, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
		return fmt.Errorf("write cache: %w", err)
	}
	return nil
}
