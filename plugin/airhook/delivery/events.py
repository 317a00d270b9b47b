"""What a caller hands the delivery engine and what it gets back: events, summaries, results.

Plain values with no behaviour beyond their JSON-ready forms, so that the operator, the CLI and
the benchmarks can name them without pulling in the HTTP client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["Event", "PublishResult", "Summary"]


@dataclass(frozen=True, slots=True)
class Event:
    """One event to publish.

    :param name: the event name as its platform spells it, e.g. ``insight.summary``.
    :param payload: the event, JSON-serialisable; sent as is unless a subscription renders its
        own body from it.
    :param key: stable identity of this event for its publisher (e.g. DAG, run, task, map index
        and position): the same key means the same event, sent once per subscription.
    :param platform: validate the payload against this platform's schema for ``name``.
    :param chatbot_id: the chatbot the event is about, for subscriptions with a chatbot filter;
        default: the platform's chatbot field (RKT ``chatbotId``) of the payload.
    """

    name: str
    payload: Any
    key: str
    platform: str | None = None
    chatbot_id: str | None = None


@dataclass(frozen=True)
class Summary:
    """Deliveries per status (``pending`` counts those being sent too), no secrets, no URLs."""

    delivered: int = 0
    pending: int = 0
    failed: int = 0
    dead: int = 0
    paused: int = 0
    next_attempt_at: datetime | None = None

    @property
    def deliveries(self) -> int:
        """All deliveries counted."""
        return self.delivered + self.pending + self.failed + self.dead + self.paused

    @property
    def dead_letters(self) -> int:
        """Deliveries that will not go out without a replay (``failed`` and ``dead``)."""
        return self.failed + self.dead

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the operator returns to XCom)."""
        return {
            "deliveries": self.deliveries,
            "delivered": self.delivered,
            "pending": self.pending,
            "failed": self.failed,
            "dead": self.dead,
            "paused": self.paused,
            "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at else None,
        }

    @classmethod
    def of(cls, counts: Mapping[str, int], next_attempt_at: datetime | None) -> Summary:
        """Build from per-status counts."""
        return cls(
            delivered=counts.get("delivered", 0),
            pending=counts.get("pending", 0) + counts.get("sending", 0),
            failed=counts.get("failed", 0),
            dead=counts.get("dead", 0),
            paused=counts.get("paused", 0),
            next_attempt_at=next_attempt_at,
        )


@dataclass(frozen=True)
class PublishResult:
    """What :meth:`DeliveryEngine.publish` did.

    :param message_ids: every delivery of these events (new or added by an earlier publish).
    :param created: how many of them this call added.
    :param summary: their state after this call's attempts.
    """

    events: int
    message_ids: list[str]
    created: int
    summary: Summary

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, without the ids."""
        return {"events": self.events, "created": self.created, **self.summary.as_dict()}
