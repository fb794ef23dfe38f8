"""A count-based circuit breaker with the design §7 semantics.

    CLOSED --(>= minimum_calls in the window and failure rate >= threshold,
              or slow-call rate >= threshold)--> OPEN
    OPEN --(open_seconds elapsed)--> HALF_OPEN
    HALF_OPEN --(half_open_calls trial calls all succeed)--> CLOSED
    HALF_OPEN --(any trial call fails)--> OPEN

The lock guards only the bookkeeping, never the call itself: concurrent calls run in parallel
(pybreaker holds its lock for the whole call, its issues #3 and #55). Results of calls admitted
under an earlier state are ignored, so a slow call that started before the breaker opened cannot
close it again.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from chassis.errors import ServiceUnavailable


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    SLOW = "slow"
    REJECTED = "rejected"


@dataclass(frozen=True, kw_only=True)
class BreakerPolicy:
    window_size: int = 20
    minimum_calls: int = 10
    failure_rate_threshold: float = 0.5
    slow_call_rate_threshold: float = 1.0
    slow_call_seconds: float = 1.6  # 80% of the default 2 s read timeout
    open_seconds: float = 10.0
    half_open_calls: int = 3

    def __post_init__(self) -> None:
        if not 1 <= self.minimum_calls <= self.window_size:
            raise ValueError("minimum_calls must be between 1 and window_size")
        if self.half_open_calls < 1:
            raise ValueError("half_open_calls must be at least 1")


DEFAULT_BREAKER_POLICY = BreakerPolicy()


class CircuitOpenError(ServiceUnavailable):
    """The breaker rejected the call without trying it."""

    def __init__(self, dependency: str, retry_after_seconds: float) -> None:
        super().__init__(
            f"{dependency} is unavailable: its circuit breaker is open",
            retry_after_seconds=retry_after_seconds,
            title="Dependency unavailable",
            dependency=dependency,
        )
        self.dependency = dependency
        self.retry_after_seconds = retry_after_seconds


@dataclass(frozen=True)
class Permit:
    """Admission to make one call; hand it back to :meth:`CircuitBreaker.record`."""

    generation: int
    trial: bool


StateListener = Callable[[State, State], None]
OutcomeListener = Callable[[Outcome], None]


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        policy: BreakerPolicy = DEFAULT_BREAKER_POLICY,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_state_change: StateListener | None = None,
        on_outcome: OutcomeListener | None = None,
    ) -> None:
        self.name = name
        self.policy = policy
        self._clock = clock
        self._on_state_change = on_state_change
        self._on_outcome = on_outcome
        self._lock = threading.Lock()
        self._state = State.CLOSED
        self._generation = 0
        self._window: deque[tuple[bool, bool]] = deque(maxlen=policy.window_size)  # failed, slow
        self._opened_at = 0.0
        self._trials_admitted = 0
        self._trials_succeeded = 0

    @property
    def state(self) -> State:
        with self._lock:
            changed = self._advance_clock()
            state = self._state
        self._notify(changed)
        return state

    def retry_after(self) -> float:
        """Seconds until an open breaker lets trial calls through (0 when not open)."""
        with self._lock:
            if self._state is not State.OPEN:
                return 0.0
            return max(0.0, self._opened_at + self.policy.open_seconds - self._clock())

    def acquire(self) -> Permit:
        """A permit to call, or :class:`CircuitOpenError` when the call must not be made."""
        with self._lock:
            changed = self._advance_clock()
            permit = self._admit()
        self._notify(changed)
        if permit is None:
            self._count(Outcome.REJECTED)
            raise CircuitOpenError(self.name, self.retry_after() or self.policy.open_seconds)
        return permit

    def record(self, permit: Permit, *, failed: bool, duration: float) -> Outcome:
        """Books the result of a call made under ``permit``."""
        slow = duration >= self.policy.slow_call_seconds
        outcome = Outcome.FAILURE if failed else Outcome.SLOW if slow else Outcome.SUCCESS
        with self._lock:
            changed = None
            if permit.generation == self._generation:
                changed = self._book(failed=failed, slow=slow, trial=permit.trial)
        self._count(outcome)
        self._notify(changed)
        return outcome

    # -- state machine (called with the lock held) -------------------------------------------

    def _admit(self) -> Permit | None:
        if self._state is State.CLOSED:
            return Permit(self._generation, trial=False)
        if self._state is State.HALF_OPEN and self._trials_admitted < self.policy.half_open_calls:
            self._trials_admitted += 1
            return Permit(self._generation, trial=True)
        return None

    def _advance_clock(self) -> tuple[State, State] | None:
        if self._state is State.OPEN and (
            self._clock() - self._opened_at >= self.policy.open_seconds
        ):
            return self._move_to(State.HALF_OPEN)
        return None

    def _book(self, *, failed: bool, slow: bool, trial: bool) -> tuple[State, State] | None:
        if trial:
            if failed:
                return self._move_to(State.OPEN)
            self._trials_succeeded += 1
            if self._trials_succeeded >= self.policy.half_open_calls:
                return self._move_to(State.CLOSED)
            return None
        self._window.append((failed, slow))
        calls = len(self._window)
        if calls < self.policy.minimum_calls:
            return None
        failures = sum(1 for was_failed, _ in self._window if was_failed)
        slow_calls = sum(1 for _, was_slow in self._window if was_slow)
        if (
            failures / calls >= self.policy.failure_rate_threshold
            or slow_calls / calls >= self.policy.slow_call_rate_threshold
        ):
            return self._move_to(State.OPEN)
        return None

    def _move_to(self, state: State) -> tuple[State, State]:
        previous, self._state = self._state, state
        self._generation += 1
        self._window.clear()
        self._trials_admitted = 0
        self._trials_succeeded = 0
        if state is State.OPEN:
            self._opened_at = self._clock()
        return previous, state

    # -- listeners (called without the lock) -------------------------------------------------

    def _notify(self, changed: tuple[State, State] | None) -> None:
        if changed is not None and self._on_state_change is not None:
            self._on_state_change(*changed)

    def _count(self, outcome: Outcome) -> None:
        if self._on_outcome is not None:
            self._on_outcome(outcome)
