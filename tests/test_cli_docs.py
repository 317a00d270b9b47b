"""Every ``airhook`` command shown in README.md, docs/*.md and docs/platforms/*.md runs.

The commands are read from the pages' fenced blocks (a line starting with ``airhook``, with its
``\\`` continuations, up to a comment or a pipe). Each must parse, and each page's commands run
in order in one process of the command's own (``tests/test_cli.py``'s driver) against a fresh
store: for real, or with ``--help`` where they need a running server (``sources test`` posts to
one, ``subscriptions test`` sends to the documented endpoint) or name an id a reader would fill
in (``evt_…``, ``msg_…``). The files they read are made first, holding a secret, a URL or a
header line as their names say. Inline mentions (```airhook …```) must name commands that exist.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import re
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from airhook.cli import build_parser
from tests.test_cli import Call, Cli

REPO = Path(__file__).resolve().parents[1]
PAGES = [
    REPO / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
    *sorted((REPO / "docs" / "platforms").glob("*.md")),  # the guides per platform
]
#: Commands that need a running server or reach the network: shown with --help only.
NEED_A_SERVER = {("sources", "test"), ("subscriptions", "test")}
#: What a command's own variables look like on a page: an id or a value the reader fills in.
PLACEHOLDER = re.compile(r"…|\.\.\.|<[^>]*>")
#: A secret every scheme signs with (Standard Webhooks wants whsec_ and base64).
SECRET = "whsec_" + base64.b64encode(b"documented-secret-key-32-bytes!!").decode()
#: The fenced blocks commands are read from (by their info string).
_SHELLS = {"sh", "bash", "shell", "console"}
#: Where a command line ends: a shell operator.
_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<"}


@dataclass(frozen=True)
class Command:
    """One documented command line."""

    page: str
    line: int
    argv: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


def documented(page: Path) -> list[Command]:
    """The ``airhook`` command lines in the page's fenced blocks, in order."""
    found: list[Command] = []
    in_block = False
    pending: list[str] = []
    start = 0
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):
            # Shell blocks only: a block of output may start a line with "airhook" too.
            in_block = not in_block and line.strip()[3:] in _SHELLS
            continue
        if not in_block:
            continue
        if pending:
            pending.append(line)
        elif line.startswith("airhook "):
            pending, start = [line], number
        else:
            continue
        if line.rstrip().endswith("\\"):
            pending[-1] = pending[-1].rstrip()[:-1]
            continue
        tokens = shlex.split(" ".join(pending), comments=True)
        pending = []
        cut = next((n for n, token in enumerate(tokens) if token in _OPERATORS), len(tokens))
        found.append(Command(page.name, start, tuple(tokens[1:cut])))
    return found


def inline_mentions(page: Path) -> list[tuple[str, ...]]:
    """The words of each ```airhook …``` span outside the fenced blocks."""
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    return [tuple(span.split()[1:]) for span in re.findall(r"`(airhook [^`]+)`", text)]


def command_path(argv: tuple[str, ...]) -> tuple[str, ...]:
    """The subcommand words at the start of ``argv`` (``("sources", "create")``)."""
    parser = build_parser()
    path: list[str] = []
    for word in argv:
        choices = [
            action.choices
            for action in parser._actions
            if isinstance(action, argparse._SubParsersAction)
        ]
        if not choices or word not in choices[0]:
            break
        path.append(word)
        parser = choices[0][word]
    return tuple(path)


ALL = [command for page in PAGES for command in documented(page)]


def test_the_pages_show_commands_of_every_group() -> None:
    pages = {command.page for command in ALL}
    assert {"README.md", "cli.md", "receiver.md", "subscriptions.md"} <= pages
    groups = {command.argv[0] for command in ALL}
    assert {"sources", "events", "subscriptions", "deliveries", "activity"} <= groups
    assert len(ALL) > 60


@pytest.mark.parametrize("command", ALL, ids=[c.name for c in ALL])
def test_every_documented_command_parses(command: Command) -> None:
    out = io.StringIO()
    code: object = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            build_parser().parse_args(list(command.argv))
        except SystemExit as exc:  # --help, or a usage error
            code = exc.code
    assert code == 0, f"{command.name}: {out.getvalue()}"
    assert len(command_path(command.argv)) >= 1


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_inline_mention_names_a_command(page: Path) -> None:
    for words in inline_mentions(page):
        known = command_path(words)
        commands = [w for w in words if not w.startswith("-") and not PLACEHOLDER.search(w)]
        # The words before the first option or placeholder name a group or a command
        # (``airhook --help`` names none, ``airhook GROUP --help`` a placeholder).
        assert known or words[0].startswith("-") or words[0].isupper(), words
        assert tuple(commands[: len(known)]) == known, words


def _runnable(command: Command) -> bool:
    if command_path(command.argv) in NEED_A_SERVER:
        return False
    return not any(PLACEHOLDER.search(word) for word in command.argv)


def _with_files(argv: tuple[str, ...], folder: Path) -> tuple[str, ...]:
    """``argv`` with each file it names made in ``folder`` (and named by that path)."""
    done = []
    for word in argv:
        prefix, _, name = word.rpartition(":")
        if name.endswith(".txt") and "/" not in name:
            path = folder / name
            if "url" in name:
                path.write_text("https://hooks.example.com/services/T0/B0/documented\n")
            elif "header" in name:
                path.write_text("Authorization: Bearer documented-token\n")
            else:
                path.write_text(SECRET + "\n")
            word = f"{prefix}:{path}" if prefix else str(path)
        done.append(word)
    return tuple(done)


def _calls(commands: list[Command], folder: Path) -> dict[str, Call]:
    calls = {}
    for command in commands:
        if _runnable(command):
            calls[command.name] = Call(_with_files(command.argv, folder), stdin=SECRET + "\n")
        else:
            calls[command.name] = Call((*command_path(command.argv), "--help"))
    return calls


def test_every_documented_command_runs_in_order_per_page(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    pages = {}
    for page in PAGES:
        commands = documented(page)
        if commands:
            home = tmp_path_factory.mktemp(page.stem)
            cli = Cli(home, Fernet.generate_key().decode(), f"sqlite:///{home / 'airhook.db'}")
            pages[page.name] = (cli, _calls(commands, home))
    assert sum(_runnable(c) for c in ALL) > 45  # most run for real
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(cli.run_many, calls) for name, (cli, calls) in pages.items()}
        results = {name: future.result() for name, future in futures.items()}
    assert sum(len(page_results) for page_results in results.values()) == len(ALL)
    failed = [
        f"{name}: airhook {' '.join(result.args)}\n{result.stderr.strip()}"
        for page_results in results.values()
        for name, result in page_results.items()
        if result.returncode != 0
    ]
    assert not failed, "\n".join(failed)
