"""airhook's metrics, sent through Airflow's public metrics API (``airflow.sdk.observability``).

Airflow routes them to StatsD, DogStatsD or OpenTelemetry as ``[metrics]`` says, with its
prefix (``airflow.`` by default). Every name airhook sends is declared in :data:`METRICS`, and
``docs/metrics.md`` lists each one (a test holds the two together): a name nobody declared is
not sent (and logged), so a metric cannot appear undocumented.

Why :func:`start`: the task runner sets the public stats module up in a worker, and Airflow's
serialisation module does when it is first imported (the API server imports it); nothing
promises that import in the standalone receiver or the triggerer. airhook's long-running parts
(the receiver runtime: receiver, dispatcher, sender, pruner) call :func:`start` once as they
start, which sets it up from ``[metrics]`` the same way, so their metrics do not depend on what
else happened to be imported.

A metric never fails its caller: a backend that raises is logged once per name.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

__all__ = ["METRICS", "Metric", "gauge", "incr", "start", "timing"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Metric:
    """One metric airhook sends: a name (``{…}`` marks a part filled in per send), a StatsD kind
    and what it measures."""

    name: str
    kind: str  # "counter" | "gauge" | "timer"
    description: str


METRICS: tuple[Metric, ...] = (
    Metric(
        "airhook.receiver.received",
        "counter",
        "Deliveries that reached a webhook URL, whatever their answer. Tag `source`.",
    ),
    Metric(
        "airhook.receiver.{outcome}",
        "counter",
        "Deliveries by outcome: `accepted` (recorded, 202), `duplicate`, an ignored reason, or "
        "a rejection reason (the `error` of the answer: `no_matching_signature`, "
        "`schema_violation`, `backpressure`, …). Tag `source` (`_unknown` for names that are "
        "not a source).",
    ),
    Metric(
        "airhook.receiver.rejected",
        "counter",
        "Deliveries answered with an error (4xx or 503). Tags `source`, `reason`.",
    ),
    Metric(
        "airhook.receiver.writer_queue",
        "gauge",
        "Deliveries waiting for the group-commit writer in this process, set every "
        "`[airhook] backpressure_check_seconds`.",
    ),
    Metric(
        "airhook.inbox.recorded",
        "counter",
        "Events newly recorded in the inbox (duplicates are not counted).",
    ),
    Metric(
        "airhook.inbox.backlog",
        "gauge",
        "Recorded events not yet dispatched (all processes), counted up to "
        "`[airhook] backpressure_backlog` (10,000 without a bound) every "
        "`[airhook] backpressure_check_seconds` by each receiving process.",
    ),
    Metric(
        "airhook.dispatcher.dispatched",
        "counter",
        "Events a dispatch round settled: turned into asset events (one count per event, "
        "however many assets), or found to have no asset a DAG is scheduled on.",
    ),
    Metric(
        "airhook.dispatcher.lag_seconds",
        "gauge",
        "Age of the oldest event a dispatch round took (received to dispatched), set each "
        "round that dispatched something.",
    ),
    Metric(
        "airhook.delivery.{outcome}",
        "counter",
        "Outbound delivery attempts by outcome: `delivered`, `retry` (failed, another attempt "
        "is scheduled), `failed` (refused for good: a 4xx other than 408/429, a 410) and "
        "`dead` (the last scheduled attempt failed). `failed` and `dead` are dead letters.",
    ),
    Metric(
        "airhook.delivery.attempt_seconds",
        "timer",
        "Duration of one outbound attempt, request to answer or failure.",
    ),
    Metric(
        "airhook.webhook.{outcome}",
        "counter",
        "Calls made by `WebhookHook` / `WebhookOperator` (in tasks), per attempt: `delivered`, "
        "`retry` (another attempt follows, if the task's policy has one left), `failed`, "
        "`gone` (410).",
    ),
    Metric(
        "airhook.webhook.attempt_seconds",
        "timer",
        "Duration of one `WebhookHook` call that got an answer.",
    ),
    Metric(
        "airhook.subscription.auto_disabled",
        "counter",
        "Subscriptions disabled after `[airhook] disable_after_failures` consecutive failures.",
    ),
    Metric(
        "airhook.sender.sent",
        "counter",
        "Deliveries the background sender attempted.",
    ),
    Metric(
        "airhook.sender.lag_seconds",
        "gauge",
        "How long the oldest due outbound delivery has waited (0 when none is due), set each "
        "sender round.",
    ),
    Metric(
        "airhook.prune.{kind}",
        "counter",
        "Rows removed by retention: `events` (inbox) and `deliveries` (outbox).",
    ),
)

_DECLARED = tuple(metric.name.split("{", 1)[0] for metric in METRICS)
_failed: set[str] = set()
_module: Any = None
_started = False
_start_lock = threading.Lock()


_checked: set[str] = set()  # names found declared: the receiver sends a few per delivery


def _declared(name: str) -> bool:
    if name in _checked:
        return True
    if any(
        name == declared or (declared.endswith(".") and name.startswith(declared))
        for declared in _DECLARED
    ):
        _checked.add(name)  # a fixed set: names are constants and reason codes, never input
        return True
    return False


def start() -> None:
    """Set Airflow's public stats module up from ``[metrics]`` in this process, once; never
    fail. Call it where airhook runs outside a task (see the module docstring)."""
    global _started
    with _start_lock:
        if _started:
            return
        _started = True
        try:
            from airflow.sdk.configuration import conf
            from airflow.sdk.observability import stats
            from airflow.sdk.observability.metrics import stats_utils

            stats.initialize(
                factory=stats_utils.get_stats_factory(),
                export_legacy_names=conf.getboolean("metrics", "legacy_names_on"),
            )
        except Exception:
            log.warning("airhook could not set up Airflow's metrics", exc_info=True)


def _stats() -> Any:
    """Airflow's public stats module (imported once: the receiver sends per delivery)."""
    global _module
    if _module is None:
        from airflow.sdk.observability import stats

        _module = stats
    return _module


def _send(kind: str, name: str, value: float, tags: dict[str, str] | None) -> None:
    if not _declared(name):
        # Not sent: a name must be documented before it exists. Logged, not raised (a metric
        # never fails its caller); tests/test_metrics.py finds such calls before they ship.
        if name not in _failed:
            _failed.add(name)
            log.error("airhook metric %r is not declared in airhook.metrics.METRICS", name)
        return
    try:
        stats = _stats()
        if kind == "incr":
            stats.incr(name, count=int(value), tags=tags or {})
        elif kind == "gauge":
            stats.gauge(name, value, tags=tags or {})
        else:
            stats.timing(name, timedelta(seconds=value), tags=tags or {})  # each backend's unit
    except Exception:  # metrics must never break receiving, dispatching or sending
        if name not in _failed:
            _failed.add(name)
            log.warning("airhook could not emit the metric %s", name, exc_info=True)


def incr(name: str, count: int = 1, tags: dict[str, str] | None = None) -> None:
    """Add ``count`` to the counter ``name``."""
    _send("incr", name, count, tags)


def gauge(name: str, value: float, tags: dict[str, str] | None = None) -> None:
    """Set the gauge ``name`` to ``value``."""
    _send("gauge", name, value, tags)


def timing(name: str, seconds: float, tags: dict[str, str] | None = None) -> None:
    """Record a duration of ``seconds`` under the timer ``name`` (sent in milliseconds)."""
    _send("timing", name, seconds, tags)
