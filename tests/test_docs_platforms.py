"""The platform guides (docs/platforms/*.md) and docs/dags-on-events.md do what they say.

Their ``airhook`` commands are run by ``tests/test_cli_docs.py`` (plain ``sh`` blocks); every
other shell line sits in a block marked by its info string, and this module holds each mark to
its word:

- ```` ```sh try ````: a delivery signed the platform's way. It runs in ``bash`` against a
  standalone receiver (``python -m airhook.receiver``) on 127.0.0.1, after the guide's own
  ``sources create`` for the source it posts to (the secret files it reads hold one secret). It
  must be recorded (202), and a second time be answered as a duplicate.
- ```` ```sh conn ````: ``export AIRFLOW_CONN_…='<json>'`` lines. Each is parsed as airhook
  parses a connection, then used (its URL and secret swapped for the receiver's) to send the
  guide's sample event through ``WebhookHook``, which the receiver must verify.
- ```` ```sh not-run ````: the platform's side or Airflow's own commands; never an ``airhook``
  command, which would escape ``test_cli_docs``.

Also run for real: each guide's first ``subscriptions create`` (its URL swapped for the receiver's
source of the same platform) and its ``subscriptions test``, which ``test_cli_docs`` can only
show with ``--help``: the subscription's scheme and body template must produce a delivery the
platform's own source verifies and validates. The guides' ``json`` blocks (REST API bodies)
create sources through the management services; their tables of asset names match the catalog;
their relative links and anchors exist.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography.fernet import Fernet

from airhook.core.catalog import load_catalog
from tests.test_cli import Call, Cli
from tests.test_cli_docs import SECRET, Command, _with_files, documented

REPO = Path(__file__).resolve().parents[1]
GUIDES = sorted((REPO / "docs" / "platforms").glob("*.md"))
PAGES = [*GUIDES, REPO / "docs" / "dags-on-events.md"]
SHELLS = {"sh", "bash", "shell", "console"}
MARKS = {"try", "conn", "not-run"}
#: Where the guides' examples send: an API server on the default port.
DOC_BASE = "http://127.0.0.1:8080"
#: How soon the test's receiver sees a new source.
SOURCE_CACHE_SECONDS = 0.1
#: One guide per catalog platform, named after its profile.
PLATFORMS = {"caleida", "ccai", "eev", "rkt"}


@dataclass(frozen=True)
class Block:
    """One fenced block of a page."""

    page: Path
    line: int
    info: tuple[str, ...]
    text: str

    @property
    def name(self) -> str:
        return f"{self.page.name}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The page's fenced blocks, with their info strings split into words."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    start, inside = 0, False
    info: tuple[str, ...] = ()
    body: list[str] = []
    for number, line in enumerate(lines, 1):
        if line.startswith("```"):
            if inside:
                found.append(Block(page, start, info, "\n".join(body) + "\n"))
                inside = False
            else:
                inside, start, info, body = True, number, tuple(line[3:].split()), []
            continue
        if inside:
            body.append(line)
    assert not inside, f"{page.name}: a fenced block is not closed"
    return found


def logical_lines(text: str) -> list[str]:
    """The block's lines with ``\\`` continuations joined, blank lines and comments left out."""
    joined: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        if whole and not whole.startswith("#"):
            joined.append(whole)
    return joined


def marked(mark: str, pages: list[Path] = GUIDES) -> list[Block]:
    return [b for p in pages for b in blocks(p) if b.info[:1] == ("sh",) and b.info[1:] == (mark,)]


# --- every shell line is run, or marked ----------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_shell_line_is_an_airhook_command_or_marked(page: Path) -> None:
    for block in blocks(page):
        if not block.info or block.info[0] not in SHELLS:
            continue
        marks = block.info[1:]
        lines = logical_lines(block.text)
        if not marks:
            # Plain shell blocks are test_cli_docs' to run: airhook commands only.
            strays = [line for line in lines if not line.startswith("airhook ")]
            assert not strays, f"{block.name}: not an airhook command, and not marked: {strays}"
            continue
        assert len(marks) == 1, f"{block.name}: one mark at most: {marks}"
        assert marks[0] in MARKS, f"{block.name}: unknown mark {marks[0]}"
        assert not [line for line in lines if line.startswith("airhook ")], (
            f"{block.name}: an airhook command in a marked block would not be run by test_cli_docs"
        )
        if marks[0] == "conn":
            _exports(block)  # nothing but: export AIRFLOW_CONN_NAME='<json>'


def test_each_guide_has_a_signed_delivery_and_a_connection() -> None:
    assert {p.stem for p in GUIDES} == PLATFORMS
    for page in GUIDES:
        kinds = {b.info[1:] for b in blocks(page) if b.info[:1] == ("sh",)}
        assert ("try",) in kinds, page.name
        assert ("conn",) in kinds, page.name
        assert len(documented(page)) >= 8, page.name


# --- the signed deliveries, subscriptions and connections, against a receiver ------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Receiver:
    """A standalone receiver on 127.0.0.1 over the store of ``cli``."""

    cli: Cli
    base_url: str
    folder: Path


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    home = tmp_path_factory.mktemp("guides")
    cli = Cli(home, Fernet.generate_key().decode(), f"sqlite:///{home / 'airhook.db'}")
    # The store exists (and is migrated) before the receiver starts.
    assert cli.run(Call(("sources", "list"))).returncode == 0
    port = _free_port()
    log = (home / "receiver.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "airhook.receiver", "--host", "127.0.0.1", "--port", str(port)],
        # New sources reach the receiver within this (1 s by default).
        env=cli.env({"AIRFLOW__AIRHOOK__SOURCE_CACHE_SECONDS": str(SOURCE_CACHE_SECONDS)}),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (home / "receiver.log").read_text()[-3000:]
            try:
                if requests.get(f"{base_url}/airhook/receiver/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.2)
        yield Receiver(cli, base_url, home)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)
        log.close()


def _first(page: Path, *words: str) -> Command:
    """The page's first documented command starting with ``words``."""
    found = [c for c in documented(page) if c.argv[: len(words)] == words]
    assert found, f"{page.name}: no 'airhook {' '.join(words)}'"
    return found[0]


def _create_source(receiver: Receiver, page: Path, name: str) -> None:
    """The page's own ``sources create NAME``, reading its secret instead of generating one."""
    argv: list[str] = []
    for word in _first(page, "sources", "create", name).argv:
        argv += ["--secret-file", "-"] if word == "--generate-secret" else [word]
    result = receiver.cli.run(Call(_with_files(tuple(argv), receiver.folder), stdin=SECRET + "\n"))
    assert result.returncode == 0, result.stderr
    time.sleep(3 * SOURCE_CACHE_SECONDS)


def _source_of(name: str, platform: str) -> Call:
    """A source of ``platform`` holding the secret every test here signs with."""
    return Call(
        ("sources", "create", name, "--profile", platform, "--secret-file", "-"),
        stdin=SECRET + "\n",
    )


def _run_all(receiver: Receiver, calls: list[Call]) -> list[subprocess.CompletedProcess[str]]:
    """The calls in order, in one process; each must succeed."""
    results = receiver.cli.run_many({str(n): call for n, call in enumerate(calls)})
    ordered = [results[str(n)] for n in range(len(calls))]
    for call, result in zip(calls, ordered, strict=True):
        assert result.returncode == 0, f"airhook {' '.join(call.args)}\n{result.stderr}"
    return ordered


def _recorded(receiver: Receiver, source: str) -> int:
    result = receiver.cli.run(Call(("events", "list", "--source", source, "--json")))
    assert result.returncode == 0, result.stderr
    return int(json.loads(result.stdout)["total"])


def _run_bash(script: str, receiver: Receiver) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script.replace(DOC_BASE, receiver.base_url)],
        cwd=receiver.folder,
        env=receiver.cli.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


TRIES = marked("try")


@pytest.mark.parametrize("block", TRIES, ids=[b.name for b in TRIES])
def test_the_signed_delivery_is_recorded_once(receiver: Receiver, block: Block) -> None:
    (source,) = set(re.findall(r"/airhook/webhooks/([a-z0-9_-]+)", block.text))
    for name in re.findall(r"[\w.-]+\.txt", block.text):
        (receiver.folder / name).write_text(SECRET + "\n")
    _create_source(receiver, block.page, source)
    first = _run_bash(block.text, receiver)
    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads(first.stdout)["id"].startswith("evt_"), first.stdout
    again = _run_bash(block.text, receiver)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout) == {"id": json.loads(first.stdout)["id"], "duplicate": True}
    assert _recorded(receiver, source) == 1


def _test_event(page: Path) -> tuple[str, str]:
    """(platform, event) of the page's ``subscriptions test``."""
    argv = _first(page, "subscriptions", "test").argv
    return argv[argv.index("--platform") + 1], argv[argv.index("--event") + 1]


@pytest.mark.parametrize("page", GUIDES, ids=[p.name for p in GUIDES])
def test_the_guides_subscription_reaches_the_platforms_own_source(
    receiver: Receiver, page: Path
) -> None:
    """Sending in the platform's format: airhook's own source for that platform accepts it."""
    platform, event = _test_event(page)
    source = f"{page.stem}-out"
    argv = list(_first(page, "subscriptions", "create").argv)
    argv[argv.index("--url") + 1] = f"{receiver.base_url}/airhook/webhooks/{source}"
    _run_all(
        receiver,
        [_source_of(source, platform), Call((*argv, "--secret-file", "-"), stdin=SECRET + "\n")],
    )
    time.sleep(3 * SOURCE_CACHE_SECONDS)  # the receiver sees the new source
    tested, shown = _run_all(
        receiver,
        [
            Call(_first(page, "subscriptions", "test").argv),
            Call(("events", "list", "--source", source, "--json")),
        ],
    )
    assert "delivered" in tested.stdout, tested.stdout
    assert [item["event"] for item in json.loads(shown.stdout)["items"]] == [event]


CONNECTIONS = marked("conn")


def _exports(block: Block) -> dict[str, dict[str, object]]:
    words = shlex.split(block.text, comments=True)
    found = {}
    for word in words:
        if word == "export":
            continue
        name, _, value = word.partition("=")
        assert name.startswith("AIRFLOW_CONN_"), (block.name, name)
        found[name] = json.loads(value)
    assert found, block.name
    return found


@pytest.mark.parametrize("block", CONNECTIONS, ids=[b.name for b in CONNECTIONS])
def test_the_connection_parses_and_signs_as_the_platforms_source_checks(
    receiver: Receiver, block: Block, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.models.connection import Connection

    from airhook.hooks.connection import read_connection
    from airhook.hooks.webhook import WebhookHook

    platform, event = _test_event(block.page)
    source = f"{block.page.stem}-conn"
    _run_all(receiver, [_source_of(source, platform)])
    time.sleep(3 * SOURCE_CACHE_SECONDS)
    monkeypatch.setenv("AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS", "127.0.0.1/32")
    sample = json.dumps(load_catalog().event(platform, event).sample).encode()
    exports = _exports(block)
    for variable, document in exports.items():
        conn_id = variable.removeprefix("AIRFLOW_CONN_").lower()
        settings, _ = read_connection(Connection.from_json(json.dumps(document), conn_id), conn_id)
        assert settings.scheme is not None
        assert settings.scheme.name == document["extra"]["signing"]  # type: ignore[index]
        # The same connection, at the receiver's source and with its secret.
        local = {**document, "host": f"{receiver.base_url}/airhook/webhooks/{source}"}
        monkeypatch.setenv(variable, json.dumps({**local, "password": SECRET}))
        with WebhookHook(conn_id) as hook:
            result = hook.send("POST", None, {}, sample, message_id=f"msg_docs_{conn_id}")
        assert result.status_code == 202, (result.status_code, result.excerpt)
    assert _recorded(receiver, source) == len(exports)


# --- REST API bodies ---------------------------------------------------------------------------


JSON_BODIES = [b for p in GUIDES for b in blocks(p) if b.info == ("json",)]


@pytest.mark.parametrize("block", JSON_BODIES, ids=[b.name for b in JSON_BODIES])
def test_the_rest_api_body_creates_the_source(tmp_path: Path, block: Block) -> None:
    with warnings.catch_warnings():  # FastAPI's test client, imported on the way
        warnings.filterwarnings(
            "ignore", message=r"Using `httpx` with `starlette.testclient` is deprecated"
        )
        from airhook.api.models import SourceCreate
    from airhook.manage import Services
    from airhook.store import Store
    from airhook.store.migrate import upgrade

    body = SourceCreate.model_validate(json.loads(block.text))
    store = Store(f"sqlite:///{tmp_path / 'airhook.db'}")
    try:
        upgrade(store)
        created = (
            Services(store, Fernet(Fernet.generate_key())).sources().create(**body.model_dump())
        )
        assert created.view.as_dict()["profile"] == block.page.stem
        # A generated secret is answered exactly when the body gives none.
        assert (created.secret is None) == (body.secret is not None)
    finally:
        store.dispose()


# --- asset tables and links --------------------------------------------------------------------


@pytest.mark.parametrize("page", GUIDES, ids=[p.name for p in GUIDES])
def test_the_asset_table_lists_every_event_with_the_catalogs_kind(page: Path) -> None:
    platform = page.stem
    catalog = load_catalog()
    rows = re.findall(
        r"^\| `([^`]+)` \|[^|]*\| `airhook://([^/`]+)/([^`]+)` \| `airhook-kind://([^`]+)` \|$",
        page.read_text(encoding="utf-8"),
        re.MULTILINE,
    )
    assert rows, page.name
    for event, source, asset_event, kind in rows:
        assert (source, asset_event) == (platform, event), (page.name, event)
        assert catalog.event(platform, event).kind == kind, (page.name, event)
    assert sorted(row[0] for row in rows) == sorted(e.name for e in catalog.events(platform))


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_and_anchors_exist(page: Path) -> None:
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), (page.name, target)
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), (page.name, target)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_the_repository_files_named_exist(page: Path) -> None:
    """A file of the repository named in a code span (``dags/…``, ``tests/…``) is there."""
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.S | re.M)
    named = re.findall(r"`((?:dags|docs|tests|schemas|templates|plugin|devstack)/[^`<…]+)`", text)
    assert named, page.name
    for path in named:
        assert (REPO / path).exists(), (page.name, path)


def test_the_overview_and_readme_link_the_guides() -> None:
    overview = (REPO / "docs" / "platforms.md").read_text(encoding="utf-8")
    for page in GUIDES:
        assert f"](platforms/{page.name})" in overview, page.name
    assert "](dags-on-events.md)" in overview
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "](docs/platforms.md#guides-per-platform)" in readme
    assert "](docs/dags-on-events.md)" in readme
