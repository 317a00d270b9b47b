"""What the outbox stores and hands back: deliveries, claims, attempts and their outcomes.

Plain records, no SQL: the repository (:mod:`airhook.store.outbox.repository`) takes and returns
them, and the sender builds :class:`Settled` outcomes from its attempts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from airhook.core.errors import DeliveryNotFoundError

__all__ = [
    "FINAL_FAILURES",
    "STATUSES",
    "Added",
    "AttemptRecord",
    "Claimed",
    "Delivery",
    "DeliveryNotFoundError",
    "NewDelivery",
    "Recorded",
    "Settled",
    "Status",
]

Status = Literal["pending", "sending", "delivered", "failed", "dead", "paused"]
STATUSES: tuple[str, ...] = ("pending", "sending", "delivered", "failed", "dead", "paused")
#: Deliveries that will not go out without a replay: the dead letters.
FINAL_FAILURES: tuple[str, ...] = ("failed", "dead")


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A delivery about to be added: ``status`` is ``pending``, or ``paused`` when disabled."""

    message_id: str
    subscription: str
    event: str
    body: str
    platform: str | None = None
    publication: str | None = None
    status: Literal["pending", "paused"] = "pending"


@dataclass(frozen=True, slots=True)
class Delivery:
    """A delivery as stored."""

    id: int
    message_id: str
    subscription: str
    event: str
    platform: str | None
    publication: str | None
    body: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """Return the delivery without its body, JSON-ready (for listings and XCom)."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "id": self.message_id,
            "subscription": self.subscription,
            "event": self.event,
            "platform": self.platform,
            "status": self.status,
            "attempts": self.attempts,
            "next_attempt_at": iso(self.next_attempt_at) if self.status == "pending" else None,
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "created_at": iso(self.created_at),
            "finished_at": iso(self.finished_at),
        }


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery claimed for sending: only what a sender needs (no times to convert)."""

    message_id: str
    subscription: str
    body: str
    #: attempts made in the current round before this one.
    attempts: int = 0
    #: the claim's token: settling, renewing and releasing the delivery need it.
    token: str | None = None


@dataclass(frozen=True)
class Added:
    """What :meth:`OutboxRepository.add_claimed` did.

    :param created: the ids that were new, in the order given.
    :param claimed: the new deliveries inserted as ``sending`` (their subscription is active),
        claimed for the caller, who sends them from memory.
    """

    created: list[str]
    claimed: list[Claimed]


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt at a delivery, as the outbox logs it: never a request header, a secret or a
    signature. (Not :class:`airhook.hooks.webhook.Attempt`, the hook's attempt and its
    consequence.)

    :param outcome: ``delivered``, ``retry``, ``failed``, ``gone`` (410) or ``refused`` (the
        destination policy refused the URL; nothing was sent).
    :param response_excerpt: at most 512 characters of the response body, with anything that
        was a secret of the request blanked out.
    """

    message_id: str
    subscription: str
    attempted_at: datetime
    outcome: str
    status_code: int | None = None
    latency_ms: float | None = None
    error: str | None = None
    response_excerpt: str | None = None


@dataclass(frozen=True, slots=True)
class Settled:
    """What one attempt settles for its delivery: recorded by :meth:`OutboxRepository.record`.

    :param status: ``delivered``, ``pending`` (retry at ``next_attempt_at``), ``failed`` or
        ``dead``.
    :param disable: a reason to disable the subscription whatever its count (410 Gone).
    """

    attempt: AttemptRecord
    status: Literal["delivered", "pending", "failed", "dead"]
    next_attempt_at: datetime | None = None
    disable: str | None = None
    #: the claim the attempt was made under (:attr:`Claimed.token`); ``None``: any claim.
    token: str | None = None


@dataclass
class Recorded:
    """What recording a batch of attempts changed."""

    #: subscription name -> the reason it was disabled by this batch.
    disabled: dict[str, str] = field(default_factory=dict)
    #: deliveries that were paused instead of scheduled (their subscription is disabled).
    paused: list[str] = field(default_factory=list)
    #: deliveries not settled: their claim had lapsed and another sender held them.
    stale: list[str] = field(default_factory=list)
