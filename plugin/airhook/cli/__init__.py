"""The ``airhook`` command: inbound sources and their recorded events, outbound subscriptions
and their deliveries, the activity per hour, pruning, and the store.

One module per group of commands (``sources``, ``events``, ``subscriptions``, ``deliveries``,
``activity``, ``prune``, ``db``). Every command but ``db`` goes through the management services
(:mod:`airhook.manage`), as the REST API and the page do, and prints what they answer: a table
or a summary, or with ``--json`` the REST API's own JSON document. They raise airhook's errors,
which :func:`main` turns into one line on standard error and an exit status. Anything else is a
bug and is left to surface with its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from airhook.cli import activity, db, deliveries, events, prune, sources, subscriptions
from airhook.cli._common import CommandError
from airhook.core.errors import (
    AirhookError,
    AlreadyExistsError,
    ConfigurationError,
    NotFoundError,
    PayloadError,
    TemplateRenderError,
)

__all__ = ["EXIT_FAILED", "EXIT_USAGE", "CommandError", "build_parser", "main"]

#: Exit status of a command that could not do its job (setup, a conflict, a failed delivery).
EXIT_FAILED = 1
#: Exit status of bad usage or input: argparse's own, and every error in ``_USAGE_ERRORS``.
EXIT_USAGE = 2

#: The errors that mean the command line asked for something wrong or impossible.
_USAGE_ERRORS: tuple[type[AirhookError], ...] = (
    CommandError,
    ConfigurationError,
    NotFoundError,
    AlreadyExistsError,
    PayloadError,
    TemplateRenderError,
)

_DESCRIPTION = "Manage airhook's webhook sources, subscriptions, events and deliveries."
_EPILOG = """\
Output: a table or a summary on standard output; with --json, the JSON document the REST API
(/airhook/manage/api/v1) answers for the same request, for scripts. Notes, the progress bar of
long replays and re-dispatches (on a terminal only) and generated secrets go to standard error.

Secrets are never taken as arguments (they would show in ps and shell history): give a file,
'-' for standard input, or let airhook generate one, printed once on standard error and never
again (not in the --json output either). They are stored encrypted with Airflow's [core]
fernet_key.

exit status: 0 done; 1 failed (no Fernet key, a conflict, a test that did not go through);
2 bad usage or input (an unknown name, an invalid option or value, a name taken).

'airhook GROUP COMMAND --help' describes each command, e.g. 'airhook sources create --help'."""


def build_parser() -> argparse.ArgumentParser:
    """Return the command's argument parser."""
    parser = argparse.ArgumentParser(
        prog="airhook",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(
        dest="group", required=True, metavar="GROUP", help="what to manage"
    )
    sources.add_commands(commands)
    events.add_commands(commands)
    subscriptions.add_commands(commands)
    deliveries.add_commands(commands)
    activity.add_commands(commands)
    prune.add_commands(commands)
    db.add_commands(commands)
    return parser


class _StderrHandler(logging.Handler):
    """Write log lines to whatever ``sys.stderr`` is at the time."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def _configure_logging() -> None:
    # Airflow's logging writes to standard output, which carries this command's result: keep
    # Alembic's per-run INFO lines ("Context impl SQLiteImpl.") out of it.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # The delivery engine's lines (retries, disabled subscriptions) are diagnostics: standard
    # error, so that standard output stays the command's result alone.
    engine_log = logging.getLogger("airhook")
    if not any(isinstance(h, _StderrHandler) for h in engine_log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("airhook: %(levelname)s %(message)s"))
        engine_log.addHandler(handler)
    engine_log.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit status (see the epilog of ``airhook --help``)."""
    from cryptography.fernet import InvalidToken

    args = build_parser().parse_args(argv)
    _configure_logging()
    try:
        code = args.func(args)
    except InvalidToken:
        # Raised by the cipher, outside airhook's tree: the one foreign error with a known cause.
        print(
            "airhook: cannot decrypt the stored credentials: [core] fernet_key is not the key "
            "they were stored with",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except AirhookError as exc:
        print(f"airhook: {exc}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, _USAGE_ERRORS) else EXIT_FAILED
    return int(code or 0)
