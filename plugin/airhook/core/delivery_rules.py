"""Rules of outbound delivery, shared by WebhookOperator and subscription fan-out. Pure.

- :class:`RetryPolicy`: when the next attempt is due (a schedule of delays with full jitter,
  ``Retry-After`` honoured), and when to give up.
- :func:`classify`: what an HTTP outcome means: delivered, retry later, give up, or give up and
  disable the endpoint (410 Gone).
- :func:`honoured_retry_after`: the ``Retry-After`` an answer asks for, on the statuses where it
  means something to a sender (429 and 503).

The operator's hook (:mod:`airhook.hooks.webhook`) and the fan-out engine
(:mod:`airhook.delivery.http`) both settle an answer with these two functions and nothing else,
so a status means the same in both.
- :func:`message_id`: a stable delivery id (``webhook-id`` / idempotency key) derived from what
  identifies the delivery, so a task retry sends the same id, never a new one.
"""

from __future__ import annotations

import enum
import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from airhook.core.errors import ConfigurationError

__all__ = [
    "DEFAULT_SCHEDULE",
    "RETRY_AFTER_STATUSES",
    "Outcome",
    "RetryPolicy",
    "classify",
    "honoured_retry_after",
    "message_id",
    "parse_retry_after",
]

#: Delays before attempts 1, 2, 3…: immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
#: (the schedule Svix documents; about 27.6 hours in all).
DEFAULT_SCHEDULE: tuple[float, ...] = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
#: A Retry-After further out than this is capped: a receiver must not park a delivery for days.
MAX_RETRY_AFTER_SECONDS = 36000.0
#: Statuses whose ``Retry-After`` is honoured. RFC 6585 §4 gives it to 429 (how long to wait
#: before making a new request) and RFC 9110 §10.2.3 to 503 (how long the service is expected to
#: be unavailable); on any other error status it has no defined meaning, so the schedule decides.
#: RFC 9110 §10.2.3 also gives it to 3xx, as the wait before following the redirect: airhook
#: never follows a redirect (it could lead past the destination policy, see ``ssrf.py``), so a
#: 3xx is a failed delivery and its ``Retry-After`` is not a sender's business.
RETRY_AFTER_STATUSES = frozenset({429, 503})


class Outcome(enum.Enum):
    """What one attempt's result means."""

    DELIVERED = "delivered"
    RETRY = "retry"  # transient: timeout, connection error, 408, 429, 5xx
    FAILED = "failed"  # permanent for this delivery: other 4xx
    GONE = "gone"  # 410: the endpoint is gone; stop and disable it


def classify(status_code: int | None) -> Outcome:
    """Classify an attempt by its HTTP status (``None``: no response at all)."""
    if status_code is None:
        return Outcome.RETRY
    if 200 <= status_code < 300:
        return Outcome.DELIVERED
    if status_code == 410:
        return Outcome.GONE
    if status_code in (408, 425, 429) or status_code >= 500:
        return Outcome.RETRY
    return Outcome.FAILED


def honoured_retry_after(
    status_code: int | None, value: str | None, now: datetime | None = None
) -> float | None:
    """Return the seconds ``Retry-After`` asks for when ``status_code`` is one of
    :data:`RETRY_AFTER_STATUSES`, else ``None`` (the header is then ignored)."""
    if status_code not in RETRY_AFTER_STATUSES:
        return None
    return parse_retry_after(value, now)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Return the seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date)."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER_SECONDS)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


@dataclass(frozen=True)
class RetryPolicy:
    """When attempts happen.

    :param schedule: the delay before each attempt; its length is the number of attempts. The
        first entry is usually 0 (the first attempt is immediate).
    :param jitter: spread each delay uniformly over [0, delay] ("full jitter"), so that many
        deliveries failing together do not retry together.
    """

    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    jitter: bool = True

    def __post_init__(self) -> None:
        if not self.schedule or any(d < 0 for d in self.schedule):
            raise ConfigurationError("a retry schedule is a non-empty list of non-negative delays")

    @classmethod
    def exponential(cls, attempts: int, base: float = 1.0, cap: float = 3600.0) -> RetryPolicy:
        """Immediate first attempt, then base·2^n seconds (capped) between the others."""
        if attempts < 1:
            raise ConfigurationError("at least one attempt")
        delays = [0.0] + [min(cap, base * 2**n) for n in range(attempts - 1)]
        return cls(schedule=tuple(delays))

    @property
    def max_attempts(self) -> int:
        """How many attempts a delivery gets."""
        return len(self.schedule)

    def next_delay(
        self,
        attempts_made: int,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float | None:
        """Seconds to wait before the next attempt, or None when the attempts are used up.

        ``retry_after`` (from a 429 or 503) replaces the scheduled delay when it is longer.
        """
        if attempts_made >= self.max_attempts:
            return None
        delay = float(self.schedule[attempts_made])
        if self.jitter and delay > 0:
            delay = (rng or _random).uniform(0, delay)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay


_random = random.SystemRandom()


def message_id(*parts: str | int | None, prefix: str = "msg_") -> str:
    """Return a stable id for a delivery from what identifies it.

    For an operator: DAG id, run id, task id, map index and an event key; a task retry computes
    the same id, so a receiver that deduplicates on ``webhook-id`` sees one delivery.
    """
    material = "\x1f".join("" if part is None else str(part) for part in parts)
    return prefix + hashlib.sha256(material.encode("utf-8")).hexdigest()[:32]


def as_schedule(delays: Sequence[float]) -> tuple[float, ...]:
    """Return a schedule tuple from any sequence of seconds."""
    return tuple(float(d) for d in delays)
