"""``airhook db``: the airhook store's schema."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_commands"]


def _migrate(args: argparse.Namespace) -> None:
    from airhook.store import get_store
    from airhook.store.migrate import current_revision, upgrade

    store = get_store()
    upgrade(store)
    print(f"airhook store at revision {current_revision(store)}")


def add_commands(commands: Any) -> None:
    """Add the ``db`` group to the top-level subcommands."""
    db = commands.add_parser(
        "db", help="the airhook store ([airhook] database_url)"
    ).add_subparsers(dest="cmd", required=True, metavar="COMMAND", help="what to do")
    db.add_parser(
        "migrate",
        help="create or upgrade the store's tables (every other command does it too)",
    ).set_defaults(func=_migrate)
