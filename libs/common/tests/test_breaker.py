"""The design §7 breaker, transition by transition, on a fake clock (no sleeps)."""

from __future__ import annotations

import threading
import time

import pytest

from chassis.breaker import (
    BreakerPolicy,
    CircuitBreaker,
    CircuitOpenError,
    Outcome,
    State,
)

POLICY = BreakerPolicy()  # design defaults: window 20, minimum 10, 50%, slow 100% @ 1.6 s, 10 s, 3


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def changes() -> list[tuple[State, State]]:
    return []


@pytest.fixture
def breaker(clock: FakeClock, changes: list[tuple[State, State]]) -> CircuitBreaker:
    return CircuitBreaker(
        "books", POLICY, clock=clock, on_state_change=lambda a, b: changes.append((a, b))
    )


def call(breaker: CircuitBreaker, *, failed: bool = False, duration: float = 0.01) -> Outcome:
    return breaker.record(breaker.acquire(), failed=failed, duration=duration)


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(POLICY.minimum_calls):
        call(breaker, failed=True)
    assert breaker.state is State.OPEN


def test_defaults_match_design() -> None:
    assert (POLICY.window_size, POLICY.minimum_calls) == (20, 10)
    assert (POLICY.failure_rate_threshold, POLICY.slow_call_rate_threshold) == (0.5, 1.0)
    assert (POLICY.open_seconds, POLICY.half_open_calls) == (10.0, 3)
    assert POLICY.slow_call_seconds == pytest.approx(0.8 * 2.0)


def test_failures_below_minimum_calls_never_trip(breaker: CircuitBreaker) -> None:
    for _ in range(POLICY.minimum_calls - 1):
        call(breaker, failed=True)
    assert breaker.state is State.CLOSED
    call(breaker, failed=True)
    assert breaker.state is State.OPEN


def test_opens_at_fifty_percent_failures_not_below(breaker: CircuitBreaker) -> None:
    for _ in range(6):
        call(breaker)
    for _ in range(4):
        call(breaker, failed=True)
    assert breaker.state is State.CLOSED  # 4 of 10 = 40%
    call(breaker)
    call(breaker, failed=True)  # 5 of 12 = 41.7%
    assert breaker.state is State.CLOSED
    call(breaker, failed=True)  # 6 of 13 = 46%
    call(breaker, failed=True)  # 7 of 14 = 50%
    assert breaker.state is State.OPEN


def test_window_slides_over_the_last_twenty_calls(breaker: CircuitBreaker) -> None:
    for _ in range(11):
        call(breaker)
    for _ in range(9):
        call(breaker, failed=True)
    assert breaker.state is State.CLOSED  # 9 of 20 failed: 45%
    call(breaker, failed=True)  # the oldest success slides out: 10 of 20
    assert breaker.state is State.OPEN


def test_all_slow_calls_open_it_but_some_fast_ones_keep_it_closed(
    breaker: CircuitBreaker,
) -> None:
    slow = POLICY.slow_call_seconds + 0.01
    for _ in range(9):
        assert call(breaker, duration=slow) is Outcome.SLOW
    call(breaker)  # one fast call: 90% slow < 100%
    assert breaker.state is State.CLOSED
    for _ in range(19):
        call(breaker, duration=slow)
    assert breaker.state is State.CLOSED  # the fast call and 19 slow ones
    call(breaker, duration=slow)  # the fast call slid out: 20 of 20
    assert breaker.state is State.OPEN


def test_four_xx_style_successes_do_not_count_as_failures(breaker: CircuitBreaker) -> None:
    for _ in range(30):
        call(breaker, failed=False)
    assert breaker.state is State.CLOSED


def test_open_rejects_without_calling_and_says_when_to_retry(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    trip(breaker)
    clock.advance(4)
    with pytest.raises(CircuitOpenError) as raised:
        breaker.acquire()
    assert raised.value.status == 503
    assert raised.value.headers["Retry-After"] == "6"
    assert raised.value.dependency == "books"


def test_half_open_after_open_period(breaker: CircuitBreaker, clock: FakeClock) -> None:
    trip(breaker)
    clock.advance(POLICY.open_seconds - 0.001)
    assert breaker.state is State.OPEN
    clock.advance(0.001)
    assert breaker.state is State.HALF_OPEN


def test_half_open_admits_only_three_trials(breaker: CircuitBreaker, clock: FakeClock) -> None:
    trip(breaker)
    clock.advance(POLICY.open_seconds)
    permits = [breaker.acquire() for _ in range(POLICY.half_open_calls)]
    assert all(p.trial for p in permits)
    with pytest.raises(CircuitOpenError):
        breaker.acquire()


def test_three_successful_trials_close_it(
    breaker: CircuitBreaker, clock: FakeClock, changes: list[tuple[State, State]]
) -> None:
    trip(breaker)
    clock.advance(POLICY.open_seconds)
    permits = [breaker.acquire() for _ in range(3)]
    for permit in permits[:2]:
        breaker.record(permit, failed=False, duration=0.01)
        assert breaker.state is State.HALF_OPEN
    breaker.record(permits[2], failed=False, duration=0.01)
    assert breaker.state is State.CLOSED
    assert changes == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]
    # A fresh window: it takes the minimum number of calls to trip again.
    for _ in range(POLICY.minimum_calls - 1):
        call(breaker, failed=True)
    assert breaker.state is State.CLOSED


def test_a_failed_trial_reopens_it_for_a_full_period(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    trip(breaker)
    clock.advance(POLICY.open_seconds)
    permit = breaker.acquire()
    breaker.record(breaker.acquire(), failed=False, duration=0.01)
    breaker.record(permit, failed=True, duration=0.01)
    assert breaker.state is State.OPEN
    clock.advance(POLICY.open_seconds - 1)
    assert breaker.state is State.OPEN
    clock.advance(1)
    assert breaker.state is State.HALF_OPEN


def test_results_from_before_a_state_change_are_ignored(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    early = breaker.acquire()  # admitted while closed, answers after the breaker opened
    trip(breaker)
    clock.advance(POLICY.open_seconds)
    trials = [breaker.acquire() for _ in range(3)]
    breaker.record(early, failed=False, duration=0.01)
    breaker.record(early, failed=False, duration=0.01)
    breaker.record(early, failed=False, duration=0.01)
    assert breaker.state is State.HALF_OPEN
    for permit in trials:
        breaker.record(permit, failed=False, duration=0.01)
    assert breaker.state is State.CLOSED


def test_outcomes_are_reported(clock: FakeClock) -> None:
    outcomes: list[Outcome] = []
    breaker = CircuitBreaker("books", POLICY, clock=clock, on_outcome=outcomes.append)
    call(breaker)
    call(breaker, failed=True)
    call(breaker, duration=5)
    while breaker.state is State.CLOSED:
        call(breaker, failed=True)
    with pytest.raises(CircuitOpenError):
        breaker.acquire()
    assert outcomes[:3] == [Outcome.SUCCESS, Outcome.FAILURE, Outcome.SLOW]
    assert outcomes[-1] is Outcome.REJECTED


def test_policy_rejects_inconsistent_numbers() -> None:
    with pytest.raises(ValueError, match="minimum_calls"):
        BreakerPolicy(window_size=5, minimum_calls=10)
    with pytest.raises(ValueError, match="half_open_calls"):
        BreakerPolicy(half_open_calls=0)


def test_concurrent_slow_calls_are_not_serialised() -> None:
    """Ten calls of 0.3 s through one breaker take about one call's time, not ten."""
    breaker = CircuitBreaker("books", POLICY)
    barrier = threading.Barrier(10)

    def slow_call() -> None:
        barrier.wait()
        permit = breaker.acquire()
        time.sleep(0.3)
        breaker.record(permit, failed=False, duration=0.3)

    threads = [threading.Thread(target=slow_call) for _ in range(10)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    assert elapsed < 0.3 * 3, f"10 concurrent calls took {elapsed:.2f}s"
    assert breaker.state is State.CLOSED
