"""``airhook activity``: events received and deliveries settled per hour, as the page's charts
show them, through :class:`airhook.manage.activity.ActivityService`.

Rejected deliveries leave no row by design (a flood of bad signatures must not fill the store):
they are counted by the API server's receiver in its own memory, so only the REST API's
``/activity`` can tell them; this command says so rather than show zeros.
"""

from __future__ import annotations

import argparse
from typing import Any

from airhook.cli import _common
from airhook.cli._output import add_json, bounded, emit, table, when
from airhook.manage.activity import MAX_HOURS

__all__ = ["add_commands"]


def _render(document: dict[str, Any]) -> str:
    buckets = document["buckets"]
    counted = ("received", "delivered", "failed")
    rows = [(when(b["start"]), *(b[key] for key in counted)) for b in buckets]
    totals = ("total", *(sum(b[key] for b in buckets) for key in counted))
    text = table([*rows, totals], ("hour (UTC)", *counted))
    rejected = document["rejected"]
    if rejected:
        text += "\n\nrejected: " + ", ".join(f"{k} {v}" for k, v in sorted(rejected.items()))
    else:
        text += (
            "\n\nrejected deliveries are counted by the API server's receiver only "
            "(GET /airhook/manage/api/v1/activity)"
        )
    return text


def _activity(args: argparse.Namespace) -> None:
    emit(args, _common.services().activity().counts(args.hours), _render)


def add_commands(commands: Any) -> None:
    """Add the ``activity`` command to the top-level subcommands."""
    activity = commands.add_parser(
        "activity",
        help="events received and deliveries delivered or failed, per hour",
        description="Events received and deliveries delivered or failed (failed or dead), per "
        "hour of the last HOURS, oldest first: what the page's charts show.",
    )
    activity.add_argument(
        "--hours",
        type=bounded(1, MAX_HOURS),
        default=24,
        metavar="HOURS",
        help=f"how many hours back, 1-{MAX_HOURS} (default: %(default)s)",
    )
    add_json(activity)
    activity.set_defaults(func=_activity)
