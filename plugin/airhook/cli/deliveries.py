"""``airhook deliveries``: the outbox, one row per event and subscription, and its attempts.

Every command goes through :class:`airhook.manage.deliveries.DeliveryService`, as the REST API
does; a replay of many goes out in batches, with a progress bar on a terminal.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from airhook.cli import _common
from airhook.cli._common import CommandError, add_since_until, since_until
from airhook.cli._output import (
    ProgressBar,
    add_json,
    add_window,
    bounded,
    chunks,
    details,
    emit,
    listing,
    table,
    when,
)
from airhook.manage.deliveries import REPLAY_BATCH
from airhook.manage.fields import MAX_IDS
from airhook.store.outbox import STATUSES

if TYPE_CHECKING:
    from airhook.manage.deliveries import DeliveryService

__all__ = ["add_commands"]

_COUNTS = ("delivered", "pending", "failed", "dead", "paused")


def _counts(document: dict[str, Any]) -> str:
    return ", ".join(f"{name} {document[name]}" for name in _COUNTS)


# --- list / show ---------------------------------------------------------------------------------


def _render_list(page: dict[str, Any]) -> str:
    rows = [
        (
            d["id"],
            d["subscription"],
            d["event"],
            d["status"],
            d["attempts"],
            d["last_status_code"],
            when(d["created_at"]),
            when(d["next_attempt_at"]),
        )
        for d in page["items"]
    ]
    headers = (
        "id",
        "subscription",
        "event",
        "status",
        "attempts",
        "last status",
        "created (UTC)",
        "next attempt",
    )
    return listing(page, rows, headers)


def _list(args: argparse.Namespace) -> None:
    page = (
        _common.services()
        .deliveries()
        .list(
            subscription=args.subscription,
            statuses=args.status or None,
            **since_until(args),
            limit=args.limit,
            offset=args.offset,
        )
    )
    emit(args, page.as_dict(), _render_list)


def _render_delivery(delivery: dict[str, Any]) -> str:
    summary = details(
        [
            ("id", delivery["id"]),
            ("subscription", delivery["subscription"]),
            ("event", f"{delivery['event']} ({delivery['platform'] or 'no platform'})"),
            ("status", delivery["status"]),
            ("attempts", delivery["attempts"]),
            ("next attempt", when(delivery["next_attempt_at"])),
            ("last status", delivery["last_status_code"]),
            ("last error", delivery["last_error"]),
            ("created", when(delivery["created_at"])),
            ("updated", when(delivery["updated_at"])),
            ("finished", when(delivery["finished_at"])),
        ]
    )
    rows = [
        (
            when(a["attempted_at"]),
            a["outcome"],
            a["status_code"],
            a["latency_ms"],
            a["error"],
            a["response_excerpt"],
        )
        for a in delivery["attempt_log"]
    ]
    attempts = table(rows, ("at (UTC)", "outcome", "status", "ms", "error", "response"))
    return f"{summary}\n\nattempts:\n{attempts}"


def _show(args: argparse.Namespace) -> None:
    emit(args, _common.services().deliveries().get(args.id).as_dict(), _render_delivery)


# --- replay / deliver-due ------------------------------------------------------------------------


def _replay(args: argparse.Namespace) -> None:
    if bool(args.ids) == (args.subscription is not None):
        raise CommandError(
            "replay takes delivery ids, or --subscription (with --since/--until, --dead or "
            "--include-delivered)"
        )
    if args.ids and (args.since or args.until or args.dead or args.include_delivered):
        raise CommandError(
            "--since, --until, --dead and --include-delivered go with --subscription, not ids"
        )
    window = since_until(args)
    deliveries = _common.services().deliveries()
    with ProgressBar("replaying") as bar:
        if args.subscription is not None:
            answer = deliveries.replay(
                subscription=args.subscription,
                **window,
                dead_only=args.dead,
                include_delivered=args.include_delivered,
                wait=args.wait,
                progress=bar,
                batch=args.batch_size,
            )
        else:
            answer = _replay_ids(deliveries, list(dict.fromkeys(args.ids)), args, bar)
    emit(
        args,
        answer,
        lambda doc: f"replayed {len(doc['replayed'])} deliveries: {_counts(doc)}",
    )


def _replay_ids(
    deliveries: DeliveryService, ids: list[str], args: argparse.Namespace, bar: ProgressBar
) -> dict[str, Any]:
    """Replay ``ids``, at most :data:`MAX_IDS` per call to the service (as many as the REST API
    takes at once), the progress bar spanning them all; the answers' counts are added up."""
    total: dict[str, Any] = {"replayed": []}
    for number, (chunk, told) in enumerate(chunks(ids, MAX_IDS, bar)):
        answer = deliveries.replay(ids=chunk, wait=args.wait, progress=told, batch=args.batch_size)
        if number == 0:
            total = answer
            continue
        total["replayed"] += answer["replayed"]
        for name in ("deliveries", *_COUNTS):
            total[name] += answer[name]
        if answer["next_attempt_at"] is not None:
            total["next_attempt_at"] = min(
                filter(None, (total["next_attempt_at"], answer["next_attempt_at"]))
            )
    return total


def _render_due(document: dict[str, Any]) -> str:
    return f"attempted {document['attempted']} due deliveries: {_counts(document)}"


def _deliver_due(args: argparse.Namespace) -> None:
    answer = _common.services().deliveries().deliver_due(subscription=args.subscription)
    emit(args, answer, _render_due)


# --- the parsers ---------------------------------------------------------------------------------


def add_commands(commands: Any) -> None:
    """Add the ``deliveries`` group to the top-level subcommands."""
    deliveries = commands.add_parser(
        "deliveries",
        help="outbound deliveries: list, inspect, replay, send what is due",
        description="Outbound deliveries: one per event and subscription, with its attempts.",
    ).add_subparsers(dest="cmd", required=True, metavar="COMMAND", help="what to do")

    listing_ = deliveries.add_parser("list", help="deliveries, newest first, filtered")
    listing_.add_argument("--subscription", help="only this subscription's")
    listing_.add_argument(
        "--status",
        action="append",
        choices=STATUSES,
        help="only deliveries in this status, repeatable (default: any)",
    )
    add_since_until(listing_, "created")
    add_window(listing_)
    add_json(listing_)
    listing_.set_defaults(func=_list)

    show = deliveries.add_parser("show", help="one delivery and every attempt")
    show.add_argument("id", help="the delivery's message id (msg_…)")
    add_json(show)
    show.set_defaults(func=_show)

    replay = deliveries.add_parser(
        "replay",
        help="send deliveries again, now (a progress bar for many)",
        description="Send deliveries again, now, with a fresh round of attempts: those named "
        "by id (whatever their status), or a subscription's undelivered ones (failed, dead, "
        "paused) in a time window, or its dead letters only (--dead). A disabled "
        "subscription's wait as paused until it is enabled. Many go out in batches; on a "
        "terminal, a progress bar shows on standard error.",
    )
    replay.add_argument("ids", nargs="*", metavar="ID", help="the deliveries' message ids (msg_…)")
    replay.add_argument("--subscription", help="a subscription's undelivered deliveries")
    add_since_until(replay, "created", condition="with --subscription, ")
    which = replay.add_mutually_exclusive_group()
    which.add_argument(
        "--dead", action="store_true", help="with --subscription: its dead letters only"
    )
    which.add_argument(
        "--include-delivered",
        action="store_true",
        help="with --subscription: the delivered ones of the window too",
    )
    replay.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep making the retries that fall due within this many seconds "
        "(default: 0, one pass)",
    )
    replay.add_argument(
        "--batch-size",
        type=bounded(1, MAX_IDS),
        default=REPLAY_BATCH,
        metavar="N",
        help="deliveries sent per step, as the progress bar advances (default: %(default)s)",
    )
    add_json(replay)
    replay.set_defaults(func=_replay)

    due = deliveries.add_parser("deliver-due", help="send every delivery whose attempt is due")
    due.add_argument("--subscription", help="only this subscription's (default: all)")
    add_json(due)
    due.set_defaults(func=_deliver_due)
