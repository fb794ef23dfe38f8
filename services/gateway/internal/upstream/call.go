package upstream

import (
	"context"
	"io"
	"net/http"
	"time"

	"github.com/bookshop/gateway/internal/breaker"
	"github.com/bookshop/gateway/internal/retry"
)

// Call is one request to pass to the upstream.
type Call struct {
	Method   string
	Path     string // escaped, under the base URL, starting with "/"
	RawQuery string
	Header   http.Header // end-to-end headers only; trace context is injected per attempt
	Body     []byte      // buffered, so that a retry can send it again
	// Stream marks an event stream: the read timeout does not apply, and the deadline and the
	// breaker's clock cover only the wait for the response head.
	Stream bool
	// Template names the client span ("GET /rooms/{room}/events"); the method alone if empty.
	Template string
}

// Response is the upstream's answer: Body when buffered, Stream for an event stream (the
// caller closes it).
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	Stream io.ReadCloser
}

// Close releases a streamed answer.
func (r *Response) Close() {
	if r.Stream != nil {
		_ = r.Stream.Close()
	}
}

// Do sends call with the deadline, breaker and retries of design §7. Retried: idempotent
// methods and requests with an Idempotency-Key, on connection errors and 502/503/504, waiting
// full-jitter backoff or the Retry-After asked for, within the deadline. A call the breaker
// rejects is never retried.
func (u *Upstream) Do(ctx context.Context, call Call) (*Response, error) {
	deadline := time.Now().Add(u.settings.Deadline)
	attempts := u.settings.Retry.Attempts(call.Method, call.Header)
	for attempt := 1; ; attempt++ {
		if time.Until(deadline) <= 0 {
			return nil, deadlineError(u.Name)
		}
		permit, err := u.acquire()
		if err != nil {
			return nil, err
		}
		started := time.Now()
		response, failure := u.attempt(ctx, call, attempt, deadline)
		if failure != nil {
			if failure.Kind == ClientGone {
				u.abandon(permit)
				return nil, failure
			}
			u.record(permit, true, time.Since(started))
			if attempt >= attempts || !u.wait(ctx, u.settings.Retry.Backoff(attempt, nil), deadline) {
				return nil, failure
			}
			continue
		}
		u.record(permit, response.Status >= 500, time.Since(started))
		if !retry.RetryStatus(response.Status) || attempt >= attempts {
			return response, nil
		}
		wait := u.settings.Retry.Backoff(attempt, nil)
		if asked, ok := retry.RetryAfter(response.Header.Get("Retry-After"), time.Now()); ok {
			wait = max(wait, asked)
		}
		if !u.wait(ctx, wait, deadline) {
			return response, nil // no time left to try again: the upstream's own answer
		}
		response.Close()
	}
}

func (u *Upstream) acquire() (*breaker.Permit, error) {
	if u.breaker == nil {
		return nil, nil
	}
	permit, err := u.breaker.Acquire()
	if err != nil {
		open := err.(*breaker.OpenError)
		return nil, circuitOpenError(u.Name, open.RetryAfter)
	}
	return &permit, nil
}

func (u *Upstream) record(permit *breaker.Permit, failed bool, duration time.Duration) {
	if permit != nil {
		u.breaker.Record(*permit, failed, duration)
	}
}

func (u *Upstream) abandon(permit *breaker.Permit) {
	if permit != nil {
		u.breaker.Abandon(*permit)
	}
}

// wait sleeps before a retry; false when the retry could not start before the deadline (or
// the caller went away).
func (u *Upstream) wait(ctx context.Context, d time.Duration, deadline time.Time) bool {
	if !time.Now().Add(d).Before(deadline) {
		return false
	}
	u.metrics.ClientRetries.WithLabelValues(u.Name).Inc()
	return u.sleep(ctx, d) == nil
}
