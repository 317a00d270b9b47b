"""Counters of what the receiver did, per source and outcome; also sent to Airflow's metrics."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

__all__ = ["ReceiverMetrics"]

log = logging.getLogger(__name__)


_stats: Any = False  # not looked up yet


def _airflow_stats() -> Any:
    """Airflow's metrics singleton (as ``airflow.assets.manager`` uses it), looked up once.

    Once, because this runs for every delivery; None where Airflow's metrics cannot be imported.
    """
    global _stats
    if _stats is False:
        try:
            from airflow._shared.observability.metrics import stats
        except Exception:  # metrics must never break receiving
            log.debug("airhook could not import Airflow's metrics", exc_info=True)
            stats = None
        _stats = stats
    return _stats


class ReceiverMetrics:
    """Thread-safe counters, keyed by (source, outcome) where outcome is a short reason code."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def count(self, source: str, outcome: str) -> None:
        """Count one delivery's outcome (``accepted``, ``duplicate``, or a rejection reason)."""
        with self._lock:
            self._counts[(source, outcome)] += 1
        stats = _airflow_stats()
        if stats is None:
            return
        try:
            stats.incr(f"airhook.receiver.{outcome}", tags={"source": source})
        except Exception:  # metrics must never break receiving
            log.debug("airhook could not emit a metric", exc_info=True)

    def snapshot(self) -> dict[str, dict[str, int]]:
        """Return {source: {outcome: count}}."""
        with self._lock:
            items = list(self._counts.items())
        result: dict[str, dict[str, int]] = {}
        for (source, outcome), value in items:
            result.setdefault(source, {})[outcome] = value
        return result
