"""Pruning on request: what retention would remove (a dry run), or removing it now.

``airhook prune`` calls this: the configured retention (``[airhook] retention_events_days``,
``retention_deliveries_days``), each overridable for one run, and dead letters only when asked
(:meth:`RetentionService.prune`'s ``dead_letters``). The removal is the background pruner's own
loop (:func:`airhook.retention.prune`), batch by batch with a pause between, so it can run while
the receiver records; a dry run counts with the same cut-offs and deletes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from airhook import retention
from airhook.core.errors import ConfigurationError
from airhook.manage import fields
from airhook.store.retention import DEAD_LETTERS, SETTLED, RetentionRepository
from airhook.store.times import utc_now

if TYPE_CHECKING:
    from airhook.manage.container import Services

__all__ = ["DEAD_LETTERS_DEFAULT_DAYS", "MAX_BATCH", "MAX_DAYS", "RetentionService"]

#: How old a dead letter must be to go, when ``dead_letters`` names no age.
DEAD_LETTERS_DEFAULT_DAYS = 30
#: The longest retention a run takes (a hundred years: beyond it a cut-off cannot be written).
MAX_DAYS = 36_500
#: The largest batch: one transaction must stay short.
MAX_BATCH = 100_000


def _days(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DAYS:
        raise ConfigurationError(f"{name} is a whole number of days, 0-{MAX_DAYS}", field=name)
    return value


class RetentionService:
    """Counting and pruning what retention lets go, as the CLI asks for it."""

    def __init__(self, services: Services) -> None:
        self._repository = RetentionRepository(services.store)

    def prune(
        self,
        *,
        dry_run: bool = False,
        events_older_than_days: int | None = None,
        deliveries_older_than_days: int | None = None,
        dead_letters: bool = False,
        dead_letters_older_than_days: int | None = None,
        batch_size: int | None = None,
        now: datetime | None = None,
    ) -> dict[str, Any]:
        """Prune (or with ``dry_run`` count) what is older than the retention; return per kind
        its age in days (``None``: kept), its cut-off and how many rows went (or would go).

        :param events_older_than_days: instead of ``[airhook] retention_events_days`` (there,
            0 keeps events for ever; here, 0 means every dispatched event).
        :param deliveries_older_than_days: instead of ``retention_deliveries_days``, for
            delivered deliveries.
        :param dead_letters: purge dead letters (failed or dead) too, those older than
            ``dead_letters_older_than_days`` (default :data:`DEAD_LETTERS_DEFAULT_DAYS`).
        :param batch_size: events or deliveries per transaction (``[airhook]
            prune_batch_size``).
        :param now: when the cut-offs count back from (default: now).
        """
        from airhook import config

        if dead_letters_older_than_days is not None and not dead_letters:
            raise ConfigurationError(
                "an age for dead letters goes with dead_letters", field="dead_letters"
            )
        configured = retention.Retention.configured()
        policy = retention.Retention(
            configured.events_days
            if events_older_than_days is None
            else _days(events_older_than_days, "events_older_than_days"),
            configured.deliveries_days
            if deliveries_older_than_days is None
            else _days(deliveries_older_than_days, "deliveries_older_than_days"),
            _days(
                DEAD_LETTERS_DEFAULT_DAYS
                if dead_letters_older_than_days is None
                else dead_letters_older_than_days,
                "dead_letters_older_than_days",
            )
            if dead_letters
            else None,
        )
        size = config.get_int("prune_batch_size") if batch_size is None else batch_size
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH:
            raise ConfigurationError(f"batch_size is from 1 to {MAX_BATCH}", field="batch_size")
        at = fields.utc(now, "now") or utc_now()
        cutoffs = policy.cutoffs(at)
        if dry_run:
            done = retention.count(self._repository, cutoffs)
        else:
            done = retention.prune(self._repository, cutoffs, batch_size=size)
        return {
            "dry_run": dry_run,
            "now": at.isoformat(),
            "batch_size": size,
            "events": _kind(policy.events_days, cutoffs.events, done.events),
            "deliveries": _kind(
                policy.deliveries_days,
                cutoffs.deliveries,
                done.deliveries,
                statuses=SETTLED,
            ),
            "dead_letters": _kind(
                policy.dead_letters_days,
                cutoffs.dead_letters,
                done.dead_letters,
                statuses=DEAD_LETTERS,
            ),
            "attempts": done.attempts,
        }


def _kind(
    days: int | None,
    cutoff: datetime | None,
    rows: int,
    *,
    statuses: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "older_than_days": days,
        "cutoff": cutoff.isoformat() if cutoff is not None else None,
        "count": rows,
    }
    if statuses is not None:
        document["statuses"] = list(statuses)
    return document
