"""What every command group shares: reading secrets and files, parsing small values, printing,
and opening the store.

Secrets are never taken as plain arguments (they would land in shell history and ``ps``): they
are read from a file, ``-`` meaning standard input. The store is opened only after the input has
been checked, so that a mistake is reported without Airflow's configuration or the store.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airhook.core.errors import AirhookError
from airhook.core.secrets import Secret

if TYPE_CHECKING:
    from airhook.core.secrets import Cipher
    from airhook.delivery import DeliveryEngine
    from airhook.store.engine import Store
    from airhook.store.inbox import InboxRepository
    from airhook.store.sources import SourceRepository

__all__ = [
    "FILE_HELP",
    "CommandError",
    "delivery_engine",
    "inbox_repository",
    "iso_time",
    "parse_options",
    "print_json",
    "read_secret",
    "read_text",
    "source_repository",
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


def read_secret(path: str) -> Secret:
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
    return Secret(value)


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


# --- output --------------------------------------------------------------------------------------


def print_json(document: Any, *, lines: bool = False) -> None:
    """Print a document on standard output, which carries nothing else.

    :param lines: one compact line per item of a list (JSON Lines), for listings that may be long.
    """
    if lines:
        for item in document:
            print(json.dumps(item))
    else:
        print(json.dumps(document, indent=2))


def show_once(label: str, secret: Secret) -> None:
    """Print a generated secret on standard error: shown once, never part of the JSON output."""
    print(f"{label} (shown once, store it now):", secret.reveal(), file=sys.stderr)


# --- the store -----------------------------------------------------------------------------------


def _cipher() -> Cipher:
    from airhook.crypto import airflow_cipher

    return airflow_cipher()  # SetupError with no [core] fernet_key


def _store() -> Store:
    from airhook.store import get_store
    from airhook.store.migrate import upgrade

    store = get_store()
    upgrade(store)
    return store


def source_repository() -> SourceRepository:
    """The sources, encrypted with Airflow's Fernet key (checked before the store is opened)."""
    from airhook.store.sources import SourceRepository

    cipher = _cipher()
    return SourceRepository(_store(), cipher)


def inbox_repository() -> InboxRepository:
    """The recorded inbound events (nothing in them is encrypted)."""
    from airhook.store.inbox import InboxRepository

    return InboxRepository(_store())


def delivery_engine() -> DeliveryEngine:
    """The outbound side: subscriptions, their deliveries, and the engine that sends them."""
    from airhook.delivery import DeliveryEngine

    cipher = _cipher()
    return DeliveryEngine(_store(), cipher)
