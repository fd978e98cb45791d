package netnsdump

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockpipe/sockpipe/internal/inetdiag"
)

// eventBatch is what one receive from the destroy groups gave.
type eventBatch struct {
	d        *Dumper // of the namespace the notifications came from
	at       time.Time
	socks    []inetdiag.Socket
	overflow bool
	err      error // a message that did not decode
}

// maxQueued bounds the notifications waiting to be written (about 200
// bytes each): beyond it they are counted as lost, like a kernel overflow.
const maxQueued = 1 << 20

// eventQueue holds the notifications that the receiving goroutines read
// and the main loop has not written yet. A receiver never waits for the
// main loop, which may be busy writing a large snapshot: it keeps draining
// the kernel's buffer into the queue.
type eventQueue struct {
	mu      sync.Mutex
	batches []eventBatch
	queued  int
	ready   chan struct{} // a token when batches is not empty
}

func (q *eventQueue) push(b eventBatch) {
	q.mu.Lock()
	if q.queued+len(b.socks) > maxQueued {
		b = eventBatch{d: b.d, at: b.at, overflow: true}
	}
	q.queued += len(b.socks)
	q.batches = append(q.batches, b)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// take returns the queued batches, oldest first; nil on a nil queue.
func (q *eventQueue) take() []eventBatch {
	if q == nil {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	b := q.batches
	q.batches, q.queued = nil, 0
	return b
}

// readyChan returns the channel that signals queued batches; nil (never
// ready) on a nil queue.
func (q *eventQueue) readyChan() <-chan struct{} {
	if q == nil {
		return nil
	}
	return q.ready
}

// subscription is one namespace's destroy notifications, received in the
// background into the queue.
type subscription struct {
	ev      *inetdiag.Events
	done    chan struct{} // closed when the receiver has stopped
	closing atomic.Bool   // set by close: the receiver's error is expected
}

// drainTime is how long close keeps receiving what the kernel has queued.
const drainTime = 20 * time.Millisecond

// close receives what the kernel has already queued (for drainTime at
// most), ends the subscription and waits for its receiver to stop.
func (s *subscription) close() {
	s.closing.Store(true)
	if s.ev.SetReadDeadline(time.Now().Add(drainTime)) != nil {
		s.ev.Close()
	}
	select {
	case <-s.done:
	case <-time.After(drainTime + time.Second):
		s.ev.Close()
		<-s.done
	}
	s.ev.Close()
}

// subscribe joins the destroy groups of the protocols in the namespace of
// the open file netns (0: the current one) and starts receiving them for
// the dumper d in the background, timed by now. Groups it could not join are named on
// stderr.
func (q *eventQueue) subscribe(ctx context.Context, netns int, d *Dumper, protocols []uint8, bufBytes int, now func() time.Time, stderr io.Writer) (*subscription, error) {
	ev, joined, err := inetdiag.Subscribe(netns, protocols, bufBytes)
	if err != nil {
		return nil, err
	}
	if len(joined) < 2*len(protocols) {
		fmt.Fprintf(stderr, "sockdump: --events: destroy notifications for %s only\n", strings.Join(joined, ", "))
	}
	s := &subscription{ev: ev, done: make(chan struct{})}
	stop := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			ev.Close()
		case <-stop:
		}
	}()
	go func() {
		defer close(s.done)
		defer close(stop)
		for {
			socks, err := ev.Receive()
			b := eventBatch{d: d, at: now(), socks: socks}
			switch {
			case errors.Is(err, inetdiag.ErrOverflow):
				b.overflow = true
			case err != nil && socks == nil:
				if ctx.Err() == nil && !s.closing.Load() && !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrClosed) {
					fmt.Fprintf(stderr, "sockdump: --events: %v; going on with polling only\n", err)
				}
				return
			default:
				b.err = err
			}
			q.push(b)
		}
	}()
	return s, nil
}
