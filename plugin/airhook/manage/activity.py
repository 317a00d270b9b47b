"""Counts over time for the charts: events received, deliveries delivered and failed, and the
receiver's rejections by reason.

Received events and settled deliveries are counted from the store, per hour (or per
``bucket_seconds``). Rejected deliveries leave no row by design (a flood of bad signatures must
not fill the store), so their counts are this API server process's since it started, from the
receiver's metrics, per reason.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airhook.core.errors import ConfigurationError
from airhook.manage.views import iso

if TYPE_CHECKING:
    from airhook.manage.container import Services

__all__ = ["MAX_HOURS", "NOT_REJECTIONS", "ActivityService"]

#: The longest window the charts ask for: two weeks of hourly buckets.
MAX_HOURS = 24 * 14
#: Receiver outcomes that are not rejections.
NOT_REJECTIONS = frozenset({"accepted", "duplicate", "event_filtered", "chatbot_filtered"})


class ActivityService:
    """Counts per time bucket, newest bucket last."""

    def __init__(self, services: Services) -> None:
        self._services = services

    def counts(self, hours: int = 24, *, now: datetime | None = None) -> dict[str, Any]:
        """``{"bucket_seconds", "buckets": [{"start", "received", "delivered", "failed"}],
        "rejected": {reason: n}}`` for the last ``hours`` hours, one bucket per hour."""
        if isinstance(hours, bool) or not isinstance(hours, int) or not 1 <= hours <= MAX_HOURS:
            raise ConfigurationError(f"hours is from 1 to {MAX_HOURS}", field="hours")
        bucket_seconds = 3600
        now = now or datetime.now(timezone.utc)
        epoch = int(now.timestamp()) // bucket_seconds * bucket_seconds
        first = datetime.fromtimestamp(epoch, timezone.utc) - timedelta(hours=hours - 1)
        received = self._services.inbox.received_per_bucket(first, bucket_seconds)
        settled = self._services.engine.outbox.settled_per_bucket(first, bucket_seconds)
        buckets = []
        for step in range(hours):
            start = first + timedelta(seconds=step * bucket_seconds)
            ended = settled.get(start, {})
            buckets.append(
                {
                    "start": iso(start),
                    "received": received.get(start, 0),
                    "delivered": ended.get("delivered", 0),
                    "failed": ended.get("failed", 0) + ended.get("dead", 0),
                }
            )
        rejected: dict[str, int] = {}
        for outcomes in self._services.rejections().values():
            for reason, count in outcomes.items():
                if reason not in NOT_REJECTIONS:
                    rejected[reason] = rejected.get(reason, 0) + count
        return {"bucket_seconds": bucket_seconds, "buckets": buckets, "rejected": rejected}
