// Package stage holds the input and output loop that every filter of the
// pipeline shares: lines are read in the background, decoded, and bad ones
// reported with their line number and skipped (or, under --strict, fatal);
// output is flushed whenever the input has nothing more ready, so a live
// pipeline never holds a record back while waiting.
package stage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sockpipe/sockpipe/internal/codec"
	"github.com/sockpipe/sockpipe/internal/ndjson"
	"github.com/sockpipe/sockpipe/internal/record"
)

// Line is one decoded input line.
type Line struct {
	Num int            // 1-based line number
	Raw []byte         // the line as read, without newline; never overwritten, but see Input.Recycle
	Rec *record.Record // the decoded record: see Input.Reuse
}

type entry struct {
	start, end, num int
	err             error
	// Set by the decoding goroutine (see Input.decoded): the line's
	// record, or its error in derr, and where its remote end is. A line
	// it left undecoded has neither.
	rec   *record.Record
	derr  error
	span  [2]int
	nulls bool
}

type batch struct {
	data    []byte
	entries []entry
	err     error // set on the last batch: io.EOF or a read error
	// recs holds the records of the batch's lines, decoded ahead under
	// Reuse, so that they are one allocation and recycled.
	recs []record.Record
}

// Input reads and decodes records.
type Input struct {
	// Name prefixes messages on Stderr.
	Name string
	// Stderr receives one message for each bad line.
	Stderr io.Writer
	// Strict makes the first bad line an error returned by Next.
	Strict bool
	// Wait, when set, is called before Next blocks for more input: the
	// place to flush output.
	Wait func() error
	// Rewait, when not zero, calls Wait again each time the input has
	// stayed paused that long, for a stage that holds lines back until
	// the input has been quiet for a while.
	Rewait time.Duration
	// Consume, when set, is offered each line before it is decoded; a
	// line for which it returns true is handled there and not returned by
	// Next. It is for a stage that can handle some lines from their bytes
	// alone, cheaper than decoding them; it must return false for any
	// line it cannot vouch for, which is then decoded and checked as usual.
	Consume func(raw []byte) bool
	// Reuse makes Next decode every line into the same record, which the
	// next call overwrites, rather than into a new one: for a stage that
	// is done with a line's record (though not with what it points to,
	// such as its process) before it asks for the next line. It saves an
	// allocation of some 400 bytes a line.
	Reuse bool
	// New, when set, gives the record that each line is decoded into
	// (but under Reuse): for a stage that recycles records once it is
	// done with them.
	New func() *record.Record
	// Share makes records share the process, user and container objects
	// of the records before them that held the same ones (see
	// codec.Decoder.Share): for a stage that does not change them.
	Share bool
	// Recycle lets Input read later lines into the memory of earlier
	// ones: for a stage that keeps no Line.Raw past its next call of
	// Next (records never point into it). It saves allocating, and
	// collecting, as many bytes as the input holds.
	Recycle bool
	// Bad counts the bad lines seen.
	Bad int

	ctx context.Context
	// spent carries batches that Next is done with, under Recycle, back
	// to the reading goroutine.
	spent chan batch
	dec   *codec.Decoder // one for the stream, so its string cache stays warm
	rec   *record.Record // the record of every line, under Reuse
	ch    chan batch
	cur   batch
	pos   int
	done  error
	// Lines are decoded ahead, in a goroutine of their own, while the
	// stage works on the lines before them: on a machine of more than
	// one core a stage then costs about the greater of its decoding and
	// its own work rather than their sum. decoded carries its batches,
	// free the record slabs it may reuse (under Reuse), and span and
	// nulls are the remote span of the line that Next returned last and
	// whether it held a null.
	decoded chan batch
	free    chan []record.Record
	span    [2]int
	nulls   bool
	// Under Consume, lines are decoded ahead only while most of them
	// are not consumed (speculate), judged by the batch before (lines,
	// consumed); the others are decoded by Next, with own.
	speculate       atomic.Bool
	lines, consumed int
	own             *codec.Decoder
}

// NewInput starts reading r in the background. The goroutine ends at the
// end of r or when ctx is done.
func NewInput(ctx context.Context, r io.Reader, maxLine int) *Input {
	in := &Input{ctx: ctx, dec: codec.NewDecoder(), ch: make(chan batch, 4), spent: make(chan batch, 8), Stderr: io.Discard}
	go in.read(ndjson.NewReader(r, maxLine))
	return in
}

const batchBytes = 64 << 10

func (in *Input) read(lr *ndjson.Reader) {
	var b batch
	// Each batch is sized from the last one, so that a steady stream
	// fills its buffers without regrowing them. Batches are reused only
	// once Next is done with them, under Recycle: a stage may keep Raw
	// slices.
	send := func() bool {
		select {
		case in.ch <- b:
			select {
			case old := <-in.spent:
				b = batch{data: old.data[:0], entries: old.entries[:0]}
			default:
				b = batch{
					data:    make([]byte, 0, min(len(b.data)+len(b.data)/4+512, batchBytes+16<<10)),
					entries: make([]entry, 0, len(b.entries)+len(b.entries)/4+4),
				}
			}
			return true
		case <-in.ctx.Done():
			return false
		}
	}
	for {
		line, err := lr.Next()
		switch le := lineError(err); {
		case le != nil:
			b.entries = append(b.entries, entry{num: le.Line, err: le.Err})
		case err != nil:
			b.err = err
			send()
			return
		default:
			start := len(b.data)
			b.data = append(b.data, line...)
			b.entries = append(b.entries, entry{start: start, end: len(b.data), num: lr.Line()})
		}
		if lr.Buffered() == 0 || len(b.data) >= batchBytes {
			if !send() {
				return
			}
		}
	}
}

// decodeAhead decodes the batches of in.ch and passes them on to
// in.decoded, until the last batch or the end of in.ctx.
func (in *Input) decodeAhead() {
	for {
		var b batch
		select {
		case b = <-in.ch:
		case <-in.ctx.Done():
			return
		}
		if in.Reuse {
			select {
			case b.recs = <-in.free:
			default:
			}
			if cap(b.recs) < len(b.entries) {
				b.recs = make([]record.Record, len(b.entries))
			}
			b.recs = b.recs[:len(b.entries)]
		}
		spec := in.speculate.Load()
		for i := range b.entries {
			e := &b.entries[i]
			if e.err != nil || !spec {
				continue
			}
			var rec *record.Record
			switch {
			case in.Reuse:
				rec = &b.recs[i]
			case in.New != nil:
				rec = in.New()
			default:
				rec = new(record.Record)
			}
			raw := b.data[e.start:e.end]
			if err := decode(in.dec, in.Share, raw, rec); err != nil {
				e.derr = err
				continue
			}
			e.rec = rec
			e.span[0], e.span[1], _ = in.dec.RemoteSpan()
			e.nulls = in.dec.Nulls()
		}
		select {
		case in.decoded <- b:
		case <-in.ctx.Done():
			return
		}
		if b.err != nil {
			return
		}
	}
}

// decode decodes and checks one line into rec.
func decode(dec *codec.Decoder, share bool, raw []byte, rec *record.Record) error {
	if share {
		dec.Share()
	}
	err := dec.DecodeInto(raw, rec)
	if err != nil {
		// (Only here: the target of errors.As escapes, an allocation.)
		var se *codec.SyntaxError
		if errors.As(err, &se) {
			err = fmt.Errorf("%w: %s", err, Excerpt(raw, se.Offset))
		}
		return err
	}
	return rec.Validate()
}

// lineError returns err as a *ndjson.LineError, or nil.
func lineError(err error) *ndjson.LineError {
	if err == nil {
		return nil
	}
	var le *ndjson.LineError
	if errors.As(err, &le) {
		return le
	}
	return nil
}

// Next returns the next good line. At the end of input it returns io.EOF;
// when the context is done, its error; under Strict, a *ndjson.LineError
// for the first bad line.
func (in *Input) Next() (Line, error) {
	if in.decoded == nil {
		in.decoded = make(chan batch, 2)
		in.free = make(chan []record.Record, 4)
		in.speculate.Store(true)
		go in.decodeAhead()
	}
	for {
		if in.pos < len(in.cur.entries) {
			e := &in.cur.entries[in.pos]
			in.pos++
			if e.err != nil {
				if err := in.bad(e.num, e.err); err != nil {
					return Line{}, err
				}
				continue
			}
			raw := in.cur.data[e.start:e.end]
			if in.Consume != nil {
				in.lines++
				if in.Consume(raw) {
					in.consumed++
					continue
				}
			}
			rec, err := e.rec, e.derr
			if rec == nil && err == nil {
				rec, err = in.decodeHere(raw)
			} else {
				in.span, in.nulls = e.span, e.nulls
			}
			if err != nil {
				if err := in.bad(e.num, err); err != nil {
					return Line{}, err
				}
				continue
			}
			return Line{Num: e.num, Raw: raw, Rec: rec}, nil
		}
		if in.Consume != nil && in.lines > 0 {
			in.speculate.Store(in.consumed*2 < in.lines)
			in.lines, in.consumed = 0, 0
		}
		if in.done != nil {
			return Line{}, in.done
		}
		if in.cur.err != nil {
			in.done = in.cur.err
			continue
		}
		if in.cur.recs != nil {
			select {
			case in.free <- in.cur.recs:
			default:
			}
			in.cur.recs = nil
		}
		if in.Recycle && in.cur.data != nil {
			select {
			case in.spent <- batch{data: in.cur.data, entries: in.cur.entries}:
			default:
			}
			in.cur.data, in.cur.entries = nil, nil
		}
		// A batch ready is taken without waiting: Wait (a flush, in
		// most stages) is for when the input has nothing ready.
		select {
		case b := <-in.decoded:
			in.cur, in.pos = b, 0
			continue
		default:
		}
		if in.Wait != nil {
			if err := in.Wait(); err != nil {
				return Line{}, err
			}
		}
		var again <-chan time.Time
		var timer *time.Timer
		if in.Rewait > 0 && in.Wait != nil {
			timer = time.NewTimer(in.Rewait)
			again = timer.C
		}
		select {
		case b := <-in.decoded:
			in.cur, in.pos = b, 0
		case <-in.ctx.Done():
			in.done = in.ctx.Err()
		case <-again:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// RemoteSpan is the codec's Decoder.RemoteSpan for the line that Next
// returned last.
func (in *Input) RemoteSpan() (start, end int, ok bool) {
	return in.span[0], in.span[1], in.span[1] > in.span[0]
}

// Nulls is the codec's Decoder.Nulls for the line that Next returned
// last.
func (in *Input) Nulls() bool { return in.nulls }

// decodeHere decodes a line that was not decoded ahead.
func (in *Input) decodeHere(raw []byte) (*record.Record, error) {
	if in.own == nil {
		in.own = codec.NewDecoder()
	}
	rec := in.rec
	switch {
	case in.Reuse && rec != nil:
	case in.New != nil && !in.Reuse:
		rec = in.New()
	default:
		rec = new(record.Record)
		in.rec = rec
	}
	err := decode(in.own, in.Share, raw, rec)
	in.span[0], in.span[1], _ = in.own.RemoteSpan()
	in.nulls = in.own.Nulls()
	return rec, err
}

// excerptLen is how much of a bad line a message shows.
const excerptLen = 40

// Excerpt returns up to excerptLen bytes of line around offset, quoted,
// with anything but printable ASCII escaped, so that a message never puts
// raw bytes on a terminal; "…" marks what is left out.
func Excerpt(line []byte, offset int) string {
	start := max(0, min(offset, len(line))-excerptLen/2)
	end := min(len(line), start+excerptLen)
	q := strconv.QuoteToASCII(string(line[start:end]))
	if start > 0 {
		q = "…" + q
	}
	if end < len(line) {
		q += "…"
	}
	return q
}

func (in *Input) bad(num int, err error) error {
	in.Bad++
	le := &ndjson.LineError{Line: num, Err: err}
	if in.Strict {
		return le
	}
	fmt.Fprintf(in.Stderr, "%s: %v (skipped)\n", in.Name, le)
	return nil
}

// Output encodes records and writes lines.
type Output struct {
	w   *ndjson.Writer
	enc *codec.Encoder
}

// NewOutput returns an output to w.
func NewOutput(w io.Writer) *Output {
	return &Output{w: ndjson.NewWriter(w), enc: codec.NewEncoder()}
}

// Record writes a record.
func (o *Output) Record(r *record.Record) error { return o.w.Write(o.enc.Encode(r)) }

// Tail writes r, decoded from line and changed only in the members of
// tail t, for which t.FreeOf held before the change: line with those members
// appended, which costs a copy rather than an encoding of the whole record.
func (o *Output) Tail(line []byte, r *record.Record, t codec.Tail) error {
	return o.w.Write(o.enc.EncodeTail(line, r, t))
}

// Remote writes r, decoded from line and changed only in the host, the
// registered domain and the host error of its remote end, for which
// codec.RemoteFree held before the change: line with those members put in,
// rather than an encoding of the whole record.
func (o *Output) Remote(line []byte, start, end int, r *record.Record) error {
	return o.w.Write(o.enc.EncodeRemote(line, start, end, r))
}

// RememberShared is codec.Encoder.RememberShared for the output's
// encoder: for a stage that never changes a process, user or container
// object once it has written it.
func (o *Output) RememberShared() { o.enc.RememberShared() }

// Raw writes a line as it was read (without its newline).
func (o *Output) Raw(line []byte) error { return o.w.WriteLine(line) }

// Flush writes out what is buffered.
func (o *Output) Flush() error { return o.w.Flush() }
