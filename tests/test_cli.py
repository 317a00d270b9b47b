"""The ``airhook`` command, run as a user runs it: ``python -m airhook.cli`` in a subprocess.

Each call pays for importing Airflow (about two seconds), so the module makes every call once, in
one parallel batch against sources seeded directly through the repository, and the tests assert
on the results. The parser and the mapping of errors to exit statuses are tested in process, on
what needs neither Airflow nor the store.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

import airhook.cli as cli_package
import airhook.cli.sources as cli_sources
from airhook.cli import build_parser, main
from airhook.core.access import BasicCredentials
from airhook.core.errors import AirhookError, ConfigurationError, ConflictError, SetupError
from airhook.core.profiles import PROFILES
from airhook.core.secrets import Secret, SecretPair
from airhook.core.signing import SCHEMES
from airhook.core.source import Source
from airhook.core.subscription import METHODS
from airhook.store import Store
from airhook.store.migrate import current_revision, head_revision
from airhook.store.outbox import STATUSES
from airhook.store.sources import SourceNotFoundError, SourceRepository

SEEDED_SECRETS = {
    "gen": ("whsec_gen-primary-very-secret", None),
    "rot": ("whsec_rot-primary-very-secret", "whsec_rot-secondary-very-secret"),
    "drop": ("whsec_drop-primary-very-secret", "whsec_drop-secondary-very-secret"),
    "setsec": ("whsec_set-primary-very-secret", None),
    "listed": ("whsec_listed-primary-very-secret", "whsec_listed-secondary-very-secret"),
    "to-disable": ("whsec_disable-primary-very-secret", None),
    "to-delete": ("whsec_delete-primary-very-secret", None),
    "dup": ("whsec_dup-primary-very-secret", None),
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


@dataclass(frozen=True)
class Call:
    """One run of the command."""

    args: tuple[str, ...]
    stdin: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Cli:
    """The command in a temporary AIRFLOW_HOME, with its store and Fernet key."""

    home: Path
    key: str
    url: str

    def env(self, changes: Mapping[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__FERNET_KEY": self.key,
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__AIRHOOK__DATABASE_URL": self.url,
            }
        )
        env.update(changes)
        return env

    def run(self, call: Call) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "airhook.cli", *call.args],
            env=self.env(call.env),
            input=call.stdin if call.stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def run_all(self, calls: Mapping[str, Call]) -> dict[str, subprocess.CompletedProcess[str]]:
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = {name: pool.submit(self.run, call) for name, call in calls.items()}
            return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    home = tmp_path_factory.mktemp("airflow-home")
    return Cli(home, Fernet.generate_key().decode(), f"sqlite:///{home / 'airhook.db'}")


@pytest.fixture(scope="module")
def migrated(cli: Cli) -> subprocess.CompletedProcess[str]:
    """``db migrate`` on the fresh store (before anything else touches it)."""
    return cli.run(Call(("db", "migrate")))


@pytest.fixture(scope="module")
def repo(cli: Cli, migrated: subprocess.CompletedProcess[str]) -> Iterator[SourceRepository]:
    """The store the command writes, read in-process with the same Fernet key."""
    assert migrated.returncode == 0, migrated.stderr
    store = Store(cli.url)
    yield SourceRepository(store, Fernet(cli.key.encode()))
    store.dispose()


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
def results(
    cli: Cli, repo: SourceRepository, files: dict[str, str]
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Seed sources, then run every call of the module at once."""
    for name, (primary, secondary) in SEEDED_SECRETS.items():
        extra: dict[str, Any] = {}
        if name == "listed":
            extra = {
                "bearer_tokens": (Secret(LISTED_BEARER),),
                "basic_credentials": (BasicCredentials("ops", Secret(LISTED_PASSWORD)),),
            }
        repo.create(
            Source(
                name=name,
                profile="rkt",
                scheme="rkt",
                secrets=SecretPair(Secret(primary), Secret(secondary) if secondary else None),
                **extra,
            )
        )
    create = ("sources", "create")
    calls = {
        "caleida": Call((*create, "cal", "--profile", "caleida", "--generate-secret")),
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
            )
        ),
        "eev": Call(
            (*create, "eev", "--profile", "eev", "--secret-file", "-"),
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
            )
        ),
        "standard": Call((*create, "std", "--profile", "standard", "--generate-secret")),
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
            )
        ),
        "list": Call(("sources", "list")),
        "show": Call(("sources", "show", "listed")),
        "generate-secondary": Call(("sources", "secrets", "gen", "generate-secondary")),
        "rotate": Call(("sources", "secrets", "rot", "rotate")),
        "drop-secondary": Call(("sources", "secrets", "drop", "drop-secondary")),
        "set-secondary": Call(
            ("sources", "secrets", "setsec", "set-secondary", "--secret-file", "-"),
            stdin=FILE_SECRETS["setsec"] + "\n",
        ),
        "active-off": Call(("sources", "active", "to-disable", "off")),
        "delete": Call(("sources", "delete", "to-delete")),
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
        "empty-key": Call(("sources", "list"), env={"AIRFLOW__CORE__FERNET_KEY": ""}),
        "wrong-key": Call(
            ("sources", "list"),
            env={"AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode()},
        ),
    }
    return cli.run_all(calls)


def _ok(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # stdout is nothing but the JSON document


def _all_known_secrets(results: Mapping[str, subprocess.CompletedProcess[str]]) -> list[str]:
    known = [s for pair in SEEDED_SECRETS.values() for s in pair if s]
    known += [LISTED_BEARER, LISTED_PASSWORD, *FILE_SECRETS.values()]
    for name in ("caleida", "standard", "generate-secondary"):
        known.append(results[name].stderr.rsplit(":", 1)[-1].strip())
    return known


# --- db migrate ------------------------------------------------------------------------------


def test_db_migrate_creates_the_store(
    migrated: subprocess.CompletedProcess[str], repo: SourceRepository, cli: Cli
) -> None:
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
        assert shown["name"] == name
        assert shown["scheme"] == scheme
        assert shown["url_path"] == f"/airhook/webhooks/{name}"


def test_create_reads_primary_and_secondary_from_files(
    results: Mapping[str, subprocess.CompletedProcess[str]], repo: SourceRepository
) -> None:
    shown = _ok(results["ccai"])
    assert shown["profile"] == "ccai"
    assert shown["scheme"] == "ccai"
    assert shown["secondary_secret"] is True
    assert repo.get("ccai").secrets == SecretPair(
        Secret(FILE_SECRETS["ccai"]), Secret(FILE_SECRETS["ccai2"])
    )
    assert not results["ccai"].stderr.strip()


def test_create_reads_the_secret_from_stdin(
    results: Mapping[str, subprocess.CompletedProcess[str]], repo: SourceRepository
) -> None:
    assert _ok(results["eev"])["scheme"] == "hmac"
    assert repo.get("eev").secrets == SecretPair(Secret(FILE_SECRETS["eev"]))


def test_create_takes_events_networks_chatbots_and_limits(
    results: Mapping[str, subprocess.CompletedProcess[str]], repo: SourceRepository
) -> None:
    shown = _ok(results["rkt"])
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
    shown = _ok(results["hmac"])
    stored = repo.get("gh")
    assert stored.profile == "hmac"
    assert stored.scheme_options == {"header": "X-Hub-Signature-256", "prefix": "sha256="}
    assert stored.bearer_tokens == (Secret(FILE_SECRETS["bearer"]),)
    assert stored.basic_credentials == (BasicCredentials("ops", Secret(FILE_SECRETS["password"])),)
    assert shown["bearer_tokens"] == 1
    assert shown["basic_users"] == ["ops"]
    assert FILE_SECRETS["bearer"] not in results["hmac"].stdout


# --- sources list / show ---------------------------------------------------------------------


def test_list_and_show_print_no_secret(
    results: Mapping[str, subprocess.CompletedProcess[str]],
) -> None:
    listed = _ok(results["list"])
    shown = _ok(results["show"])
    assert "listed" in [s["name"] for s in listed]
    assert shown["name"] == "listed"
    assert shown["secondary_secret"] is True
    assert shown["bearer_tokens"] == 1
    assert shown["basic_users"] == ["ops"]
    for secret in _all_known_secrets(results):
        for call in ("list", "show"):
            assert secret not in results[call].stdout
            assert secret not in results[call].stderr
    assert "very-secret" not in results["list"].stdout + results["show"].stdout


# --- sources secrets -------------------------------------------------------------------------


def test_generate_secondary_keeps_primary_and_shows_the_new_secondary_once(
    results: Mapping[str, subprocess.CompletedProcess[str]], repo: SourceRepository
) -> None:
    result = results["generate-secondary"]
    assert _ok(result)["secondary_secret"] is True
    pair = repo.get("gen").secrets
    assert pair is not None
    assert pair.primary == Secret(SEEDED_SECRETS["gen"][0])
    assert pair.secondary is not None
    new = pair.secondary.reveal()
    assert new.startswith("whsec_")
    assert result.stderr.count(new) == 1
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
    assert _ok(results["drop-secondary"])["secondary_secret"] is False
    assert repo.get("drop").secrets == SecretPair(Secret(SEEDED_SECRETS["drop"][0]))


def test_set_secondary_reads_it_from_stdin(
    results: Mapping[str, subprocess.CompletedProcess[str]], repo: SourceRepository
) -> None:
    result = results["set-secondary"]
    assert _ok(result)["secondary_secret"] is True
    assert repo.get("setsec").secrets == SecretPair(
        Secret(SEEDED_SECRETS["setsec"][0]), Secret(FILE_SECRETS["setsec"])
    )
    assert FILE_SECRETS["setsec"] not in result.stdout + result.stderr


# --- sources active / delete -----------------------------------------------------------------


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
    with pytest.raises(SourceNotFoundError):
        repo.get("to-delete")


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
    results: Mapping[str, subprocess.CompletedProcess[str]], call: str, message: str
) -> None:
    result = results[call]
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


def _choices(path: tuple[str, ...], option: str) -> list[str]:
    parser = dict(_commands(build_parser()))[path]
    found = [a for a in parser._actions if option in a.option_strings]
    assert found, (path, option)
    return list(found[0].choices or ())


@pytest.fixture
def in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run main() here without it redirecting the "airhook" logger of the test process."""
    monkeypatch.setattr(cli_package, "_configure_logging", lambda: None)


def test_every_argument_of_every_command_has_help() -> None:
    commands = list(_commands(build_parser()))
    assert len(commands) > 20
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


def test_top_level_help_is_one_clean_line_and_an_epilog(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert "`" not in shown
    assert "Manage airhook's webhook sources, subscriptions and deliveries." in shown
    assert "exit status: 0 done; 1 failed" in shown
    for group in ("sources", "events", "subscriptions", "deliveries", "db"):
        assert f"\n    {group}" in shown


def test_scheme_and_profile_choices_come_from_the_core_registries() -> None:
    assert _choices(("sources", "create"), "--profile") == list(PROFILES)
    for path in (("sources", "create"), ("subscriptions", "create")):
        assert set(_choices(path, "--scheme")) == {*SCHEMES, "none"}
    assert _choices(("subscriptions", "create"), "--method") == list(METHODS)
    assert _choices(("deliveries", "list"), "--status") == list(STATUSES)


def test_a_lower_case_method_is_accepted() -> None:
    args = build_parser().parse_args(
        ["subscriptions", "create", "a", "--url", "x", "--method", "put"]
    )
    assert args.method == "PUT"


def _never(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the store is opened only after the input is checked")


def test_a_scheme_without_a_secret_names_the_options_before_opening_the_store(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], in_process: None
) -> None:
    monkeypatch.setattr(cli_sources, "source_repository", _never)
    assert main(["sources", "create", "new", "--profile", "rkt"]) == 2
    stderr = capsys.readouterr().err
    assert "signing scheme 'rkt' needs a secret" in stderr
    assert "--secret-file" in stderr
    assert "--generate-secret" in stderr


class _Repository:
    """A source repository whose get() raises what it is given."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def get(self, name: str) -> Source:
        raise self.error


def test_a_bug_is_not_swallowed_into_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, in_process: None
) -> None:
    monkeypatch.setattr(cli_sources, "source_repository", lambda: _Repository(KeyError("bug")))
    with pytest.raises(KeyError, match="bug"):
        main(["sources", "show", "any"])
    monkeypatch.setattr(cli_sources, "source_repository", lambda: _Repository(ValueError("bug")))
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
    monkeypatch.setattr(cli_sources, "source_repository", lambda: _Repository(error))
    assert main(["sources", "show", "any"]) == status
    assert capsys.readouterr().err == f"airhook: {error}\n"
