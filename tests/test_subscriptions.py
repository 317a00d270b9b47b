"""Subscriptions: the pure model, the repository on SQLite and PostgreSQL, and the CLI.

The CLI runs in a process of its own with its own ``AIRFLOW_HOME``: one real ``python -m
airhook.cli`` call, and every other call of the module in one driver process that calls
``airhook.cli.main`` in turn (each separate process would pay two seconds of Airflow import),
against subscriptions and deliveries seeded in-process, with a real receiver on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import standardwebhooks
from cryptography.fernet import Fernet, InvalidToken

from airhook.core.delivery_rules import DEFAULT_SCHEDULE
from airhook.core.secrets import Secret, SecretPair
from airhook.core.subscription import Subscription
from airhook.delivery import Event
from airhook.store import Store
from airhook.store.migrate import upgrade
from airhook.store.outbox import OutboxRepository
from airhook.store.subscriptions import (
    SubscriptionExistsError,
    SubscriptionNotFoundError,
    SubscriptionRepository,
)
from airhook.store.tables import attempts, deliveries, subscriptions
from tests.test_fanout import PRIMARY, SECONDARY, Receiver, always, fail_first, make_engine

URL = "https://hooks.example.com/services/T0/B0/url-path-secret"
HEADER_VALUE = "Bearer header-value-secret"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def _subscription(**changes: Any) -> Subscription:
    base = Subscription(
        name="crm",
        url=URL,
        events=("lead.*", "session.created"),
        chatbot_ids=("bot-1",),
        scheme="standard",
        secrets=SecretPair(Secret(PRIMARY), Secret(SECONDARY)),
        method="PATCH",
        timeout=4.5,
        headers={"Authorization": Secret(HEADER_VALUE)},
        body_template="slack.json.j2",
        retry_schedule=(0, 1, 2),
    )
    return replace(base, **changes)


# --- the model -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "Has Caps"}, "subscription name"),
        ({"name": ""}, "subscription name"),
        ({"url": "ftp://example.com/x"}, "https://"),
        ({"url": "https:///no-host"}, "names a host"),
        ({"url": "https://example.com/a b"}, "whitespace"),
        ({"url": "https://example.com:99999/"}, "bad port"),
        ({"events": ()}, "event patterns"),
        ({"events": "lead.*"}, "event patterns"),
        ({"events": ("lead captured",)}, "may use letters"),
        ({"chatbot_ids": ("",)}, "chatbot_ids"),
        ({"scheme": "md5"}, "unknown signing scheme"),
        ({"secrets": None}, "needs a secret"),
        ({"scheme": "hmac", "scheme_options": {"colour": "red"}}, "bad options"),
        ({"method": "GET"}, "method"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": 301}, "timeout"),
        ({"headers": {"webhook-signature": Secret("x")}}, "set by airhook"),
        ({"headers": {"Bad Name": Secret("x")}}, "not a valid header name"),
        ({"headers": {"X-Ok": Secret("a\r\nInjected: 1")}}, "line break"),
        ({"body_template": "  "}, "body_template"),
        ({"retry_schedule": ()}, "non-empty"),
        ({"retry_schedule": (0, -1)}, "non-negative"),
        ({"retry_schedule": (0,) * 33}, "at most 32"),
        ({"consecutive_failures": -1}, "not negative"),
        ({"disabled_at": T0}, "active subscription has no disabled_at"),
    ],
)
def test_invalid_subscription_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _subscription(**changes)


def test_header_values_must_be_secrets() -> None:
    with pytest.raises(TypeError, match="Secret"):
        _subscription(headers={"X-Plain": "value"})


def test_defaults_sign_with_standard_and_retry_on_the_default_schedule() -> None:
    subscription = Subscription(name="a", url="https://example.com/", secrets=SecretPair.generate())
    assert subscription.scheme == "standard"
    assert subscription.events == ("*",)
    assert subscription.method == "POST"
    assert subscription.retry_schedule == DEFAULT_SCHEDULE
    assert subscription.retry_policy().max_attempts == 8
    assert subscription.state == "active"


def test_unsigned_subscription_needs_no_secret() -> None:
    subscription = _subscription(scheme=None, secrets=None)
    assert subscription.signing_scheme() is None
    assert subscription.signing_secrets() == ()


def test_states() -> None:
    assert _subscription().state == "active"
    assert _subscription(active=False).state == "inactive"
    disabled = _subscription().disabled("410", T0)
    assert (disabled.state, disabled.disabled_reason, disabled.disabled_at) == (
        "disabled",
        "410",
        T0,
    )
    enabled = replace(disabled, consecutive_failures=10).enabled()
    assert (enabled.state, enabled.consecutive_failures, enabled.disabled_reason) == (
        "active",
        0,
        None,
    )


def test_accepts_by_pattern_and_chatbot() -> None:
    subscription = _subscription()
    assert subscription.accepts("lead.captured", "bot-1")
    assert subscription.accepts("session.created", "bot-1")
    assert not subscription.accepts("session.resolved", "bot-1")
    assert not subscription.accepts("lead.captured", "bot-2")
    assert not subscription.accepts("lead.captured", None)
    assert _subscription(chatbot_ids=()).accepts("lead.captured", None)


def test_origin_shows_no_path_query_or_credentials() -> None:
    assert _subscription().origin == "https://hooks.example.com"
    tricky = _subscription(url="http://user:pw@[::1]:8080/p?token=t")
    assert tricky.origin == "http://[::1]:8080"


def test_secret_rotation_follows_the_secret_pair() -> None:
    one = _subscription(secrets=SecretPair(Secret(PRIMARY)))
    two = one.with_new_secondary()
    assert two.secrets is not None
    assert two.secrets.primary == Secret(PRIMARY)
    assert two.secrets.secondary is not None
    assert two.secrets.secondary.reveal().startswith("whsec_")
    three = two.rotated()
    assert three.secrets is not None
    assert (three.secrets.primary, three.secrets.secondary) == (
        two.secrets.secondary,
        Secret(PRIMARY),
    )
    four = three.without_secondary()
    assert four.secrets == SecretPair(two.secrets.secondary)
    with pytest.raises(ValueError, match="generate a secondary"):
        one.rotated()
    with pytest.raises(ValueError, match="no signing secret"):
        _subscription(scheme=None, secrets=None).with_new_secondary()


def test_repr_shows_no_secret() -> None:
    text = repr(_subscription())
    for secret in (PRIMARY, SECONDARY, HEADER_VALUE):
        assert secret not in text


# --- the repository --------------------------------------------------------------------------


@pytest.fixture
def repo(store: Store, cipher: Fernet) -> SubscriptionRepository:
    return SubscriptionRepository(store, cipher)


def _raw(store: Store) -> str:
    with store.read() as connection:
        found = [
            [dict(row._mapping) for row in connection.execute(sa.select(table))]
            for table in (subscriptions, deliveries, attempts)
        ]
    return json.dumps(found, default=str)


def test_subscription_round_trips(repo: SubscriptionRepository) -> None:
    created = repo.create(_subscription())
    assert created.created_at is not None
    assert created.updated_at is not None
    assert replace(created, created_at=None, updated_at=None) == _subscription()
    assert created.headers["Authorization"].reveal() == HEADER_VALUE
    assert created.secrets == SecretPair(Secret(PRIMARY), Secret(SECONDARY))


def test_url_secrets_and_header_values_are_stored_encrypted(
    store: Store, repo: SubscriptionRepository
) -> None:
    repo.create(_subscription())
    raw = _raw(store)
    for secret in (PRIMARY, SECONDARY, HEADER_VALUE, "url-path-secret", "services/T0"):
        assert secret not in raw
    assert "https://hooks.example.com" in raw  # the origin, for listings
    assert "Authorization" in raw  # the header's name


def test_another_key_cannot_read_the_subscription(
    store: Store, repo: SubscriptionRepository
) -> None:
    repo.create(_subscription())
    with pytest.raises(InvalidToken):
        SubscriptionRepository(store, Fernet(Fernet.generate_key())).get("crm")


def test_names_are_unique(repo: SubscriptionRepository) -> None:
    repo.create(_subscription())
    with pytest.raises(SubscriptionExistsError, match="crm"):
        repo.create(_subscription(url="https://other.example.com/"))


def test_unknown_name_is_reported_plainly(repo: SubscriptionRepository) -> None:
    with pytest.raises(SubscriptionNotFoundError) as raised:
        repo.get("nope")
    assert str(raised.value) == "no subscription named 'nope'"
    with pytest.raises(SubscriptionNotFoundError):
        repo.delete("nope")
    with pytest.raises(SubscriptionNotFoundError):
        repo.enable("nope")
    with pytest.raises(SubscriptionNotFoundError):
        repo.save(_subscription(name="nope"))


def test_all_lists_by_name(repo: SubscriptionRepository) -> None:
    repo.create(_subscription(name="zeta"))
    repo.create(_subscription(name="alpha"))
    assert [s.name for s in repo.all()] == ["alpha", "zeta"]


def test_save_changes_settings_but_not_the_engines_state(
    store: Store, repo: SubscriptionRepository
) -> None:
    repo.create(_subscription())
    with store.begin() as connection:
        connection.execute(subscriptions.update().values(consecutive_failures=7))
    stale = _subscription(consecutive_failures=0)  # read before the failures happened
    saved = repo.save(replace(stale, events=("*",), method="PUT").with_new_secondary())
    assert saved.events == ("*",)
    assert saved.method == "PUT"
    assert saved.consecutive_failures == 7
    assert saved.secrets is not None
    assert saved.secrets.secondary != Secret(SECONDARY)


def _seed_deliveries(store: Store, name: str, statuses: list[str]) -> list[str]:
    outbox = OutboxRepository(store)
    from airhook.store.outbox import NewDelivery

    ids = [f"msg_{name}_{n}" for n in range(len(statuses))]
    outbox.add([NewDelivery(mid, name, "lead.captured", "{}") for mid in ids])
    with store.begin() as connection:
        for mid, status in zip(ids, statuses, strict=True):
            connection.execute(
                deliveries.update().where(deliveries.c.message_id == mid).values(status=status)
            )
            connection.execute(
                attempts.insert().values(
                    message_id=mid, subscription=name, attempted_at=T0, outcome="retry"
                )
            )
    return ids


def test_disable_pauses_pending_deliveries_and_enable_resumes_them(
    store: Store, repo: SubscriptionRepository
) -> None:
    repo.create(_subscription())
    ids = _seed_deliveries(store, "crm", ["pending", "pending", "delivered", "dead"])
    disabled = repo.disable("crm", "receiver maintenance")
    assert (disabled.state, disabled.disabled_reason) == ("disabled", "receiver maintenance")
    outbox = OutboxRepository(store)
    assert [outbox.get(m).status for m in ids] == ["paused", "paused", "delivered", "dead"]
    with store.begin() as connection:
        connection.execute(subscriptions.update().values(consecutive_failures=10))
    before = datetime.now(timezone.utc)
    enabled = repo.enable("crm")
    assert (enabled.state, enabled.consecutive_failures, enabled.disabled_at) == ("active", 0, None)
    resumed = [outbox.get(m) for m in ids]
    assert [d.status for d in resumed] == ["pending", "pending", "delivered", "dead"]
    for delivery in resumed[:2]:
        assert delivery.attempts == 0
        assert delivery.next_attempt_at is not None
        assert (
            before - timedelta(seconds=1) <= delivery.next_attempt_at <= datetime.now(timezone.utc)
        )


def test_delete_removes_deliveries_and_attempts_of_that_subscription_only(
    store: Store, repo: SubscriptionRepository
) -> None:
    repo.create(_subscription())
    repo.create(_subscription(name="other"))
    _seed_deliveries(store, "crm", ["pending", "dead"])
    kept = _seed_deliveries(store, "other", ["delivered"])
    repo.delete("crm")
    with pytest.raises(SubscriptionNotFoundError):
        repo.get("crm")
    with store.read() as connection:
        assert connection.scalars(sa.select(deliveries.c.message_id)).all() == kept
        assert connection.scalars(sa.select(attempts.c.message_id)).all() == kept


# --- the CLI ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    args: tuple[str, ...]
    stdin: str | None = None


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


def call(*args: str, stdin: str | None = None, json_output: bool = True) -> Call:
    """A call of the command; ``--json`` unless ``json_output`` is false (a table, a summary)."""
    return Call((*args, "--json") if json_output else args, stdin)


@dataclass
class Setup:
    home: Path
    key: str
    url: str
    receiver: Receiver
    seeded: dict[str, Any] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
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
        return env

    def run_many(self, calls: dict[str, Call]) -> dict[str, subprocess.CompletedProcess[str]]:
        """Run the calls one after another in one process, through ``airhook.cli.main``."""
        spec = self.home / "calls.json"
        out = self.home / "results.json"
        spec.write_text(json.dumps([[n, list(c.args), c.stdin] for n, c in calls.items()]))
        driver = subprocess.run(
            [sys.executable, "-c", _DRIVER, str(spec), str(out)],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert driver.returncode == 0, driver.stderr[-3000:]
        return {
            name: subprocess.CompletedProcess(calls[name].args, *result)
            for name, result in json.loads(out.read_text()).items()
        }

    def run(self, call: Call) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "airhook.cli", *call.args],
            env=self.env(),
            input=call.stdin if call.stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    home = tmp_path_factory.mktemp("airflow-home")
    receiver = Receiver()
    yield Setup(home, Fernet.generate_key().decode(), f"sqlite:///{home / 'airhook.db'}", receiver)
    receiver.close()


@pytest.fixture(scope="module")
def store_of(setup: Setup) -> Iterator[Store]:
    created = Store(setup.url)
    upgrade(created)
    yield created
    created.dispose()


@pytest.fixture(scope="module")
def cli_repo(setup: Setup, store_of: Store) -> SubscriptionRepository:
    return SubscriptionRepository(store_of, Fernet(setup.key.encode()))


def _whsec(text: str) -> Secret:
    return Secret("whsec_" + base64.b64encode(text.encode()).decode())


SEEDED = {
    "listed": SecretPair(_whsec("listed-primary-key"), _whsec("listed-secondary-key")),
    "gen": SecretPair(_whsec("gen-primary-key")),
    "rot": SecretPair(_whsec("rot-primary-key"), _whsec("rot-secondary-key")),
    "drop": SecretPair(_whsec("drop-primary-key"), _whsec("drop-secondary-key")),
}


@pytest.fixture(scope="module")
def results(
    setup: Setup, store_of: Store, cli_repo: SubscriptionRepository
) -> dict[str, subprocess.CompletedProcess[str]]:
    """Seed subscriptions and deliveries, then run every call of the module at once."""
    receiver = setup.receiver
    cipher = Fernet(setup.key.encode())
    for name, pair in SEEDED.items():
        cli_repo.create(
            Subscription(
                name=name,
                url=receiver.url(f"/{name}/path-secret"),
                secrets=pair,
                headers={"Authorization": Secret("Bearer cli-header-secret")},
            )
        )
    for name in (
        "to-delete",
        "to-disable",
        "to-enable",
        "tested",
        "test-fails",
        "to-update",
        "to-update-off",
        "to-update-events",
        "regen",
    ):
        cli_repo.create(
            Subscription(name=name, url=receiver.url(f"/{name}"), secrets=SEEDED["gen"])
        )
    cli_repo.create(
        Subscription(
            name="to-update-clear",
            url=receiver.url("/to-update-clear"),
            secrets=SEEDED["gen"],
            chatbot_ids=("bot-1",),
            timeout=4.0,
            headers={"Authorization": Secret("Bearer cli-header-secret")},
            body_template="slack.json.j2",
        )
    )
    receiver.on("/test-fails", always(500, b"down"))
    engine = make_engine(store_of, cipher)
    # Held while disabled: enabling must deliver them.
    cli_repo.disable("to-enable", "by hand")
    setup.seeded["held"] = engine.publish(
        [Event("insight.summary", {"n": n}, f"held/{n}") for n in range(3)],
        subscriptions=["to-enable"],
    ).message_ids
    # Dead letters, one delivery to replay, a time window.
    for name in ("dl", "one", "window"):
        receiver.on(f"/{name}", fail_first(1, (400, {}, b"rejected")))
        cli_repo.create(
            Subscription(
                name=name, url=receiver.url(f"/{name}"), secrets=SEEDED["gen"], retry_schedule=(0,)
            )
        )
    setup.seeded["dl"] = engine.publish(
        [Event("x", {"n": n}, f"dl/{n}") for n in range(3)], subscriptions=["dl"]
    ).message_ids
    setup.seeded["one"] = engine.publish(
        [Event("x", {"n": n}, f"one/{n}") for n in range(2)], subscriptions=["one"]
    ).message_ids
    early = engine.publish([Event("x", {}, "w/early")], subscriptions=["window"]).message_ids
    since = datetime.now(timezone.utc)
    inside = engine.publish([Event("x", {}, "w/in")], subscriptions=["window"]).message_ids
    until = datetime.now(timezone.utc)
    late = engine.publish([Event("x", {}, "w/late")], subscriptions=["window"]).message_ids
    setup.seeded["window"] = (early, inside, late)
    url_file = setup.home / "url.txt"
    url_file.write_text(receiver.url("/from-file/secret-path") + "\n")
    header_file = setup.home / "headers.txt"
    header_file.write_text("Authorization: Bearer file-header-secret\nX-Team: data\n")
    primary_file = setup.home / "primary.txt"
    primary_file.write_text(_whsec("two-primary-key").reveal() + "\n")
    secondary_file = setup.home / "secondary.txt"
    secondary_file.write_text(_whsec("two-secondary-key").reveal() + "\n")
    bad_header_file = setup.home / "bad-headers.txt"
    bad_header_file.write_text("X-Team: data\nAuthorization Bearer typo-header-secret\n")
    calls = {
        "create": call(
            "subscriptions",
            "create",
            "made",
            "--url",
            receiver.url("/made"),
            "--events",
            "lead.*",
            "session.*",
            "--scheme",
            "rkt",
            "--chatbot-id",
            "bot-1",
            "--method",
            "PUT",
            "--timeout",
            "3",
            "--retry-schedule",
            "0,5,60",
        ),
        "create-from-files": call(
            "subscriptions",
            "create",
            "filed",
            "--url-file",
            str(url_file),
            "--header-file",
            str(header_file),
            "--secret-file",
            "-",
            "--template",
            "slack.json.j2",
            stdin=_whsec("given-on-stdin-key").reveal() + "\n",
        ),
        "create-unsigned": call(
            "subscriptions",
            "create",
            "plain",
            "--url",
            receiver.url("/plain"),
            "--scheme",
            "none",
            "--inactive",
        ),
        "create-dup": call("subscriptions", "create", "listed", "--url", "https://x.example/"),
        "create-bad": call("subscriptions", "create", "bad", "--url", "ftp://x.example/"),
        "create-bad-header": call(
            "subscriptions",
            "create",
            "bad-header",
            "--url",
            "https://x.example/",
            "--header-file",
            str(bad_header_file),
        ),
        "create-two-secrets": call(
            "subscriptions",
            "create",
            "two-secrets",
            "--url",
            receiver.url("/two-secrets"),
            "--secret-file",
            str(primary_file),
            "--secondary-secret-file",
            str(secondary_file),
        ),
        "create-unknown-event": call(
            "subscriptions",
            "create",
            "own-events",
            "--url",
            "https://x.example/",
            "--events",
            "export.finished",
        ),
        "create-unknown-allowed": call(
            "subscriptions",
            "create",
            "own-events",
            "--url",
            "https://x.example/",
            "--events",
            "export.finished",
            "--allow-unknown-events",
        ),
        "update": call(
            "subscriptions",
            "update",
            "to-update",
            "--url",
            receiver.url("/updated/path-secret"),
            "--events",
            "insight.*",
            "--chatbot-id",
            "bot-9",
            "--method",
            "patch",
            "--timeout",
            "7",
            "--header",
            "X-Team: data",
            "--template",
            "slack.json.j2",
            "--retry-schedule",
            "0,1",
            "--scheme",
            "rkt",
        ),
        "update-clear": call(
            "subscriptions",
            "update",
            "to-update-clear",
            "--any-chatbot",
            "--default-timeout",
            "--no-headers",
            "--no-template",
        ),
        "update-off": call(
            "subscriptions", "update", "to-update-off", "--inactive", "--reason", "moving house"
        ),
        "update-bad-event": call(
            "subscriptions", "update", "to-update-events", "--events", "custom.thing"
        ),
        "update-table": call(
            "subscriptions",
            "update",
            "to-update-events",
            "--events",
            "custom.thing",
            "--allow-unknown-events",
            json_output=False,
        ),
        "regenerate": call("subscriptions", "secrets", "regen", "regenerate"),
        "list-table": call("subscriptions", "list", "--limit", "500", json_output=False),
        "show-table": call("subscriptions", "show", "listed", json_output=False),
        "list": call("subscriptions", "list", "--limit", "500"),
        "show": call("subscriptions", "show", "listed"),
        "show-missing": call("subscriptions", "show", "nope"),
        "generate": call("subscriptions", "secrets", "gen", "generate-secondary"),
        "rotate": call("subscriptions", "secrets", "rot", "rotate"),
        "drop": call("subscriptions", "secrets", "drop", "drop-secondary"),
        "delete": call("subscriptions", "delete", "to-delete"),
        "disable": call("subscriptions", "disable", "to-disable", "--reason", "moving"),
        "enable": call("subscriptions", "enable", "to-enable"),
        "test": call(
            "subscriptions", "test", "tested", "--event", "lead.captured", "--platform", "rkt"
        ),
        "test-fails": call("subscriptions", "test", "test-fails", "--event", "lead.captured"),
        "test-ambiguous": call("subscriptions", "test", "tested", "--event", "ticket.created"),
        "test-table": call(
            "subscriptions",
            "test",
            "tested",
            "--event",
            "lead.captured",
            "--platform",
            "rkt",
            json_output=False,
        ),
        "deliveries-list": call("deliveries", "list", "--subscription", "dl"),
        "deliveries-show": call("deliveries", "show", setup.seeded["one"][1]),
        "replay-id": call("deliveries", "replay", setup.seeded["one"][0]),
        "replay-dead": call("deliveries", "replay", "--subscription", "dl", "--dead"),
        "replay-window": call(
            "deliveries",
            "replay",
            "--subscription",
            "window",
            "--since",
            since.isoformat(),
            "--until",
            until.isoformat(),
        ),
        "replay-both": call("deliveries", "replay", "msg_x", "--subscription", "dl"),
        "replay-missing": call("deliveries", "replay", "msg_nope"),
    }
    # After the others: a sweep running beside a replay could take the replay's deliveries.
    later = {
        "deliver-due": call("deliveries", "deliver-due"),
        "sources-list": call("sources", "list"),
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        real = pool.submit(setup.run, calls.pop("create"))
        done = setup.run_many({**calls, **later})
        done["create"] = real.result()
    return done


def _ok(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_cli_create_prints_the_subscription_and_its_secret_once(
    results: dict[str, subprocess.CompletedProcess[str]], cli_repo: SubscriptionRepository
) -> None:
    # The REST API's answer to POST /subscriptions, but for the secret (standard error, once).
    answer = _ok(results["create"])
    assert set(answer) == {"subscription"}
    shown = answer["subscription"]
    assert shown["name"] == "made"
    assert shown["state"] == "active"
    assert shown["events"] == ["lead.*", "session.*"]
    assert (shown["scheme"], shown["method"], shown["timeout"]) == ("rkt", "PUT", 3.0)
    assert shown["retry_schedule"] == [0.0, 5.0, 60.0]
    made = cli_repo.get("made")
    assert made.chatbot_ids == ("bot-1",)
    assert made.secrets is not None
    secret = made.secrets.primary.reveal()
    assert secret.startswith("whsec_")
    assert results["create"].stderr.count(secret) == 1
    assert secret not in results["create"].stdout


def test_cli_create_reads_url_headers_and_secrets_from_files(
    results: dict[str, subprocess.CompletedProcess[str]],
    cli_repo: SubscriptionRepository,
    setup: Setup,
) -> None:
    shown = _ok(results["create-from-files"])["subscription"]
    assert shown["url"] == setup.receiver.url("") + "/…"
    assert shown["header_names"] == ["Authorization", "X-Team"]
    assert shown["body_template"] == "slack.json.j2"
    filed = cli_repo.get("filed")
    assert filed.url == setup.receiver.url("/from-file/secret-path")
    assert filed.headers["Authorization"].reveal() == "Bearer file-header-secret"
    assert filed.secrets == SecretPair(_whsec("given-on-stdin-key"))
    output = results["create-from-files"].stdout + results["create-from-files"].stderr
    for secret in ("secret-path", "file-header-secret", _whsec("given-on-stdin-key").reveal()):
        assert secret not in output
    assert _ok(results["create-two-secrets"])["subscription"]["has_secondary_secret"] is True
    assert cli_repo.get("two-secrets").secrets == SecretPair(
        _whsec("two-primary-key"), _whsec("two-secondary-key")
    )
    assert not results["create-two-secrets"].stderr.strip()  # nothing was generated


def test_cli_create_unsigned_and_inactive(
    results: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    shown = _ok(results["create-unsigned"])["subscription"]
    assert (shown["scheme"], shown["state"]) == (None, "inactive")
    assert "secret" not in results["create-unsigned"].stderr


def test_cli_create_takes_events_of_dags_own_only_when_asked(
    results: dict[str, subprocess.CompletedProcess[str]], cli_repo: SubscriptionRepository
) -> None:
    refused = results["create-unknown-event"]
    assert refused.returncode == 2
    assert "event pattern 'export.finished' matches none of the catalog" in refused.stderr
    assert _ok(results["create-unknown-allowed"])["subscription"]["events"] == ["export.finished"]
    assert cli_repo.get("own-events").events == ("export.finished",)


def test_cli_refuses_a_taken_name_and_a_bad_url(
    results: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    assert results["create-dup"].returncode == 2
    assert "exists already" in results["create-dup"].stderr
    assert results["create-bad"].returncode == 2
    assert "https://" in results["create-bad"].stderr
    # A malformed line of a header file is named by its place, not quoted: it may hold a secret.
    bad_header = results["create-bad-header"]
    assert bad_header.returncode == 2
    assert "bad-headers.txt, line 2: a header is 'Name: value'" in bad_header.stderr
    assert "typo-header-secret" not in bad_header.stderr + bad_header.stdout
    assert results["show-missing"].returncode == 2
    assert "no subscription named 'nope'" in results["show-missing"].stderr


def test_cli_list_and_show_print_no_secret(
    results: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    page = _ok(results["list"])
    assert set(page) == {"items", "total", "limit", "offset"}
    listed = {s["name"]: s for s in page["items"]}
    assert {"listed", "gen", "rot", "drop", "dl"} <= set(listed)
    assert listed["listed"]["has_secondary_secret"] is True
    assert listed["listed"]["header_names"] == ["Authorization"]
    shown = _ok(results["show"])
    assert shown["deliveries"] == {
        "delivered": 0,
        "failed": 0,
        "dead": 0,
        "pending": 0,
        "paused": 0,
    }
    for name in ("list", "show", "list-table", "show-table"):
        output = results[name].stdout + results[name].stderr
        for pair in SEEDED.values():
            for secret in pair.secrets:
                assert secret.reveal() not in output
        assert "cli-header-secret" not in output
        assert "path-secret" not in output


def test_cli_list_and_show_print_a_table_and_a_summary_by_default(
    results: dict[str, subprocess.CompletedProcess[str]], setup: Setup
) -> None:
    header, *rows = results["list-table"].stdout.splitlines()
    assert header.split() == [
        "NAME",
        "STATE",
        "URL",
        "EVENTS",
        "SCHEME",
        "DELIVERED",
        "PENDING",
        "FAILED",
        "PAUSED",
    ]
    origin = setup.receiver.url("")
    assert any(
        row.split()[:5] == ["listed", "active", f"{origin}/…", "*", "standard"] for row in rows
    )
    shown = results["show-table"].stdout
    assert "name:                 listed\n" in shown
    assert f"url:                  {origin}/…\n" in shown
    assert "secrets:              primary and secondary\n" in shown
    assert "headers:              Authorization\n" in shown


def test_cli_update_changes_what_is_given_and_keeps_the_rest(
    results: dict[str, subprocess.CompletedProcess[str]],
    cli_repo: SubscriptionRepository,
    setup: Setup,
) -> None:
    shown = _ok(results["update"])
    assert (shown["events"], shown["chatbot_ids"]) == (["insight.*"], ["bot-9"])
    assert (shown["method"], shown["timeout"], shown["scheme"]) == ("PATCH", 7.0, "rkt")
    assert (shown["header_names"], shown["body_template"]) == (["X-Team"], "slack.json.j2")
    assert shown["retry_schedule"] == [0.0, 1.0]
    assert shown["url"] == setup.receiver.url("") + "/…"
    updated = cli_repo.get("to-update")
    assert updated.url == setup.receiver.url("/updated/path-secret")
    assert updated.secrets == SEEDED["gen"]
    assert "path-secret" not in results["update"].stdout
    cleared = _ok(results["update-clear"])
    assert (cleared["chatbot_ids"], cleared["timeout"], cleared["header_names"]) == ([], None, [])
    assert cleared["body_template"] is None
    off = _ok(results["update-off"])
    assert (off["state"], off["disabled_reason"]) == ("disabled", "moving house")
    refused = results["update-bad-event"]
    assert refused.returncode == 2
    assert "matches none of the catalog" in refused.stderr
    assert "events:               custom.thing\n" in results["update-table"].stdout
    assert cli_repo.get("to-update-events").events == ("custom.thing",)


def test_cli_secrets_generate_rotate_drop_and_regenerate(
    results: dict[str, subprocess.CompletedProcess[str]], cli_repo: SubscriptionRepository
) -> None:
    assert _ok(results["generate"])["subscription"]["has_secondary_secret"] is True
    generated = cli_repo.get("gen").secrets
    assert generated is not None
    assert generated.primary == SEEDED["gen"].primary
    assert generated.secondary is not None
    assert generated.secondary.reveal() in results["generate"].stderr
    assert generated.secondary.reveal() not in results["generate"].stdout
    rotated = cli_repo.get("rot").secrets
    assert rotated == SecretPair(SEEDED["rot"].secondary, SEEDED["rot"].primary)  # type: ignore[arg-type]
    assert "whsec_" not in results["rotate"].stdout + results["rotate"].stderr
    assert cli_repo.get("drop").secrets == SecretPair(SEEDED["drop"].primary)
    regenerated = cli_repo.get("regen").secrets
    assert regenerated is not None
    assert regenerated.secondary == SEEDED["gen"].primary
    assert results["regenerate"].stderr.count(regenerated.primary.reveal()) == 1
    assert regenerated.primary.reveal() not in results["regenerate"].stdout


def test_cli_delete_disable_enable(
    results: dict[str, subprocess.CompletedProcess[str]],
    cli_repo: SubscriptionRepository,
    setup: Setup,
) -> None:
    assert _ok(results["delete"]) == {"deleted": "to-delete"}
    with pytest.raises(SubscriptionNotFoundError):
        cli_repo.get("to-delete")
    disabled = _ok(results["disable"])
    assert (disabled["state"], disabled["disabled_reason"]) == ("disabled", "moving")
    enabled = _ok(results["enable"])
    assert enabled["state"] == "active"
    assert enabled["deliveries"]["delivered"] == 3
    held = setup.receiver.ids("/to-enable")
    assert sorted(held) == sorted(setup.seeded["held"])
    assert set(held.values()) == {1}


def test_cli_test_sends_the_catalog_sample_signed(
    results: dict[str, subprocess.CompletedProcess[str]], setup: Setup
) -> None:
    from airhook.core.catalog import load_catalog

    outcome = _ok(results["test"])
    assert (outcome["outcome"], outcome["status_code"]) == ("delivered", 200)
    assert (outcome["event"], outcome["platform"]) == ("lead.captured", "rkt")
    assert outcome["message_id"].startswith("msg_test_")
    first, _table_run = setup.receiver.at("/tested")
    assert first.json() == load_catalog().event("rkt", "lead.captured").sample
    standardwebhooks.Webhook(SEEDED["gen"].primary.reveal()).verify(first.body, first.headers)
    assert results["test-table"].returncode == 0
    assert "outcome:      delivered" in results["test-table"].stdout


def test_cli_test_of_a_failing_endpoint_exits_1_with_the_outcome(
    results: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    failed = results["test-fails"]
    assert failed.returncode == 1
    outcome = json.loads(failed.stdout)
    assert (outcome["outcome"], outcome["status_code"], outcome["response_excerpt"]) == (
        "retry",
        500,
        "down",
    )
    assert results["test-ambiguous"].returncode == 2
    assert "name the platform" in results["test-ambiguous"].stderr


def test_cli_deliveries_list_and_show(
    results: dict[str, subprocess.CompletedProcess[str]], setup: Setup
) -> None:
    page = _ok(results["deliveries-list"])
    assert {d["id"] for d in page["items"]} == set(setup.seeded["dl"])
    assert page["total"] == 3
    assert all(d["subscription"] == "dl" for d in page["items"])
    assert all("body" not in d for d in page["items"])
    shown = _ok(results["deliveries-show"])
    assert shown["status"] == "failed"
    [attempt] = shown["attempt_log"]
    assert (attempt["status_code"], attempt["response_excerpt"]) == (400, "rejected")


def test_cli_replays_one_delivery(
    results: dict[str, subprocess.CompletedProcess[str]], setup: Setup, store_of: Store
) -> None:
    replayed = _ok(results["replay-id"])
    one, other = setup.seeded["one"]
    assert (replayed["replayed"], replayed["delivered"]) == ([one], 1)
    outbox = OutboxRepository(store_of)
    assert outbox.get(one).status == "delivered"
    assert outbox.get(other).status == "failed"


def test_cli_replays_the_dead_letters_of_a_subscription(
    results: dict[str, subprocess.CompletedProcess[str]], setup: Setup
) -> None:
    replayed = _ok(results["replay-dead"])
    assert (len(replayed["replayed"]), replayed["delivered"]) == (3, 3)
    assert set(setup.receiver.ids("/dl").values()) == {2}


def test_cli_replays_a_time_window(
    results: dict[str, subprocess.CompletedProcess[str]], setup: Setup
) -> None:
    replayed = _ok(results["replay-window"])
    early, inside, late = setup.seeded["window"]
    assert (replayed["replayed"], replayed["delivered"]) == (inside, 1)
    counted = setup.receiver.ids("/window")
    assert counted[inside[0]] == 2
    assert (counted[early[0]], counted[late[0]]) == (1, 1)


def test_cli_replay_refuses_unclear_selections(
    results: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    assert results["replay-both"].returncode == 2
    assert "replay takes delivery ids, or --subscription" in results["replay-both"].stderr
    assert results["replay-missing"].returncode == 2
    assert "no delivery 'msg_nope'" in results["replay-missing"].stderr


def test_cli_deliver_due_sends_what_is_due(
    results: dict[str, subprocess.CompletedProcess[str]], setup: Setup
) -> None:
    swept = _ok(results["deliver-due"])
    assert swept["attempted"] == 0  # everything due was sent by the calls before it


def test_cli_existing_commands_still_work(
    results: dict[str, subprocess.CompletedProcess[str]],
) -> None:
    assert _ok(results["sources-list"])["items"] == []
