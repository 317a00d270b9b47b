"""The ``airhook`` command, run as a user runs it, in processes of its own.

Each process pays for importing Airflow (about two seconds), so the module seeds sources, events,
subscriptions and deliveries directly through the repositories, then makes nearly every call in
one driver process that calls ``airhook.cli.main`` in turn (with its own standard input, output
and error each), and the tests assert on the results. What needs a process of its own runs in
one: ``python -m airhook.cli`` calls with another Fernet key, the source test posting to a real
standalone receiver, and replays and re-dispatches under a pseudo-terminal (``script``), where
the progress bar shows. The parser, the progress bar and the mapping of errors to exit statuses
are tested in process, on what needs neither Airflow nor the store.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

import airhook.cli as cli_package
from airhook.cli import _common, build_parser, main
from airhook.cli._output import ProgressBar, cell, page_footer, table
from airhook.core.access import BasicCredentials
from airhook.core.errors import AirhookError, ConfigurationError, ConflictError, SetupError
from airhook.core.ids import new_event_id
from airhook.core.profiles import PROFILES
from airhook.core.secrets import Secret, SecretPair
from airhook.core.signing import SCHEMES
from airhook.core.source import Source
from airhook.core.subscription import METHODS, Subscription
from airhook.delivery import Event
from airhook.manage.sources import SECRET_ACTIONS
from airhook.store import Store
from airhook.store.inbox import InboxRepository, NewEvent
from airhook.store.migrate import current_revision, head_revision
from airhook.store.outbox import STATUSES, OutboxRepository
from airhook.store.sources import SourceNotFoundError, SourceRepository
from airhook.store.subscriptions import SubscriptionRepository
from tests.test_fanout import Receiver, fail_first, make_engine

SEEDED_SECRETS = {
    "gen": ("whsec_gen-primary-very-secret", None),
    "rot": ("whsec_rot-primary-very-secret", "whsec_rot-secondary-very-secret"),
    "drop": ("whsec_drop-primary-very-secret", "whsec_drop-secondary-very-secret"),
    "setsec": ("whsec_set-primary-very-secret", None),
    "regen": ("whsec_regen-primary-very-secret", None),
    "listed": ("whsec_listed-primary-very-secret", "whsec_listed-secondary-very-secret"),
    "to-disable": ("whsec_disable-primary-very-secret", None),
    "to-delete": ("whsec_delete-primary-very-secret", None),
    "to-delete-json": ("whsec_delete-json-primary-very-secret", None),
    "dup": ("whsec_dup-primary-very-secret", None),
    "upd": ("whsec_upd-primary-very-secret", None),
    "upd-clear": ("whsec_upd-clear-primary-very-secret", None),
    "upd-bad": ("whsec_upd-bad-primary-very-secret", None),
    "tested": ("whsec_dGVzdGVkLXByaW1hcnktdmVyeS1zZWNyZXQ=", None),
}
LISTED_BEARER = "listed-bearer-very-secret"
LISTED_PASSWORD = "listed-password-very-secret"
FILE_SECRETS = {
    "ccai": "ccai-primary-very-secret",
    "ccai2": "ccai-secondary-very-secret",
    "eev": "eev-stdin-very-secret",
    "rkt": "rkt-file-very-secret",
    "hmac": "hmac-file-very-secret",
    "bearer": "hmac-bearer-very-secret",
    "password": "hmac-password-very-secret",
    "setsec": "set-secondary-from-stdin-very-secret",
}
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Call:
    """One run of the command."""

    args: tuple[str, ...]
    stdin: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)


_DRIVER = """
import contextlib, io, json, sys
from airhook.cli import main

results = {}
for name, argv, stdin in json.load(open(sys.argv[1])):
    out, err = io.StringIO(), io.StringIO()
    sys.stdin = io.StringIO(stdin or "")
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    results[name] = [code, out.getvalue(), err.getvalue()]
json.dump(results, open(sys.argv[2], "w"))
"""


@dataclass
class Cli:
    """The command in a temporary AIRFLOW_HOME, with its store and Fernet key."""

    home: Path
    key: str
    url: str

    def env(self, changes: Mapping[str, str] = {}) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__FERNET_KEY": self.key,
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__AIRHOOK__DATABASE_URL": self.url,
                "AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS": "127.0.0.1/32",
            }
        )
        env.update(changes)
        return env

    def run(self, call: Call) -> subprocess.CompletedProcess[str]:
        """One ``python -m airhook.cli`` process."""
        return subprocess.run(
            [sys.executable, "-m", "airhook.cli", *call.args],
            env=self.env(call.env),
            input=call.stdin if call.stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def run_many(self, calls: Mapping[str, Call]) -> dict[str, subprocess.CompletedProcess[str]]:
        """The calls one after another, in order, in one process, through ``main``."""
        spec = self.home / "calls.json"
        out = self.home / "results.json"
        spec.write_text(json.dumps([[n, list(c.args), c.stdin] for n, c in calls.items()]))
        driver = subprocess.run(
            [sys.executable, "-c", _DRIVER, str(spec), str(out)],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert driver.returncode == 0, driver.stderr[-3000:]
        return {
            name: subprocess.CompletedProcess(calls[name].args, *result)
            for name, result in json.loads(out.read_text()).items()
        }

    def run_in_terminal(self, *args: str) -> str:
        """One ``python -m airhook.cli`` process on a pseudo-terminal; everything it wrote."""
        command = " ".join(f"'{arg}'" for arg in [sys.executable, "-m", "airhook.cli", *args])
        result = subprocess.run(
            ["script", "-qec", command, "/dev/null"],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
            check=False,
        )
        # Bytes: text mode would turn the bar's carriage returns into newlines.
        shown = result.stdout.decode()
        assert result.returncode == 0, shown + result.stderr.decode()
        return shown


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    home = tmp_path_factory.mktemp("airflow-home")
    return Cli(home, Fernet.generate_key().decode(), f"sqlite:///{home / 'airhook.db'}")


@pytest.fixture(scope="module")
def migrated(cli: Cli) -> subprocess.CompletedProcess[str]:
    """``db migrate`` on the fresh store (before anything else touches it)."""
    return cli.run(Call(("db", "migrate")))


@pytest.fixture(scope="module")
def store(cli: Cli, migrated: subprocess.CompletedProcess[str]) -> Iterator[Store]:
    """The store the command writes, read in-process."""
    assert migrated.returncode == 0, migrated.stderr
    opened = Store(cli.url)
    yield opened
    opened.dispose()


@pytest.fixture(scope="module")
def repo(cli: Cli, store: Store) -> SourceRepository:
    """The sources, with the command's Fernet key."""
    return SourceRepository(store, Fernet(cli.key.encode()))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("secrets")
    paths = {}
    for name, value in FILE_SECRETS.items():
        path = folder / name
        path.write_text(value + "\n")
        paths[name] = str(path)
    return paths


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """A subscriber's endpoint on 127.0.0.1."""
    server = Receiver()
    yield server
    server.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def api_server(cli: Cli, store: Store) -> Iterator[str]:
    """The receiver, served on its own as ``python -m airhook.receiver`` does (the same
    ``/airhook/webhooks/<name>`` URLs as the API server's); yields its base URL."""
    port = _free_port()
    log = (cli.home / "receiver.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "airhook.receiver", "--port", str(port), "--log-level", "warning"],
        # No background sender: the deliver-due and replay tests count what they send themselves.
        env=cli.env(
            {
                "AIRFLOW__AIRHOOK__SOURCE_CACHE_SECONDS": "0.1",
                "AIRFLOW__AIRHOOK__SENDER_POLL_SECONDS": "0",
            }
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert process.poll() is None, (cli.home / "receiver.log").read_text()
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@dataclass
class Seeded:
    """What the module put in the store before the calls, by name."""

    events: dict[str, list[str]] = field(default_factory=dict)
    deliveries: dict[str, list[str]] = field(default_factory=dict)


def _seed_sources(repo: SourceRepository) -> None:
    for name, (primary, secondary) in SEEDED_SECRETS.items():
        extra: dict[str, Any] = {}
        if name == "listed":
            extra = {
                "bearer_tokens": (Secret(LISTED_BEARER),),
                "basic_credentials": (BasicCredentials("ops", Secret(LISTED_PASSWORD)),),
            }
        if name == "upd-clear":
            extra = {"allow_ips": ("10.0.0.0/8",), "chatbot_ids": ("bot-1",), "max_body_bytes": 9}
        repo.create(
            Source(
                name=name,
                profile="rkt",
                scheme="rkt",
                secrets=SecretPair(Secret(primary), Secret(secondary) if secondary else None),
                **extra,
            )
        )
    repo.create(
        Source(
            name="gh-opt",
            profile="hmac",
            scheme="hmac",
            secrets=SecretPair(Secret("gh-opt-very-secret")),
            scheme_options={"header": "X-Old"},
        )
    )


def _seed_events(store: Store, source: str, names: list[str], *, dispatched: int) -> list[str]:
    """Record events of ``source``, the first ``dispatched`` of them sent to their assets;
    return their ids, oldest first."""
    inbox = InboxRepository(store)
    ids = [new_event_id() for _ in names]
    inbox.record(
        [
            NewEvent(
                id=event_id,
                source=source,
                profile="rkt",
                event=name,
                kind=name,
                dedupe_key=f"{source}-{n}",
                body=json.dumps({"event": name, "n": n}),
                received_at=T0 + timedelta(minutes=n),
                headers=json.dumps({"user-agent": "RKT-Webhooks/1.0"}),
            )
            for n, (event_id, name) in enumerate(zip(ids, names, strict=True))
        ]
    )
    inbox.mark_dispatched(ids[:dispatched], T0 + timedelta(hours=1))
    return ids


def _seed_deliveries(cli: Cli, store: Store, receiver: Receiver, seeded: Seeded) -> None:
    """Subscriptions whose deliveries failed once (a 400): replays send them again."""
    cipher = Fernet(cli.key.encode())
    subscriptions = SubscriptionRepository(store, cipher)
    engine = make_engine(store, cipher)
    for name, count in (("rp-ids", 3), ("rp-sub", 4), ("rp-tty", 5)):
        receiver.on(f"/{name}", fail_first(1, (400, {}, b"rejected")))
        subscriptions.create(
            Subscription(
                name=name,
                url=receiver.url(f"/{name}"),
                secrets=SecretPair(Secret("whsec_" + "c2VjcmV0LWtleS1mb3ItcmVwbGF5cw==")),
                retry_schedule=(0,),
            )
        )
        seeded.deliveries[name] = engine.publish(
            [Event("x", {"n": n}, f"{name}/{n}") for n in range(count)], subscriptions=[name]
        ).message_ids


@pytest.fixture(scope="module")
def seeded(cli: Cli, store: Store, repo: SourceRepository, receiver: Receiver) -> Seeded:
    found = Seeded()
    _seed_sources(repo)
    names = ["lead.created", "lead.updated", "message.received"]
    found.events["listed"] = _seed_events(store, "evsrc", names, dispatched=2)
    found.events["by-id"] = _seed_events(store, "evids", names, dispatched=3)
    found.events["selected"] = _seed_events(store, "evsel", ["lead.created"] * 5, dispatched=5)
    found.events["tty"] = _seed_events(store, "evtty", ["lead.created"] * 4, dispatched=4)
    _seed_deliveries(cli, store, receiver, found)
    return found


@pytest.fixture(scope="module")
def results(
    cli: Cli, seeded: Seeded, files: dict[str, str]
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every call of the driver, in this order."""
    create = ("sources", "create")
    listed_event = seeded.events["listed"][0]
    calls = {
        "caleida": Call((*create, "cal", "--profile", "caleida", "--generate-secret", "--json")),
        "caleida-table": Call((*create, "cal2", "--profile", "caleida", "--generate-secret")),
        "ccai": Call(
            (
                *create,
                "ccai",
                "--profile",
                "ccai",
                "--secret-file",
                files["ccai"],
                "--secondary-secret-file",
                files["ccai2"],
                "--json",
            )
        ),
        "eev": Call(
            (*create, "eev", "--profile", "eev", "--secret-file", "-", "--json"),
            stdin=FILE_SECRETS["eev"] + "\n",
        ),
        "rkt": Call(
            (
                *create,
                "rkt",
                "--profile",
                "rkt",
                "--secret-file",
                files["rkt"],
                "--events",
                "lead.*",
                "message.received",
                "--allow-ip",
                "10.0.0.0/8",
                "--chatbot-id",
                "bot-1",
                "--max-body-bytes",
                "2048",
                "--inactive",
                "--json",
            )
        ),
        "standard": Call((*create, "std", "--profile", "standard", "--generate-secret", "--json")),
        "hmac": Call(
            (
                *create,
                "gh",
                "--profile",
                "hmac",
                "--secret-file",
                files["hmac"],
                "--option",
                "header=X-Hub-Signature-256",
                "--option",
                "prefix=sha256=",
                "--bearer-token-file",
                files["bearer"],
                "--basic",
                f"ops:{files['password']}",
                "--json",
            )
        ),
        "unsigned": Call(
            (
                *create,
                "basic-only",
                "--profile",
                "eev",
                "--scheme",
                "none",
                "--basic",
                f"ops:{files['password']}",
                "--json",
            )
        ),
        "list": Call(("sources", "list", "--limit", "500", "--json")),
        "list-table": Call(("sources", "list", "--limit", "500")),
        "list-page": Call(("sources", "list", "--limit", "2", "--offset", "1", "--json")),
        "show": Call(("sources", "show", "listed", "--json")),
        "show-table": Call(("sources", "show", "listed")),
        "update": Call(
            (
                "sources",
                "update",
                "upd",
                "--events",
                "lead.*",
                "message.received",
                "--allow-ip",
                "10.0.0.0/8",
                "--allow-ip",
                "192.0.2.0/24",
                "--chatbot-id",
                "bot-1",
                "--max-body-bytes",
                "4096",
                "--inactive",
                "--json",
            )
        ),
        "update-clear": Call(
            (
                "sources",
                "update",
                "upd-clear",
                "--any-ip",
                "--any-chatbot",
                "--default-max-body-bytes",
                "--active",
                "--json",
            )
        ),
        "update-options": Call(
            ("sources", "update", "gh-opt", "--option", "header=X-Hub-Signature-256", "--json")
        ),
        "update-table": Call(("sources", "update", "upd", "--active")),
        "bad-update-nothing": Call(("sources", "update", "upd")),
        "bad-update-pattern": Call(("sources", "update", "upd-bad", "--events", "nope.*")),
        "bad-update-unknown": Call(("sources", "update", "nope", "--active")),
        "generate-secondary": Call(("sources", "secrets", "gen", "generate-secondary", "--json")),
        "rotate": Call(("sources", "secrets", "rot", "rotate", "--json")),
        "drop-secondary": Call(("sources", "secrets", "drop", "drop-secondary", "--json")),
        "set-secondary": Call(
            ("sources", "secrets", "setsec", "set-secondary", "--secret-file", "-", "--json"),
            stdin=FILE_SECRETS["setsec"] + "\n",
        ),
        "regenerate": Call(("sources", "secrets", "regen", "regenerate", "--json")),
        "bad-secrets-unsigned": Call(("sources", "secrets", "basic-only", "rotate")),
        "active-off": Call(("sources", "active", "to-disable", "off", "--json")),
        "delete": Call(("sources", "delete", "to-delete")),
        "delete-json": Call(("sources", "delete", "to-delete-json", "--json")),
        "bad-test-no-url": Call(("sources", "test", "tested")),
        "bad-duplicate": Call(
            (*create, "dup", "--profile", "hmac", "--secret-file", files["hmac"])
        ),
        "bad-profile": Call((*create, "bad1", "--profile", "slack", "--generate-secret")),
        "bad-pattern": Call(
            (*create, "bad2", "--profile", "rkt", "--generate-secret", "--events", "a b")
        ),
        "bad-no-secret": Call((*create, "bad3", "--profile", "rkt")),
        "bad-cidr": Call(
            (*create, "bad4", "--profile", "rkt", "--generate-secret", "--allow-ip", "10.0.0.0/33")
        ),
        "bad-secret-file": Call(
            (*create, "bad5", "--profile", "rkt", "--secret-file", "/nonexistent/secret")
        ),
        "bad-empty-stdin": Call(
            (*create, "bad6", "--profile", "rkt", "--secret-file", "-"), stdin="\n"
        ),
        "bad-unknown-source": Call(("sources", "show", "nope")),
        "bad-limit": Call(("sources", "list", "--limit", "501")),
        # --- events
        "events-list": Call(("events", "list", "--source", "evsrc", "--json")),
        "events-list-filtered": Call(
            ("events", "list", "--source", "evsrc", "--event", "lead.*", "--dispatched", "--json")
        ),
        "events-list-undispatched": Call(
            ("events", "list", "--source", "evsrc", "--undispatched", "--json")
        ),
        "events-list-window": Call(
            (
                "events",
                "list",
                "--source",
                "evsrc",
                "--kind",
                "lead.updated",
                "--since",
                "2026-03-01T12:00:00",
                "--until",
                "2026-03-01T13:00:00Z",
                "--json",
            )
        ),
        "events-list-table": Call(("events", "list", "--source", "evsrc", "--limit", "2")),
        "events-show": Call(("events", "show", listed_event, "--json")),
        "events-show-table": Call(("events", "show", listed_event)),
        "redispatch-ids": Call(("events", "redispatch", *seeded.events["by-id"][:2], "--json")),
        "redispatch-selected": Call(
            ("events", "redispatch", "--source", "evsel", "--batch-size", "2", "--json")
        ),
        "redispatch-table": Call(("events", "redispatch", seeded.events["by-id"][2])),
        "bad-redispatch-nothing": Call(("events", "redispatch")),
        "bad-redispatch-both": Call(("events", "redispatch", listed_event, "--source", "x")),
        "bad-redispatch-unknown": Call(("events", "redispatch", "evt_nope")),
        "bad-events-since": Call(("events", "list", "--since", "yesterday")),
        # --- deliveries and activity
        "replay-ids": Call(("deliveries", "replay", *seeded.deliveries["rp-ids"][:2], "--json")),
        "replay-subscription": Call(
            ("deliveries", "replay", "--subscription", "rp-sub", "--batch-size", "3")
        ),
        "deliveries-list": Call(
            ("deliveries", "list", "--subscription", "rp-ids", "--status", "failed", "--json")
        ),
        "deliveries-show": Call(("deliveries", "show", seeded.deliveries["rp-ids"][0])),
        "bad-replay-both": Call(("deliveries", "replay", "msg_x", "--subscription", "rp-ids")),
        "activity": Call(("activity", "--hours", "3", "--json")),
        "activity-table": Call(("activity", "--hours", "2")),
        "bad-activity-hours": Call(("activity", "--hours", "0")),
    }
    return cli.run_many(calls)


@pytest.fixture(scope="module")
def processes(cli: Cli, seeded: Seeded) -> dict[str, subprocess.CompletedProcess[str]]:
    """The calls that need a process of their own (another Fernet key)."""
    return {
        "empty-key": cli.run(Call(("sources", "list"), env={"AIRFLOW__CORE__FERNET_KEY": ""})),
        "wrong-key": cli.run(
            Call(
                ("sources", "list"),
                env={"AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode()},
            )
        ),
    }


def _ok(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # stdout is nothing but the JSON document


def _all_known_secrets(results: Mapping[str, subprocess.CompletedProcess[str]]) -> list[str]:
    known = [s for pair in SEEDED_SECRETS.values() for s in pair if s]
    known += [LISTED_BEARER, LISTED_PASSWORD, *FILE_SECRETS.values()]
    for name in ("caleida", "caleida-table", "standard", "generate-secondary", "regenerate"):
        known.append(results[name].stderr.rsplit(":", 1)[-1].strip())
    return known


# --- db migrate ------------------------------------------------------------------------------


def test_db_migrate_creates_the_store(migrated: subprocess.CompletedProcess[str], cli: Cli) -> None:
    assert migrated.stdout.strip() == f"airhook store at revision {head_revision()}"
    store = Store(cli.url)
    try:
        assert current_revision(store) == head_revision()
    finally:
        store.dispose()


# --- sources create --------------------------------------------------------------------------


def test_create_with_generated_secret_shows_it_once_on_stderr_only(
    results: Mapping[str, subprocess.CompletedProcess[str]], repo: SourceRepository
) -> None:
    for call, name, scheme in (("caleida", "cal", "token"), ("standard", "std", "standard")):
        result = results[call]
        shown = _ok(result)
        stored = repo.get(name)
        assert stored.secrets is not None
        secret = stored.secrets.primary.reveal()
        assert secret.startswith("whsec_")
        assert result.stderr.count(secret) == 1
        assert secret not in result.stdout
        # The REST API's answer to POST /sources, but for the secret (standard error, once).
        assert set(shown) == {"source", "setup"}
        assert shown["source"]["name"] == name
        assert shown["source"]["scheme"] == scheme
        assert shown["source"]["receiver_url"] == f"/airhook/webhooks/{name}"
        assert shown["setup"]["receiver_url"] == f"/airhook/webhooks/{name}"
        assert shown["setup"]["steps"]


def test_create_prints_a_summary_and_the_platforms_setup_steps_by_default(
    results: Mapping[str, subprocess.CompletedProcess[str]], repo: SourceRepository
) -> None:
    result = results["caleida-table"]
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("created source cal2\n")
    assert "receiver URL:     /airhook/webhooks/cal2" in result.stdout
    assert "In the sender's platform:\n  1. In the Caleida dashboard" in result.stdout
    secret = repo.get("cal2").secrets.primary.reveal()  # type: ignore[union-attr]
    assert secret not in result.stdout
    assert result.stderr.count(secret) == 1


def test_create_reads_primary_and_secondary_from_files(
    results: Mapping[str, subprocess.CompletedProcess[str]], repo: SourceRepository
) -> None:
    shown = _ok(results["ccai"])["source"]
    assert shown["profile"] == "ccai"
    assert shown["scheme"] == "ccai"
    assert shown["has_secondary_secret"] is True
    assert repo.get("ccai").secrets == SecretPair(
        Secret(FILE_SECRETS["ccai"]), Secret(FILE_SECRETS["ccai2"])
    )
    assert not results["ccai"].stderr.strip()


def test_create_reads_the_secret_from_stdin(
    results: Mapping[str, subprocess.CompletedProcess[str]], repo: SourceRepository
) -> None:
    assert _ok(results["eev"])["source"]["scheme"] == "hmac"
    assert repo.get("eev").secrets == SecretPair(Secret(FILE_SECRETS["eev"]))


def test_create_takes_events_networks_chatbots_and_limits(
    results: Mapping[str, subprocess.CompletedProcess[str]], repo: SourceRepository
) -> None:
    shown = _ok(results["rkt"])["source"]
    stored = repo.get("rkt")
    assert stored.scheme == "rkt"
    assert stored.secrets == SecretPair(Secret(FILE_SECRETS["rkt"]))
    assert stored.events == ("lead.*", "message.received")
    assert stored.allow_ips == ("10.0.0.0/8",)
    assert stored.chatbot_ids == ("bot-1",)
    assert stored.max_body_bytes == 2048
    assert stored.active is False
    assert shown["events"] == ["lead.*", "message.received"]
    assert shown["active"] is False


def test_create_generic_hmac_with_options_bearer_and_basic(
    results: Mapping[str, subprocess.CompletedProcess[str]], repo: SourceRepository
) -> None:
    shown = _ok(results["hmac"])["source"]
    stored = repo.get("gh")
    assert stored.profile == "hmac"
    assert stored.scheme_options == {"header": "X-Hub-Signature-256", "prefix": "sha256="}
    assert stored.bearer_tokens == (Secret(FILE_SECRETS["bearer"]),)
    assert stored.basic_credentials == (BasicCredentials("ops", Secret(FILE_SECRETS["password"])),)
    assert shown["bearer_tokens"] == 1
    assert shown["basic_users"] == ["ops"]
    assert FILE_SECRETS["bearer"] not in results["hmac"].stdout


def test_create_without_a_scheme_takes_basic_credentials(
    results: Mapping[str, subprocess.CompletedProcess[str]], repo: SourceRepository
) -> None:
    shown = _ok(results["unsigned"])["source"]
    assert (shown["scheme"], shown["basic_users"]) == (None, ["ops"])
    stored = repo.get("basic-only")
    assert stored.secrets is None
    assert stored.basic_credentials == (BasicCredentials("ops", Secret(FILE_SECRETS["password"])),)
    assert not results["unsigned"].stderr.strip()  # nothing was generated


# --- sources list / show ---------------------------------------------------------------------


def test_list_and_show_print_the_rest_apis_views_and_no_secret(
    results: Mapping[str, subprocess.CompletedProcess[str]],
) -> None:
    listed = _ok(results["list"])
    shown = _ok(results["show"])
    assert set(listed) == {"items", "total", "limit", "offset"}
    assert (listed["limit"], listed["offset"]) == (500, 0)
    assert listed["total"] == len(listed["items"])
    assert "listed" in [s["name"] for s in listed["items"]]
    assert shown["name"] == "listed"
    assert shown["has_secondary_secret"] is True
    assert shown["bearer_tokens"] == 1
    assert shown["basic_users"] == ["ops"]
    for secret in _all_known_secrets(results):
        for call in ("list", "show", "list-table", "show-table"):
            assert secret not in results[call].stdout
            assert secret not in results[call].stderr
    for call in ("list", "show", "list-table", "show-table"):
        assert "very-secret" not in results[call].stdout


def test_list_pages_as_the_rest_api_does(
    results: Mapping[str, subprocess.CompletedProcess[str]],
) -> None:
    everything = [s["name"] for s in _ok(results["list"])["items"]]
    page = _ok(results["list-page"])
    assert (page["limit"], page["offset"], page["total"]) == (2, 1, len(everything))
    assert [s["name"] for s in page["items"]] == everything[1:3]
    bad = results["bad-limit"]
    assert bad.returncode == 2
    assert "argument --limit: 501 is not from 1 to 500" in bad.stderr


def test_list_and_show_print_a_table_and_a_summary_by_default(
    results: Mapping[str, subprocess.CompletedProcess[str]],
) -> None:
    listed = results["list-table"]
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split() == [
        "NAME",
        "PROFILE",
        "SCHEME",
        "ACTIVE",
        "EVENTS",
        "RECEIVED",
        "LAST",
        "RECEIVED",
    ]
    assert any(row.split()[:4] == ["listed", "rkt", "rkt", "yes"] for row in rows)
    assert rows[-1].endswith(f"of {_ok(results['list'])['total']}")
    shown = results["show-table"].stdout
    assert "name:             listed\n" in shown
    assert "secrets:          primary and secondary\n" in shown
    assert "bearer tokens:    1\n" in shown
    assert "basic users:      ops\n" in shown


# --- sources update --------------------------------------------------------------------------


def test_update_changes_what_is_given_and_keeps_the_secrets(
    results: Mapping[str, subprocess.CompletedProcess[str]], repo: SourceRepository
) -> None:
    shown = _ok(results["update"])
    assert shown["events"] == ["lead.*", "message.received"]
    assert shown["allow_ips"] == ["10.0.0.0/8", "192.0.2.0/24"]
    stored = repo.get("upd")
    assert stored.chatbot_ids == ("bot-1",)
    assert stored.max_body_bytes == 4096
    assert stored.secrets == SecretPair(Secret(SEEDED_SECRETS["upd"][0]))
    # The later call switched it back on and printed the summary.
    assert stored.active is True
    assert "active:           yes" in results["update-table"].stdout


def test_update_clears_lists_and_limits(
    results: Mapping[str, subprocess.CompletedProcess[str]], repo: SourceRepository
) -> None:
    shown = _ok(results["update-clear"])
    assert (shown["allow_ips"], shown["chatbot_ids"], shown["max_body_bytes"]) == ([], [], None)
    assert shown["active"] is True
    replaced = _ok(results["update-options"])
    assert replaced["scheme_options"] == {"header": "X-Hub-Signature-256"}
    assert repo.get("gh-opt").scheme_options == {"header": "X-Hub-Signature-256"}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("bad-update-nothing", "nothing to change"),
        ("bad-update-pattern", "event pattern 'nope.*' matches none of rkt's events"),
        ("bad-update-unknown", "no source named 'nope'"),
    ],
)
def test_a_bad_update_exits_2_and_changes_nothing(
    results: Mapping[str, subprocess.CompletedProcess[str]],
    repo: SourceRepository,
    call: str,
    message: str,
) -> None:
    result = results[call]
    assert result.returncode == 2
    assert message in result.stderr
    assert not result.stdout.strip()
    assert repo.get("upd-bad").events == ("*",)


# --- sources secrets -------------------------------------------------------------------------


def test_generate_secondary_keeps_primary_and_shows_the_new_secondary_once(
    results: Mapping[str, subprocess.CompletedProcess[str]], repo: SourceRepository
) -> None:
    result = results["generate-secondary"]
    assert _ok(result)["source"]["has_secondary_secret"] is True
    pair = repo.get("gen").secrets
    assert pair is not None
    assert pair.primary == Secret(SEEDED_SECRETS["gen"][0])
    assert pair.secondary is not None
    new = pair.secondary.reveal()
    assert new.startswith("whsec_")
    assert result.stderr.count(new) == 1
    assert new not in result.stdout


def test_regenerate_shows_the_new_primary_once_and_keeps_the_old_as_secondary(
    results: Mapping[str, subprocess.CompletedProcess[str]], repo: SourceRepository
) -> None:
    result = results["regenerate"]
    assert _ok(result)["source"]["has_secondary_secret"] is True
    pair = repo.get("regen").secrets
    assert pair is not None
    assert pair.secondary == Secret(SEEDED_SECRETS["regen"][0])
    new = pair.primary.reveal()
    assert result.stderr.count(new) == 1
    assert "new primary secret" in result.stderr
    assert new not in result.stdout


def test_rotate_swaps_primary_and_secondary(
    results: Mapping[str, subprocess.CompletedProcess[str]], repo: SourceRepository
) -> None:
    _ok(results["rotate"])
    primary, secondary = SEEDED_SECRETS["rot"]
    assert secondary is not None
    assert repo.get("rot").secrets == SecretPair(Secret(secondary), Secret(primary))


def test_drop_secondary_keeps_only_the_primary(
    results: Mapping[str, subprocess.CompletedProcess[str]], repo: SourceRepository
) -> None:
    assert _ok(results["drop-secondary"])["source"]["has_secondary_secret"] is False
    assert repo.get("drop").secrets == SecretPair(Secret(SEEDED_SECRETS["drop"][0]))


def test_set_secondary_reads_it_from_stdin(
    results: Mapping[str, subprocess.CompletedProcess[str]], repo: SourceRepository
) -> None:
    result = results["set-secondary"]
    assert _ok(result)["source"]["has_secondary_secret"] is True
    assert repo.get("setsec").secrets == SecretPair(
        Secret(SEEDED_SECRETS["setsec"][0]), Secret(FILE_SECRETS["setsec"])
    )
    assert FILE_SECRETS["setsec"] not in result.stdout + result.stderr


def test_secrets_of_a_source_without_a_scheme_is_a_conflict(
    results: Mapping[str, subprocess.CompletedProcess[str]],
) -> None:
    result = results["bad-secrets-unsigned"]
    assert result.returncode == 1
    assert "source basic-only: it checks no signature: it has no secret" in result.stderr


# --- sources active / delete / test ----------------------------------------------------------


def test_active_off_deactivates_the_source(
    results: Mapping[str, subprocess.CompletedProcess[str]], repo: SourceRepository
) -> None:
    assert _ok(results["active-off"])["active"] is False
    stored = repo.get("to-disable")
    assert stored.active is False
    assert stored.secrets == SecretPair(Secret(SEEDED_SECRETS["to-disable"][0]))


def test_delete_removes_the_source(
    results: Mapping[str, subprocess.CompletedProcess[str]], repo: SourceRepository
) -> None:
    result = results["delete"]
    assert result.returncode == 0, result.stderr
    assert "deleted source to-delete" in result.stdout
    assert _ok(results["delete-json"]) == {"deleted": "to-delete-json"}
    for name in ("to-delete", "to-delete-json"):
        with pytest.raises(SourceNotFoundError):
            repo.get(name)


def test_a_source_test_needs_an_api_server_to_post_to(
    results: Mapping[str, subprocess.CompletedProcess[str]],
) -> None:
    result = results["bad-test-no-url"]
    assert result.returncode == 2
    assert "give --url (e.g. http://localhost:8080) or set [api] base_url" in result.stderr


def test_a_source_test_posts_a_signed_sample_to_a_running_receiver(
    cli: Cli, api_server: str, store: Store
) -> None:
    done = cli.run_many(
        {
            "json": Call(
                (
                    *("sources", "test", "tested", "--event", "lead.captured"),
                    *("--url", api_server, "--json"),
                )
            ),
            "table": Call(("sources", "test", "tested", "--url", api_server + "/")),
            "unknown": Call(("sources", "test", "tested", "--event", "nope", "--url", api_server)),
            "refused": Call(("sources", "test", "tested", "--url", "http://127.0.0.1:9")),
        }
    )
    answer = _ok(done["json"])
    assert (answer["event"], answer["status"]) == ("lead.captured", 202)
    assert answer["event_id"] == answer["answer"]["id"]
    assert answer["dags"] == []  # Airflow's metadata DB is not migrated here: said on stderr
    assert "Airflow's metadata DB cannot be read from here" in done["json"].stderr
    recorded = InboxRepository(store).get(answer["event_id"])
    assert recorded is not None
    assert (recorded.source, recorded.event) == ("tested", "lead.captured")
    assert done["table"].returncode == 0, done["table"].stderr
    assert "status:               202" in done["table"].stdout
    assert done["unknown"].returncode == 2
    assert "rkt has no event 'nope'" in done["unknown"].stderr
    assert done["refused"].returncode == 1
    assert "cannot reach the receiver" in done["refused"].stderr
    for result in done.values():
        assert SEEDED_SECRETS["tested"][0] not in result.stdout + result.stderr


# --- events ----------------------------------------------------------------------------------


def test_events_are_listed_newest_first_with_the_apis_filters(
    results: Mapping[str, subprocess.CompletedProcess[str]], seeded: Seeded
) -> None:
    ids = seeded.events["listed"]
    listed = _ok(results["events-list"])
    assert listed["total"] == 3
    assert [e["id"] for e in listed["items"]] == ids[::-1]
    assert listed["items"][0]["dispatched_at"] is None
    filtered = _ok(results["events-list-filtered"])
    assert [e["id"] for e in filtered["items"]] == ids[1::-1]
    assert [e["id"] for e in _ok(results["events-list-undispatched"])["items"]] == [ids[2]]
    assert [e["id"] for e in _ok(results["events-list-window"])["items"]] == [ids[1]]
    table_ = results["events-list-table"].stdout.splitlines()
    assert table_[0].split()[:4] == ["ID", "RECEIVED", "(UTC)", "SOURCE"]
    assert table_[1].split()[0] == ids[2]
    assert "waiting" in table_[1]
    assert table_[-1] == "1-2 of 3 (--offset 2 for the next 2)"
    bad = results["bad-events-since"]
    assert bad.returncode == 2
    assert "--since takes an ISO 8601 time, not 'yesterday'" in bad.stderr


def test_an_event_is_shown_with_payload_headers_and_what_it_became(
    results: Mapping[str, subprocess.CompletedProcess[str]], seeded: Seeded
) -> None:
    shown = _ok(results["events-show"])
    assert shown["id"] == seeded.events["listed"][0]
    assert shown["payload"] == {"event": "lead.created", "n": 0}
    assert shown["headers"] == {"user-agent": "RKT-Webhooks/1.0"}
    # Where Airflow's metadata DB cannot be read, the command says so and shows none.
    assert shown["asset_events"] == []
    assert "Airflow's metadata DB cannot be read from here" in results["events-show"].stderr
    text = results["events-show-table"].stdout
    assert "redispatches:      0" in text
    assert "headers kept:\n  user-agent: RKT-Webhooks/1.0" in text
    assert 'payload:\n{\n  "event": "lead.created",' in text


def test_events_are_redispatched_by_id_or_by_selection(
    results: Mapping[str, subprocess.CompletedProcess[str]], seeded: Seeded, store: Store
) -> None:
    inbox = InboxRepository(store)
    assert _ok(results["redispatch-ids"]) == {"redispatched": 2}
    assert _ok(results["redispatch-selected"]) == {"redispatched": 5}
    assert "re-dispatched 1 of 1 events" in results["redispatch-table"].stdout
    for key in ("by-id", "selected"):
        for event_id in seeded.events[key]:
            event = inbox.get(event_id)
            assert event is not None
            assert event.redispatches == 1
    for call in ("redispatch-ids", "redispatch-selected"):
        assert "\r" not in results[call].stderr  # no terminal, no progress bar


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("bad-redispatch-nothing", "name the events: their ids, or select them with --source"),
        ("bad-redispatch-both", "give event ids, or select events with filters, not both"),
        ("bad-redispatch-unknown", "no event named 'evt_nope'"),
    ],
)
def test_a_bad_redispatch_exits_2(
    results: Mapping[str, subprocess.CompletedProcess[str]], call: str, message: str
) -> None:
    assert results[call].returncode == 2
    assert message in results[call].stderr


# --- deliveries and activity -----------------------------------------------------------------


def test_replays_by_id_and_by_subscription(
    results: Mapping[str, subprocess.CompletedProcess[str]], seeded: Seeded, store: Store
) -> None:
    outbox = OutboxRepository(store)
    answer = _ok(results["replay-ids"])
    chosen = seeded.deliveries["rp-ids"]
    assert sorted(answer["replayed"]) == sorted(chosen[:2])
    assert (answer["delivered"], answer["failed"]) == (2, 0)
    assert [outbox.get(m).status for m in chosen] == ["delivered", "delivered", "failed"]
    replayed = results["replay-subscription"]
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.strip() == (
        "replayed 4 deliveries: delivered 4, pending 0, failed 0, dead 0, paused 0"
    )
    listed = _ok(results["deliveries-list"])
    assert [d["id"] for d in listed["items"]] == [chosen[2]]
    shown = results["deliveries-show"].stdout
    assert "status:       delivered" in shown
    assert "attempts:\nAT (UTC)" in shown
    assert results["bad-replay-both"].returncode == 2


def test_activity_counts_per_hour(
    results: Mapping[str, subprocess.CompletedProcess[str]],
) -> None:
    counts = _ok(results["activity"])
    assert counts["bucket_seconds"] == 3600
    assert len(counts["buckets"]) == 3
    assert set(counts["buckets"][0]) == {"start", "received", "delivered", "failed"}
    assert sum(b["delivered"] for b in counts["buckets"]) >= 6  # the replays just before
    text = results["activity-table"].stdout.splitlines()
    assert text[0].split() == ["HOUR", "(UTC)", "RECEIVED", "DELIVERED", "FAILED"]
    assert text[3].startswith("total")
    assert "counted by the API server's receiver only" in text[-1]
    assert results["bad-activity-hours"].returncode == 2


# --- the progress bar on a terminal ----------------------------------------------------------


@pytest.mark.skipif(shutil.which("script") is None, reason="no 'script' for a pseudo-terminal")
def test_replays_and_redispatches_of_many_show_a_progress_bar_on_a_terminal(
    cli: Cli, seeded: Seeded, results: Mapping[str, subprocess.CompletedProcess[str]]
) -> None:
    shown = cli.run_in_terminal(
        "deliveries", "replay", "--subscription", "rp-tty", "--batch-size", "2"
    )
    assert "\rreplaying [" in shown
    assert "] 2/5  40%" in shown
    assert "] 5/5 100%" in shown
    assert "replayed 5 deliveries: delivered 5" in shown
    shown = cli.run_in_terminal("events", "redispatch", "--source", "evtty", "--batch-size", "3")
    assert "\rre-dispatching [" in shown
    assert "] 3/4  75%" in shown
    assert "] 4/4 100%" in shown
    assert "re-dispatched 4 of 4 events" in shown


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("bad-duplicate", "source 'dup' exists already"),
        ("bad-profile", "argument --profile: invalid choice: 'slack'"),
        ("bad-pattern", "event pattern 'a b' may use letters"),
        ("bad-no-secret", "signing scheme 'rkt' needs a secret"),
        ("bad-cidr", "not an IP network: '10.0.0.0/33'"),
        ("bad-secret-file", "cannot read the secret file '/nonexistent/secret'"),
        ("bad-empty-stdin", "no secret in '-'"),
        ("bad-unknown-source", "no source named 'nope'"),
    ],
)
def test_bad_input_exits_2_with_a_message_and_no_traceback(
    results: Mapping[str, subprocess.CompletedProcess[str]], call: str, message: str
) -> None:
    result = results[call]
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not result.stdout.strip()


def test_the_secret_error_names_the_options_that_give_one(
    results: Mapping[str, subprocess.CompletedProcess[str]],
) -> None:
    stderr = results["bad-no-secret"].stderr
    assert "--secret-file" in stderr
    assert "--generate-secret" in stderr


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("empty-key", "[core] fernet_key is empty"),
        ("wrong-key", "cannot decrypt the stored credentials"),
    ],
)
def test_a_setup_problem_exits_1_with_a_message_and_no_traceback(
    processes: Mapping[str, subprocess.CompletedProcess[str]], call: str, message: str
) -> None:
    result = processes[call]
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_input_creates_nothing(
    results: Mapping[str, subprocess.CompletedProcess[str]], repo: SourceRepository
) -> None:
    assert results["bad-duplicate"].returncode == 2
    assert repo.get("dup").profile == "rkt"
    assert repo.get("dup").secrets == SecretPair(Secret(SEEDED_SECRETS["dup"][0]))
    names = set(repo.iter_names())
    assert not names & {"bad1", "bad2", "bad3", "bad4", "bad5", "bad6"}


# --- the parser and the error mapping, in process --------------------------------------------


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the command, with the words that reach it."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def _leaves() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """The parsers that run a command (no subcommands below them)."""
    return {
        path: parser
        for path, parser in _commands(build_parser())
        if not any(isinstance(a, argparse._SubParsersAction) for a in parser._actions)
    }


def _choices(path: tuple[str, ...], option: str) -> list[str]:
    parser = dict(_commands(build_parser()))[path]
    found = [a for a in parser._actions if option in a.option_strings or a.dest == option]
    assert found, (path, option)
    return list(found[0].choices or ())


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run main() here without it redirecting the "airhook" logger of the test process."""
    monkeypatch.setattr(cli_package, "_configure_logging", lambda: None)


def test_every_argument_of_every_command_has_help() -> None:
    commands = list(_commands(build_parser()))
    assert len(commands) > 30
    missing = []
    for path, parser in commands:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help for choice in action._choices_actions}
                missing += [
                    " ".join((*path, name))
                    for name in action.choices
                    if not (helps.get(name) or "").strip()
                ]
            if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
                missing.append(f"{' '.join(path)}: {action.option_strings or action.dest}")
    assert not missing


EXPECTED_COMMANDS = (
    {
        ("sources", name)
        for name in ("create", "list", "show", "update", "delete", "secrets", "active", "test")
    }
    | {
        ("subscriptions", name)
        for name in (
            "create",
            "list",
            "show",
            "update",
            "delete",
            "enable",
            "disable",
            "secrets",
            "test",
        )
    }
    | {
        ("events", "list"),
        ("events", "show"),
        ("events", "redispatch"),
        ("deliveries", "list"),
        ("deliveries", "show"),
        ("deliveries", "replay"),
        ("deliveries", "deliver-due"),
        ("activity",),
        ("prune",),
        ("db", "migrate"),
    }
)


def test_the_cli_has_every_command_of_the_rest_api_and_json_on_each() -> None:
    leaves = _leaves()
    assert set(leaves) == EXPECTED_COMMANDS
    without_json = [
        path for path, parser in leaves.items() if "--json" not in parser._option_string_actions
    ]
    assert without_json == [("db", "migrate")]


def test_every_command_has_its_help_page(capsys: pytest.CaptureFixture[str]) -> None:
    for path in _leaves():
        with pytest.raises(SystemExit) as exited:
            main([*path, "--help"])
        assert exited.value.code == 0
        shown = capsys.readouterr().out
        assert shown.startswith(f"usage: airhook {' '.join(path)}")


def test_top_level_help_is_one_clean_line_and_an_epilog(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert "`" not in shown
    assert "Manage airhook's webhook sources, subscriptions, events and deliveries." in shown
    assert "with --json, the JSON document the REST API" in shown
    assert "exit status: 0 done; 1 failed" in shown
    for group in ("sources", "events", "subscriptions", "deliveries", "activity", "db"):
        assert f"\n    {group}" in shown


def test_choices_come_from_the_core_registries_and_the_services() -> None:
    from airhook.manage.subscriptions import SECRET_ACTIONS as SUBSCRIPTION_SECRET_ACTIONS

    assert _choices(("sources", "create"), "--profile") == list(PROFILES)
    for path in (("sources", "create"), ("subscriptions", "create")):
        assert set(_choices(path, "--scheme")) == {*SCHEMES, "none"}
    assert _choices(("subscriptions", "create"), "--method") == list(METHODS)
    assert _choices(("deliveries", "list"), "--status") == list(STATUSES)
    assert _choices(("sources", "secrets"), "action") == list(SECRET_ACTIONS)
    assert _choices(("subscriptions", "secrets"), "action") == list(SUBSCRIPTION_SECRET_ACTIONS)


def test_a_lower_case_method_is_accepted() -> None:
    args = build_parser().parse_args(
        ["subscriptions", "create", "a", "--url", "x", "--method", "put"]
    )
    assert args.method == "PUT"


def _never(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the services are built only after the input is checked")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sources", "create", "new", "--profile", "rkt"], "signing scheme 'rkt' needs a secret"),
        (["sources", "update", "new"], "nothing to change"),
        (["sources", "secrets", "new", "rotate", "--secret-file", "x"], "goes with set-secondary"),
        (["sources", "test", "new", "--url", "localhost:8080"], "--url takes the API server's"),
        (["subscriptions", "update", "new"], "nothing to change"),
        (["events", "redispatch"], "name the events"),
        (["deliveries", "replay"], "replay takes delivery ids, or --subscription"),
        (["deliveries", "replay", "msg_1", "--dead"], "go with --subscription, not ids"),
    ],
)
def test_bad_input_is_reported_before_the_services_are_built(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    in_process: None,
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.setattr(_common, "services", _never)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


class _Failing:
    """Services whose every source lookup raises what it is given."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def sources(self, base_url: str | None = None) -> _Failing:
        return self

    def get(self, name: str) -> Source:
        raise self.error


def test_a_bug_is_not_swallowed_into_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, in_process: None
) -> None:
    monkeypatch.setattr(_common, "services", lambda: _Failing(KeyError("bug")))
    with pytest.raises(KeyError, match="bug"):
        main(["sources", "show", "any"])
    monkeypatch.setattr(_common, "services", lambda: _Failing(ValueError("bug")))
    with pytest.raises(ValueError, match="bug"):
        main(["sources", "show", "any"])


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (SourceNotFoundError("any"), 2),
        (ConfigurationError("bad value"), 2),
        (SetupError("[core] fernet_key", "no key"), 1),
        (ConflictError("delivery", "msg_1", "it is being sent right now"), 1),
    ],
)
def test_airhook_errors_map_to_a_message_and_an_exit_status(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    in_process: None,
    error: AirhookError,
    status: int,
) -> None:
    monkeypatch.setattr(_common, "services", lambda: _Failing(error))
    assert main(["sources", "show", "any", "--json"]) == status
    captured = capsys.readouterr()
    assert captured.err == f"airhook: {error}\n"
    assert captured.out == ""


# --- the output, in process ------------------------------------------------------------------


class _Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_the_progress_bar_draws_on_a_terminal_and_ends_its_line() -> None:
    stream = _Terminal()
    with ProgressBar("replaying", stream, width=10) as bar:
        for done in (0, 2, 4, 5):
            bar(done, 5)
    drawn = stream.getvalue()
    assert drawn.count("\r") == 4
    assert "\rreplaying [..........] 0/5   0%" in drawn
    assert "\rreplaying [####......] 2/5  40%" in drawn
    assert "\rreplaying [##########] 5/5 100%" in drawn
    assert drawn.endswith("\n")


def test_the_progress_bar_stays_off_elsewhere_and_for_one_item() -> None:
    piped = io.StringIO()
    with ProgressBar("replaying", piped) as bar:
        bar(0, 500)
        bar(500, 500)
    assert piped.getvalue() == ""
    terminal = _Terminal()
    with ProgressBar("replaying", terminal) as bar:
        bar(0, 1)
        bar(1, 1)
    assert terminal.getvalue() == ""


def test_tables_cells_and_page_footers() -> None:
    assert table([("a", None, True), ("bbb", ["x", "y"], {"k": 1})], ("name", "list", "more")) == (
        "NAME  LIST  MORE\na     -     yes\nbbb   x, y  k=1"
    )
    assert table([], ("name",)) == "(none)"
    assert (cell(5.0), cell(2.5), cell(False), cell({})) == ("5", "2.5", "no", "-")
    page = {"items": [1, 2], "total": 5, "limit": 2, "offset": 2}
    assert page_footer(page) == "3-4 of 5 (--offset 4 for the next 2)"
    assert page_footer({"items": [], "total": 0, "limit": 50, "offset": 0}) == "0 of 0"


def test_the_commands_reach_the_state_through_the_services_only() -> None:
    """No command but ``db`` imports the store, the delivery engine or the cipher: they go
    through :mod:`airhook.manage`, as the REST API does (constants excepted)."""
    import ast

    folder = Path(cli_package.__file__).parent
    below = ("airhook.store", "airhook.delivery", "airhook.crypto", "airhook.receiver")
    found = []
    for path in sorted(folder.glob("*.py")):
        if path.name == "db.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(below):
                found += [
                    f"{path.name}: {node.module}.{alias.name}"
                    for alias in node.names
                    if not alias.name.isupper()
                ]
            elif isinstance(node, ast.Import):
                found += [f"{path.name}: {a.name}" for a in node.names if a.name.startswith(below)]
    assert not found


class _Replays:
    """A delivery service that answers each replay with its ids delivered."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def replay(self, *, ids: list[str], progress: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(ids)
        progress(0, len(ids))
        progress(len(ids), len(ids))
        counts = {"pending": 0, "failed": 0, "dead": 0, "paused": 0}
        return {
            "replayed": list(ids),
            "deliveries": len(ids),
            "delivered": len(ids),
            **counts,
            "next_attempt_at": None,
        }


def test_more_ids_than_one_request_takes_go_in_several_with_one_bar_and_one_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import airhook.cli.deliveries as cli_deliveries

    monkeypatch.setattr(cli_deliveries, "MAX_IDS", 2)
    service = _Replays()
    stream = _Terminal()
    args = argparse.Namespace(wait=0.0, batch_size=1)
    with ProgressBar("replaying", stream, width=5) as bar:
        answer = cli_deliveries._replay_ids(service, ["m1", "m2", "m3"], args, bar)  # type: ignore[arg-type]
    assert service.calls == [["m1", "m2"], ["m3"]]
    assert (answer["replayed"], answer["deliveries"], answer["delivered"]) == (
        ["m1", "m2", "m3"],
        3,
        3,
    )
    drawn = stream.getvalue()
    assert "] 2/3  66%" in drawn
    assert "] 3/3 100%" in drawn
