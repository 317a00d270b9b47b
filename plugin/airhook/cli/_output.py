"""What the commands print: a table or a summary for people, the REST API's JSON for scripts
(``--json``), and a progress bar for long replays and re-dispatches.

Both forms are drawn from the same document, the one :mod:`airhook.manage.views` builds for the
REST API, so the CLI shows nothing the API would not (no secret, no URL path, no header value).
Standard output carries the result alone; secrets shown once, notes and the progress bar go to
standard error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from airhook.manage.views import SecretChange

__all__ = [
    "MAX_LIMIT",
    "ProgressBar",
    "add_json",
    "add_window",
    "bounded",
    "cell",
    "chunks",
    "details",
    "emit",
    "emit_secret_change",
    "listing",
    "page_footer",
    "print_json",
    "secrets_summary",
    "show_once",
    "table",
    "when",
]

#: The progress bar is drawn only for this many items or more (fewer finish at once).
PROGRESS_MIN_ITEMS = 2


def add_json(parser: argparse.ArgumentParser) -> None:
    """Give a command ``--json``."""
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the REST API's JSON document instead of a table (for scripts)",
    )


#: The largest page a listing shows (the REST API's too).
MAX_LIMIT = 500


def bounded(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low or (high is not None and value > high):
            upper = f" to {high}" if high is not None else " or more"
            raise argparse.ArgumentTypeError(f"{value} is not from {low}{upper}")
        return value

    return parse


def add_window(parser: argparse.ArgumentParser, limit: int = 50) -> None:
    """``--limit`` and ``--offset``: which page of a list, as the REST API pages it."""
    parser.add_argument(
        "--limit",
        type=bounded(1, MAX_LIMIT),
        default=limit,
        metavar="N",
        help=f"show at most this many, 1-{MAX_LIMIT} (default: %(default)s)",
    )
    parser.add_argument(
        "--offset",
        type=bounded(0),
        default=0,
        metavar="N",
        help="skip this many of the newest first (default: %(default)s)",
    )


def print_json(document: Any) -> None:
    """Print a document on standard output, which carries nothing else."""
    print(json.dumps(document, indent=2))


def emit(args: argparse.Namespace, document: Any, render: Callable[[Any], str]) -> None:
    """Print ``document`` as JSON with ``--json``, else as ``render`` draws it."""
    if getattr(args, "json", False):
        print_json(document)
    else:
        print(render(document))


def show_once(label: str, secret: str) -> None:
    """Print a generated secret on standard error: shown once, never part of standard output."""
    print(f"{label} (shown once, store it now): {secret}", file=sys.stderr)


def emit_secret_change(
    args: argparse.Namespace, key: str, change: SecretChange[Any], render: Callable[[Any], str]
) -> None:
    """Print the answer to ``secrets NAME ACTION`` as the REST API's, ``{key: view}``, but for
    the secret it generated (``regenerate``: a primary, else a secondary): that goes to standard
    error, once."""
    emit(args, {key: change.view.as_dict()}, lambda doc: render(doc[key]))
    if change.secret is not None:
        label = "new primary secret" if args.action == "regenerate" else "new secondary secret"
        show_once(label, change.secret)


# --- cells, tables, summaries --------------------------------------------------------------------


def when(value: Any) -> str:
    """An ISO 8601 time as ``YYYY-MM-DD HH:MM:SS`` (UTC); ``-`` for none."""
    if not value:
        return "-"
    text = str(value).replace("T", " ")
    return text[:19]


def cell(value: Any) -> str:
    """One value as table text: ``-`` for nothing, lists joined, objects as ``k=v``."""
    if value is None or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(cell(item) for item in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{key}={cell(item)}" for key, item in value.items())
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def secrets_summary(view: Mapping[str, Any], unsigned: str) -> str:
    """Which signing secrets a source's or subscription's view says it has (``unsigned``: what
    having no scheme means for it)."""
    if view["scheme"] is None:
        return f"none ({unsigned})"
    return "primary and secondary" if view["has_secondary_secret"] else "primary"


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """Rows under upper-case headers, columns padded to their widest cell."""
    if not rows:
        return "(none)"
    texts = [[cell(value) for value in row] for row in rows]
    widths = [max(len(header), *(len(row[n]) for row in texts)) for n, header in enumerate(headers)]
    lines = [[header.upper() for header in headers], *texts]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def details(pairs: Sequence[tuple[str, Any]]) -> str:
    """``label: value`` lines, the values aligned."""
    width = max(len(label) for label, _ in pairs)
    return "\n".join(f"{label + ':':<{width + 1}} {cell(value)}" for label, value in pairs)


def page_footer(page: Mapping[str, Any]) -> str:
    """What part of the whole list a page is, and how to see the next part."""
    shown, total = len(page["items"]), page["total"]
    if not shown:
        return f"0 of {total}"
    first = page["offset"] + 1
    last = page["offset"] + shown
    text = f"{first}-{last} of {total}"
    if last < total:
        text += f" (--offset {last} for the next {page['limit']})"
    return text


def listing(page: Mapping[str, Any], rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    """A page of a list as a table and its footer."""
    return f"{table(rows, headers)}\n{page_footer(page)}"


# --- the progress bar ----------------------------------------------------------------------------


def chunks(
    ids: Sequence[str], size: int, bar: Callable[[int, int], None]
) -> Iterator[tuple[list[str], Callable[[int, int], None]]]:
    """``ids`` ``size`` at a time (the most one call to a service takes, as the REST API does),
    each with the progress callback to hand that call: it moves ``bar`` over all the ids."""
    for start in range(0, len(ids), size):

        def told(done: int, _total: int, start: int = start) -> None:
            bar(start + done, len(ids))

        yield list(ids[start : start + size]), told


class ProgressBar:
    """``label [#####.....] done/total  pct%`` on one line of standard error, redrawn as
    ``(done, total)`` arrive (a :data:`airhook.manage.deliveries.Progress` callback).

    Drawn only when the stream is a terminal and there are at least :data:`PROGRESS_MIN_ITEMS`
    items: a script's captured standard error gets no control characters.

    :param stream: where to draw (default: standard error at the time).
    """

    def __init__(self, label: str, stream: TextIO | None = None, *, width: int = 30) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = bool(isatty and isatty())
        self.drawn = False
        self._started = time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total < PROGRESS_MIN_ITEMS:
            return
        share = min(max(done / total, 0.0), 1.0)
        filled = round(self.width * share)
        bar = "#" * filled + "." * (self.width - filled)
        line = f"\r{self.label} [{bar}] {done}/{total} {int(share * 100):3d}%"
        elapsed = time.monotonic() - self._started
        if 0 < done < total and elapsed > 0:
            line += f"  ~{(total - done) * elapsed / done:.0f}s left"
        self.stream.write(line.ljust(len(line) + 12))
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        """End the bar's line (if one was drawn)."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
