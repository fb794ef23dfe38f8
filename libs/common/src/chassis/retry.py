"""When and how long to wait before trying an outgoing request again (design §7)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
IDEMPOTENCY_HEADER = "idempotency-key"


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """At most ``max_attempts`` tries; exponential backoff with full jitter between them."""

    max_attempts: int = 3
    base_seconds: float = 0.05
    cap_seconds: float = 1.0
    retry_statuses: frozenset[int] = field(default=frozenset({502, 503, 504}))

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def may_retry(self, method: str, headers: dict[str, str] | None = None) -> bool:
        """Idempotent requests, and POSTs that carry an idempotency key."""
        if method.upper() in IDEMPOTENT_METHODS:
            return True
        return any(name.lower() == IDEMPOTENCY_HEADER for name in (headers or {}))

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**(retry_number - 1))]."""
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** (retry_number - 1))
        return (rng or random).uniform(0, ceiling)


NO_RETRY = RetryPolicy(max_attempts=1)
DEFAULT_RETRY_POLICY = RetryPolicy()


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds asked for by a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())
