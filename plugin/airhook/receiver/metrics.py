"""Counters of what the receiver did, per source and outcome; also sent to Airflow's metrics."""

from __future__ import annotations

import logging
import threading
from collections import Counter

from airhook.airflow_internals import incr

__all__ = ["ReceiverMetrics"]

log = logging.getLogger(__name__)


class ReceiverMetrics:
    """Thread-safe counters, keyed by (source, outcome) where outcome is a short reason code."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def count(self, source: str, outcome: str) -> None:
        """Count one delivery's outcome (``accepted``, ``duplicate``, or a rejection reason)."""
        with self._lock:
            self._counts[(source, outcome)] += 1
        incr(f"airhook.receiver.{outcome}", tags={"source": source})

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Return {source: {outcome: count}}."""
        with self._lock:
            items = list(self._counts.items())
        result: dict[str, dict[str, int]] = {}
        for (source, outcome), value in items:
            result.setdefault(source, {})[outcome] = value
        return result
