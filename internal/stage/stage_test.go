package stage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sockpipe/sockpipe/internal/ndjson"
	"github.com/sockpipe/sockpipe/internal/record"
)

const good = `{"type":"snapshot","time":"2026-11-26T04:34:58Z","schema":1,"sockets":0,"duration_ns":1}`

func TestInputSkipsBadLines(t *testing.T) {
	t.Parallel()
	in := strings.Join([]string{
		good,
		`not json`,
		`{"type":"socket"}`, // fails Validate
		strings.Repeat("x", 200),
		`{"type":"other","x":1}`,
		good,
	}, "\n")
	var stderr bytes.Buffer
	i := NewInput(context.Background(), strings.NewReader(in), 100)
	i.Name, i.Stderr = "stage", &stderr
	var nums []int
	for {
		l, err := i.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		nums = append(nums, l.Num)
	}
	if want := []int{1, 5, 6}; !equal(nums, want) {
		t.Errorf("good lines %v, want %v", nums, want)
	}
	msgs := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(msgs) != 3 || i.Bad != 3 ||
		!strings.HasPrefix(msgs[0], "stage: line 2: not a JSON object") ||
		!strings.HasPrefix(msgs[1], "stage: line 3: socket record") ||
		!strings.HasPrefix(msgs[2], "stage: line 4: line too long") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}

func equal(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestInputStrict(t *testing.T) {
	t.Parallel()
	i := NewInput(context.Background(), strings.NewReader(good+"\n{\n"+good+"\n"), 0)
	i.Strict = true
	if _, err := i.Next(); err != nil {
		t.Fatal(err)
	}
	_, err := i.Next()
	var le *ndjson.LineError
	if !errors.As(err, &le) || le.Line != 2 {
		t.Fatalf("err = %v, want a LineError for line 2", err)
	}
}

func TestInputWaitAndCancel(t *testing.T) {
	t.Parallel()
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	i := NewInput(ctx, pr, 0)
	waits := make(chan struct{}, 10)
	i.Wait = func() error { waits <- struct{}{}; return nil }
	go pw.Write([]byte(good + "\n"))
	if _, err := i.Next(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() { _, err := i.Next(); done <- err }()
	select {
	case <-waits: // the reader was told before blocking: time to flush
	case <-time.After(5 * time.Second):
		t.Fatal("Wait not called before blocking")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next did not return after cancel")
	}
}

// With Rewait, Wait is called again while the input stays paused, and not
// while lines come.
func TestInputRewait(t *testing.T) {
	t.Parallel()
	pr, pw := io.Pipe()
	defer pw.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	i := NewInput(ctx, pr, 0)
	i.Rewait = 10 * time.Millisecond
	waits := make(chan struct{}, 100)
	i.Wait = func() error { waits <- struct{}{}; return nil }
	done := make(chan error)
	go func() { _, err := i.Next(); done <- err }()
	for n := 0; n < 3; n++ {
		select {
		case <-waits:
		case <-time.After(5 * time.Second):
			t.Fatalf("Wait called %d times while the input paused, want 3", n)
		}
	}
	go pw.Write([]byte(good + "\n"))
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next did not return the line")
	}
}

// TestInputReuse checks that, under Reuse, a record is reset for each line
// it is reused for, and that without Reuse each line has its own.
func TestInputReuse(t *testing.T) {
	t.Parallel()
	in := good + "\n" + `{"type":"other","x":1}` + "\n" + good + "\n"
	for _, reuse := range []bool{false, true} {
		i := NewInput(context.Background(), strings.NewReader(in), 0)
		i.Reuse = reuse
		var recs []*record.Record
		var types []string
		for n := 0; n < 10; n++ {
			l, err := i.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, l.Rec)
			types = append(types, l.Rec.Type+"/"+strconv.Itoa(len(l.Rec.Extra)))
		}
		if want := "snapshot/0 other/1 snapshot/0"; strings.Join(types, " ") != want {
			t.Errorf("reuse %v: records %v, want %s", reuse, types, want)
		}
		if len(recs) != 3 || !reuse && (recs[0] == recs[1] || recs[1] == recs[2]) {
			t.Errorf("reuse %v: records %p", reuse, recs)
		}
	}
}

// TestBadJSONMessage checks that a line that is not JSON is reported in
// the stage's words, with where and a short excerpt that escapes what a
// terminal should not get.
func TestBadJSONMessage(t *testing.T) {
	t.Parallel()
	long := `{"type":"socket","local":{"ip":"10.0.0.1","port":1},"remote":{"ip":"10.0.0.2","port":2}` + "\x1b[31m" + strings.Repeat("x", 60)
	in := `{"type":"soc` + "\n" + `{"type":"socket"` + "\x01\xff}\n" + long + "\n"
	var stderr bytes.Buffer
	i := NewInput(context.Background(), strings.NewReader(in), 0)
	i.Name, i.Stderr = "stage", &stderr
	if _, err := i.Next(); err != io.EOF {
		t.Fatalf("Next: %v", err)
	}
	want := []string{
		`stage: line 1: invalid JSON: unexpected end of input: "{\"type\":\"soc" (skipped)`,
		`stage: line 2: invalid JSON: want ',' or '}' at byte 16: "{\"type\":\"socket\"\x01\xff}" (skipped)`,
		`stage: line 3: invalid JSON: want ',' or '}' at byte 87: …"\"10.0.0.2\",\"port\":2}\x1b[31mxxxxxxxxxxxxxxx"… (skipped)`,
	}
	if got := strings.Split(strings.TrimSpace(stderr.String()), "\n"); !slices.Equal(got, want) {
		t.Errorf("stderr:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestInputAheadSameAsSerial checks that lines come out of Next the same
// whether they were decoded ahead, in their own goroutine, or by Next
// itself (under Consume, when most lines are consumed): the same lines,
// records, remote spans and messages, over enough input to span many
// batches, with every option.
func TestInputAheadSameAsSerial(t *testing.T) {
	t.Parallel()
	lines := []string{
		good,
		`{"type":"socket","time":"2026-11-26T04:34:58.609946165Z","family":"ipv4","transport":"tcp","state":"established","local":{"ip":"10.0.0.1","port":22},"remote":{"ip":"10.0.0.2","port":51234,"host":"b.example."},"direction":"ingress","inode":7,"uid":0,"cookie":1,"netns":4026531833,"process":{"pid":42,"name":"sshd"},"user":{"id":"0","name":"root"}}`,
		`not json`,
		`{"type":"socket"}`,
		`{"type":"other","x":[1,{"y":null}]}`,
		`{"type":"socket","time":"2026-11-26T04:34:58Z","family":"ipv6","transport":"tcp","state":"listening","local":{"ip":"::","port":80},"remote":{"ip":"::","port":0},"direction":"listening","inode":8,"cookie":2}`,
	}
	// Phases of lines that are mostly consumed and mostly not, so that
	// decoding ahead stops and starts again.
	var sb strings.Builder
	for n := 0; n < 24000; n++ {
		l := lines[n%len(lines)]
		if n/4000%2 == 0 && n%10 != 0 {
			l = good
		}
		sb.WriteString(l)
		sb.WriteByte('\n')
	}
	in := sb.String()
	consume := func(raw []byte) bool { return string(raw) == good }
	run := func(consumed, reuse, share, recycle bool) string {
		var stderr, out bytes.Buffer
		i := NewInput(context.Background(), strings.NewReader(in), 0)
		i.Name, i.Stderr, i.Reuse, i.Share, i.Recycle = "stage", &stderr, reuse, share, recycle
		if consumed {
			i.Consume = consume
		}
		o := NewOutput(&out)
		for n := 0; n < 30000; n++ {
			l, err := i.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if consume(l.Raw) {
				if consumed {
					t.Fatalf("line %d was consumed and returned", l.Num)
				}
				continue
			}
			s, e, ok := i.RemoteSpan()
			fmt.Fprintf(&out, "%d %d %d %v %q\n", l.Num, s, e, ok, l.Raw)
			if err := o.Record(l.Rec); err != nil {
				t.Fatal(err)
			}
		}
		if err := o.Flush(); err != nil {
			t.Fatal(err)
		}
		return out.String() + stderr.String() + strconv.Itoa(i.Bad)
	}
	want := run(false, false, false, false)
	for _, reuse := range []bool{false, true} {
		for _, share := range []bool{false, true} {
			for _, recycle := range []bool{false, true} {
				for _, consumed := range []bool{false, true} {
					if got := run(consumed, reuse, share, recycle); got != want {
						t.Errorf("consume %v reuse %v share %v recycle %v: lines differ (%d and %d bytes)", consumed, reuse, share, recycle, len(got), len(want))
					}
				}
			}
		}
	}
}
