package retry

import (
	"math/rand/v2"
	"net/http"
	"testing"
	"time"
)

func TestOnlyIdempotentMethodsOrAnIdempotencyKeyAreRetried(t *testing.T) {
	p := DefaultPolicy
	for _, method := range []string{"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"} {
		if p.Attempts(method, http.Header{}) != 3 {
			t.Errorf("%s is idempotent: want 3 attempts", method)
		}
	}
	for _, method := range []string{"POST", "PATCH"} {
		if p.Attempts(method, http.Header{}) != 1 {
			t.Errorf("%s without a key: want 1 attempt", method)
		}
		if p.Attempts(method, http.Header{"Idempotency-Key": {"k1"}}) != 3 {
			t.Errorf("%s with an Idempotency-Key: want 3 attempts", method)
		}
	}
}

func TestRetryStatuses(t *testing.T) {
	for status, want := range map[int]bool{500: false, 502: true, 503: true, 504: true, 429: false, 404: false} {
		if RetryStatus(status) != want {
			t.Errorf("RetryStatus(%d) = %v", status, !want)
		}
	}
}

func TestBackoffIsFullJitterUnderAnExponentialCeiling(t *testing.T) {
	p := DefaultPolicy
	rng := rand.New(rand.NewPCG(1, 2))
	ceilings := map[int]time.Duration{1: 50 * time.Millisecond, 2: 100 * time.Millisecond,
		3: 200 * time.Millisecond, 5: 800 * time.Millisecond, 6: time.Second, 30: time.Second}
	for retry, ceiling := range ceilings {
		var largest time.Duration
		for range 2000 {
			wait := p.Backoff(retry, rng)
			if wait < 0 || wait > ceiling {
				t.Fatalf("retry %d waited %s, outside [0, %s]", retry, wait, ceiling)
			}
			largest = max(largest, wait)
		}
		if largest < ceiling*9/10 {
			t.Errorf("retry %d: largest of 2000 waits %s, not spread up to %s", retry, largest, ceiling)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	cases := map[string]struct {
		wait time.Duration
		ok   bool
	}{
		"3":                             {3 * time.Second, true},
		" 0 ":                           {0, true},
		"Thu, 01 Jan 2026 12:00:07 GMT": {7 * time.Second, true},
		"Thu, 01 Jan 2026 11:00:00 GMT": {0, true},
		"":                              {0, false},
		"soon":                          {0, false},
		"-1":                            {0, false},
	}
	for value, want := range cases {
		wait, ok := RetryAfter(value, now)
		if wait != want.wait || ok != want.ok {
			t.Errorf("RetryAfter(%q) = %s, %v; want %s, %v", value, wait, ok, want.wait, want.ok)
		}
	}
}
