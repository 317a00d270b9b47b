"""``airhook prune``: remove recorded events and settled deliveries kept long enough, or with
``--dry-run`` say what would go.

Through :class:`airhook.manage.retention.RetentionService`: the configured retention, each age
overridable for the run, dead letters only with ``--dead-letters``. The rows go in batches with
a pause between, as the background pruner removes them, so it may run beside a receiver.
"""

from __future__ import annotations

import argparse
from typing import Any

from airhook.cli import _common
from airhook.cli._common import CommandError
from airhook.cli._output import add_json, bounded, emit, table, when
from airhook.manage.retention import DEAD_LETTERS_DEFAULT_DAYS, MAX_BATCH, MAX_DAYS

__all__ = ["add_commands"]

_KINDS = (("events", "events"), ("deliveries", "deliveries"), ("dead_letters", "dead letters"))


def _age(days: int | None, key: str) -> str:
    if days is not None:
        return f"{days} days"
    return "kept until replayed" if key == "dead_letters" else "kept for ever"


def _render(document: dict[str, Any]) -> str:
    dry = document["dry_run"]
    rows = [
        (
            label,
            _age(document[key]["older_than_days"], key),
            when(document[key]["cutoff"]),
            document[key]["count"] if document[key]["cutoff"] else "-",
        )
        for key, label in _KINDS
    ]
    text = table(rows, ("kind", "older than", "cut-off (UTC)", "would go" if dry else "pruned"))
    attempts = document["attempts"]
    if dry:
        text += f"\n\ndry run: nothing was deleted ({attempts} attempt rows would go with the "
        text += "deliveries)"
    else:
        text += f"\n\n{attempts} attempt rows went with the deliveries"
    return text


def _prune(args: argparse.Namespace) -> None:
    if args.dead_letters_older_than_days is not None and not args.dead_letters:
        raise CommandError("--dead-letters-older-than-days goes with --dead-letters")
    answer = (
        _common.services()
        .retention()
        .prune(
            dry_run=args.dry_run,
            events_older_than_days=args.events_older_than_days,
            deliveries_older_than_days=args.deliveries_older_than_days,
            dead_letters=args.dead_letters,
            dead_letters_older_than_days=args.dead_letters_older_than_days,
            batch_size=args.batch_size,
        )
    )
    emit(args, answer, _render)


def add_commands(commands: Any) -> None:
    """Add the ``prune`` command to the top-level subcommands."""
    prune = commands.add_parser(
        "prune",
        help="remove events and deliveries kept long enough (--dry-run: say what would go)",
        description="Remove dispatched events and delivered deliveries (with their attempts) "
        "older than the retention: [airhook] retention_events_days and "
        "retention_deliveries_days (0 there keeps them for ever), or the ages given here. "
        "Events not dispatched yet and deliveries pending, being sent or paused never go; dead "
        "letters (failed or dead) only with --dead-letters. Rows go in batches, a pause "
        "between, as the background pruner removes them: safe while the receiver runs.",
    )
    prune.add_argument(
        "--dry-run",
        action="store_true",
        help="delete nothing: count what would go, per kind, and show the cut-off times",
    )
    prune.add_argument(
        "--events-older-than-days",
        type=bounded(0, MAX_DAYS),
        metavar="DAYS",
        help="prune dispatched events received and last dispatched more than DAYS ago "
        "(default: [airhook] retention_events_days; 0 here: every dispatched event)",
    )
    prune.add_argument(
        "--deliveries-older-than-days",
        type=bounded(0, MAX_DAYS),
        metavar="DAYS",
        help="prune deliveries delivered more than DAYS ago "
        "(default: [airhook] retention_deliveries_days; 0 here: every delivered one)",
    )
    prune.add_argument(
        "--dead-letters",
        action="store_true",
        help="also purge dead letters (failed or dead deliveries, kept until replayed "
        "otherwise) that failed more than --dead-letters-older-than-days ago",
    )
    prune.add_argument(
        "--dead-letters-older-than-days",
        type=bounded(0, MAX_DAYS),
        metavar="DAYS",
        help=f"with --dead-letters: their age (default: {DEAD_LETTERS_DEFAULT_DAYS})",
    )
    prune.add_argument(
        "--batch-size",
        type=bounded(1, MAX_BATCH),
        metavar="N",
        help="events or deliveries removed per transaction (default: [airhook] prune_batch_size)",
    )
    add_json(prune)
    prune.set_defaults(func=_prune)
