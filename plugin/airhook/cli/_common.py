"""What every command group shares: reading secrets and files, parsing small values, and the
management services every command goes through.

Secrets are never taken as plain arguments (they would land in shell history and ``ps``): they
are read from a file, ``-`` meaning standard input. The services are built only after the input
has been checked, so that a mistake is reported without Airflow's configuration or the store.

The commands reach airhook's state through :mod:`airhook.manage` alone, as the REST API and the
page do (``airhook db`` excepted: the store's schema is below the services), so that the three
cannot drift apart.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from airhook.core.errors import AirhookError

if TYPE_CHECKING:
    from airhook.manage.container import Services

__all__ = [
    "FILE_HELP",
    "CommandError",
    "TimeWindow",
    "add_active_switch",
    "add_replacing",
    "add_scheme_options",
    "add_secrets_command",
    "add_since_until",
    "iso_time",
    "note",
    "parse_options",
    "read_secret",
    "read_text",
    "services",
    "since_until",
]

#: How every ``--…-file`` option reads: said once, appended to their help.
FILE_HELP = "('-' reads standard input)"


class CommandError(AirhookError):
    """Input the user must fix that only the command can judge (an unreadable file, options that
    do not go together): reported in one line, exit status 2, no traceback."""


# --- input ---------------------------------------------------------------------------------------


def read_text(path: str, what: str) -> str:
    """Return the whole text of the file at ``path`` (``-``: standard input)."""
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read the {what} file {path!r}: {exc.strerror}") from None


def read_secret(path: str) -> str:
    """Return the secret in the file at ``path`` (``-``: the first line of standard input)."""
    if path == "-":
        text = sys.stdin.readline()
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read the secret file {path!r}: {exc.strerror}") from None
    value = text.strip()
    if not value:
        raise CommandError(f"no secret in {path!r}")
    return value


def parse_options(pairs: Sequence[str]) -> dict[str, Any]:
    """Return the scheme options of ``--option key=value`` arguments (digits become ints)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not (key and sep):
            raise CommandError(f"--option takes KEY=VALUE, not {pair!r}")
        options[key] = int(value) if value.isdigit() else value
    return options


def iso_time(text: str | None, option: str) -> datetime | None:
    """Return the time an ISO 8601 argument names (UTC when it gives no zone)."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{option} takes an ISO 8601 time, not {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class TimeWindow(TypedDict):
    """``since`` and ``until``, as the services' lists and replays take them."""

    since: datetime | None
    until: datetime | None


def since_until(args: argparse.Namespace) -> TimeWindow:
    """``--since`` and ``--until`` (:func:`add_since_until`) as the services take them."""
    return {"since": iso_time(args.since, "--since"), "until": iso_time(args.until, "--until")}


def note(message: str) -> None:
    """A diagnostic on standard error (standard output carries the command's result alone)."""
    print(f"airhook: {message}", file=sys.stderr)


# --- arguments sources and subscriptions share -------------------------------------------------


def add_replacing(
    parser: argparse.ArgumentParser,
    option: str,
    *,
    metavar: str,
    help: str,
    reset: str,
    reset_help: str,
) -> None:
    """An ``update`` option for a list: ``option``, repeatable, replaces the list whole, or
    ``reset`` (a flag) empties it; not both."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(option, action="append", default=[], metavar=metavar, help=help)
    group.add_argument(reset, action="store_true", help=reset_help)


def add_scheme_options(parser: argparse.ArgumentParser, *, examples: str | None = None) -> None:
    """``--option KEY=VALUE``, repeatable (:func:`parse_options` reads them). ``create`` gives
    ``examples``; ``update`` gives none: the options given replace the old ones, and
    ``--no-options`` removes them all."""
    if examples is not None:
        parser.add_argument(
            "--option",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"a signing scheme option, repeatable: e.g. {examples}",
        )
        return
    add_replacing(
        parser,
        "--option",
        metavar="KEY=VALUE",
        help="a signing scheme option, repeatable; the options given replace all the old ones",
        reset="--no-options",
        reset_help="remove every scheme option",
    )


def add_active_switch(parser: argparse.ArgumentParser, *, on: str, off: str) -> None:
    """``update``'s ``--active`` or ``--inactive`` (``args.active``: ``None`` when neither)."""
    state = parser.add_mutually_exclusive_group()
    state.add_argument(
        "--active", dest="active", action="store_const", const=True, default=None, help=on
    )
    state.add_argument("--inactive", dest="active", action="store_const", const=False, help=off)


def add_secrets_command(
    commands: Any,
    what: str,
    *,
    description: str,
    actions: Sequence[str],
    actions_help: str,
    func: Callable[[argparse.Namespace], Any],
) -> argparse.ArgumentParser:
    """The ``secrets NAME ACTION`` command of sources or subscriptions (``what``); returns its
    parser, for the options only one of them takes."""
    secrets = commands.add_parser(
        "secrets", help=f"rotate a {what}'s signing secrets", description=description
    )
    secrets.add_argument("name", help=f"the {what}'s name")
    secrets.add_argument("action", choices=actions, help=actions_help)
    secrets.set_defaults(func=func)
    return secrets


def add_since_until(parser: argparse.ArgumentParser, what: str, *, condition: str = "") -> None:
    """``--since`` and ``--until``: when the items were ``what`` (``received``, ``created``);
    ``condition`` (e.g. ``with --subscription, ``) leads their help. Read by
    :func:`since_until`."""
    parser.add_argument(
        "--since",
        metavar="TIME",
        help=f"{condition}ISO 8601: {what} at or after (UTC without a zone)",
    )
    parser.add_argument(
        "--until", metavar="TIME", help=f"{condition}ISO 8601: {what} before (UTC without a zone)"
    )


# --- the services --------------------------------------------------------------------------------


def _from_airflow(name: str, what: str) -> Callable[..., list[Any]]:
    """A reader of Airflow's metadata DB (``airflow_internals.<name>``) that, when that DB
    cannot be read from here (not configured, not migrated, not reachable), says so on standard
    error and answers an empty list: what it would add is shown only where Airflow's DB is."""

    def read(*args: Any) -> list[Any]:
        from sqlalchemy.exc import SQLAlchemyError

        from airhook import airflow_internals

        try:
            return list(getattr(airflow_internals, name)(*args))
        except SQLAlchemyError as exc:
            note(
                f"Airflow's metadata DB cannot be read from here ({type(exc).__name__}): "
                f"{what} not shown"
            )
            return []

    return read


def services() -> Services:
    """The management services, from Airflow's configuration: ``[core] fernet_key`` (checked
    first), ``[airhook] database_url`` (the store, migrated), ``[api] base_url`` (receiver
    URLs), and Airflow's metadata DB for what an event became, where it can be read."""
    from airhook.manage.container import Services

    return Services.from_config(
        asset_events_of=_from_airflow("asset_events_of", "its asset events and DAG runs"),
        dags_scheduled_on=_from_airflow("dags_scheduled_on", "the DAGs scheduled on it"),
    )
