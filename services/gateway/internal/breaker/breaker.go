// Package breaker is a count-based circuit breaker with the design §7 semantics, the Go twin of
// libs/common/src/chassis/breaker.py:
//
//	CLOSED --(>= MinimumCalls in the window and failure rate >= threshold,
//	          or slow-call rate >= threshold)--> OPEN
//	OPEN --(OpenFor elapsed)--> HALF_OPEN
//	HALF_OPEN --(HalfOpenCalls trial calls all succeed)--> CLOSED
//	HALF_OPEN --(any trial call fails)--> OPEN
//
// Why not a library. Both candidates were read at the versions the module proxy serves:
//
//   - github.com/sony/gobreaker/v2 v2.4.0 keeps cumulative Counts per generation or per time
//     bucket (Settings.Interval / BucketPeriod): there is no "last 20 calls" window. ReadyToTrip
//     is consulted only from onFailure in the closed state, so a window of slow but successful
//     calls can never trip it, and Counts has no notion of a slow call at all.
//   - github.com/failsafe-go/failsafe-go v0.9.8 has a count-based window
//     (WithFailureThresholdRatio(10, 20)), but it trips on a failure *count*, not a rate: its
//     closedState compares FailureCount() >= 10, so 6 failures in 12 calls (50%) never open it.
//     Its rate threshold with a minimum number of executions (WithFailureRateThreshold) is
//     time-based; with a zero period it falls back to a window as long as the minimum (10, not
//     20). It has no slow-call rate either: results are only success or failure, so a slow call
//     counted as a failure would trip it at 50% slow instead of 100%.
//
// Neither can express window 20 + at least 10 calls + 50% failures or 100% slow, so this file
// does, in the chassis' own shape, and the two languages' breakers behave the same.
//
// The mutex guards only the bookkeeping, never the call: concurrent calls run in parallel.
// Results of calls admitted under an earlier state (an older generation) are ignored, so a slow
// call that started before the breaker opened cannot close it again.
package breaker

import (
	"errors"
	"sync"
	"time"
)

// State is where the breaker is; its string is the circuit_breaker_state label value.
type State string

const (
	Closed   State = "closed"
	Open     State = "open"
	HalfOpen State = "half_open"
)

// States in the order the metrics show them.
var States = []State{Closed, Open, HalfOpen}

// Outcome is the circuit_breaker_calls_total label value of one call.
type Outcome string

const (
	Success  Outcome = "success"
	Failure  Outcome = "failure"
	Slow     Outcome = "slow"
	Rejected Outcome = "rejected"
)

// Policy holds the design §7 thresholds; DefaultPolicy has its defaults.
type Policy struct {
	WindowSize            int
	MinimumCalls          int
	FailureRateThreshold  float64
	SlowCallRateThreshold float64
	SlowCall              time.Duration // 80% of the read timeout by default
	OpenFor               time.Duration
	HalfOpenCalls         int
}

// DefaultPolicy is design §7: 20 calls, at least 10, 50% failures or 100% slow (1.6 s being
// 80% of the 2 s read timeout), open 10 s, 3 trial calls.
var DefaultPolicy = Policy{
	WindowSize:            20,
	MinimumCalls:          10,
	FailureRateThreshold:  0.5,
	SlowCallRateThreshold: 1.0,
	SlowCall:              1600 * time.Millisecond,
	OpenFor:               10 * time.Second,
	HalfOpenCalls:         3,
}

// Validate refuses a policy the state machine cannot work with.
func (p Policy) Validate() error {
	if p.WindowSize < 1 || p.MinimumCalls < 1 || p.MinimumCalls > p.WindowSize {
		return errors.New("minimum_calls must be between 1 and window_size")
	}
	if p.HalfOpenCalls < 1 {
		return errors.New("half_open_calls must be at least 1")
	}
	return nil
}

// OpenError is returned by Acquire when the call must not be made; it is never retried.
type OpenError struct {
	Name       string
	RetryAfter time.Duration
}

func (e *OpenError) Error() string { return e.Name + " is unavailable: circuit open" }

// Permit is the admission to make one call; hand it back to Record or Abandon.
type Permit struct {
	generation uint64
	trial      bool
}

// Listeners are called without the lock held, so they may read the breaker.
type Listeners struct {
	StateChanged func(previous, current State)
	Outcome      func(Outcome)
}

type call struct{ failed, slow bool }

// Breaker is safe for concurrent use.
type Breaker struct {
	name      string
	policy    Policy
	now       func() time.Time
	listeners Listeners

	mu              sync.Mutex
	state           State
	generation      uint64
	window          []call // ring buffer of the last WindowSize calls
	next, filled    int
	openedAt        time.Time
	trialsAdmitted  int
	trialsSucceeded int
}

// New makes a closed breaker; now may be nil (time.Now).
func New(name string, policy Policy, now func() time.Time, listeners Listeners) *Breaker {
	if now == nil {
		now = time.Now
	}
	return &Breaker{
		name:      name,
		policy:    policy,
		now:       now,
		listeners: listeners,
		state:     Closed,
		window:    make([]call, policy.WindowSize),
	}
}

// Name is the upstream the breaker guards.
func (b *Breaker) Name() string { return b.name }

// Policy is the breaker's configuration.
func (b *Breaker) Policy() Policy { return b.policy }

// State is the current state, moving an expired open breaker to half-open first.
func (b *Breaker) State() State {
	b.mu.Lock()
	changed := b.advanceClock()
	state := b.state
	b.mu.Unlock()
	b.notify(changed)
	return state
}

// RetryAfter is how long until an open breaker lets trial calls through (0 when not open).
func (b *Breaker) RetryAfter() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.retryAfterLocked()
}

func (b *Breaker) retryAfterLocked() time.Duration {
	if b.state != Open {
		return 0
	}
	return max(0, b.openedAt.Add(b.policy.OpenFor).Sub(b.now()))
}

// Acquire admits a call or returns an *OpenError (counted as a rejected call).
func (b *Breaker) Acquire() (Permit, error) {
	b.mu.Lock()
	changed := b.advanceClock()
	permit, admitted := b.admit()
	retryAfter := b.retryAfterLocked()
	b.mu.Unlock()
	b.notify(changed)
	if !admitted {
		b.count(Rejected)
		if retryAfter <= 0 { // half-open with every trial slot taken
			retryAfter = b.policy.OpenFor
		}
		return Permit{}, &OpenError{Name: b.name, RetryAfter: retryAfter}
	}
	return permit, nil
}

// Record books the result of a call made under permit and returns its outcome.
func (b *Breaker) Record(permit Permit, failed bool, duration time.Duration) Outcome {
	slow := duration >= b.policy.SlowCall
	outcome := Success
	switch {
	case failed:
		outcome = Failure
	case slow:
		outcome = Slow
	}
	var changed *transition
	b.mu.Lock()
	if permit.generation == b.generation {
		changed = b.book(call{failed: failed, slow: slow}, permit.trial)
	}
	b.mu.Unlock()
	b.count(outcome)
	b.notify(changed)
	return outcome
}

// Abandon gives a permit back without a result: the caller went away before the upstream
// answered, which says nothing about the upstream. Without it a half-open breaker whose trial
// callers all left would admit no further trial and stay half-open for ever.
func (b *Breaker) Abandon(permit Permit) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if permit.trial && permit.generation == b.generation && b.trialsAdmitted > 0 {
		b.trialsAdmitted--
	}
}

type transition struct{ previous, current State }

// The state machine; called with the lock held.

func (b *Breaker) admit() (Permit, bool) {
	switch {
	case b.state == Closed:
		return Permit{generation: b.generation}, true
	case b.state == HalfOpen && b.trialsAdmitted < b.policy.HalfOpenCalls:
		b.trialsAdmitted++
		return Permit{generation: b.generation, trial: true}, true
	}
	return Permit{}, false
}

func (b *Breaker) advanceClock() *transition {
	if b.state == Open && b.now().Sub(b.openedAt) >= b.policy.OpenFor {
		return b.moveTo(HalfOpen)
	}
	return nil
}

func (b *Breaker) book(c call, trial bool) *transition {
	if trial {
		if c.failed {
			return b.moveTo(Open)
		}
		b.trialsSucceeded++
		if b.trialsSucceeded >= b.policy.HalfOpenCalls {
			return b.moveTo(Closed)
		}
		return nil
	}
	b.window[b.next] = c
	b.next = (b.next + 1) % len(b.window)
	b.filled = min(b.filled+1, len(b.window))
	if b.filled < b.policy.MinimumCalls {
		return nil
	}
	failures, slow := 0, 0
	for _, booked := range b.window[:b.filled] {
		if booked.failed {
			failures++
		}
		if booked.slow {
			slow++
		}
	}
	calls := float64(b.filled)
	if float64(failures)/calls >= b.policy.FailureRateThreshold ||
		float64(slow)/calls >= b.policy.SlowCallRateThreshold {
		return b.moveTo(Open)
	}
	return nil
}

func (b *Breaker) moveTo(state State) *transition {
	previous := b.state
	b.state = state
	b.generation++
	b.next, b.filled = 0, 0
	b.trialsAdmitted, b.trialsSucceeded = 0, 0
	if state == Open {
		b.openedAt = b.now()
	}
	return &transition{previous: previous, current: state}
}

// Listeners; called without the lock.

func (b *Breaker) notify(changed *transition) {
	if changed != nil && b.listeners.StateChanged != nil {
		b.listeners.StateChanged(changed.previous, changed.current)
	}
}

func (b *Breaker) count(outcome Outcome) {
	if b.listeners.Outcome != nil {
		b.listeners.Outcome(outcome)
	}
}
