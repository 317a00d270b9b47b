"""``airhook events``: the inbound events the receiver recorded, and re-dispatching them.

Every command goes through :class:`airhook.manage.events.EventService`, as the REST API does.
An event's detail adds what it became in Airflow (its asset events and the DAG runs they
started) where Airflow's metadata DB can be read from here.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

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
from airhook.manage.events import REDISPATCH_BATCH
from airhook.manage.fields import MAX_IDS

__all__ = ["add_commands"]

#: Events read per page when a re-dispatch selects them by filters.
_SELECT_PAGE = 500


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    """The filters given, as :meth:`EventService.list` takes them."""
    return {
        "source": args.source,
        "event": args.event,
        "kind": args.kind,
        **since_until(args),
    }


# --- list / show ---------------------------------------------------------------------------------


def _render_list(page: dict[str, Any]) -> str:
    rows = [
        (
            e["id"],
            when(e["received_at"]),
            e["source"],
            e["event"],
            e["kind"],
            when(e["dispatched_at"]) if e["dispatched_at"] else "waiting",
            e["redispatches"],
        )
        for e in page["items"]
    ]
    headers = ("id", "received (UTC)", "source", "event", "kind", "dispatched", "redispatches")
    return listing(page, rows, headers)


def _list(args: argparse.Namespace) -> None:
    filters = _filters(args)
    page = (
        _common.services()
        .events()
        .list(**filters, dispatched=args.dispatched, limit=args.limit, offset=args.offset)
    )
    emit(args, page.as_dict(), _render_list)


def _render_event(event: dict[str, Any]) -> str:
    summary = details(
        [
            ("id", event["id"]),
            ("source", event["source"]),
            ("profile", event["profile"]),
            ("event", event["event"]),
            ("kind", event["kind"]),
            ("received", when(event["received_at"])),
            ("dispatched", when(event["dispatched_at"]) if event["dispatched_at"] else "waiting"),
            ("dispatch attempts", event["dispatch_attempts"]),
            ("redispatches", event["redispatches"]),
        ]
    )
    headers = event.get("headers")
    kept = (
        "\n".join(f"  {name}: {value}" for name, value in headers.items())
        if headers
        else "  (not kept)"
    )
    rows = [
        (a["asset"], when(a["timestamp"]), run["dag_id"], run["run_id"], run["state"])
        for a in event["asset_events"]
        for run in (a["dag_runs"] or [{"dag_id": "-", "run_id": "-", "state": "-"}])
    ]
    became = table(rows, ("asset", "at (UTC)", "dag", "run", "state"))
    payload = json.dumps(event["payload"], indent=2)
    return (
        f"{summary}\n\nheaders kept:\n{kept}\n\nasset events and DAG runs:\n{became}"
        f"\n\npayload:\n{payload}"
    )


def _show(args: argparse.Namespace) -> None:
    emit(args, _common.services().events().get(args.id).as_dict(), _render_event)


# --- redispatch ----------------------------------------------------------------------------------


def _selected(args: argparse.Namespace) -> list[str]:
    """The ids of the events the filters select that were dispatched (the others are about to
    go anyway), read before anything changes: re-dispatching moves events out of the filter."""
    events = _common.services().events()
    filters = _filters(args)
    ids: list[str] = []
    while True:
        page = events.list(**filters, dispatched=True, limit=_SELECT_PAGE, offset=len(ids))
        ids += [view.event.id for view in page.items]
        if not page.items or len(ids) >= page.total:
            return ids


def _redispatch(args: argparse.Namespace) -> None:
    filtered = any(
        value is not None for value in (args.source, args.event, args.kind, args.since, args.until)
    )
    if args.ids and filtered:
        raise CommandError("give event ids, or select events with filters, not both")
    if not (args.ids or filtered):
        raise CommandError(
            "name the events: their ids, or select them with --source, --event, --kind, "
            "--since or --until"
        )
    ids = list(dict.fromkeys(args.ids or _selected(args)))
    events = _common.services().events()
    count = 0
    with ProgressBar("re-dispatching") as bar:
        for chunk, told in chunks(ids, MAX_IDS, bar):
            count += events.redispatch(chunk, progress=told, batch=args.batch_size)["redispatched"]
    emit(
        args,
        {"redispatched": count},
        lambda _: (
            f"re-dispatched {count} of {len(ids)} events: the dispatcher sends them to "
            "their assets again (one not dispatched yet is about to go anyway and is not counted)"
        ),
    )


# --- the parsers ---------------------------------------------------------------------------------


def _add_filters(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument("--source", help=f"{verb} only this source's events")
    parser.add_argument(
        "--event",
        metavar="PATTERN",
        help=f"{verb} only events of this name, '*' matching any run of characters",
    )
    parser.add_argument(
        "--kind", help=f"{verb} only events of this canonical kind (e.g. lead.created)"
    )
    add_since_until(parser, "received")


def add_commands(commands: Any) -> None:
    """Add the ``events`` group to the top-level subcommands."""
    events = commands.add_parser(
        "events",
        help="inbound events recorded by the receiver: list, inspect, re-dispatch",
        description="Inbound events the receiver recorded, newest first.",
    ).add_subparsers(dest="cmd", required=True, metavar="COMMAND", help="what to do")

    listing_ = events.add_parser("list", help="recorded events, newest first, filtered")
    _add_filters(listing_, "list")
    state = listing_.add_mutually_exclusive_group()
    state.add_argument(
        "--dispatched",
        dest="dispatched",
        action="store_const",
        const=True,
        default=None,
        help="only events sent to their assets",
    )
    state.add_argument(
        "--undispatched",
        dest="dispatched",
        action="store_const",
        const=False,
        help="only events still waiting for the dispatcher",
    )
    add_window(listing_)
    add_json(listing_)
    listing_.set_defaults(func=_list)

    show = events.add_parser(
        "show",
        help="one event: payload, headers kept, asset events and DAG runs",
        description="One recorded event: its payload, the headers kept of its request (no "
        "credentials, no signatures), and, where Airflow's metadata DB can be read from here, "
        "the asset events it became and the DAG runs they started.",
    )
    show.add_argument("id", help="the event's id (evt_…)")
    add_json(show)
    show.set_defaults(func=_show)

    redispatch = events.add_parser(
        "redispatch",
        help="send recorded events to their assets again (a progress bar for many)",
        description="Send recorded events to their assets again, once: a DAG that was paused "
        "or deployed since gets its run (every DAG scheduled on those assets gets the event "
        "again). Name the events by id, or select them with filters; the dispatcher of the "
        "API server sends them. On a terminal, a progress bar shows on standard error.",
    )
    redispatch.add_argument("ids", nargs="*", metavar="ID", help="the events' ids (evt_…)")
    _add_filters(redispatch, "re-dispatch")
    redispatch.add_argument(
        "--batch-size",
        type=bounded(1, MAX_IDS),
        default=REDISPATCH_BATCH,
        metavar="N",
        help="events marked per step, as the progress bar advances (default: %(default)s)",
    )
    add_json(redispatch)
    redispatch.set_defaults(func=_redispatch)
