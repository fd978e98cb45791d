// Package ndjson reads and writes newline-delimited lines. It knows nothing
// of JSON: the codec package parses what it reads. The reader survives bad
// and over-long lines; the writer buffers and flushes where it is told.
package ndjson

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// DefaultMaxLine is the longest line a Reader accepts by default: far more
// than any socket record, small enough to bound memory.
const DefaultMaxLine = 1 << 20

// ErrLineTooLong is the cause of a LineError for a line over the limit.
var ErrLineTooLong = errors.New("line too long")

// LineError is a problem with one input line.
type LineError struct {
	Line int   // 1-based line number
	Err  error // what is wrong
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

// Unwrap returns the cause.
func (e *LineError) Unwrap() error { return e.Err }

// Reader reads lines. Blank lines are skipped; a last line without a
// newline is returned like any other.
type Reader struct {
	br   *bufio.Reader
	max  int
	line int
	// long holds a line longer than the buffer while it is read.
	long []byte
}

// readSize is a Reader's buffer: lines longer than that are gathered in
// memory of their own, so that a reader of long lines costs memory only
// when it meets one. (A variable for the tests.)
var readSize = 64 << 10

// NewReader returns a reader of lines of at most max bytes (without the
// newline); max <= 0 means DefaultMaxLine.
func NewReader(r io.Reader, max int) *Reader {
	if max <= 0 {
		max = DefaultMaxLine
	}
	return &Reader{br: bufio.NewReaderSize(r, min(max+1, readSize)), max: max}
}

// Next returns the next non-blank line, without its newline (and without a
// carriage return before it). The slice is valid until the next call. A line
// over the limit is skipped whole and reported as a *LineError wrapping
// ErrLineTooLong; the reader goes on after it. At the end of input Next
// returns io.EOF; other errors are the underlying reader's.
func (r *Reader) Next() ([]byte, error) {
	for {
		b, err := r.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			var whole bool
			if b, whole, err = r.gather(b); err == errTooLong {
				r.line++
				n := r.line
				if !whole {
					if err := r.discard(); err != nil && err != io.EOF {
						return nil, err
					}
				}
				return nil, &LineError{Line: n, Err: ErrLineTooLong}
			}
		}
		if len(b) == 0 && err != nil {
			return nil, err
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		r.line++
		b = bytes.TrimRight(b, "\r\n")
		if len(b) > r.max { // bufio's buffer has a floor of 16 bytes
			return nil, &LineError{Line: r.line, Err: ErrLineTooLong}
		}
		if len(bytes.TrimSpace(b)) == 0 {
			if err == io.EOF {
				return nil, io.EOF
			}
			continue
		}
		return b, nil
	}
}

var errTooLong = errors.New("too long")

// gather reads the rest of a line that filled the buffer, of which b is
// the start, into r.long: errTooLong when it is over the limit (with a
// newline, max+1 bytes), and whole when it was read to its end anyway.
func (r *Reader) gather(b []byte) (line []byte, whole bool, err error) {
	r.long = append(r.long[:0], b...)
	for {
		b, err := r.br.ReadSlice('\n')
		if len(r.long)+len(b) > r.max+1 {
			return nil, err != bufio.ErrBufferFull, errTooLong
		}
		r.long = append(r.long, b...)
		if err != bufio.ErrBufferFull {
			long := r.long
			if cap(r.long) > 2*readSize {
				r.long = nil // a rare long line keeps no memory
			}
			return long, true, err
		}
	}
}

// discard skips the rest of an over-long line.
func (r *Reader) discard() error {
	for {
		_, err := r.br.ReadSlice('\n')
		if err != bufio.ErrBufferFull {
			return err
		}
	}
}

// Line returns the number of the line that Next returned last.
func (r *Reader) Line() int { return r.line }

// Buffered returns how many bytes can be read without blocking.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// Writer writes lines through a buffer. Errors are sticky: after the first
// one, every call returns it.
type Writer struct {
	bw  *bufio.Writer
	err error
}

// WriterSize is a Writer's buffer, and the capacity to which the programs
// grow their output pipes (cli.GrowPipe), so that a large output is
// written a pipeful at a time.
const WriterSize = 1 << 20

// NewWriter returns a writer with a buffer of WriterSize.
func NewWriter(w io.Writer) *Writer {
	return &Writer{bw: bufio.NewWriterSize(w, WriterSize)}
}

// Write writes b, which must end with a newline.
func (w *Writer) Write(b []byte) error {
	if w.err != nil {
		return w.err
	}
	_, w.err = w.bw.Write(b)
	return w.err
}

// WriteLine writes b and a newline.
func (w *Writer) WriteLine(b []byte) error {
	if err := w.Write(b); err != nil {
		return err
	}
	if w.err = w.bw.WriteByte('\n'); w.err != nil {
		return w.err
	}
	return nil
}

// Flush writes out what is buffered.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	w.err = w.bw.Flush()
	return w.err
}

// Buffered returns how many bytes wait in the buffer.
func (w *Writer) Buffered() int { return w.bw.Buffered() }
