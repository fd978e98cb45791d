package ndjson

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

type got struct {
	Line int
	Text string
	Err  string
}

func readAll(r *Reader) []got {
	var out []got
	for i := 0; i < 1<<20; i++ {
		b, err := r.Next()
		if err == io.EOF {
			return out
		}
		g := got{Line: r.Line(), Text: string(b)}
		if err != nil {
			g.Err = err.Error()
		}
		out = append(out, g)
	}
	panic("reader does not end")
}

func TestReader(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 20)
	for _, tt := range []struct {
		name, in string
		want     []got
	}{
		{"empty", "", nil},
		{"lines", "a\nb\n", []got{{1, "a", ""}, {2, "b", ""}}},
		{"no final newline", "a\nb", []got{{1, "a", ""}, {2, "b", ""}}},
		{"crlf", "a\r\nb\r\n", []got{{1, "a", ""}, {2, "b", ""}}},
		{"blank lines skipped, counted", "\n \na\n\n", []got{{3, "a", ""}}},
		{"too long, then goes on", "ok\n" + long + "\nnext\n", []got{{1, "ok", ""}, {2, "", "line 2: line too long"}, {3, "next", ""}}},
		{"too long at the end", "ok\n" + long, []got{{1, "ok", ""}, {2, "", "line 2: line too long"}}},
		{"exactly the limit", strings.Repeat("y", 10) + "\n", []got{{1, strings.Repeat("y", 10), ""}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tt.in), 10)
			if diff := cmp.Diff(tt.want, readAll(r)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestReaderLineErrorUnwraps(t *testing.T) {
	t.Parallel()
	r := NewReader(strings.NewReader(strings.Repeat("z", 100)+"\n"), 10)
	_, err := r.Next()
	var le *LineError
	if !errors.As(err, &le) || !errors.Is(err, ErrLineTooLong) || le.Line != 1 {
		t.Fatalf("err = %v", err)
	}
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	f.n++
	return 0, errors.New("disk full")
}

func TestWriter(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	if err := w.WriteLine([]byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 {
		t.Error("wrote before Flush")
	}
	if err := w.Flush(); err != nil || buf.String() != "{\"a\":1}\n" {
		t.Errorf("after Flush: %q, %v", buf.String(), err)
	}

	fw := &failWriter{}
	w = NewWriter(fw)
	w.WriteLine([]byte("x"))
	if err := w.Flush(); err == nil {
		t.Fatal("no error from a failing writer")
	}
	if err := w.WriteLine([]byte("y")); err == nil || fw.n != 1 {
		t.Errorf("error not sticky: %v, %d writes", err, fw.n)
	}
}

func FuzzReader(f *testing.F) {
	for _, s := range []string{"a\nb\n", "\r\n\n", "x", strings.Repeat("y", 40) + "\nz", `{"type":"socket"}` + "\n"} {
		f.Add([]byte(s), 16)
	}
	f.Add([]byte(strings.Repeat("l", 100)+"\nshort\n"+strings.Repeat("m", 51)+"\n"+strings.Repeat("n", 50)+"\nend"), 50)
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		if max < 1 || max > 1<<16 {
			return
		}
		// A line longer than the buffer reads as one that fits.
		defer func(n int) { readSize = n }(readSize)
		readSize = 1 << 20
		whole := readAll(NewReader(bytes.NewReader(in), max))
		readSize = 16
		if gathered := readAll(NewReader(bytes.NewReader(in), max)); !cmp.Equal(whole, gathered) {
			t.Fatalf("lines gathered from a buffer of 16 bytes (-whole +gathered):\n%s", cmp.Diff(whole, gathered))
		}
		r := NewReader(bytes.NewReader(in), max)
		total := 0
		for i := 0; i <= len(in)+1; i++ {
			b, err := r.Next()
			if err == io.EOF {
				return
			}
			var le *LineError
			if err != nil && !errors.As(err, &le) {
				t.Fatalf("unexpected error %v", err)
			}
			if len(b) > max {
				t.Fatalf("line of %d bytes over the limit %d", len(b), max)
			}
			if bytes.ContainsAny(b, "\n") {
				t.Fatalf("line holds a newline: %q", b)
			}
			total += len(b)
		}
		t.Fatalf("reader did not end on %d bytes", len(in))
	})
}
