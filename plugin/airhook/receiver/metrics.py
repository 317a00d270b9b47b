"""Counters of what the receiver did, per source and outcome; also sent to Airflow's metrics."""

from __future__ import annotations

import logging
import threading
from collections import Counter

from airhook import metrics

__all__ = ["ReceiverMetrics"]

log = logging.getLogger(__name__)


class ReceiverMetrics:
    """Thread-safe counters, keyed by (source, outcome) where outcome is a short reason code."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def count(self, source: str, outcome: str, *, rejected: bool = False) -> None:
        """Count one delivery's outcome (``accepted``, ``duplicate``, an ignored reason, or,
        ``rejected``, the reason of an error answer)."""
        with self._lock:
            self._counts[(source, outcome)] += 1
        tags = {"source": source}
        metrics.incr("airhook.receiver.received", tags=tags)
        metrics.incr(f"airhook.receiver.{outcome}", tags=tags)
        if rejected:
            metrics.incr("airhook.receiver.rejected", tags={"source": source, "reason": outcome})

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Return {source: {outcome: count}}."""
        with self._lock:
            items = list(self._counts.items())
        result: dict[str, dict[str, int]] = {}
        for (source, outcome), value in items:
            result.setdefault(source, {})[outcome] = value
        return result
