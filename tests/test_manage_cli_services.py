"""What the management services gained so that the CLI needs nothing else: sources that prove
themselves with bearer tokens or basic credentials (``scheme="none"``), a subscription's
secondary secret at creation, replays and re-dispatches in batches with progress, and the due
sweep.

In process, on a SQLite store and a real HTTP server on 127.0.0.1 (the fan-out tests' receiver).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from airhook.core.access import BasicCredentials
from airhook.core.errors import (
    ConfigurationError,
    ConflictError,
    NotFoundError,
    SubscriptionNotFoundError,
)
from airhook.core.ids import new_event_id
from airhook.core.secrets import Secret, SecretPair
from airhook.delivery import Event
from airhook.manage import Services
from airhook.manage.sources import UNSIGNED
from airhook.store import Store
from airhook.store.inbox import NewEvent
from airhook.store.migrate import upgrade
from tests.test_fanout import Receiver, always, fail_first, make_engine


def _whsec(text: str) -> str:
    return "whsec_" + base64.b64encode(text.encode()).decode()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    store = Store(f"sqlite:///{tmp_path / 'airhook.db'}")
    upgrade(store)
    cipher = Fernet(Fernet.generate_key())
    built = Services(store, cipher)
    built._engine = make_engine(store, cipher, catalog=built.catalog)
    yield built
    store.dispose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


# --- sources: bearer tokens, basic credentials, no scheme ---------------------------------------


def test_a_source_may_prove_itself_with_bearer_tokens_and_basic_credentials(
    services: Services,
) -> None:
    created = services.sources().create(
        "gh",
        "hmac",
        scheme=UNSIGNED,
        bearer_tokens=["token-one", "token-two"],
        basic_credentials={"ops": "ops-password"},
        scheme_options={"event_field": "action"},
    )
    assert created.secret is None  # nothing was generated
    shown = created.view.as_dict()
    assert (shown["scheme"], shown["bearer_tokens"], shown["basic_users"]) == (None, 2, ["ops"])
    stored = services.source_repository.get("gh")
    assert stored.secrets is None
    assert stored.bearer_tokens == (Secret("token-one"), Secret("token-two"))
    assert stored.basic_credentials == (BasicCredentials("ops", Secret("ops-password")),)
    assert stored.scheme_options == {"event_field": "action"}
    # Its options stay its own: an edit checks them without a scheme.
    services.sources().update("gh", {"scheme_options": {"event_field": "type"}})
    assert services.source_repository.get("gh").scheme_options == {"event_field": "type"}
    with pytest.raises(ConflictError, match="no secret"):
        services.sources().change_secrets("gh", "rotate")


def test_a_signed_source_takes_credentials_beside_its_secret(services: Services) -> None:
    created = services.sources().create(
        "both", "hmac", secret="hmac-secret", bearer_tokens=["extra-token"]
    )
    assert created.secret is None
    stored = services.source_repository.get("both")
    assert stored.secrets == SecretPair(Secret("hmac-secret"))
    assert stored.bearer_tokens == (Secret("extra-token"),)


@pytest.mark.parametrize(
    ("settings", "field", "message"),
    [
        ({}, "scheme", "must authenticate"),
        ({"bearer_tokens": "one-token"}, "bearer_tokens", "list of tokens"),
        ({"bearer_tokens": [""]}, "bearer_tokens", "printable ASCII"),
        ({"bearer_tokens": ["has a\nbreak"]}, "bearer_tokens", "printable ASCII"),
        ({"basic_credentials": ["ops"]}, "basic_credentials", "users and passwords"),
        ({"basic_credentials": {"a:b": "pw"}}, "basic_credentials", "without ':'"),
        ({"basic_credentials": {"ops": ""}}, "basic_credentials", "printable ASCII"),
        ({"bearer_tokens": ["t"], "secret": "s"}, "secret", "takes no secret"),
        (
            {"bearer_tokens": ["t"], "scheme_options": {"header": "X-Sig"}},
            "scheme_options",
            "takes no option 'header'",
        ),
    ],
)
def test_bad_credentials_name_their_field_and_never_the_value(
    services: Services, settings: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        services.sources().create("bad", "hmac", scheme=UNSIGNED, **settings)  # type: ignore[arg-type]
    assert raised.value.field == field
    assert "ops-password" not in str(raised.value)
    assert list(services.source_repository.iter_names()) == []


# --- subscriptions: a secondary secret at creation --------------------------------------------


def test_a_subscription_takes_a_secondary_secret_at_creation(services: Services) -> None:
    created = services.subscriptions().create(
        "two",
        "https://example.com/hook",
        secret=_whsec("primary-key"),
        secondary_secret=_whsec("secondary-key"),
    )
    assert created.secret is None
    assert created.view.as_dict()["has_secondary_secret"] is True
    stored = services.engine.subscriptions.get("two")
    assert stored.secrets == SecretPair(
        Secret(_whsec("primary-key")), Secret(_whsec("secondary-key"))
    )
    with pytest.raises(ConfigurationError) as raised:
        services.subscriptions().create(
            "plain", "https://example.com/hook", scheme=None, secondary_secret="x"
        )
    assert raised.value.field == "secret"


# --- deliveries: replays in batches, with progress ---------------------------------------------


def _failed_deliveries(services: Services, receiver: Receiver, count: int) -> list[str]:
    receiver.on("/hook", fail_first(1, (400, {}, b"rejected")))
    services.subscriptions().create(
        "hook", receiver.url("/hook"), retry_schedule=[0], allow_unknown_events=True
    )
    published = services.engine.publish(
        [Event("x", {"n": n}, f"run/{n}") for n in range(count)], subscriptions=["hook"]
    )
    assert published.summary.failed == count
    return published.message_ids


def test_a_replay_of_ids_goes_in_batches_and_tells_its_progress(
    services: Services, receiver: Receiver
) -> None:
    ids = _failed_deliveries(services, receiver, 5)
    told: list[tuple[int, int]] = []
    answer = services.deliveries().replay(
        ids=ids, progress=lambda done, total: told.append((done, total)), batch=2
    )
    assert told == [(0, 5), (2, 5), (4, 5), (5, 5)]
    assert sorted(answer["replayed"]) == sorted(ids)
    assert (answer["delivered"], answer["failed"]) == (5, 0)
    assert set(receiver.ids("/hook").values()) == {2}


def test_a_replay_of_a_subscriptions_dead_letters_tells_its_progress(
    services: Services, receiver: Receiver
) -> None:
    ids = _failed_deliveries(services, receiver, 3)
    told: list[tuple[int, int]] = []
    answer = services.deliveries().replay(
        subscription="hook", progress=lambda done, total: told.append((done, total)), batch=2
    )
    assert told == [(0, 3), (2, 3), (3, 3)]
    assert sorted(answer["replayed"]) == sorted(ids)
    assert answer["delivered"] == 3


def test_a_replay_without_progress_answers_as_before(
    services: Services, receiver: Receiver
) -> None:
    ids = _failed_deliveries(services, receiver, 2)
    answer = services.deliveries().replay(ids=ids)
    assert (len(answer["replayed"]), answer["delivered"]) == (2, 2)
    with pytest.raises(ConfigurationError) as raised:
        services.deliveries().replay(ids=ids, batch=0)
    assert raised.value.field == "batch"


def test_deliver_due_sends_what_is_due_and_refuses_an_unknown_subscription(
    services: Services, receiver: Receiver
) -> None:
    receiver.on("/later", always(200, b"ok"))
    services.subscriptions().create("later", receiver.url("/later"), allow_unknown_events=True)
    services.engine.subscriptions.disable("later", "by hand")  # its deliveries wait, paused
    services.engine.publish([Event("x", {}, "held/1")], subscriptions=["later"])
    services.engine.subscriptions.enable("later")  # resumed, not sent: due now
    assert services.deliveries().deliver_due(subscription="later")["delivered"] == 1
    assert services.deliveries().deliver_due()["attempted"] == 0
    with pytest.raises(SubscriptionNotFoundError):
        services.deliveries().deliver_due(subscription="nope")


# --- events: re-dispatch in batches, with progress ---------------------------------------------


def _recorded(services: Services, count: int, *, dispatched: int) -> list[str]:
    now = datetime.now(timezone.utc)
    ids = [new_event_id() for _ in range(count)]
    services.inbox.record(
        [
            NewEvent(
                id=event_id,
                source="src",
                profile="hmac",
                event="ping",
                kind=None,
                dedupe_key=f"delivery-{n}",
                body="{}",
                received_at=now,
            )
            for n, event_id in enumerate(ids)
        ]
    )
    services.inbox.mark_dispatched(ids[:dispatched], now)
    return ids


def test_a_redispatch_goes_in_batches_and_tells_its_progress(services: Services) -> None:
    ids = _recorded(services, 5, dispatched=4)
    told: list[tuple[int, int]] = []
    answer = services.events().redispatch(
        ids, progress=lambda done, total: told.append((done, total)), batch=2
    )
    assert told == [(0, 5), (2, 5), (4, 5), (5, 5)]
    assert answer == {"redispatched": 4}  # the one not dispatched yet is about to go anyway
    assert [services.inbox.get(i).redispatches for i in ids] == [1, 1, 1, 1, 0]  # type: ignore[union-attr]
    with pytest.raises(NotFoundError):
        services.events().redispatch([*ids, "evt_nope"], progress=lambda d, t: None)
    assert [services.inbox.get(i).redispatches for i in ids] == [1, 1, 1, 1, 0]  # type: ignore[union-attr]
    with pytest.raises(ConfigurationError) as raised:
        services.events().redispatch(ids, batch=0)
    assert raised.value.field == "batch"
