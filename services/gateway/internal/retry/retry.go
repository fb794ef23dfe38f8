// Package retry decides when and how long to wait before trying an upstream call again
// (design §7), as libs/common/src/chassis/retry.py does for the Python services.
package retry

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// IdempotencyHeader marks a request that is safe to repeat whatever its method.
const IdempotencyHeader = "Idempotency-Key"

// Methods RFC 9110 defines as idempotent; the others are retried only with an idempotency key.
var idempotentMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodOptions: true,
	http.MethodPut: true, http.MethodDelete: true, http.MethodTrace: true,
}

// Policy is at most MaxAttempts tries with exponential backoff and full jitter between them.
type Policy struct {
	MaxAttempts int
	Base        time.Duration
	Cap         time.Duration
}

// DefaultPolicy is design §7: 3 attempts, base 50 ms, cap 1 s.
var DefaultPolicy = Policy{MaxAttempts: 3, Base: 50 * time.Millisecond, Cap: time.Second}

// RetryStatus reports the answers worth another attempt: a gateway or proxy in front of the
// upstream, or the upstream itself, said it could not serve just now.
func RetryStatus(status int) bool {
	return status == http.StatusBadGateway || status == http.StatusServiceUnavailable ||
		status == http.StatusGatewayTimeout
}

// MayRetry is true for idempotent methods and for any request that carries an idempotency key.
func (p Policy) MayRetry(method string, header http.Header) bool {
	return idempotentMethods[strings.ToUpper(method)] || header.Get(IdempotencyHeader) != ""
}

// Attempts is how many tries a request gets.
func (p Policy) Attempts(method string, header http.Header) int {
	if p.MayRetry(method, header) {
		return max(1, p.MaxAttempts)
	}
	return 1
}

// Backoff is full jitter: uniform in [0, min(Cap, Base * 2^(retry-1))] for retry 1, 2, ...
func (p Policy) Backoff(retry int, rng *rand.Rand) time.Duration {
	ceiling := p.Base
	for i := 1; i < retry && ceiling < p.Cap; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, p.Cap)
	if ceiling <= 0 {
		return 0
	}
	if rng == nil {
		return time.Duration(rand.Int64N(int64(ceiling) + 1))
	}
	return time.Duration(rng.Int64N(int64(ceiling) + 1))
}

// RetryAfter is the wait a Retry-After header asks for (delta-seconds or an HTTP-date);
// ok is false when the header is missing or unreadable.
func RetryAfter(value string, now time.Time) (wait time.Duration, ok bool) {
	value = strings.TrimSpace(value)
	if value == "" {
		return 0, false
	}
	if seconds, err := strconv.ParseUint(value, 10, 32); err == nil {
		return time.Duration(seconds) * time.Second, true
	}
	moment, err := http.ParseTime(value)
	if err != nil {
		return 0, false
	}
	return max(0, moment.Sub(now)), true
}
