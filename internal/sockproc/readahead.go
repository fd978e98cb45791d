package sockproc

import (
	"io"
	"sync"
)

// readAhead reads its source in the background into memory, up to
// readAheadMax bytes, so that the writer upstream (sockdump) is not held
// back while sockproc walks /proc: the dump and the walk then run side by
// side instead of one after the other. What each read returns is handed
// on at once, so a live stream is not delayed.
type readAhead struct {
	mu     sync.Mutex
	cond   sync.Cond
	queue  [][]byte // read and not yet consumed, in order
	queued int      // bytes in queue
	err    error    // the source's error, once it ended
}

const (
	readAheadMax   = 64 << 20 // about 200,000 socket records
	readAheadChunk = 256 << 10
)

func newReadAhead(r io.Reader) *readAhead {
	ra := &readAhead{}
	ra.cond.L = &ra.mu
	go ra.run(r)
	return ra
}

func (ra *readAhead) run(r io.Reader) {
	buf := make([]byte, readAheadChunk)
	for {
		ra.mu.Lock()
		for ra.queued >= readAheadMax {
			ra.cond.Wait()
		}
		ra.mu.Unlock()
		if len(buf) == 0 {
			buf = make([]byte, readAheadChunk)
		}
		n, err := r.Read(buf)
		ra.mu.Lock()
		if n > 0 {
			ra.queue = append(ra.queue, buf[:n:n])
			ra.queued += n
			buf = buf[n:]
		}
		if err != nil {
			ra.err = err
		}
		ra.cond.Broadcast()
		ra.mu.Unlock()
		if err != nil {
			return
		}
	}
}

func (ra *readAhead) Read(p []byte) (int, error) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	for len(ra.queue) == 0 && ra.err == nil {
		ra.cond.Wait()
	}
	if len(ra.queue) == 0 {
		return 0, ra.err
	}
	n := 0
	for n < len(p) && len(ra.queue) > 0 {
		c := copy(p[n:], ra.queue[0])
		n += c
		if c == len(ra.queue[0]) {
			ra.queue[0] = nil
			ra.queue = ra.queue[1:]
		} else {
			ra.queue[0] = ra.queue[0][c:]
		}
	}
	ra.queued -= n
	ra.cond.Broadcast()
	return n, nil
}
