package breaker

import (
	"errors"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type events struct {
	mu          sync.Mutex
	transitions []string
	outcomes    map[Outcome]int
}

func newBreaker(t *testing.T) (*Breaker, *clock, *events) {
	t.Helper()
	c := &clock{now: time.Unix(1_000_000, 0)}
	e := &events{outcomes: map[Outcome]int{}}
	b := New("books", DefaultPolicy, c.Now, Listeners{
		StateChanged: func(previous, current State) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.transitions = append(e.transitions, string(previous)+">"+string(current))
		},
		Outcome: func(o Outcome) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.outcomes[o]++
		},
	})
	return b, c, e
}

// makeCall makes one call with the given result through b.
func makeCall(t *testing.T, b *Breaker, failed bool, duration time.Duration) Outcome {
	t.Helper()
	permit, err := b.Acquire()
	if err != nil {
		t.Fatalf("call rejected in state %s: %v", b.State(), err)
	}
	return b.Record(permit, failed, duration)
}

const fast = 10 * time.Millisecond

func TestNineFailuresAreBelowTheMinimumTenOpen(t *testing.T) {
	b, _, e := newBreaker(t)
	for range 9 {
		makeCall(t, b, true, fast)
	}
	if b.State() != Closed {
		t.Fatalf("opened after 9 calls, before minimum_calls=10")
	}
	makeCall(t, b, true, fast)
	if b.State() != Open {
		t.Fatalf("10 failures of 10 calls: state %s, want open", b.State())
	}
	if len(e.transitions) != 1 || e.transitions[0] != "closed>open" {
		t.Fatalf("transitions %v", e.transitions)
	}
}

func TestOpensAtExactlyHalfFailures(t *testing.T) {
	b, _, _ := newBreaker(t)
	for i := range 10 {
		makeCall(t, b, i%2 == 0, fast) // 5 failures, 5 successes
	}
	if b.State() != Open {
		t.Fatalf("5 failures of 10: state %s, want open (threshold 50%%)", b.State())
	}
}

func TestFortyPercentFailuresStayClosed(t *testing.T) {
	b, _, _ := newBreaker(t)
	for i := range 10 {
		makeCall(t, b, i < 4, fast)
	}
	if b.State() != Closed {
		t.Fatalf("4 failures of 10: state %s, want closed", b.State())
	}
}

func TestTheWindowSlidesOverTheLastTwentyCalls(t *testing.T) {
	b, _, _ := newBreaker(t)
	for range 20 {
		makeCall(t, b, false, fast)
	}
	for range 9 { // window: 11 successes, 9 failures = 45%
		makeCall(t, b, true, fast)
	}
	if b.State() != Closed {
		t.Fatalf("9 failures of the last 20: state %s, want closed", b.State())
	}
	makeCall(t, b, true, fast) // window: 10 successes, 10 failures = 50%
	if b.State() != Open {
		t.Fatalf("10 failures of the last 20 (older successes slid out): state %s, want open", b.State())
	}
}

func TestOnlyAllSlowCallsOpenIt(t *testing.T) {
	b, _, e := newBreaker(t)
	slow := DefaultPolicy.SlowCall
	for range 9 {
		if outcome := makeCall(t, b, false, slow); outcome != Slow {
			t.Fatalf("a call of %s: outcome %s, want slow", slow, outcome)
		}
	}
	makeCall(t, b, false, slow-time.Millisecond)
	if b.State() != Closed {
		t.Fatalf("9 slow of 10: state %s, want closed (threshold 100%%)", b.State())
	}
	b2, _, _ := newBreaker(t)
	for range 10 {
		makeCall(t, b2, false, slow)
	}
	if b2.State() != Open {
		t.Fatalf("10 slow of 10: state %s, want open", b2.State())
	}
	if e.outcomes[Slow] != 9 || e.outcomes[Success] != 1 {
		t.Fatalf("outcomes %v", e.outcomes)
	}
}

func TestAnOpenBreakerRejectsForTenSecondsThenAdmitsThreeTrials(t *testing.T) {
	b, c, e := newBreaker(t)
	for range 10 {
		makeCall(t, b, true, fast)
	}
	c.Advance(9*time.Second + 900*time.Millisecond)
	_, err := b.Acquire()
	var open *OpenError
	if !errors.As(err, &open) || open.Name != "books" {
		t.Fatalf("open breaker admitted a call: %v", err)
	}
	if open.RetryAfter != 100*time.Millisecond {
		t.Fatalf("retry after %s, want 100ms", open.RetryAfter)
	}
	if e.outcomes[Rejected] != 1 {
		t.Fatalf("rejections counted: %v", e.outcomes)
	}
	c.Advance(100 * time.Millisecond)
	if b.State() != HalfOpen {
		t.Fatalf("after 10 s: state %s, want half_open", b.State())
	}
	var trials []Permit
	for range 3 {
		permit, err := b.Acquire()
		if err != nil {
			t.Fatalf("trial call rejected: %v", err)
		}
		trials = append(trials, permit)
	}
	if _, err := b.Acquire(); err == nil {
		t.Fatalf("a 4th call was admitted while 3 trials are in flight")
	}
	for i, permit := range trials {
		b.Record(permit, false, fast)
		want := HalfOpen
		if i == 2 {
			want = Closed
		}
		if b.State() != want {
			t.Fatalf("after %d successful trials: state %s, want %s", i+1, b.State(), want)
		}
	}
	want := []string{"closed>open", "open>half_open", "half_open>closed"}
	if len(e.transitions) != 3 || e.transitions[1] != want[1] || e.transitions[2] != want[2] {
		t.Fatalf("transitions %v, want %v", e.transitions, want)
	}
}

func TestAFailedTrialReopens(t *testing.T) {
	b, c, _ := newBreaker(t)
	for range 10 {
		makeCall(t, b, true, fast)
	}
	c.Advance(DefaultPolicy.OpenFor)
	makeCall(t, b, false, fast)
	makeCall(t, b, true, fast)
	if b.State() != Open {
		t.Fatalf("a failed trial: state %s, want open", b.State())
	}
	if b.RetryAfter() != DefaultPolicy.OpenFor {
		t.Fatalf("re-opened for %s, want a fresh %s", b.RetryAfter(), DefaultPolicy.OpenFor)
	}
}

func TestResultsOfAnEarlierStateAreIgnored(t *testing.T) {
	b, c, _ := newBreaker(t)
	late, _ := b.Acquire() // admitted while closed, answers after the breaker opened
	for range 10 {
		makeCall(t, b, true, fast)
	}
	c.Advance(DefaultPolicy.OpenFor)
	b.State()
	for range 2 {
		makeCall(t, b, false, fast)
	}
	b.Record(late, false, fast) // would be the 3rd success if it counted
	if b.State() != HalfOpen {
		t.Fatalf("a stale success moved the breaker to %s", b.State())
	}
}

func TestAnAbandonedTrialFreesItsSlot(t *testing.T) {
	b, c, _ := newBreaker(t)
	for range 10 {
		makeCall(t, b, true, fast)
	}
	c.Advance(DefaultPolicy.OpenFor)
	var permits []Permit
	for range 3 {
		permit, _ := b.Acquire()
		permits = append(permits, permit)
	}
	b.Abandon(permits[0])
	if _, err := b.Acquire(); err != nil {
		t.Fatalf("an abandoned trial's slot was not given back: %v", err)
	}
}

func TestConcurrentCallsAreNeverSerialised(t *testing.T) {
	b, _, _ := newBreaker(t)
	inFlight := make(chan struct{})
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			permit, err := b.Acquire()
			if err != nil {
				t.Error(err)
				return
			}
			<-inFlight // every call holds its permit at the same time
			b.Record(permit, false, fast)
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(inFlight)
	wg.Wait()
	if b.State() != Closed {
		t.Fatalf("state %s", b.State())
	}
}

func TestPolicyValidation(t *testing.T) {
	bad := DefaultPolicy
	bad.MinimumCalls = 21
	if bad.Validate() == nil {
		t.Fatal("minimum_calls above window_size accepted")
	}
	bad = DefaultPolicy
	bad.HalfOpenCalls = 0
	if bad.Validate() == nil {
		t.Fatal("half_open_calls 0 accepted")
	}
	if DefaultPolicy.Validate() != nil {
		t.Fatal("the default policy is refused")
	}
}
