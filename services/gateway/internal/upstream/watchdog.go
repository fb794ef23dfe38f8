package upstream

import (
	"context"
	"io"
	"sync"
	"time"
)

// watchdog cancels an attempt that waits too long: longer than the read timeout for the head
// or for any read of the body (time between bytes, as httpx's read timeout), or past the
// call's deadline. For an event stream it guards only the head, against the deadline alone.
type watchdog struct {
	mu       sync.Mutex
	timer    *time.Timer
	read     time.Duration
	deadline time.Time
	cancel   context.CancelCauseFunc
}

func watch(cancel context.CancelCauseFunc, read time.Duration, deadline time.Time, stream bool) *watchdog {
	dog := &watchdog{read: read, deadline: deadline, cancel: cancel}
	if stream {
		dog.read = time.Until(deadline)
	}
	dog.timer = time.AfterFunc(dog.next(), dog.fire)
	return dog
}

func (w *watchdog) next() time.Duration {
	return max(0, min(w.read, time.Until(w.deadline)))
}

func (w *watchdog) fire() {
	if time.Now().Before(w.deadline) {
		w.cancel(errReadTimeout)
	} else {
		w.cancel(errDeadline)
	}
}

// stop disarms the watchdog; false when it had already fired.
func (w *watchdog) stop() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.timer.Stop()
}

// readAll reads body whole, re-arming the read timeout after every read that brought bytes.
func (w *watchdog) readAll(body io.Reader) ([]byte, error) {
	var out []byte
	chunk := make([]byte, 32*1024)
	for {
		n, err := body.Read(chunk)
		if n > 0 {
			out = append(out, chunk[:n]...)
			if len(out) > maxBody {
				w.cancel(errTooLarge)
				return nil, errTooLarge
			}
			w.mu.Lock()
			if w.timer.Stop() {
				w.timer.Reset(w.next())
			}
			w.mu.Unlock()
		}
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
	}
}
