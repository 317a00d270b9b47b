"""Retention: how long events and deliveries are kept, and pruning them in bounded batches.

One loop, :func:`prune`, serves the background pruner (:mod:`airhook.pruner`) and ``airhook
prune`` (through :mod:`airhook.manage.retention`): batch after batch, each one short write
transaction of at most ``batch_size`` rows (:mod:`airhook.store.retention`), with a pause
between them. Why the pause: on SQLite the store has one writer at a time, the receiver's
group-commit writer among them; pausing :data:`PAUSE_FACTOR` times as long as the batch held the
lock keeps the pruner to a quarter of the time at most, whatever the size of what is being
pruned, so most acknowledgements never meet a batch (``bench/retention.py`` measures what the
others wait). On PostgreSQL it keeps a large prune from crowding out the rest of the store's
work.

Dead letters (deliveries ``failed`` or ``dead``) are kept until replayed or purged on purpose:
only a :class:`Retention` given ``dead_letters_days`` removes them.

Metrics: ``airhook.prune.events`` and ``airhook.prune.deliveries`` (dead letters included),
counted per batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from airhook import metrics
from airhook.core.errors import SetupError
from airhook.store.retention import DEAD_LETTERS, SETTLED, RetentionRepository

__all__ = [
    "DELIVERIES_METRIC",
    "EVENTS_METRIC",
    "MIN_PAUSE_SECONDS",
    "PAUSE_FACTOR",
    "Cutoffs",
    "Pruned",
    "Retention",
    "count",
    "prune",
]

EVENTS_METRIC = "airhook.prune.events"
DELIVERIES_METRIC = "airhook.prune.deliveries"
#: The pause between two batches, in multiples of how long the last one took.
PAUSE_FACTOR = 3.0
#: The shortest pause between two batches.
MIN_PAUSE_SECONDS = 0.01

#: ``(pause) -> go on?``: called between two batches; waits ``pause`` seconds (or less, when
#: asked to stop) and answers whether to go on.
Between = Callable[[float], bool]


def _sleep(pause: float) -> bool:
    time.sleep(pause)
    return True


@dataclass(frozen=True)
class Cutoffs:
    """What goes: events, delivered deliveries and dead letters that settled before these times
    (``None``: that kind is kept)."""

    events: datetime | None
    deliveries: datetime | None
    dead_letters: datetime | None = None


@dataclass(frozen=True)
class Retention:
    """How many days each kind is kept (``None``: for ever; dead letters: until replayed)."""

    events_days: int | None
    deliveries_days: int | None
    dead_letters_days: int | None = None

    @classmethod
    def configured(cls) -> Retention:
        """``[airhook] retention_events_days`` and ``retention_deliveries_days`` (0: kept for
        ever); dead letters are never pruned by configuration."""
        from airhook import config

        days: list[int | None] = []
        for option in ("retention_events_days", "retention_deliveries_days"):
            value = config.get_int(option)
            if value < 0:
                raise SetupError(f"[airhook] {option}", f"{option} is 0 (keep) or more days")
            days.append(value or None)
        return cls(days[0], days[1])

    @property
    def keeps_everything(self) -> bool:
        """Whether nothing would ever be pruned."""
        return (self.events_days, self.deliveries_days, self.dead_letters_days) == (None,) * 3

    def cutoffs(self, now: datetime) -> Cutoffs:
        """The cut-off times at ``now``."""

        def before(days: int | None) -> datetime | None:
            return None if days is None else now - timedelta(days=days)

        return Cutoffs(
            before(self.events_days),
            before(self.deliveries_days),
            before(self.dead_letters_days),
        )


@dataclass
class Pruned:
    """Rows removed (or, counted for a dry run, that would be)."""

    events: int = 0
    deliveries: int = 0
    dead_letters: int = 0
    #: the attempt rows of those deliveries and dead letters
    attempts: int = 0
    #: ``False`` when the loop was stopped before it ran out of rows
    complete: bool = True
    #: how many write transactions (batches) removed something
    batches: int = field(default=0, compare=False)


def count(repository: RetentionRepository, cutoffs: Cutoffs) -> Pruned:
    """What :func:`prune` would remove with these cut-offs now (nothing is deleted)."""
    counted = Pruned()
    if cutoffs.events is not None:
        counted.events = repository.count_events(cutoffs.events)
    if cutoffs.deliveries is not None:
        found = repository.count_deliveries(cutoffs.deliveries, SETTLED)
        counted.deliveries, counted.attempts = found.deliveries, found.attempts
    if cutoffs.dead_letters is not None:
        found = repository.count_deliveries(cutoffs.dead_letters, DEAD_LETTERS)
        counted.dead_letters = found.deliveries
        counted.attempts += found.attempts
    return counted


def prune(
    repository: RetentionRepository,
    cutoffs: Cutoffs,
    *,
    batch_size: int,
    between: Between = _sleep,
) -> Pruned:
    """Remove what is past the cut-offs, ``batch_size`` rows per write transaction, calling
    ``between`` with the pause to take before each batch after the first; stop early (and say
    so in :attr:`Pruned.complete`) when it answers ``False``."""
    if batch_size < 1:
        raise ValueError("batch_size is at least 1")
    pruned = Pruned()
    last: float | None = None  # how long the previous batch took
    kinds = (
        ("events", cutoffs.events),
        ("deliveries", cutoffs.deliveries),
        ("dead_letters", cutoffs.dead_letters),
    )
    for kind, cutoff in kinds:
        if cutoff is None:
            continue
        while True:
            if last is not None and not between(max(MIN_PAUSE_SECONDS, PAUSE_FACTOR * last)):
                pruned.complete = False
                return pruned
            started = time.monotonic()
            removed = _one_batch(repository, kind, cutoff, batch_size, pruned)
            last = time.monotonic() - started
            if removed:
                pruned.batches += 1
            else:
                last = None  # nothing was written: no pause owed
            if removed < batch_size:
                break  # the last of this kind (rows skipped now go in a later round)
    return pruned


def _one_batch(
    repository: RetentionRepository, kind: str, cutoff: datetime, batch_size: int, pruned: Pruned
) -> int:
    """One write transaction of ``kind``; add it to ``pruned`` and the metrics; return how many
    events or deliveries it removed."""
    if kind == "events":
        removed = repository.prune_events(cutoff, batch_size)
        pruned.events += removed
        if removed:
            metrics.incr(EVENTS_METRIC, removed)
        return removed
    statuses = SETTLED if kind == "deliveries" else DEAD_LETTERS
    gone = repository.prune_deliveries(cutoff, statuses, batch_size)
    if kind == "deliveries":
        pruned.deliveries += gone.deliveries
    else:
        pruned.dead_letters += gone.deliveries
    pruned.attempts += gone.attempts
    if gone.deliveries:
        metrics.incr(DELIVERIES_METRIC, gone.deliveries)
    return gone.deliveries
