package sockproc

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
	"time"
)

func TestReadAhead(t *testing.T) {
	t.Parallel()
	var src bytes.Buffer
	for i := 0; src.Len() < 3*readAheadChunk; i++ {
		src.WriteString("line of some length, number ")
		src.WriteByte(byte('0' + i%10))
		src.WriteByte('\n')
	}
	want := src.Bytes()
	for name, r := range map[string]io.Reader{
		"whole":    bytes.NewReader(want),
		"one byte": iotest.OneByteReader(bytes.NewReader(want[:5000])),
		"half":     iotest.HalfReader(bytes.NewReader(want)),
	} {
		got, err := io.ReadAll(iotest.OneByteReader(newReadAhead(r)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if w := want; name == "one byte" {
			w = want[:5000]
			if !bytes.Equal(got, w) {
				t.Errorf("%s: got %d bytes, want %d, not equal", name, len(got), len(w))
			}
		} else if !bytes.Equal(got, w) {
			t.Errorf("%s: got %d bytes, want %d, not equal", name, len(got), len(w))
		}
	}
}

func TestReadAheadError(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	r := io.MultiReader(bytes.NewReader([]byte("abc")), iotest.ErrReader(boom))
	got, err := io.ReadAll(newReadAhead(r))
	if string(got) != "abc" || !errors.Is(err, boom) {
		t.Errorf("ReadAll = %q, %v; want abc, boom", got, err)
	}
}

// TestReadAheadLive checks that what arrives is passed on before more
// arrives: a live pipeline must not wait for a full buffer.
func TestReadAheadLive(t *testing.T) {
	t.Parallel()
	pr, pw := io.Pipe()
	ra := newReadAhead(pr)
	done := make(chan []byte)
	go func() {
		buf := make([]byte, 100)
		n, _ := ra.Read(buf)
		done <- buf[:n]
	}()
	pw.Write([]byte("one line\n"))
	select {
	case got := <-done:
		if string(got) != "one line\n" {
			t.Errorf("Read = %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a written line was not passed on")
	}
	pw.Close()
}
