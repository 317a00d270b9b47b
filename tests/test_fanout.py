"""The delivery engine against real HTTP receivers on 127.0.0.1, on SQLite and PostgreSQL.

Signatures are checked on the receiving side by independent code (``standardwebhooks``, a hand
HMAC for ``rkt`` and ``ccai``); deliveries are counted there by ``webhook-id``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import standardwebhooks
from cryptography.fernet import Fernet

from airhook.core.delivery_rules import message_id
from airhook.core.errors import PayloadValidationError, SetupError, UnknownEventError
from airhook.core.redaction import WITHHELD
from airhook.core.secrets import Secret, SecretPair
from airhook.core.ssrf import DestinationPolicy
from airhook.core.subscription import Subscription
from airhook.delivery import DeliveryEngine, Event
from airhook.store import Store
from airhook.store.migrate import upgrade
from airhook.store.outbox import NewDelivery, OutboxRepository
from airhook.store.subscriptions import SubscriptionRepository
from airhook.store.tables import attempts, deliveries, subscriptions

FAST = (0.0, 0.05, 0.1)  # three attempts, milliseconds apart
PRIMARY = "whsec_" + base64.b64encode(b"primary-signing-key-0123456789ab").decode()
SECONDARY = "whsec_" + base64.b64encode(b"secondary-signing-key-0123456789").decode()
LOCAL = DestinationPolicy(allow=["127.0.0.1/32"])


# --- a receiver ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")

    def json(self) -> Any:
        return json.loads(self.body)


#: A reply: (status, headers, body), "reset" (close the connection unanswered), or
#: ("sleep", seconds, reply) to answer late.
Reply = Any
Script = Callable[[Received], Reply]


class Receiver:
    """A threaded HTTP/1.1 server on 127.0.0.1 that records requests and answers by script."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        self.scripts: dict[str, Script] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the engine pools connections
            disable_nagle_algorithm = True  # headers and body leave at once, no 40 ms stall

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Received(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                    time.monotonic(),
                )
                with receiver.lock:
                    receiver.requests.append(request)
                script = receiver.scripts.get(self.path, lambda _: (200, {}, b"ok"))
                self._reply(script(request))

            def _reply(self, reply: Reply) -> None:
                if reply == "reset":
                    # RST instead of FIN: the client sees "connection reset by peer".
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.close_connection = True
                    return
                if reply[0] == "sleep":
                    time.sleep(reply[1])
                    reply = reply[2]
                status, headers, body = reply
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    self.close_connection = True  # the client gave up (timeout)

            do_POST = do_PUT = do_PATCH = _handle

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # the default backlog of 5 drops SYNs at 64 in flight

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def on(self, path: str, script: Script) -> None:
        self.scripts[path] = script

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def ids(self, path: str | None = None) -> Counter[str]:
        with self.lock:
            return Counter(r.webhook_id for r in self.requests if path in (None, r.path))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def fail_first(times: int, reply: Reply = (500, {}, b"try later")) -> Script:
    """Answer ``reply`` to the first ``times`` attempts of each delivery, then 200."""
    seen: Counter[str] = Counter()
    lock = threading.Lock()

    def script(request: Received) -> Reply:
        with lock:
            seen[request.webhook_id] += 1
            count = seen[request.webhook_id]
        return reply if count <= times else (200, {}, b"thanks")

    return script


def always(status: int, body: bytes = b"no", headers: dict[str, str] | None = None) -> Script:
    return lambda _request: (status, headers or {}, body)


# --- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    """A migrated store on SQLite only, for behaviour the database does not change."""
    created = Store(f"sqlite:///{tmp_path / 'airhook.db'}")
    upgrade(created)
    yield created
    created.dispose()


def make_engine(store: Store, cipher: Fernet, **options: Any) -> DeliveryEngine:
    options.setdefault("policy", LOCAL)
    options.setdefault("disable_after", 10)
    options.setdefault("default_timeout", 2.0)
    return DeliveryEngine(store, cipher, **options)


def subscription(name: str, url: str, **changes: Any) -> Subscription:
    base = Subscription(
        name=name,
        url=url,
        events=("*",),
        scheme="standard",
        secrets=SecretPair(Secret(PRIMARY)),
        retry_schedule=FAST,
    )
    return replace(base, **changes)


def events(count: int, name: str = "insight.summary", prefix: str = "run-1") -> list[Event]:
    return [
        Event(name, {"event": name, "n": n, "data": {"chat_id": f"cht_{n}"}}, f"{prefix}/{n}")
        for n in range(count)
    ]


def lead(chatbot: str, key: str = "lead-1") -> Event:
    payload = {
        "event": "lead.captured",
        "chatbotId": chatbot,
        "timestamp": "2026-03-26T15:30:00.000Z",
        "data": {"leadId": "clx1", "name": "John Doe", "email": "john@example.com"},
    }
    return Event("lead.captured", payload, key)


def rows(store: Store, table: sa.Table) -> list[dict[str, Any]]:
    with store.read() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.select(table))]


def status_of(store: Store) -> dict[str, str]:
    """Subscription name -> its deliveries' statuses (sorted, joined)."""
    found: dict[str, list[str]] = {}
    for row in rows(store, deliveries):
        found.setdefault(row["subscription"], []).append(row["status"])
    return {name: ",".join(sorted(statuses)) for name, statuses in found.items()}


# --- fan-out ---------------------------------------------------------------------------------


def test_fans_out_to_every_matching_active_subscription_and_no_other(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    repo = SubscriptionRepository(store, cipher)
    repo.create(subscription("leads", receiver.url("/leads"), events=("lead.*",)))
    repo.create(subscription("bot-one", receiver.url("/bot-one"), chatbot_ids=("bot-1",)))
    repo.create(subscription("sessions", receiver.url("/sessions"), events=("session.*",)))
    repo.create(subscription("off", receiver.url("/off"), active=False))
    repo.create(subscription("bot-two", receiver.url("/bot-two"), chatbot_ids=("bot-2",)))
    result = make_engine(store, cipher).publish([lead("bot-1")])
    assert sorted(r.path for r in receiver.requests) == ["/bot-one", "/leads"]
    assert result.summary.delivered == 2
    assert result.created == 2
    # Nothing is recorded for the others either: the inactive one keeps no events.
    assert status_of(store) == {"leads": "delivered", "bot-one": "delivered"}


def test_chatbot_filter_takes_the_id_from_the_platform_payload(
    sqlite_store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    from airhook.core.catalog import load_catalog

    repo = SubscriptionRepository(sqlite_store, cipher)
    repo.create(subscription("bot-one", receiver.url("/one"), chatbot_ids=("bot-1",)))
    repo.create(subscription("bot-two", receiver.url("/two"), chatbot_ids=("bot-2",)))
    sample = dict(load_catalog().event("rkt", "lead.captured").sample)
    sample["chatbotId"] = "bot-2"
    make_engine(sqlite_store, cipher).publish([Event("lead.captured", sample, "k", "rkt")])
    assert [r.path for r in receiver.requests] == ["/two"]


def test_body_is_the_event_payload_as_json(
    sqlite_store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    SubscriptionRepository(sqlite_store, cipher).create(subscription("a", receiver.url()))
    event = lead("bot-1")
    make_engine(sqlite_store, cipher).publish([event])
    [request] = receiver.requests
    assert request.json() == event.payload
    assert request.headers["content-type"] == "application/json"
    assert request.method == "POST"


def test_method_and_extra_headers_are_sent(
    sqlite_store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    SubscriptionRepository(sqlite_store, cipher).create(
        subscription(
            "a",
            receiver.url(),
            method="PUT",
            headers={"Authorization": Secret("Bearer header-token-value")},
        )
    )
    make_engine(sqlite_store, cipher).publish(events(1))
    [request] = receiver.requests
    assert request.method == "PUT"
    assert request.headers["authorization"] == "Bearer header-token-value"


def test_invalid_event_for_its_platform_sends_nothing(
    sqlite_store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    SubscriptionRepository(sqlite_store, cipher).create(subscription("a", receiver.url()))
    good = Event("lead.captured", dict(lead("bot-1").payload), "good", "rkt")
    bad_payload = dict(good.payload)
    del bad_payload["data"]
    engine = make_engine(sqlite_store, cipher)
    with pytest.raises(PayloadValidationError) as raised:
        engine.publish([good, Event("lead.captured", bad_payload, "bad", "rkt")])
    assert raised.value.keyword == "required"
    with pytest.raises(UnknownEventError):
        engine.publish([Event("lead.vanished", {}, "x", "rkt")])
    assert receiver.requests == []
    assert rows(sqlite_store, deliveries) == []


def test_unknown_subscription_name_in_the_filter_is_an_error(
    sqlite_store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    SubscriptionRepository(sqlite_store, cipher).create(subscription("a", receiver.url()))
    with pytest.raises(ValueError, match="nope"):
        make_engine(sqlite_store, cipher).publish(events(1), subscriptions=["a", "nope"])
    assert receiver.requests == []


def test_subscription_filter_limits_the_fan_out(
    sqlite_store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    repo = SubscriptionRepository(sqlite_store, cipher)
    repo.create(subscription("a", receiver.url("/a")))
    repo.create(subscription("b", receiver.url("/b")))
    make_engine(sqlite_store, cipher).publish(events(2), subscriptions=["b"])
    assert {r.path for r in receiver.requests} == {"/b"}
    assert len(receiver.requests) == 2


# --- signatures, verified by independent code ------------------------------------------------


def test_standard_signature_verifies_with_standardwebhooks(
    sqlite_store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    SubscriptionRepository(sqlite_store, cipher).create(subscription("std", receiver.url()))
    make_engine(sqlite_store, cipher).publish(events(1))
    [request] = receiver.requests
    verified = standardwebhooks.Webhook(PRIMARY).verify(request.body, request.headers)
    assert verified == request.json()
    assert request.webhook_id == message_id("std", "run-1/0")


def test_standard_signs_with_both_secrets_during_rotation(
    sqlite_store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    SubscriptionRepository(sqlite_store, cipher).create(
        subscription("std", receiver.url(), secrets=SecretPair(Secret(PRIMARY), Secret(SECONDARY)))
    )
    make_engine(sqlite_store, cipher).publish(events(1))
    [request] = receiver.requests
    assert len(request.headers["webhook-signature"].split()) == 2
    for secret in (PRIMARY, SECONDARY):
        standardwebhooks.Webhook(secret).verify(request.body, request.headers)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(
            "whsec_" + base64.b64encode(b"some-other-key-0123456789abcdef").decode()
        ).verify(request.body, request.headers)


def test_rkt_signature_is_the_hex_hmac_of_the_body(
    sqlite_store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    secret = "whsec_rkt-shown-once-secret"
    SubscriptionRepository(sqlite_store, cipher).create(
        subscription("rkt", receiver.url(), scheme="rkt", secrets=SecretPair(Secret(secret)))
    )
    make_engine(sqlite_store, cipher).publish([lead("bot-1")])
    [request] = receiver.requests
    expected = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-rkt-signature"] == expected
    assert request.webhook_id == message_id("rkt", "lead-1")


def test_ccai_signature_carries_primary_and_secondary(
    sqlite_store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    primary, secondary = "ccai-primary-secret", "ccai-secondary-secret"
    SubscriptionRepository(sqlite_store, cipher).create(
        subscription(
            "ccai",
            receiver.url(),
            scheme="ccai",
            secrets=SecretPair(Secret(primary), Secret(secondary)),
        )
    )
    make_engine(sqlite_store, cipher).publish(events(1))
    [request] = receiver.requests
    timestamp = request.headers["x-signature-timestamp"]
    assert abs(int(timestamp) - time.time()) < 30

    def sign(key: str) -> str:
        digest = hmac.new(key.encode(), timestamp.encode() + request.body, hashlib.sha256)
        return base64.b64encode(digest.digest()).decode()

    assert request.headers["x-signature"] == f"primary={sign(primary)} secondary={sign(secondary)}"


def test_unsigned_subscription_sends_only_the_webhook_id(
    sqlite_store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    SubscriptionRepository(sqlite_store, cipher).create(
        subscription("plain", receiver.url(), scheme=None, secrets=None)
    )
    make_engine(sqlite_store, cipher).publish(events(1))
    [request] = receiver.requests
    assert request.webhook_id == message_id("plain", "run-1/0")
    assert "webhook-signature" not in request.headers


# --- idempotency -----------------------------------------------------------------------------


def test_publishing_the_same_events_twice_sends_each_once(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    repo = SubscriptionRepository(store, cipher)
    repo.create(subscription("a", receiver.url("/a")))
    repo.create(subscription("b", receiver.url("/b")))
    engine = make_engine(store, cipher)
    first = engine.publish(events(5))
    second = engine.publish(events(5))
    assert first.created == 10
    assert second.created == 0
    assert second.message_ids == first.message_ids
    assert second.summary.delivered == 10
    counted = receiver.ids()
    assert len(counted) == 10
    assert set(counted.values()) == {1}


def test_republishing_while_a_retry_is_scheduled_does_not_send_early(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    receiver.on("/hook", fail_first(1))
    SubscriptionRepository(store, cipher).create(
        subscription("a", receiver.url(), retry_schedule=(0, 30))
    )
    engine = make_engine(store, cipher)
    engine.publish(events(1))
    again = engine.publish(events(1))
    assert len(receiver.requests) == 1
    assert again.summary.pending == 1


def test_two_engines_delivering_at_once_send_each_delivery_once(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    receiver.on("/hook", lambda _r: ("sleep", 0.01, (200, {}, b"ok")))
    SubscriptionRepository(store, cipher).create(subscription("a", receiver.url()))
    engine = make_engine(store, cipher)
    engine.outbox.add(engine.prepare(events(60)))
    barrier = threading.Barrier(3)

    def run() -> None:
        barrier.wait()
        make_engine(store, cipher).deliver()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    counted = receiver.ids()
    assert len(counted) == 60
    assert set(counted.values()) == {1}
    assert engine.summary().delivered == 60


# --- retries, Retry-After, timeouts, resets --------------------------------------------------


def test_retryable_failure_is_retried_per_schedule_with_the_same_id(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    receiver.on("/hook", fail_first(2))
    SubscriptionRepository(store, cipher).create(subscription("a", receiver.url()))
    result = make_engine(store, cipher).publish(events(1), wait=5)
    assert result.summary.delivered == 1
    assert [r.webhook_id for r in receiver.requests] == [result.message_ids[0]] * 3
    logged = OutboxRepository(store).attempts(result.message_ids[0])
    assert [(a.status_code, a.outcome) for a in logged] == [
        (500, "retry"),
        (500, "retry"),
        (200, "delivered"),
    ]


def test_retry_after_is_honoured(store: Store, cipher: Fernet, receiver: Receiver) -> None:
    receiver.on("/hook", fail_first(1, (503, {"Retry-After": "1"}, b"busy")))
    SubscriptionRepository(store, cipher).create(subscription("a", receiver.url()))
    engine = make_engine(store, cipher)
    result = engine.publish(events(1))
    pending = engine.outbox.get(result.message_ids[0])
    assert pending.status == "pending"
    assert pending.next_attempt_at is not None
    first_at = engine.outbox.attempts(pending.message_id)[0].attempted_at
    # The schedule says 0.05 s; the receiver asked for a second.
    assert pending.next_attempt_at - first_at >= timedelta(seconds=0.99)
    engine.publish(events(1), wait=5)
    first, second = receiver.requests
    assert second.at - first.at >= 0.99
    assert engine.outbox.get(pending.message_id).status == "delivered"


def test_retry_after_on_a_500_is_not_honoured(
    sqlite_store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    # Only 429 and 503 give Retry-After a meaning (RFC 6585 §4, RFC 9110 §10.2.3), as in the hook.
    receiver.on("/hook", fail_first(1, (500, {"Retry-After": "30"}, b"oops")))
    SubscriptionRepository(sqlite_store, cipher).create(subscription("a", receiver.url()))
    assert make_engine(sqlite_store, cipher).publish(events(1), wait=5).summary.delivered == 1
    first, second = receiver.requests
    assert second.at - first.at < 5


def test_429_is_retried(sqlite_store: Store, cipher: Fernet, receiver: Receiver) -> None:
    receiver.on("/hook", fail_first(1, (429, {}, b"slow down")))
    SubscriptionRepository(sqlite_store, cipher).create(subscription("a", receiver.url()))
    assert make_engine(sqlite_store, cipher).publish(events(1), wait=5).summary.delivered == 1
    assert len(receiver.requests) == 2


def test_timeout_is_retried(sqlite_store: Store, cipher: Fernet, receiver: Receiver) -> None:
    receiver.on("/hook", fail_first(1, ("sleep", 1.0, (200, {}, b"too late"))))
    SubscriptionRepository(sqlite_store, cipher).create(
        subscription("a", receiver.url(), timeout=0.2)
    )
    engine = make_engine(sqlite_store, cipher)
    result = engine.publish(events(1), wait=5)
    assert result.summary.delivered == 1
    first, second = engine.outbox.attempts(result.message_ids[0])
    assert (first.outcome, first.status_code, first.error) == (
        "retry",
        None,
        "no answer within 0.2 s",
    )
    assert first.latency_ms is not None
    assert 150 < first.latency_ms < 900
    assert second.outcome == "delivered"


def test_connection_reset_is_retried(
    sqlite_store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    receiver.on("/hook", fail_first(1, "reset"))
    SubscriptionRepository(sqlite_store, cipher).create(subscription("a", receiver.url()))
    engine = make_engine(sqlite_store, cipher)
    result = engine.publish(events(1), wait=5)
    assert result.summary.delivered == 1
    first, _ = engine.outbox.attempts(result.message_ids[0])
    assert first.outcome == "retry"
    assert first.status_code is None
    assert first.error is not None


def test_unreachable_endpoint_is_retried_then_dead_lettered(
    sqlite_store: Store, cipher: Fernet
) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    SubscriptionRepository(sqlite_store, cipher).create(
        subscription("a", f"http://127.0.0.1:{port}/hook")
    )
    engine = make_engine(sqlite_store, cipher)
    result = engine.publish(events(1), wait=5)
    assert result.summary.dead == 1
    logged = engine.outbox.attempts(result.message_ids[0])
    assert len(logged) == 3
    assert all(a.error and a.error.startswith("connection failed") for a in logged)


def test_dead_letter_after_the_last_attempt(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    receiver.on("/hook", always(500))
    SubscriptionRepository(store, cipher).create(subscription("a", receiver.url()))
    engine = make_engine(store, cipher)
    result = engine.publish(events(1), wait=5)
    assert result.summary.dead == 1
    assert len(receiver.requests) == len(FAST)
    dead = engine.outbox.get(result.message_ids[0])
    assert (dead.status, dead.attempts, dead.last_status_code) == ("dead", 3, 500)
    assert dead.finished_at is not None
    # One final failure: counted once, not once per attempt.
    assert SubscriptionRepository(store, cipher).get("a").consecutive_failures == 1


def test_other_4xx_fails_without_a_retry(
    sqlite_store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    receiver.on("/hook", always(422, b'{"error": "bad field"}'))
    SubscriptionRepository(sqlite_store, cipher).create(subscription("a", receiver.url()))
    engine = make_engine(sqlite_store, cipher)
    result = engine.publish(events(1), wait=5)
    assert result.summary.failed == 1
    assert len(receiver.requests) == 1
    [logged] = engine.outbox.attempts(result.message_ids[0])
    assert (logged.status_code, logged.outcome) == (422, "failed")
    assert logged.response_excerpt == '{"error": "bad field"}'


def test_redirect_is_not_followed(sqlite_store: Store, cipher: Fernet, receiver: Receiver) -> None:
    receiver.on("/hook", always(307, headers={"Location": receiver.url("/elsewhere")}))
    SubscriptionRepository(sqlite_store, cipher).create(subscription("a", receiver.url()))
    result = make_engine(sqlite_store, cipher).publish(events(1))
    assert result.summary.failed == 1
    assert [r.path for r in receiver.requests] == ["/hook"]


def test_410_fails_the_delivery_and_disables_the_subscription(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    receiver.on("/hook", always(410, b"gone"))
    repo = SubscriptionRepository(store, cipher)
    repo.create(subscription("a", receiver.url()))
    engine = make_engine(store, cipher)
    result = engine.publish(events(1), wait=5)
    assert result.summary.failed == 1
    assert len(receiver.requests) == 1
    gone = repo.get("a")
    assert gone.state == "disabled"
    assert gone.disabled_reason == "the endpoint answered 410 Gone"
    assert gone.disabled_at is not None
    later = engine.publish(events(1, prefix="run-2"))
    assert later.summary.paused == 1
    assert len(receiver.requests) == 1


# --- auto-disable ----------------------------------------------------------------------------


def test_subscription_is_disabled_at_exactly_ten_consecutive_failures(
    store: Store, cipher: Fernet, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW__AIRHOOK__DISABLE_AFTER_FAILURES", raising=False)
    receiver.on("/hook", always(400))
    repo = SubscriptionRepository(store, cipher)
    repo.create(subscription("a", receiver.url()))
    engine = make_engine(store, cipher, disable_after=None)  # the configured default
    assert engine.disable_after == 10
    for n in range(9):
        engine.publish(events(1, prefix=f"run-{n}"))
    nine = repo.get("a")
    assert (nine.state, nine.consecutive_failures) == ("active", 9)
    engine.publish(events(1, prefix="run-9"))
    ten = repo.get("a")
    assert (ten.state, ten.consecutive_failures) == ("disabled", 10)
    assert ten.disabled_reason == "10 consecutive failed deliveries"
    assert len(receiver.requests) == 10


def test_a_success_resets_the_failure_count(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    answers = iter([400] * 9 + [200] + [400] * 9)
    receiver.on("/hook", lambda _r: (next(answers), {}, b""))
    repo = SubscriptionRepository(store, cipher)
    repo.create(subscription("a", receiver.url()))
    engine = make_engine(store, cipher)
    for n in range(10):
        engine.publish(events(1, prefix=f"run-{n}"))
    assert repo.get("a").consecutive_failures == 0
    for n in range(10, 19):
        engine.publish(events(1, prefix=f"run-{n}"))
    after = repo.get("a")
    assert (after.state, after.consecutive_failures) == ("active", 9)


def test_failures_within_one_batch_disable_at_ten_and_keep_the_rest(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    receiver.on("/hook", always(400))
    repo = SubscriptionRepository(store, cipher)
    repo.create(subscription("a", receiver.url()))
    engine = make_engine(store, cipher, concurrency=1)
    result = engine.publish(events(30))
    disabled = repo.get("a")
    assert disabled.state == "disabled"
    # Ten failed, then the batch stopped sending: the other twenty wait, paused, not lost.
    assert result.summary.failed == 10
    assert result.summary.paused == 20
    assert len(receiver.requests) == 10


def test_events_of_a_disabled_subscription_are_kept_and_delivered_once_on_enable(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    repo = SubscriptionRepository(store, cipher)
    repo.create(subscription("a", receiver.url()))
    repo.disable("a", "receiver maintenance")
    engine = make_engine(store, cipher)
    held = engine.publish(events(3))
    assert held.summary.paused == 3
    assert receiver.requests == []
    engine.deliver()  # a sweep does not touch a disabled subscription's deliveries
    assert receiver.requests == []
    repo.enable("a")
    engine.deliver()
    engine.deliver()
    engine.publish(events(3))
    counted = receiver.ids()
    assert sorted(counted) == sorted(held.message_ids)
    assert set(counted.values()) == {1}


def test_auto_disabled_subscription_replays_everything_once_after_enable(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    broken = True
    receiver.on("/hook", lambda _r: (400 if broken else 200, {}, b""))
    repo = SubscriptionRepository(store, cipher)
    repo.create(subscription("a", receiver.url()))
    engine = make_engine(store, cipher)
    for n in range(10):
        engine.publish(events(1, prefix=f"run-{n}"))
    assert repo.get("a").state == "disabled"
    kept = engine.publish(events(5, prefix="while-disabled"))
    assert kept.summary.paused == 5
    broken = False
    repo.enable("a")
    engine.deliver()  # the five paused ones
    replayed = engine.replay(subscription="a", dead_only=True)  # the ten that failed
    assert len(replayed) == 10
    counted = receiver.ids()
    assert len(counted) == 15
    # Each failed delivery was sent twice in all (its failure, its replay); the rest once.
    assert sorted(counted.values()) == [1] * 5 + [2] * 10
    assert engine.summary(subscription="a").delivered == 15
    assert repo.get("a").consecutive_failures == 0


# --- the delivery log ------------------------------------------------------------------------


def test_every_attempt_is_logged_with_time_status_latency_and_excerpt(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    long_body = ("x" * 600 + "tail").encode()
    receiver.on("/hook", fail_first(1, (500, {}, long_body)))
    SubscriptionRepository(store, cipher).create(subscription("a", receiver.url()))
    before = datetime.now(timezone.utc)
    result = make_engine(store, cipher).publish(events(1), wait=5)
    first, second = OutboxRepository(store).attempts(result.message_ids[0])
    assert before <= first.attempted_at <= second.attempted_at <= datetime.now(timezone.utc)
    assert (first.status_code, second.status_code) == (500, 200)
    assert first.latency_ms is not None
    assert first.latency_ms > 0
    assert first.response_excerpt == "x" * 512
    assert second.response_excerpt == "thanks"
    assert first.error == "HTTP 500"


def test_no_secret_reaches_a_stored_column_or_a_log_line(
    store: Store, cipher: Fernet, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    def echo(request: Received) -> Reply:
        # A receiver that fails and echoes the whole request, signature and token included.
        echoed = json.dumps({"headers": request.headers, "path": request.path}).encode()
        return (500, {}, echoed)

    url_secret = "T0001/B0001/url-secret-xoxb-12345"
    receiver.on(f"/services/{url_secret}", echo)
    secrets = (PRIMARY, SECONDARY)
    repo = SubscriptionRepository(store, cipher)
    repo.create(
        subscription(
            "a",
            receiver.url(f"/services/{url_secret}"),
            secrets=SecretPair(Secret(PRIMARY), Secret(SECONDARY)),
            headers={"Authorization": Secret("Bearer header-token-secret")},
        )
    )
    caplog.set_level(logging.DEBUG)
    make_engine(store, cipher).publish(events(2), wait=5)
    assert len(receiver.requests) == 6
    signatures = {r.headers["webhook-signature"] for r in receiver.requests}
    forbidden = [
        *secrets,
        *(s.removeprefix("whsec_") for s in secrets),
        *(sig for header in signatures for sig in header.split()),
        "header-token-secret",
        "url-secret-xoxb-12345",
    ]
    stored = json.dumps(
        [rows(store, table) for table in (subscriptions, deliveries, attempts)], default=str
    )
    logged = caplog.text
    for secret in forbidden:
        assert secret not in stored
        assert secret not in logged
    # The echo did reach the log, with the secrets blanked out.
    excerpts = [row["response_excerpt"] for row in rows(store, attempts)]
    assert all("[redacted]" in excerpt for excerpt in excerpts)


def test_secrets_echoed_in_another_form_withhold_the_excerpt(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    # The signing secret JSON-escaped as PHP writes it ("\/"), the header's token without its
    # "Bearer": not the bytes airhook sent, still the secrets.
    secret = "whsec_" + base64.b64encode(b"\xff" * 32).decode()

    def echo(request: Received) -> Reply:
        echoed = json.dumps({"secret": secret, "token": "header-token-secret"})
        return (500, {}, echoed.replace("/", "\\/").encode())

    receiver.on("/hook", echo)
    SubscriptionRepository(store, cipher).create(
        subscription(
            "a",
            receiver.url(),
            secrets=SecretPair(Secret(secret)),
            headers={"Authorization": Secret("Bearer header-token-secret")},
            retry_schedule=(0,),
        )
    )
    result = make_engine(store, cipher).publish(events(1))
    [logged] = OutboxRepository(store).attempts(result.message_ids[0])
    assert logged.status_code == 500
    assert logged.response_excerpt == WITHHELD


def test_a_secret_beyond_the_excerpt_does_not_withhold_it(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    # Only the first 512 characters are kept: a secret echoed far beyond them is not in the
    # excerpt, so the excerpt is kept as it is.
    secret = "whsec_" + base64.b64encode(b"\xff" * 32).decode()
    far = "x" * 5000 + json.dumps({"secret": secret}).replace("/", "\\/")
    receiver.on("/hook", lambda request: (500, {}, far.encode()))
    SubscriptionRepository(store, cipher).create(
        subscription("a", receiver.url(), secrets=SecretPair(Secret(secret)), retry_schedule=(0,))
    )
    result = make_engine(store, cipher).publish(events(1))
    [logged] = OutboxRepository(store).attempts(result.message_ids[0])
    assert logged.response_excerpt == "x" * 512


# --- replay ----------------------------------------------------------------------------------


def test_replay_one_delivery(store: Store, cipher: Fernet, receiver: Receiver) -> None:
    answers = iter([400, 400, 200])
    receiver.on("/hook", lambda _r: (next(answers), {}, b""))
    SubscriptionRepository(store, cipher).create(subscription("a", receiver.url()))
    engine = make_engine(store, cipher)
    one, two = engine.publish(events(2)).message_ids
    assert engine.replay(message_id=one) == [one]
    assert engine.outbox.get(one).status == "delivered"
    assert engine.outbox.get(two).status == "failed"
    assert receiver.ids() == Counter({one: 2, two: 1})


def test_replay_a_time_window_of_a_subscription(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    fail = True
    receiver.on("/a", lambda _r: (400 if fail else 200, {}, b""))
    repo = SubscriptionRepository(store, cipher)
    repo.create(subscription("a", receiver.url("/a")))
    repo.create(subscription("b", receiver.url("/b")))
    engine = make_engine(store, cipher)
    early = engine.publish(events(2, prefix="early")).message_ids
    time.sleep(0.05)
    since = datetime.now(timezone.utc)
    window = engine.publish(events(2, prefix="window")).message_ids
    time.sleep(0.05)
    until = datetime.now(timezone.utc)
    late = engine.publish(events(2, prefix="late")).message_ids
    fail = False
    replayed = engine.replay(subscription="a", since=since, until=until)
    mine = {d.message_id for d in engine.outbox.find(subscription="a")}
    assert len(replayed) == 2
    assert set(replayed) == mine & set(window)
    counted = receiver.ids("/a")
    assert all(counted[m] == 2 for m in replayed)
    assert all(counted[m] == 1 for m in mine & {*early, *late})
    assert engine.summary(subscription="a").failed == 4
    assert len(receiver.at("/b")) == 6  # the other subscription was left alone


def test_replay_all_dead_letters_of_a_subscription(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    down = True
    receiver.on("/hook", lambda _r: (503 if down else 200, {}, b""))
    SubscriptionRepository(store, cipher).create(subscription("a", receiver.url()))
    engine = make_engine(store, cipher)
    dead = engine.publish(events(3), wait=5)
    assert dead.summary.dead == 3
    down = False
    delivered = engine.publish(events(1, prefix="ok")).message_ids
    assert sorted(engine.replay(subscription="a", dead_only=True)) == sorted(dead.message_ids)
    assert engine.summary(subscription="a").delivered == 4
    assert receiver.ids()[delivered[0]] == 1
    # A replayed delivery gets a fresh round: three attempts, then one success.
    assert engine.outbox.get(dead.message_ids[0]).attempts == 1


def test_replay_of_a_disabled_subscription_waits_for_enable(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    receiver.on("/hook", always(400))
    repo = SubscriptionRepository(store, cipher)
    repo.create(subscription("a", receiver.url()))
    engine = make_engine(store, cipher)
    failed = engine.publish(events(1)).message_ids
    repo.disable("a", "by hand")
    assert engine.replay(subscription="a", dead_only=True) == failed
    assert engine.outbox.get(failed[0]).status == "paused"
    assert len(receiver.requests) == 1


# --- concurrency -----------------------------------------------------------------------------


def test_two_hundred_events_to_three_subscriptions_are_each_delivered_once(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    receiver.on("/flaky", fail_first(1))
    repo = SubscriptionRepository(store, cipher)
    repo.create(subscription("one", receiver.url("/one")))
    repo.create(subscription("two", receiver.url("/two"), scheme="rkt"))
    repo.create(subscription("flaky", receiver.url("/flaky")))
    started = time.monotonic()
    result = make_engine(store, cipher).publish(events(200), wait=5)
    elapsed = time.monotonic() - started
    assert result.summary.delivered == 600
    for path in ("/one", "/two"):
        counted = receiver.ids(path)
        assert len(counted) == 200
        assert set(counted.values()) == {1}
    assert set(receiver.ids("/flaky").values()) == {2}  # failed once, then delivered once
    assert elapsed < 20


# --- destinations ----------------------------------------------------------------------------


def test_private_destination_is_refused_without_an_allow_setting(
    sqlite_store: Store, cipher: Fernet, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS", raising=False)
    SubscriptionRepository(sqlite_store, cipher).create(subscription("a", receiver.url()))
    engine = make_engine(sqlite_store, cipher, policy=None)  # the configured policy
    result = engine.publish(events(2))
    assert receiver.requests == []
    assert result.summary.failed == 2
    refused = engine.outbox.get(result.message_ids[0])
    assert refused.status == "failed"
    assert refused.last_error is not None
    assert "loopback" in refused.last_error
    assert "outbound_allow_networks" in refused.last_error
    [attempt] = engine.outbox.attempts(refused.message_id)
    assert (attempt.outcome, attempt.status_code) == ("refused", None)


def test_allowed_network_setting_lets_a_local_destination_through(
    sqlite_store: Store, cipher: Fernet, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS", "127.0.0.1/32")
    SubscriptionRepository(sqlite_store, cipher).create(subscription("a", receiver.url()))
    result = make_engine(sqlite_store, cipher, policy=None).publish(events(1))
    assert result.summary.delivered == 1


def test_a_host_resolving_to_a_private_address_is_refused(
    sqlite_store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    port = receiver.server.server_address[1]
    SubscriptionRepository(sqlite_store, cipher).create(
        subscription("a", f"http://localhost:{port}/hook")
    )
    # localhost also resolves to ::1, which the allow-list does not name.
    policy = DestinationPolicy(allow=["127.0.0.1/32"], resolver=lambda host, port: ["::1"])
    result = make_engine(sqlite_store, cipher, policy=policy).publish(events(1))
    assert result.summary.failed == 1
    assert receiver.requests == []


# --- body templates --------------------------------------------------------------------------


def test_body_template_renders_each_delivery_body(
    sqlite_store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    inline = (
        '{"type": {{ event_name | tojson }}, "chat": {{ data.chat_id | tojson }}, '
        '"id": {{ message_id | tojson }}, "to": {{ subscription | tojson }}}'
    )
    repo = SubscriptionRepository(sqlite_store, cipher)
    repo.create(subscription("crm", receiver.url("/crm"), body_template=inline))
    repo.create(subscription("slack", receiver.url("/slack"), body_template="slack.json.j2"))
    result = make_engine(sqlite_store, cipher).publish(events(1))
    [crm] = receiver.at("/crm")
    assert crm.json() == {
        "type": "insight.summary",
        "chat": "cht_0",
        "id": message_id("crm", "run-1/0"),
        "to": "crm",
    }
    standardwebhooks.Webhook(PRIMARY).verify(crm.body, crm.headers)  # signed as sent
    [slack] = receiver.at("/slack")
    assert "insight.summary" in slack.json()["text"]
    assert result.summary.delivered == 2


def test_broken_body_template_fails_the_publication_before_anything_is_sent(
    sqlite_store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    from airhook.core.errors import TemplateRenderError

    repo = SubscriptionRepository(sqlite_store, cipher)
    repo.create(subscription("fine", receiver.url("/fine")))
    repo.create(subscription("broken", receiver.url("/broken"), body_template="{{ nope }}"))
    with pytest.raises(TemplateRenderError, match="subscription broken"):
        make_engine(sqlite_store, cipher).publish(events(1))
    assert receiver.requests == []
    assert rows(sqlite_store, deliveries) == []


def test_body_template_stops_at_the_configured_render_time_limit(
    sqlite_store: Store, cipher: Fernet, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airhook.core.errors import TemplateRenderError

    monkeypatch.setenv("AIRFLOW__AIRHOOK__RENDER_TIMEOUT_SECONDS", "0.3")
    slow = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{}"
    repo = SubscriptionRepository(sqlite_store, cipher)
    repo.create(subscription("slow", receiver.url("/slow"), body_template=slow))
    with pytest.raises(TemplateRenderError, match=r"longer than 0\.3 seconds") as caught:
        make_engine(sqlite_store, cipher).publish(events(1))
    assert caught.value.template == "body template of subscription slow"
    assert receiver.requests == []


def test_send_test_sends_the_real_body_and_records_nothing(
    sqlite_store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    inline = '{"type": {{ event_name | tojson }}, "id": {{ message_id | tojson }}}'
    sub = SubscriptionRepository(sqlite_store, cipher).create(
        subscription("crm", receiver.url(), body_template=inline, active=False)
    )
    attempt = make_engine(sqlite_store, cipher).send_test(
        sub, {"event": "insight.summary"}, event="insight.summary"
    )
    assert (attempt.outcome, attempt.status_code) == ("delivered", 200)
    [request] = receiver.requests
    assert request.json() == {"type": "insight.summary", "id": attempt.message_id}
    assert attempt.message_id.startswith("msg_test_")
    standardwebhooks.Webhook(PRIMARY).verify(request.body, request.headers)
    assert rows(sqlite_store, deliveries) == []
    assert rows(sqlite_store, attempts) == []


# --- fresh deliveries: claimed as they are added, sent from memory ---------------------------


def test_publish_sends_fresh_deliveries_without_claiming_them(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    SubscriptionRepository(store, cipher).create(subscription("a", receiver.url()))
    engine = make_engine(store, cipher)
    claims: list[int] = []
    claim = engine.outbox.claim

    def counting_claim(**options: Any) -> Any:
        claimed = claim(**options)
        claims.append(len(claimed))
        return claimed

    engine.outbox.claim = counting_claim  # type: ignore[method-assign]
    result = engine.publish(events(50))
    assert result.summary.delivered == 50
    assert sum(claims) == 0  # nothing was read back through a claim
    assert sorted(receiver.ids()) == sorted(result.message_ids)
    assert set(receiver.ids().values()) == {1}
    assert {row["attempts"] for row in rows(store, deliveries)} == {1}
    assert len(rows(store, attempts)) == 50


def test_fresh_deliveries_are_committed_as_claimed_before_they_are_sent(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    seen: list[tuple[str, int]] = []

    def look(request: Received) -> Reply:
        # What another process would read while the request is in flight.
        with store.read() as connection:
            row = connection.execute(
                sa.select(deliveries.c.status, deliveries.c.attempts).where(
                    deliveries.c.message_id == request.webhook_id
                )
            ).one()
        seen.append((row.status, row.attempts))
        return (200, {}, b"ok")

    receiver.on("/hook", look)
    SubscriptionRepository(store, cipher).create(subscription("a", receiver.url()))
    engine = make_engine(store, cipher)
    engine.publish(events(3))
    assert seen == [("sending", 0)] * 3
    # A claim taken meanwhile finds nothing: the publishing sender holds them.
    assert engine.outbox.claim(now=datetime.now(timezone.utc), lease_seconds=60) == []


def test_a_fresh_delivery_whose_sender_crashed_goes_out_again_once_its_claim_lapses(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    SubscriptionRepository(store, cipher).create(subscription("a", receiver.url()))
    engine = make_engine(store, cipher)
    new = engine.prepare(events(2))
    # The crashed sender: rows added as claimed, never sent, never settled.
    added = engine.outbox.add_claimed(new, lease_seconds=900)
    assert [c.message_id for c in added.claimed] == [d.message_id for d in new]
    assert status_of(store) == {"a": "sending,sending"}
    assert engine.deliver().deliveries == 0  # the claim still holds: nobody else sends them
    assert receiver.requests == []
    # The claim lapses (here: a sender whose claim was over the moment it was taken).
    lapsed = engine.prepare(events(2, prefix="run-2"))
    engine.outbox.add_claimed(lapsed, lease_seconds=0)
    attempted = engine.deliver()
    assert attempted.delivered == 2
    assert sorted(receiver.ids()) == sorted(d.message_id for d in lapsed)
    assert status_of(store) == {"a": "delivered,delivered,sending,sending"}


def test_add_claimed_claims_only_new_deliveries_of_active_subscriptions(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    repo = SubscriptionRepository(store, cipher)
    repo.create(subscription("on", receiver.url()))
    repo.create(subscription("off", receiver.url()))
    engine = make_engine(store, cipher)
    new = engine.prepare(events(2))
    repo.disable("off", "maintenance")  # after matching, before adding
    outbox = engine.outbox
    added = outbox.add_claimed([*new, new[0]], lease_seconds=900)  # a duplicate: added once
    assert set(added.created) == {d.message_id for d in new}
    assert sorted(c.subscription for c in added.claimed) == ["on", "on"]  # claimed once
    assert all(c.attempts == 0 and c.body for c in added.claimed)
    assert status_of(store) == {"off": "paused,paused", "on": "sending,sending"}
    again = outbox.add_claimed(new, lease_seconds=900)
    assert (again.created, again.claimed) == ([], [])


def test_a_claim_takes_at_most_its_limit(store: Store, cipher: Fernet) -> None:
    # On PostgreSQL the LIMIT … SKIP LOCKED choice was once a plain subquery of the UPDATE, which
    # the planner could scan again per row: a claim of 2 took all 5.
    SubscriptionRepository(store, cipher).create(subscription("a", "http://127.0.0.1:9/hook"))
    outbox = OutboxRepository(store)
    t0 = datetime.now(timezone.utc)
    outbox.add([NewDelivery(f"msg_{n}", "a", "insight.summary", "{}") for n in range(5)], now=t0)
    taken = [len(outbox.claim(now=t0, lease_seconds=60, limit=2)) for _ in range(4)]
    assert taken == [2, 2, 1, 0]


def test_claims_of_a_long_round_are_renewed(store: Store, cipher: Fernet) -> None:
    SubscriptionRepository(store, cipher).create(subscription("a", "http://127.0.0.1:9/hook"))
    engine = make_engine(store, cipher)
    outbox = engine.outbox
    added = outbox.add_claimed(engine.prepare(events(2)), lease_seconds=0)
    ids = [c.message_id for c in added.claimed]
    outbox.extend(ids, lease_seconds=900)
    assert outbox.claim(now=datetime.now(timezone.utc), lease_seconds=60) == []
    later = datetime.now(timezone.utc) + timedelta(seconds=901)
    assert sorted(c.message_id for c in outbox.claim(now=later, lease_seconds=60)) == sorted(ids)


def test_a_sender_whose_claim_lapsed_cannot_settle_or_release_its_successors_claim(
    store: Store, cipher: Fernet
) -> None:
    """Sender A claims, stalls past its claim, sender B takes the delivery over: A's late
    outcome is logged but settles nothing (B's claim stays, no third sender can take it) and
    A's release hands nothing back; B's outcome settles it."""
    from airhook.store.outbox import AttemptRecord, Settled

    SubscriptionRepository(store, cipher).create(subscription("a", "http://127.0.0.1:9/hook"))
    outbox = OutboxRepository(store)
    t0 = datetime.now(timezone.utc)
    outbox.add([NewDelivery("msg_1", "a", "insight.summary", "{}")], now=t0)
    [a] = outbox.claim(now=t0, lease_seconds=900)
    [b] = outbox.claim(now=t0 + timedelta(seconds=901), lease_seconds=900)
    assert a.token != b.token
    late = t0 + timedelta(seconds=902)
    stale = outbox.record(
        [
            Settled(
                AttemptRecord("msg_1", "a", late, "retry", status_code=503),
                "pending",
                next_attempt_at=late,
                token=a.token,
            )
        ],
        disable_after=10,
        now=late,
    )
    outbox.release(["msg_1"], token=a.token, now=late)
    assert stale.stale == ["msg_1"]
    assert outbox.get("msg_1").status == "sending"  # still B's
    assert outbox.claim(now=t0 + timedelta(seconds=903), lease_seconds=900) == []
    assert [x.status_code for x in outbox.attempts("msg_1")] == [503]  # A's attempt is logged
    done = t0 + timedelta(seconds=904)
    outbox.record(
        [
            Settled(
                AttemptRecord("msg_1", "a", done, "delivered", status_code=200),
                "delivered",
                token=b.token,
            )
        ],
        disable_after=10,
        now=done,
    )
    delivery = outbox.get("msg_1")
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)


def test_publish_does_not_report_a_delivery_another_sender_took_over(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    # While the request is out, another sender takes the delivery over (as after a lapsed
    # claim): this publish's 200 settles nothing, so its summary must not say "delivered".
    def taken_over(request: Received) -> Reply:
        with store.begin() as connection:
            connection.execute(deliveries.update().values(claim_token="another-sender"))
        return (200, {}, b"ok")

    receiver.on("/hook", taken_over)
    SubscriptionRepository(store, cipher).create(subscription("a", receiver.url()))
    result = make_engine(store, cipher).publish(events(1))
    [mid] = result.message_ids
    assert OutboxRepository(store).get(mid).status == "sending"  # still the other one's
    assert result.summary.as_dict()["delivered"] == 0
    assert result.summary.pending == 1


def test_a_lapsed_claims_failures_are_not_counted_twice(store: Store, cipher: Fernet) -> None:
    # Five deliveries fail for both the stale sender and its successor: five failures, not ten.
    from airhook.store.outbox import AttemptRecord, Settled

    repository = SubscriptionRepository(store, cipher)
    repository.create(subscription("a", "http://127.0.0.1:9/hook"))
    outbox = OutboxRepository(store)
    t0 = datetime.now(timezone.utc)
    ids = [f"msg_f{i}" for i in range(5)]
    outbox.add([NewDelivery(m, "a", "insight.summary", "{}") for m in ids], now=t0)
    first = outbox.claim(now=t0, lease_seconds=900, message_ids=ids)
    second = outbox.claim(now=t0 + timedelta(seconds=901), lease_seconds=900, message_ids=ids)
    for claimed, seconds in ((second, 905), (first, 906)):
        at = t0 + timedelta(seconds=seconds)
        outbox.record(
            [
                Settled(
                    AttemptRecord(c.message_id, "a", at, "failed", 404), "failed", token=c.token
                )
                for c in claimed
            ],
            disable_after=10,
            now=at,
        )
    after = repository.get("a")
    assert (after.consecutive_failures, after.active) == (5, True)


def test_record_counts_every_attempt_even_of_one_delivery_twice(
    store: Store, cipher: Fernet
) -> None:
    from airhook.store.outbox import AttemptRecord, Settled

    SubscriptionRepository(store, cipher).create(subscription("a", "http://127.0.0.1:9/hook"))
    engine = make_engine(store, cipher)
    outbox = engine.outbox
    [claimed] = outbox.add_claimed(engine.prepare(events(1)), lease_seconds=900).claimed
    mid = claimed.message_id
    at = datetime.now(timezone.utc)
    retry = Settled(
        AttemptRecord(mid, "a", at, "retry", 503, 1.5, "HTTP 503", "busy"),
        "pending",
        next_attempt_at=at,  # still claimed for the second attempt below
    )
    done = Settled(
        AttemptRecord(mid, "a", at + timedelta(seconds=1), "delivered", 200, 2.0), "delivered"
    )
    with store.begin() as connection:  # keep the claim between the two (as a claim would)
        connection.execute(deliveries.update().values(status="sending"))
    outbox.record([retry], disable_after=10)
    with store.begin() as connection:
        connection.execute(deliveries.update().values(status="sending"))
    outbox.record([done, done], disable_after=10)  # the same outcome twice: counted twice
    delivery = outbox.get(mid)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 2, 200)
    assert delivery.finished_at is not None
    logged = outbox.attempts(mid)
    assert [(a.outcome, a.status_code, a.latency_ms) for a in logged] == [
        ("retry", 503, 1.5),
        ("delivered", 200, 2.0),
        ("delivered", 200, 2.0),
    ]
    assert logged[0].response_excerpt == "busy"
    assert logged[0].attempted_at == at


def test_the_outbox_refuses_a_driver_its_statements_are_not_written_for(tmp_path: Path) -> None:
    # Its inserts and outcome records are written for the driver (sqlite3, psycopg2), with no
    # SQLAlchemy Core twin: another parameter style fails here, not at the first publish.
    store = Store(f"sqlite:///{tmp_path / 'airhook.db'}")
    store.write_engine.dialect.paramstyle = "named"
    try:
        with pytest.raises(SetupError, match="pysqlite uses named") as refused:
            OutboxRepository(store)
        assert refused.value.setting == "[airhook] database_url"
    finally:
        store.dispose()


def test_a_destination_check_that_breaks_settles_each_delivery_as_an_internal_error(
    sqlite_store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    class BrokenPolicy(DestinationPolicy):
        def check(self, url: str) -> list[str]:
            raise RuntimeError("resolver configuration is broken")

    SubscriptionRepository(sqlite_store, cipher).create(
        subscription("a", receiver.url(), retry_schedule=(0, 30))
    )
    engine = make_engine(sqlite_store, cipher, policy=BrokenPolicy(allow=["127.0.0.1/32"]))
    result = engine.publish(events(2))
    assert receiver.requests == []
    assert result.summary.pending == 2  # retried later, not lost
    for mid in result.message_ids:
        [logged] = engine.outbox.attempts(mid)
        assert (logged.outcome, logged.error) == ("retry", "internal error: RuntimeError")


def test_outcomes_that_cannot_be_recorded_leave_the_deliveries_claimed(
    sqlite_store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    SubscriptionRepository(sqlite_store, cipher).create(subscription("a", receiver.url()))
    engine = make_engine(sqlite_store, cipher)

    def broken_record(*_args: Any, **_options: Any) -> Any:
        raise sa.exc.OperationalError("UPDATE …", {}, Exception("disk I/O error"))

    engine.outbox.record = broken_record  # type: ignore[method-assign]
    with pytest.raises(sa.exc.OperationalError):
        engine.publish(events(3))
    # Sent but not recorded: still claimed, so they go out again once the claim lapses.
    assert status_of(sqlite_store) == {"a": "sending,sending,sending"}
    assert engine.outbox.claim(now=datetime.now(timezone.utc), lease_seconds=60) == []
    later = datetime.now(timezone.utc) + timedelta(seconds=901)
    assert len(engine.outbox.claim(now=later, lease_seconds=60)) == 3


# --- a broken subscription, odd responses, claim renewal under a lock (review findings) --------


def test_a_subscription_whose_url_cannot_be_used_fails_alone(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    # A soft hyphen in the host: urlsplit takes it, yarl (aiohttp's URL) refuses it.
    repo = SubscriptionRepository(store, cipher)
    repo.create(subscription("good", receiver.url("/good")))
    repo.create(subscription("bad", "http://\xad.example/hook"))
    engine = make_engine(store, cipher)
    result = engine.publish(events(3))
    assert len([r for r in receiver.requests if r.path == "/good"]) == 3
    assert result.summary.delivered == 3
    bad = engine.outbox.find(subscription="bad")
    assert len(bad) == 3
    for delivery in bad:
        assert delivery.status in ("pending", "dead")  # settled as retries, not left "sending"
        logged = engine.outbox.attempts(delivery.message_id)
        assert logged
        assert {a.error for a in logged} == {"internal error: ValueError"}


def test_a_nul_byte_in_a_response_is_recorded_without_failing_the_flush(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    repo = SubscriptionRepository(store, cipher)
    repo.create(subscription("good", receiver.url("/good")))
    repo.create(subscription("nul", receiver.url("/nul")))
    receiver.on("/nul", always(500, body=b"oops\x00binary"))
    engine = make_engine(store, cipher)
    result = engine.publish(events(2))
    assert result.summary.delivered == 2
    assert status_of(store)["good"] == "delivered,delivered"
    nul = engine.outbox.find(subscription="nul")
    assert len(nul) == 2
    for delivery in nul:
        assert delivery.status in ("pending", "dead")
        logged = engine.outbox.attempts(delivery.message_id)
        assert logged
        assert {a.response_excerpt for a in logged} == {"oops\ufffdbinary"}


def test_renewing_claims_skips_rows_another_transaction_holds(
    postgres_url: str, cipher: Fernet, tmp_path: Path
) -> None:
    from tests.conftest import create_postgres_database

    store = Store(create_postgres_database(postgres_url))
    try:
        upgrade(store)
        SubscriptionRepository(store, cipher).create(subscription("a", "http://127.0.0.1:9/"))
        outbox = OutboxRepository(store)
        new = [
            NewDelivery(
                message_id=f"msg_{i}",
                subscription="a",
                event="insight.summary",
                platform=None,
                publication="p",
                body="{}",
            )
            for i in range(2)
        ]
        now = datetime.now(timezone.utc)
        outbox.add_claimed(new, lease_seconds=60, now=now)
        with store.write_engine.connect() as other, other.begin():
            # A flush settling msg_0 holds its row lock.
            other.execute(
                sa.select(deliveries.c.id)
                .where(deliveries.c.message_id == "msg_0")
                .with_for_update()
            ).all()
            renewal = threading.Thread(
                target=outbox.extend,
                args=(["msg_0", "msg_1"],),
                kwargs={"lease_seconds": 600, "now": now},
            )
            renewal.start()
            renewal.join(30)
            # Without SKIP LOCKED it would wait for this transaction, which waits for it.
            assert not renewal.is_alive()
        until = {d.message_id: d.next_attempt_at for d in outbox.find(publication="p")}
        assert until["msg_1"] > now + timedelta(seconds=500)  # renewed
        assert until["msg_0"] < now + timedelta(seconds=120)  # locked: left for its flush
    finally:
        store.dispose()
