"""``airhook deliveries``: the outbox, one row per event and subscription, and its attempts."""

from __future__ import annotations

import argparse
from typing import Any

from airhook.cli._common import CommandError, delivery_engine, iso_time, print_json
from airhook.store.outbox import STATUSES

__all__ = ["add_commands"]


def _list(args: argparse.Namespace) -> None:
    found = delivery_engine().outbox.find(
        subscription=args.subscription,
        statuses=args.status or None,
        since=iso_time(args.since, "--since"),
        until=iso_time(args.until, "--until"),
        limit=args.limit,
    )
    print_json([delivery.as_dict() for delivery in found], lines=True)


def _show(args: argparse.Namespace) -> None:
    outbox = delivery_engine().outbox
    described = outbox.get(args.id).as_dict()
    described["attempts_log"] = [
        {
            "attempted_at": a.attempted_at.isoformat(),
            "outcome": a.outcome,
            "status_code": a.status_code,
            "latency_ms": a.latency_ms,
            "error": a.error,
            "response_excerpt": a.response_excerpt,
        }
        for a in outbox.attempts(args.id)
    ]
    print_json(described)


def _replay(args: argparse.Namespace) -> None:
    if (args.id is None) == (args.subscription is None):
        raise CommandError("replay takes --id, or --subscription (with --since/--until or --dead)")
    if args.id is not None and (args.since or args.until or args.dead):
        raise CommandError("--since, --until and --dead go with --subscription, not --id")
    since, until = iso_time(args.since, "--since"), iso_time(args.until, "--until")
    engine = delivery_engine()
    if args.subscription is not None:
        engine.subscriptions.get(args.subscription)  # a typo is an error, not "0 replayed"
    ids = engine.replay(
        message_id=args.id,
        subscription=args.subscription,
        since=since,
        until=until,
        dead_only=args.dead,
        include_delivered=args.include_delivered,
        wait=args.wait,
    )
    print_json({"replayed": len(ids), **engine.summary(message_ids=ids).as_dict()})


def _deliver_due(args: argparse.Namespace) -> None:
    attempted = delivery_engine().deliver(subscription=args.subscription)
    print_json({"attempted": attempted.deliveries, **attempted.as_dict()})


def add_commands(commands: Any) -> None:
    """Add the ``deliveries`` group to the top-level subcommands."""
    deliveries = commands.add_parser(
        "deliveries",
        help="outbound deliveries: list, inspect, replay, send what is due",
    ).add_subparsers(dest="cmd", required=True, metavar="COMMAND", help="what to do")

    listing = deliveries.add_parser("list", help="deliveries, oldest first, one JSON line each")
    listing.add_argument("--subscription", help="only this subscription's")
    listing.add_argument(
        "--status",
        action="append",
        choices=STATUSES,
        help="only deliveries in this status, repeatable (default: any)",
    )
    listing.add_argument("--since", metavar="TIME", help="ISO 8601: created at or after")
    listing.add_argument("--until", metavar="TIME", help="ISO 8601: created before")
    listing.add_argument(
        "--limit", type=int, default=100, help="print at most this many (default: %(default)s)"
    )
    listing.set_defaults(func=_list)

    show = deliveries.add_parser("show", help="one delivery and its attempts")
    show.add_argument("id", help="the delivery's message id (msg_…)")
    show.set_defaults(func=_show)

    replay = deliveries.add_parser(
        "replay",
        help="send deliveries again, now",
        description="Send deliveries again, now: one (--id), or a subscription's (--subscription) "
        "undelivered ones in a time window, or its dead letters (--dead). A disabled "
        "subscription's wait as paused until it is enabled.",
    )
    replay.add_argument("--id", help="one delivery, whatever its status")
    replay.add_argument("--subscription", help="a subscription's undelivered deliveries")
    replay.add_argument(
        "--since", metavar="TIME", help="with --subscription, ISO 8601: created at or after"
    )
    replay.add_argument(
        "--until", metavar="TIME", help="with --subscription, ISO 8601: created before"
    )
    replay.add_argument(
        "--dead", action="store_true", help="with --subscription: its dead letters only"
    )
    replay.add_argument(
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
    replay.set_defaults(func=_replay)

    due = deliveries.add_parser("deliver-due", help="send every delivery whose attempt is due")
    due.add_argument("--subscription", help="only this subscription's (default: all)")
    due.set_defaults(func=_deliver_due)
