"""The receiver over real HTTP: uvicorn on 127.0.0.1, every test on SQLite and on PostgreSQL.

Each test builds the receiver app with ``create_app(ReceiverRuntime(...))`` on its own store (a
source cache, a group-commit writer, no dispatcher) and talks to it with ``requests`` through a
real ``uvicorn.Server``, started once for the module in a thread (starting and stopping uvicorn
costs 0.2 s, a test a few milliseconds).

Senders are independent of airhook's signing code: ``standardwebhooks`` signs the ``standard``
scheme, every other signature is an HMAC computed here the way each platform documents it.

The app's stats route uses Airflow's auth, so Airflow is imported into this process: once, with
``AIRFLOW_HOME`` in a temporary folder, and with the one warning its import raises here (Starlette
deprecating ``TestClient`` over httpx, pulled in by ``svcs``) filtered by its exact text.

After every test the captured log is checked: no secret, signature header or payload value.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import hmac
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import pytest
import requests
import sqlalchemy as sa
import standardwebhooks
import uvicorn
from cryptography.fernet import Fernet
from starlette.applications import Starlette
from starlette.routing import Mount

from airhook.core.access import BasicCredentials
from airhook.core.catalog import load_catalog
from airhook.core.secrets import Secret, SecretPair
from airhook.core.source import Source
from airhook.receiver.app import (
    STANDALONE_PREFIX,
    ReceiverRuntime,
    create_app,
    create_standalone_app,
)
from airhook.receiver.backpressure import Backpressure
from airhook.receiver.source_cache import SourceCache
from airhook.receiver.writer import GroupCommitWriter
from airhook.store import Store
from airhook.store.inbox import InboxEvent, InboxRepository
from airhook.store.sources import SourceRepository
from airhook.store.tables import inbox as inbox_table

CATALOG = load_catalog()
TOLERANCE = 300
DEFAULT_MAX_BODY = 64 * 1024
#: Payload values that must never reach a log line (they are in the samples below).
PAYLOAD_MARKERS = ("ada@example.com", "john@example.com", "grace.standard@example.com")

#: eeV.ai signs with an optional secret; airhook reads it as a timestamped HMAC (GitHub style).
EEV_OPTIONS = {
    "header": "X-EEV-Signature",
    "prefix": "sha256=",
    "timestamp_header": "X-EEV-Timestamp",
    "content": "{timestamp}.{body}",
}
#: A generic sender signing the GitHub way.
HUB_OPTIONS = {"header": "X-Hub-Signature-256", "prefix": "sha256="}
SCHEMES: dict[str, tuple[str, dict[str, Any]]] = {
    "caleida": ("token", {}),
    "ccai": ("ccai", {}),
    "eev": ("hmac", EEV_OPTIONS),
    "rkt": ("rkt", {}),
    "standard": ("standard", {}),
    "hmac": ("hmac", HUB_OPTIONS),
}


# --- senders, written without airhook's signing code -----------------------------------------


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def _hmac(key: str, message: bytes) -> bytes:
    return hmac.new(key.encode(), message, hashlib.sha256).digest()


def standard_headers(secret: str, body: bytes, *, msg_id: str, timestamp: int) -> dict[str, str]:
    when = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    signature = standardwebhooks.Webhook(secret).sign(msg_id, when, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def ccai_headers(secret: str, body: bytes, *, timestamp: int) -> dict[str, str]:
    digest = base64.b64encode(_hmac(secret, str(timestamp).encode() + body)).decode()
    return {"X-Signature-Timestamp": str(timestamp), "X-Signature": f"primary={digest}"}


def rkt_headers(secret: str, body: bytes) -> dict[str, str]:
    return {"X-RKT-Signature": _hmac(secret, body).hex()}


def token_headers(secret: str) -> dict[str, str]:
    return {"X-Webhook-Secret": secret}


def eev_headers(secret: str, body: bytes, *, timestamp: int) -> dict[str, str]:
    digest = _hmac(secret, f"{timestamp}.".encode() + body).hex()
    return {"X-EEV-Timestamp": str(timestamp), "X-EEV-Signature": "sha256=" + digest}


def hub_headers(secret: str, body: bytes) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + _hmac(secret, body).hex()}


def signed(
    profile: str, secret: str, body: bytes, *, timestamp: int | None = None, msg_id: str = ""
) -> dict[str, str]:
    """Headers a sender of ``profile`` puts on ``body``, signed with ``secret``."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    if profile == "caleida":
        return token_headers(secret)
    if profile == "ccai":
        return ccai_headers(secret, body, timestamp=timestamp)
    if profile == "eev":
        return eev_headers(secret, body, timestamp=timestamp)
    if profile == "rkt":
        return rkt_headers(secret, body)
    if profile == "standard":
        return standard_headers(secret, body, msg_id=msg_id or new_msg_id(), timestamp=timestamp)
    return hub_headers(secret, body)


def new_msg_id() -> str:
    return "msg_" + uuid.uuid4().hex


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def sample(platform: str, event: str, /, **changes: Any) -> dict[str, Any]:
    """A deep copy of the catalog's sample, with top-level fields changed."""
    payload = json.loads(json.dumps(CATALOG.event(platform, event).sample))
    payload.update(changes)
    return payload


#: A valid body per profile: (payload, event, canonical kind).
PAYLOADS: dict[str, tuple[dict[str, Any], str, str | None]] = {
    "caleida": (sample("caleida", "chat"), "chat", "conversation.started"),
    "ccai": (sample("ccai", "chat.created"), "chat.created", "conversation.started"),
    "eev": (
        sample("eev", "conversation.created"),
        "conversation.created",
        "conversation.started",
    ),
    "rkt": (sample("rkt", "lead.captured"), "lead.captured", "lead.captured"),
    "standard": (
        {
            "type": "invoice.paid",
            "timestamp": "2026-03-26T15:30:00Z",
            "data": {"email": "grace.standard@example.com"},
        },
        "invoice.paid",
        None,
    ),
    "hmac": (
        {"event": "build.finished", "id": "build-41", "data": {"ok": True}},
        "build.finished",
        None,
    ),
}


def body_of(profile: str) -> bytes:
    return dumps(PAYLOADS[profile][0])


def another_body_of(profile: str) -> bytes:
    """A second valid delivery, distinct from :func:`body_of` (another id, or another body)."""
    payload = json.loads(body_of(profile))
    if profile == "ccai":
        payload["event_id"] = "evt-ccai-second"
    elif profile in ("rkt", "standard"):
        payload["timestamp"] = "2026-03-26T15:31:00.000Z"
    else:
        payload["id"] = "evt_second"
    return dumps(payload)


def make_source(
    profile: str, name: str | None = None, *, secondary: str | None = None, **fields: Any
) -> tuple[Source, str]:
    """A source of ``profile`` signed the profile's way; return it and its primary secret."""
    scheme, options = SCHEMES[profile]
    secret = new_secret()
    source = Source(
        name=name or profile,
        profile=profile,
        scheme=scheme,
        secrets=SecretPair(Secret(secret), Secret(secondary) if secondary else None),
        scheme_options=dict(options),
        **fields,
    )
    return source, secret


# --- the receiver under uvicorn ----------------------------------------------------------------


class _CurrentApp:
    """An ASGI app forwarding to the current test's receiver app: one server for the module.

    Starting and stopping uvicorn costs about 0.2 s; each test still builds its own app with
    ``create_app(ReceiverRuntime(...))`` on its own store, and plugs it in here.
    """

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.app is not None, "no receiver app is plugged in"
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[_CurrentApp, str]]:
    """uvicorn on 127.0.0.1 in a thread; yields the app slot and the webhooks base URL."""
    # The app's stats route imports Airflow's API security: import it once, with a private
    # AIRFLOW_HOME, and without the one warning that import raises here (Starlette deprecating
    # its TestClient over httpx, imported by svcs), matched by its exact text.
    previous = os.environ.get("AIRFLOW_HOME")
    os.environ["AIRFLOW_HOME"] = str(tmp_path_factory.mktemp("airflow-home"))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r"Using `httpx` with `starlette.testclient` is deprecated"
            )
            import airflow.api_fastapi.core_api.security  # noqa: F401
    finally:
        if previous is None:
            os.environ.pop("AIRFLOW_HOME", None)
        else:
            os.environ["AIRFLOW_HOME"] = previous
    current = _CurrentApp()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound here and handed to uvicorn: no race for a free port
    # As ``airflow api-server`` runs uvicorn: logging left alone, X-Forwarded-* not trusted
    # (uvicorn's own default trusts them from 127.0.0.1, which would let a local client pick
    # the address the allow-list sees).
    config = uvicorn.Config(current, log_config=None, lifespan="off", proxy_headers=False)
    uvicorn_server = uvicorn.Server(config)
    thread = threading.Thread(
        target=uvicorn_server.run, kwargs={"sockets": [sock]}, name="uvicorn", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not uvicorn_server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start in 10 s"
        time.sleep(0.01)
    try:
        yield current, f"http://127.0.0.1:{sock.getsockname()[1]}/webhooks/"
    finally:
        uvicorn_server.should_exit = True
        thread.join(10)
        sock.close()
    assert not thread.is_alive(), "uvicorn did not stop in 10 s"


class Receiver:
    """One test's receiver: runtime, app, store, and the helpers the tests need around them."""

    def __init__(self, store: Store, cipher: Fernet, base: str) -> None:
        self.store = store
        self.base = base
        self.inbox = InboxRepository(store)
        self.repository = SourceRepository(store, cipher)
        self.runtime = ReceiverRuntime(
            catalog=CATALOG,
            sources=SourceCache(
                self.repository, CATALOG, tolerance=TOLERANCE, refresh_seconds=3600
            ),
            writer=GroupCommitWriter(self.inbox),
            default_max_body=DEFAULT_MAX_BODY,
        )
        self.app = create_app(self.runtime)
        #: Every secret and signature the test used: none may reach a log line.
        self.sensitive: set[str] = set()
        self.session = requests.Session()

    def add(self, source: Source) -> Source:
        """Store ``source`` and make the receiver see it."""
        created = self.repository.create(source)
        if source.secrets is not None:
            self.sensitive.update(s.reveal() for s in source.secrets.secrets)
        self.sensitive.update(t.reveal() for t in source.bearer_tokens)
        self.sensitive.update(c.password.reveal() for c in source.basic_credentials)
        self.runtime.sources.refresh()
        return created

    def send(
        self,
        name: str,
        body: bytes | Iterable[bytes],
        headers: dict[str, str] | None = None,
        *,
        method: str = "POST",
        session: requests.Session | None = None,
    ) -> requests.Response:
        headers = dict(headers or {})
        self.sensitive.update(
            value
            for key, value in headers.items()
            if len(value) >= 16
            and any(word in key.lower() for word in ("signature", "secret", "authorization"))
        )
        headers.setdefault("Content-Type", "application/json")
        return (session or self.session).request(
            method, self.base + name, data=body, headers=headers, timeout=30
        )

    def reject(
        self,
        name: str,
        body: bytes | Iterable[bytes],
        headers: dict[str, str] | None,
        status: int,
        error: str,
        *,
        case: str = "",
    ) -> dict[str, Any]:
        """Send; assert the status and reason, that nothing was recorded, and one more count."""
        before = self.outcomes(name).get(error, 0)
        response = self.send(name, body, headers)
        assert (response.status_code, response.json().get("error")) == (status, error), (
            f"{case}: {response.status_code} {response.text}"
        )
        assert "id" not in response.json(), case
        assert self.rows() == 0, f"{case}: a rejected delivery was recorded"
        assert self.outcomes(name).get(error, 0) == before + 1, f"{case}: not counted"
        return dict(response.json())

    def rows(self, source: str | None = None) -> int:
        return self.inbox.count(source)

    def events(self, source: str) -> list[InboxEvent]:
        return self.inbox.find(source, limit=1000)

    def outcomes(self, source: str) -> dict[str, int]:
        return self.runtime.metrics.snapshot().get(source, {})


def logged_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every record captured in this test so far (setup, call, current phase), with tracebacks."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    records = [*caplog.get_records("setup"), *caplog.get_records("call"), *caplog.records]
    return "\n".join(formatter.format(record) for record in records)


@pytest.fixture
def receiver(
    server: tuple[_CurrentApp, str],
    store: Store,
    cipher: Fernet,
    caplog: pytest.LogCaptureFixture,
) -> Iterator[Receiver]:
    """A receiver on ``store``, plugged into the module's server; its log is checked after."""
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="airhook")
    current, base = server
    running = Receiver(store, cipher, base)
    running.runtime.writer.start()
    current.app = running.app
    try:
        yield running
    finally:
        current.app = None
        running.session.close()
        running.runtime.writer.stop()
    text = logged_text(caplog)
    for value in [*running.sensitive, *PAYLOAD_MARKERS]:
        assert value not in text, "a secret, signature or payload value was logged"


# --- a valid delivery per profile --------------------------------------------------------------


@pytest.mark.parametrize("profile", list(SCHEMES))
def test_signed_delivery_is_recorded_and_acknowledged_202(receiver: Receiver, profile: str) -> None:
    source, secret = make_source(profile)
    receiver.add(source)
    body = body_of(profile)
    _, event, kind = PAYLOADS[profile]

    response = receiver.send(profile, body, signed(profile, secret, body))

    assert response.status_code == 202, response.text
    event_id = response.json()["id"]
    assert isinstance(event_id, str)
    assert event_id
    [recorded] = receiver.events(profile)
    assert recorded.id == event_id
    assert (recorded.source, recorded.profile, recorded.event, recorded.kind) == (
        profile,
        profile,
        event,
        kind,
    )
    assert recorded.body == body.decode()
    assert recorded.dispatched_at is None
    assert receiver.rows() == 1
    assert receiver.outcomes(profile) == {"accepted": 1}
    # The headers it came with are kept for the management views, without any signature.
    sent = {k.lower(): v for k, v in signed(profile, secret, body).items()}
    assert recorded.headers is not None
    kept = json.loads(recorded.headers)
    assert kept["content-type"] == "application/json"
    assert not any(v in kept.values() for v in sent.values() if len(v) > 12)
    assert not any("signature" in name or "secret" in name for name in kept)


def test_put_is_received_like_post(receiver: Receiver) -> None:
    source, secret = make_source("eev")
    receiver.add(source)
    body = body_of("eev")

    response = receiver.send("eev", body, signed("eev", secret, body), method="PUT")

    assert response.status_code == 202, response.text
    assert [e.id for e in receiver.events("eev")] == [response.json()["id"]]


def test_other_methods_are_not_allowed_405(receiver: Receiver) -> None:
    source, secret = make_source("rkt")
    receiver.add(source)
    body = body_of("rkt")

    response = receiver.send("rkt", body, signed("rkt", secret, body), method="PATCH")

    assert response.status_code == 405
    assert receiver.rows() == 0


def test_receiver_without_a_runtime_answers_503(server: tuple[_CurrentApp, str]) -> None:
    current, base = server
    current.app = create_app(None)  # no lifespan ran: what a failed start-up leaves behind
    try:
        response = requests.post(base + "rkt", data=b"{}", timeout=30)
    finally:
        current.app = None

    assert response.status_code == 503
    assert response.json() == {"error": "receiver_unavailable"}


def test_delivery_through_a_mount_like_the_api_servers_is_received(
    receiver: Receiver, server: tuple[_CurrentApp, str]
) -> None:
    # Airflow mounts the app at /airhook: the shortcut past FastAPI's stack must match the path
    # without the mount's root_path, as the router does, and the router must still answer 405.
    current, base = server
    current.app = Starlette(routes=[Mount("/airhook", app=receiver.app)])
    mounted = base.replace("/webhooks/", "/airhook/webhooks/")
    source, secret = make_source("rkt")
    receiver.add(source)
    body = body_of("rkt")
    headers = {"Content-Type": "application/json", **signed("rkt", secret, body)}

    accepted = receiver.session.post(mounted + "rkt", data=body, headers=headers, timeout=30)
    unknown = receiver.session.post(mounted + "nosuch", data=body, headers=headers, timeout=30)
    patch = receiver.session.patch(mounted + "rkt", data=body, headers=headers, timeout=30)
    nested = receiver.session.post(mounted + "rkt/more", data=body, headers=headers, timeout=30)

    assert accepted.status_code == 202, accepted.text
    assert [e.id for e in receiver.events("rkt")] == [accepted.json()["id"]]
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "unknown_source"}
    assert patch.status_code == 405
    assert nested.status_code == 404
    assert receiver.rows() == 1


# --- signatures and timestamps -------------------------------------------------------------


def test_wrong_signature_is_refused_401(receiver: Receiver) -> None:
    for profile in SCHEMES:
        source, _ = make_source(profile)
        receiver.add(source)
        body = body_of(profile)
        headers = signed(profile, new_secret(), body)

        receiver.reject(profile, body, headers, 401, "no_matching_signature", case=profile)


def test_body_changed_after_signing_is_refused_401(receiver: Receiver) -> None:
    source, secret = make_source("rkt")
    receiver.add(source)
    body = body_of("rkt")
    headers = signed("rkt", secret, body)

    changed = body.replace(b"John Doe", b"Jane Doe")
    receiver.reject("rkt", changed, headers, 401, "no_matching_signature")


def test_stale_timestamp_is_refused_401(receiver: Receiver) -> None:
    stale = int(time.time()) - TOLERANCE - 60
    for profile in ("standard", "ccai", "eev"):
        source, secret = make_source(profile)
        receiver.add(source)
        body = body_of(profile)
        headers = signed(profile, secret, body, timestamp=stale)

        receiver.reject(profile, body, headers, 401, "timestamp_too_old", case=profile)


def test_future_timestamp_is_refused_401(receiver: Receiver) -> None:
    future = int(time.time()) + TOLERANCE + 60
    for profile in ("standard", "ccai", "eev"):
        source, secret = make_source(profile)
        receiver.add(source)
        body = body_of(profile)
        headers = signed(profile, secret, body, timestamp=future)

        receiver.reject(profile, body, headers, 401, "timestamp_in_future", case=profile)


MISSING_HEADERS = [
    ("caleida", "X-Webhook-Secret"),
    ("ccai", "X-Signature"),
    ("ccai", "X-Signature-Timestamp"),
    ("eev", "X-EEV-Timestamp"),
    ("eev", "X-EEV-Signature"),
    ("rkt", "X-RKT-Signature"),
    ("standard", "webhook-id"),
    ("standard", "webhook-timestamp"),
    ("standard", "webhook-signature"),
    ("hmac", "X-Hub-Signature-256"),
]


def test_missing_signature_header_is_refused_401(receiver: Receiver) -> None:
    secrets = {}
    for profile in SCHEMES:
        source, secrets[profile] = make_source(profile)
        receiver.add(source)
    for profile, dropped in MISSING_HEADERS:
        body = body_of(profile)
        headers = signed(profile, secrets[profile], body)
        del headers[dropped]

        receiver.reject(profile, body, headers, 401, "missing_header", case=dropped)


MALFORMED_HEADERS = [
    ("standard", "webhook-signature", "v1,a,b"),
    ("standard", "webhook-signature", "v1"),
    ("standard", "webhook-signature", "v1,"),
    ("standard", "webhook-signature", "v1,not*base64!"),
    ("standard", "webhook-signature", "v1,YWJj"),  # base64 of 3 bytes, not a digest
    ("standard", "webhook-signature", "v2,c2lnbmF0dXJl"),
    ("standard", "webhook-signature", "v1,\u00e9t\u00e9"),  # latin-1 bytes on the wire
    ("standard", "webhook-signature", "v1," + "A" * 5000),
    ("standard", "webhook-timestamp", "1e9"),
    ("standard", "webhook-timestamp", "-1"),
    ("standard", "webhook-timestamp", "1" * 13),
    ("ccai", "X-Signature", "primary=%%%"),
    ("ccai", "X-Signature", "primary"),
    ("ccai", "X-Signature", "tertiary=" + "A" * 44),
    ("ccai", "X-Signature-Timestamp", "2026-03-26T14:05:01Z"),
    ("rkt", "X-RKT-Signature", "zz" * 32),
    ("rkt", "X-RKT-Signature", "abc"),
    ("eev", "X-EEV-Signature", "sha1=" + "0" * 64),
    ("eev", "X-EEV-Signature", "sha256=" + "g" * 64),
    ("hmac", "X-Hub-Signature-256", "sha256="),
    ("caleida", "X-Webhook-Secret", "s\u00e9cret"),
]


def test_malformed_signature_header_is_refused_401_never_500(receiver: Receiver) -> None:
    secrets = {}
    for profile in SCHEMES:
        source, secrets[profile] = make_source(profile)
        receiver.add(source)
    for profile, header, value in MALFORMED_HEADERS:
        body = body_of(profile)
        headers = {**signed(profile, secrets[profile], body), header: value}

        receiver.reject(profile, body, headers, 401, "malformed_header", case=f"{header}: {value}")


# --- replays and duplicates --------------------------------------------------------------------


def test_the_same_signed_request_again_is_a_duplicate_with_the_first_id(
    receiver: Receiver,
) -> None:
    # Signed a minute before it is sent, and sent again later: same bytes, same headers, still
    # within the tolerance. Harmless (nothing runs twice), so answered like any duplicate.
    signed_at = int(time.time()) - 60
    for profile in ("standard", "ccai", "eev"):
        source, secret = make_source(profile)
        receiver.add(source)
        body = body_of(profile)
        headers = signed(profile, secret, body, timestamp=signed_at)

        first = receiver.send(profile, body, headers)
        again = receiver.send(profile, body, headers)

        assert first.status_code == 202, f"{profile}: {first.text}"
        assert again.status_code == 200, f"{profile}: {again.text}"
        assert again.json() == {"id": first.json()["id"], "duplicate": True}
        assert [e.id for e in receiver.events(profile)] == [first.json()["id"]]
        assert receiver.outcomes(profile) == {"accepted": 1, "duplicate": 1}


def test_the_same_signed_request_once_its_timestamp_is_stale_is_refused_401(
    receiver: Receiver,
) -> None:
    # Recorded while its timestamp was within the tolerance; the very same bytes and headers
    # played again once it no longer is are refused before any dedupe.
    signed_at = int(time.time()) - TOLERANCE + 2
    sent: dict[str, tuple[bytes, dict[str, str], str]] = {}
    for profile in ("standard", "ccai", "eev"):
        source, secret = make_source(profile)
        receiver.add(source)
        body = body_of(profile)
        headers = signed(profile, secret, body, timestamp=signed_at)
        first = receiver.send(profile, body, headers)
        assert first.status_code == 202, f"{profile}: {first.text}"
        sent[profile] = (body, headers, first.json()["id"])
    while time.time() <= signed_at + TOLERANCE + 0.2:
        time.sleep(0.1)

    for profile, (body, headers, first_id) in sent.items():
        replay = receiver.send(profile, body, headers)

        assert replay.status_code == 401, f"{profile}: {replay.text}"
        assert replay.json() == {"error": "timestamp_too_old"}
        assert [e.id for e in receiver.events(profile)] == [first_id]
        assert receiver.outcomes(profile) == {"accepted": 1, "timestamp_too_old": 1}


def test_retry_signed_anew_is_a_duplicate_with_the_first_id(receiver: Receiver) -> None:
    now = int(time.time())
    for profile in ("standard", "ccai", "eev"):
        source, secret = make_source(profile)
        receiver.add(source)
        body = body_of(profile)
        msg_id = new_msg_id()  # the standard scheme's delivery id; the others carry theirs

        first = receiver.send(
            profile, body, signed(profile, secret, body, timestamp=now - 5, msg_id=msg_id)
        )
        retry = receiver.send(
            profile, body, signed(profile, secret, body, timestamp=now, msg_id=msg_id)
        )

        assert first.status_code == 202, f"{profile}: {first.text}"
        assert retry.status_code == 200, f"{profile}: {retry.text}"
        assert retry.json() == {"id": first.json()["id"], "duplicate": True}
        assert receiver.rows(profile) == 1
        assert receiver.outcomes(profile) == {"accepted": 1, "duplicate": 1}


def test_standard_retry_with_another_body_but_the_same_webhook_id_is_a_duplicate(
    receiver: Receiver,
) -> None:
    source, secret = make_source("standard")
    receiver.add(source)
    msg_id = new_msg_id()
    first_body, second_body = body_of("standard"), another_body_of("standard")

    first = receiver.send(
        "standard", first_body, signed("standard", secret, first_body, msg_id=msg_id)
    )
    retry = receiver.send(
        "standard", second_body, signed("standard", secret, second_body, msg_id=msg_id)
    )

    assert retry.status_code == 200, retry.text
    assert retry.json() == {"id": first.json()["id"], "duplicate": True}
    [recorded] = receiver.events("standard")
    assert recorded.body == first_body.decode()


def test_rkt_same_body_twice_is_a_duplicate_with_the_first_id(receiver: Receiver) -> None:
    source, secret = make_source("rkt")
    receiver.add(source)
    body = body_of("rkt")

    first = receiver.send("rkt", body, signed("rkt", secret, body))
    again = receiver.send("rkt", body, signed("rkt", secret, body))
    other = receiver.send(
        "rkt", another_body_of("rkt"), signed("rkt", secret, another_body_of("rkt"))
    )

    assert first.status_code == 202, first.text
    assert again.status_code == 200, again.text
    assert again.json() == {"id": first.json()["id"], "duplicate": True}
    assert other.status_code == 202, other.text
    assert receiver.rows() == 2


def test_same_delivery_id_on_two_sources_is_recorded_twice(receiver: Receiver) -> None:
    one, one_secret = make_source("caleida", "caleida-one")
    two, two_secret = make_source("caleida", "caleida-two")
    receiver.add(one)
    receiver.add(two)
    body = body_of("caleida")

    first = receiver.send("caleida-one", body, signed("caleida", one_secret, body))
    second = receiver.send("caleida-two", body, signed("caleida", two_secret, body))

    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["id"] != second.json()["id"]
    assert receiver.rows() == 2


# --- backpressure --------------------------------------------------------------------------


def _pressure(receiver: Receiver, *, backlog: int = 0, queue: int = 0) -> Backpressure:
    """Give ``receiver`` backpressure with these bounds, counted only when the test says."""
    pressure = Backpressure(
        receiver.inbox.backlog,
        receiver.runtime.writer.queued,
        backlog_bound=backlog,
        queue_bound=queue,
        check_seconds=3600,
    )
    pressure.check()
    receiver.runtime.backpressure = pressure
    return pressure


def _standard_delivery(secret: str, index: int) -> tuple[bytes, dict[str, str]]:
    body = dumps({"type": "invoice.paid", "data": {"n": index}})
    return body, signed("standard", secret, body, msg_id=f"msg_backpressure_{index}")


def test_past_the_backlog_bound_deliveries_get_503_with_retry_after_and_are_not_recorded(
    receiver: Receiver,
) -> None:
    source, secret = make_source("standard")
    receiver.add(source)
    pressure = _pressure(receiver, backlog=3)
    for index in range(3):
        body, headers = _standard_delivery(secret, index)
        assert receiver.send("standard", body, headers).status_code == 202
    pressure.check()  # the thread would, every backpressure_check_seconds
    assert pressure.backlog == 3

    body, headers = _standard_delivery(secret, 3)
    refused = receiver.send("standard", body, headers)

    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"] == str(receiver.runtime.retry_after_seconds)
    assert refused.json() == {
        "error": "backpressure",
        "retry_after": receiver.runtime.retry_after_seconds,
    }
    assert receiver.rows() == 3
    assert receiver.outcomes("standard")["backpressure"] == 1
    # Once the dispatcher has caught up, the sender's retry of the same delivery is recorded.
    receiver.inbox.mark_dispatched(
        [e.id for e in receiver.events("standard")], datetime.now(timezone.utc)
    )
    pressure.check()
    accepted = receiver.send("standard", body, headers)
    assert accepted.status_code == 202, accepted.text
    assert receiver.rows() == 4
    assert receiver.inbox.get(accepted.json()["id"]) is not None


def test_backpressure_leaves_unknown_sources_404_and_inactive_sources_403(
    receiver: Receiver,
) -> None:
    source, secret = make_source("standard", active=False)
    receiver.add(source)
    pressure = _pressure(receiver, backlog=1)
    pressure.backlog = 1  # as if counted
    body, headers = _standard_delivery(secret, 0)

    assert receiver.send("nosuch", body, headers).status_code == 404
    assert receiver.send("standard", body, headers).status_code == 403


def test_past_the_writer_queue_bound_deliveries_get_503_and_the_queued_ones_are_recorded(
    server: tuple[_CurrentApp, str], store: Store, cipher: Fernet
) -> None:
    current, base = server
    receiver = Receiver(store, cipher, base)
    current.app = receiver.app
    source, secret = make_source("standard")
    receiver.add(source)
    _pressure(receiver, queue=2)
    # The writer is not started yet: deliveries wait in its queue, as behind a slow store.
    try:
        with ThreadPoolExecutor(2) as pool:
            waiting = [
                pool.submit(receiver.send, "standard", *_standard_delivery(secret, index))
                for index in range(2)
            ]
            deadline = time.monotonic() + 30
            while receiver.runtime.writer.queued() < 2:
                assert time.monotonic() < deadline, "the two deliveries never reached the queue"
                time.sleep(0.01)
            with requests.Session() as other:
                refused = receiver.send("standard", *_standard_delivery(secret, 2), session=other)
            receiver.runtime.writer.start()
            answers = [future.result(timeout=30) for future in waiting]
    finally:
        current.app = None
        receiver.runtime.writer.stop()

    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"] == str(receiver.runtime.retry_after_seconds)
    assert [answer.status_code for answer in answers] == [202, 202]
    assert receiver.rows() == 2
    assert {e.id for e in receiver.events("standard")} == {a.json()["id"] for a in answers}


# --- body size -----------------------------------------------------------------------------


def _padded(size: int) -> bytes:
    """A standard-profile body of exactly ``size`` bytes."""
    empty = dumps({"type": "bulk", "data": {"pad": ""}})
    body = dumps({"type": "bulk", "data": {"pad": "x" * (size - len(empty))}})
    assert len(body) == size
    return body


def test_body_over_the_limit_is_refused_413(receiver: Receiver) -> None:
    source, secret = make_source("standard")
    receiver.add(source)
    body = _padded(DEFAULT_MAX_BODY + 1)

    receiver.reject("standard", body, signed("standard", secret, body), 413, "too_large")


def test_chunked_body_growing_past_the_limit_is_refused_413(receiver: Receiver) -> None:
    source, secret = make_source("standard")
    receiver.add(source)
    body = _padded(DEFAULT_MAX_BODY + 4096)
    sent: list[int] = []

    def stream() -> Iterator[bytes]:  # no Content-Length: requests sends it chunked
        for start in range(0, len(body), 4096):
            sent.append(len(body[start : start + 4096]))
            yield body[start : start + 4096]

    receiver.reject("standard", stream(), signed("standard", secret, body), 413, "too_large")
    assert sum(sent) > DEFAULT_MAX_BODY  # the body really was streamed past the limit


def test_chunked_body_within_the_limit_is_received(receiver: Receiver) -> None:
    source, secret = make_source("standard")
    receiver.add(source)
    body = _padded(DEFAULT_MAX_BODY)
    chunks = iter([body[:10], body[10:5000], body[5000:]])

    response = receiver.send("standard", chunks, signed("standard", secret, body))

    assert response.status_code == 202, response.text
    assert receiver.events("standard")[0].body == body.decode()


def test_source_max_body_bytes_is_the_limit_to_the_byte(receiver: Receiver) -> None:
    source, secret = make_source("standard", max_body_bytes=512)
    receiver.add(source)
    at_limit, over_limit = _padded(512), _padded(513)

    receiver.reject(
        "standard", over_limit, signed("standard", secret, over_limit), 413, "too_large"
    )
    accepted = receiver.send("standard", at_limit, signed("standard", secret, at_limit))

    assert accepted.status_code == 202, accepted.text


# --- parsing and validation ------------------------------------------------------------------


def test_body_that_is_not_json_is_refused_400(receiver: Receiver) -> None:
    source, secret = make_source("rkt")
    receiver.add(source)
    for body in (b'{"event": "lead.captured", ', b"", b'{"event": NaN}', b"\xff\xfe{}"):
        headers = signed("rkt", secret, body)

        receiver.reject("rkt", body, headers, 400, "not_json", case=repr(body))


def test_body_that_is_not_an_object_is_refused_400(receiver: Receiver) -> None:
    source, secret = make_source("rkt")
    receiver.add(source)
    for body in (dumps([PAYLOADS["rkt"][0]]), b'"lead.captured"', b"42", b"null"):
        headers = signed("rkt", secret, body)

        receiver.reject("rkt", body, headers, 400, "not_an_object", case=repr(body[:20]))


def test_body_nested_too_deep_is_refused_400(receiver: Receiver) -> None:
    source, secret = make_source("rkt")
    receiver.add(source)
    nested: dict[str, Any] = {}
    for _ in range(40):
        nested = {"a": nested}
    body = dumps({**PAYLOADS["rkt"][0], "extra": nested})

    receiver.reject("rkt", body, signed("rkt", secret, body), 400, "too_deep")


def test_body_nested_beyond_the_parsers_limit_is_refused_400_too_deep(
    receiver: Receiver,
) -> None:
    source, secret = make_source("rkt", max_body_bytes=1024 * 1024)
    receiver.add(source)
    # orjson refuses it with a decode error of its own; the answer is still too_deep.
    body = dumps(PAYLOADS["rkt"][0])[:-1] + b',"extra":' + b"[" * 100_000 + b"]" * 100_000 + b"}"

    receiver.reject("rkt", body, signed("rkt", secret, body), 400, "too_deep")


def test_unknown_event_is_refused_422(receiver: Receiver) -> None:
    source, secret = make_source("rkt")
    receiver.add(source)
    body = dumps(sample("rkt", "lead.captured", event="lead.deleted"))

    receiver.reject("rkt", body, signed("rkt", secret, body), 422, "unknown_event")


def test_event_name_with_a_control_character_is_refused_422(receiver: Receiver) -> None:
    # Valid JSON, correctly signed; a NUL is no event name (and PostgreSQL could not store it:
    # the delivery would be answered 503 for ever).
    source, secret = make_source("standard")
    receiver.add(source)
    for name in ("message\u0000created", "message\u0007created"):
        body = dumps({"type": name, "data": {}})
        headers = signed("standard", secret, body)
        receiver.reject("standard", body, headers, 422, "unknown_event", case=name)


def test_delivery_id_with_a_nul_is_recorded_and_deduplicated(receiver: Receiver) -> None:
    # The generic hmac profile takes the id from the body's "id", with no schema to object.
    source, secret = make_source("hmac")
    receiver.add(source)
    body = dumps({"event": "order.paid", "id": "dlv\u0000-42", "data": {}})

    first = receiver.send("hmac", body, signed("hmac", secret, body))
    again = receiver.send("hmac", body, signed("hmac", secret, body))

    assert first.status_code == 202, first.text
    assert again.status_code == 200, again.text
    assert again.json() == {"id": first.json()["id"], "duplicate": True}
    assert receiver.rows() == 1


def test_body_naming_no_event_is_refused_422(receiver: Receiver) -> None:
    source, secret = make_source("standard")
    receiver.add(source)
    body = dumps({"data": {"email": "grace.standard@example.com"}})

    receiver.reject("standard", body, signed("standard", secret, body), 422, "unknown_event")


def test_schema_violation_is_refused_422_with_path_and_keyword(receiver: Receiver) -> None:
    source, secret = make_source("rkt")
    receiver.add(source)
    payload = sample("rkt", "lead.captured")
    payload["data"]["email"] = "john at example"
    body = dumps(payload)

    answer = receiver.reject("rkt", body, signed("rkt", secret, body), 422, "schema_violation")

    assert (answer["path"], answer["keyword"]) == ("$.data.email", "pattern")


def test_missing_required_field_is_refused_422_at_its_parent(receiver: Receiver) -> None:
    source, secret = make_source("caleida")
    receiver.add(source)
    payload = sample("caleida", "insight.summary")
    del payload["data"]["summary"]
    body = dumps(payload)

    answer = receiver.reject(
        "caleida", body, signed("caleida", secret, body), 422, "schema_violation"
    )

    assert (answer["path"], answer["keyword"]) == ("$.data", "required")
    assert "summary" in answer["message"]


# --- events a source does not take -----------------------------------------------------------


def test_event_outside_the_source_patterns_is_ignored_200(receiver: Receiver) -> None:
    source, secret = make_source("caleida", events=("insight.*", "message"))
    receiver.add(source)
    chat = body_of("caleida")
    summary = dumps(sample("caleida", "insight.summary"))

    ignored = receiver.send("caleida", chat, signed("caleida", secret, chat))
    assert (ignored.status_code, ignored.json()) == (
        200,
        {"status": "ignored", "reason": "event_filtered"},
    )
    assert receiver.rows() == 0
    taken = receiver.send("caleida", summary, signed("caleida", secret, summary))

    assert taken.status_code == 202, taken.text
    assert [e.event for e in receiver.events("caleida")] == ["insight.summary"]
    assert receiver.outcomes("caleida") == {"event_filtered": 1, "accepted": 1}


def test_rkt_event_of_another_chatbot_is_ignored_200(receiver: Receiver) -> None:
    source, secret = make_source("rkt", chatbot_ids=("cmf_other_bot",))
    receiver.add(source)
    body = body_of("rkt")  # chatbotId cmf9n7u1c0001

    response = receiver.send("rkt", body, signed("rkt", secret, body))

    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ignored", "reason": "chatbot_filtered"}
    assert receiver.rows() == 0
    assert receiver.outcomes("rkt") == {"chatbot_filtered": 1}


def test_rkt_event_of_an_allowed_chatbot_is_recorded(receiver: Receiver) -> None:
    source, secret = make_source("rkt", chatbot_ids=("cmf_other_bot", "cmf9n7u1c0001"))
    receiver.add(source)
    body = body_of("rkt")

    response = receiver.send("rkt", body, signed("rkt", secret, body))

    assert response.status_code == 202, response.text
    assert receiver.rows("rkt") == 1


# --- IP allow-list, bearer and basic auth ------------------------------------------------------


def test_client_outside_the_allow_list_is_refused_403(receiver: Receiver) -> None:
    source, secret = make_source("rkt", allow_ips=("10.0.0.0/8",))
    receiver.add(source)
    body = body_of("rkt")

    receiver.reject("rkt", body, signed("rkt", secret, body), 403, "address_not_allowed")


def test_forwarded_for_header_does_not_get_past_the_allow_list(receiver: Receiver) -> None:
    source, secret = make_source("rkt", allow_ips=("10.0.0.0/8",))
    receiver.add(source)
    body = body_of("rkt")
    headers = {**signed("rkt", secret, body), "X-Forwarded-For": "10.0.0.5"}

    receiver.reject("rkt", body, headers, 403, "address_not_allowed")


def test_client_inside_the_allow_list_is_received(receiver: Receiver) -> None:
    source, secret = make_source("rkt", allow_ips=("10.0.0.0/8", "127.0.0.1/32"))
    receiver.add(source)
    body = body_of("rkt")

    response = receiver.send("rkt", body, signed("rkt", secret, body))

    assert response.status_code == 202, response.text


def _bearer_source() -> tuple[Source, str]:
    token = "tok_" + uuid.uuid4().hex
    return Source("eev-bearer", "eev", None, bearer_tokens=(Secret(token),)), token


def _basic(username: str, password: str) -> dict[str, str]:
    credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": "Basic " + credentials}


def _basic_source() -> tuple[Source, str]:
    password = "pw_" + uuid.uuid4().hex
    credentials = BasicCredentials("ccai-events", Secret(password))
    return Source("ccai-basic", "ccai", None, basic_credentials=(credentials,)), password


def test_bearer_source_receives_with_the_right_token(receiver: Receiver) -> None:
    source, token = _bearer_source()
    receiver.add(source)

    response = receiver.send("eev-bearer", body_of("eev"), {"Authorization": f"Bearer {token}"})

    assert response.status_code == 202, response.text
    assert receiver.events("eev-bearer")[0].event == "conversation.created"


def test_bearer_source_refuses_a_wrong_or_missing_token_401(receiver: Receiver) -> None:
    source, token = _bearer_source()
    receiver.add(source)
    cases = [
        ({}, "missing_credentials"),
        ({"Authorization": "Bearer tok_" + "0" * 32}, "wrong_credentials"),
        ({"Authorization": f"Bearer {token}x"}, "wrong_credentials"),
        ({"Authorization": "Bearer "}, "malformed_credentials"),
        ({"Authorization": f"Token {token}"}, "malformed_credentials"),
    ]
    for headers, reason in cases:
        receiver.reject("eev-bearer", body_of("eev"), headers, 401, reason, case=reason)


def test_basic_source_receives_with_the_right_credentials(receiver: Receiver) -> None:
    source, password = _basic_source()
    receiver.add(source)

    response = receiver.send("ccai-basic", body_of("ccai"), _basic("ccai-events", password))

    assert response.status_code == 202, response.text


def test_basic_source_refuses_wrong_or_missing_credentials_401(receiver: Receiver) -> None:
    source, password = _basic_source()
    receiver.add(source)
    cases = [
        ({}, "missing_credentials"),
        ({"Authorization": "Basic !!!"}, "malformed_credentials"),
        (
            {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
            "malformed_credentials",
        ),
        (_basic("ccai-events", "pw_wrong"), "wrong_credentials"),
        (_basic("someone", password), "wrong_credentials"),
    ]
    for headers, reason in cases:
        receiver.reject("ccai-basic", body_of("ccai"), headers, 401, reason, case=str(headers))


def test_source_with_signature_and_bearer_requires_both(receiver: Receiver) -> None:
    token = "tok_" + uuid.uuid4().hex
    source, secret = make_source("eev", bearer_tokens=(Secret(token),))
    receiver.add(source)
    body = body_of("eev")
    bearer = {"Authorization": f"Bearer {token}"}

    receiver.reject("eev", body, signed("eev", secret, body), 401, "missing_credentials")
    wrong_signature = {**bearer, **signed("eev", new_secret(), body)}
    receiver.reject("eev", body, wrong_signature, 401, "no_matching_signature")
    both = receiver.send("eev", body, {**bearer, **signed("eev", secret, body)})

    assert both.status_code == 202, both.text


# --- sources -------------------------------------------------------------------------------


def test_a_source_sealed_with_another_key_answers_503_and_the_others_still_receive(
    receiver: Receiver,
) -> None:
    # Its credentials were encrypted with a Fernet key this receiver does not have (a key lost
    # or replaced without keeping the old one): it cannot verify, so the sender should retry;
    # every other source goes on.
    good, good_secret = make_source("rkt", "rkt-good")
    receiver.add(good)
    sealed, sealed_secret = make_source("rkt", "rkt-sealed")
    SourceRepository(receiver.store, Fernet(Fernet.generate_key())).create(sealed)
    receiver.runtime.sources.refresh()
    body = body_of("rkt")

    refused = receiver.send("rkt-sealed", body, signed("rkt", sealed_secret, body))
    accepted = receiver.send("rkt-good", body, signed("rkt", good_secret, body))

    assert refused.status_code == 503, refused.text
    assert refused.json() == {"error": "source_unavailable"}
    assert int(refused.headers["Retry-After"]) > 0
    assert accepted.status_code == 202, accepted.text
    assert (receiver.rows("rkt-sealed"), receiver.rows("rkt-good")) == (0, 1)
    assert receiver.outcomes("rkt-sealed") == {"source_unavailable": 1}


def test_unknown_source_is_404(receiver: Receiver) -> None:
    source, secret = make_source("rkt")
    receiver.add(source)
    body = body_of("rkt")

    response = receiver.send("rkt-typo", body, signed("rkt", secret, body))

    assert response.status_code == 404
    assert response.json() == {"error": "unknown_source"}
    assert receiver.rows() == 0
    # Counted under one fixed label: a name chosen by the caller never becomes a metric key.
    assert receiver.runtime.metrics.snapshot() == {"_unknown": {"unknown_source": 1}}


def test_inactive_source_is_refused_403(receiver: Receiver) -> None:
    source, secret = make_source("rkt", active=False)
    receiver.add(source)
    body = body_of("rkt")

    receiver.reject("rkt", body, signed("rkt", secret, body), 403, "source_inactive")


def test_secondary_secret_verifies_while_the_source_has_both(receiver: Receiver) -> None:
    for profile in ("standard", "rkt", "eev", "ccai", "caleida"):
        secondary = new_secret()
        source, primary = make_source(profile, secondary=secondary)
        receiver.add(source)
        first, second = body_of(profile), another_body_of(profile)

        by_primary = receiver.send(profile, first, signed(profile, primary, first))
        by_secondary = receiver.send(profile, second, signed(profile, secondary, second))

        assert by_primary.status_code == 202, f"{profile}: {by_primary.text}"
        assert by_secondary.status_code == 202, f"{profile}: {by_secondary.text}"
        assert receiver.rows(profile) == 2


def test_rotated_secret_takes_effect_when_the_cache_refreshes(receiver: Receiver) -> None:
    source, old = make_source("rkt")
    receiver.add(source)
    new = new_secret()
    receiver.sensitive.add(new)
    receiver.repository.save(dataclasses.replace(source, secrets=SecretPair(Secret(new))))
    receiver.runtime.sources.refresh()
    body = body_of("rkt")

    receiver.reject("rkt", body, signed("rkt", old, body), 401, "no_matching_signature")
    with_new = receiver.send("rkt", body, signed("rkt", new, body))

    assert with_new.status_code == 202, with_new.text


# --- logs ----------------------------------------------------------------------------------


def test_rejections_log_their_reason_but_no_secret_signature_or_payload(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    source, secret = make_source("rkt")
    receiver.add(source)
    body = body_of("rkt")
    wrong = signed("rkt", new_secret(), body)
    bad = dumps({**PAYLOADS["rkt"][0], "data": {"email": "john@example.com"}})

    receiver.reject("rkt", body, wrong, 401, "no_matching_signature")
    answer = receiver.reject("rkt", bad, signed("rkt", secret, bad), 422, "schema_violation")

    text = logged_text(caplog)
    assert "airhook rejected a delivery to rkt: 401 no_matching_signature" in text
    assert "airhook rejected a delivery to rkt: 422 schema_violation" in text
    assert "john@example.com" not in text
    assert secret not in text
    assert wrong["X-RKT-Signature"] not in text
    assert answer["path"] == "$.data"  # the answer may explain; the log may not


# --- concurrency ---------------------------------------------------------------------------


def test_200_unique_deliveries_from_16_threads_are_all_recorded(receiver: Receiver) -> None:
    source, secret = make_source("standard")
    receiver.add(source)
    local = threading.local()

    def deliver(n: int) -> requests.Response:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        body = dumps({"type": "order.created", "data": {"n": n}})
        headers = signed("standard", secret, body)
        return receiver.send("standard", body, headers, session=local.session)

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(deliver, range(200)))

    assert [r.status_code for r in responses] == [202] * 200
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 200
    assert receiver.rows() == 200
    assert {e.id for e in receiver.events("standard")} == ids


@pytest.mark.parametrize("profile", ["rkt", "ccai", "standard"])
def test_50_concurrent_copies_of_one_delivery_are_recorded_once(
    receiver: Receiver, profile: str
) -> None:
    # Signed once and sent 50 times at once: the same bytes and headers (for ccai and standard
    # the same signed timestamp too). Some copies share the first one's batch, others meet its
    # committed row: every one but the first is a duplicate, never a 401.
    source, secret = make_source(profile)
    receiver.add(source)
    body = body_of(profile)
    headers = signed(profile, secret, body)
    barrier = threading.Barrier(50)

    def deliver(_: int) -> requests.Response:
        with requests.Session() as session:
            barrier.wait(10)
            return receiver.send(profile, body, headers, session=session)

    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(deliver, range(50)))

    assert sorted(r.status_code for r in responses) == [200] * 49 + [202], [
        r.text for r in responses if r.status_code not in (200, 202)
    ]
    assert len({r.json()["id"] for r in responses}) == 1
    assert all(r.json()["duplicate"] for r in responses if r.status_code == 200)
    assert receiver.rows() == 1
    assert receiver.outcomes(profile) == {"accepted": 1, "duplicate": 49}


# --- the store failing -----------------------------------------------------------------------


def test_store_failure_answers_503_with_retry_after_then_recovers(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    source, secret = make_source("rkt")
    receiver.add(source)
    body = body_of("rkt")
    with receiver.store.begin() as connection:
        inbox_table.drop(connection)

    failed = receiver.send("rkt", body, signed("rkt", secret, body))

    assert failed.status_code == 503, failed.text
    assert failed.json() == {"error": "store_unavailable"}
    assert int(failed.headers["Retry-After"]) > 0
    assert receiver.outcomes("rkt") == {"store_unavailable": 1}
    # Logged by its error type only: the database's message quotes the row, payload included.
    assert "airhook could not record 1 deliveries (" in logged_text(caplog)

    with receiver.store.begin() as connection:
        inbox_table.create(connection)
    retried = receiver.send("rkt", body, signed("rkt", secret, body))

    assert retried.status_code == 202, retried.text
    assert [e.id for e in receiver.events("rkt")] == [retried.json()["id"]]
    with receiver.store.read() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(inbox_table)) == 1


def test_a_row_the_store_refuses_fails_alone_not_its_batch(store: Store) -> None:
    """The writer commits queued deliveries together; should the database refuse one row, the
    others of the batch are still recorded and only that one's request gets the error."""
    from airhook.core.ids import new_event_id
    from airhook.store.inbox import NewEvent

    inbox = InboxRepository(store)
    writer = GroupCommitWriter(inbox)

    def event(name: Any) -> NewEvent:
        return NewEvent(
            id=new_event_id(),
            source="batch",
            profile="standard",
            event=name,
            kind=None,
            dedupe_key=f"id:{uuid.uuid4().hex}",
            body="{}",
            received_at=datetime.now(timezone.utc),
        )

    async def record_together() -> list[Any]:
        events = [event("first"), event(None), event("third")]  # NOT NULL: refused
        tasks = [asyncio.ensure_future(writer.record(e)) for e in events]
        await asyncio.sleep(0)  # all three queued before the writer takes its first batch
        writer.start()
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    try:
        first, refused, third = asyncio.run(record_together())
    finally:
        writer.stop()

    assert first.status == third.status == "created"
    assert isinstance(refused, Exception)
    assert [e.event for e in inbox.find("batch")] == ["first", "third"]


# --- the standalone receiver: python -m airhook.receiver -------------------------------------

#: Seconds the standalone receiver may take to start (it imports Airflow's configuration).
STANDALONE_START_SECONDS = 90


class Standalone:
    """``python -m airhook.receiver`` in a process group of its own, on 127.0.0.1."""

    def __init__(self, store: Store, home: Any, *extra_args: str) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}/airhook/"
        self.key = Fernet.generate_key().decode()
        self.log_path = home / "standalone.log"
        # Only this test's settings: nothing of the caller's Airflow configuration leaks in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            AIRFLOW_HOME=str(home),
            AIRFLOW__CORE__FERNET_KEY=self.key,
            AIRFLOW__CORE__LOAD_EXAMPLES="False",
            AIRFLOW__AIRHOOK__DATABASE_URL=store.url,
            AIRFLOW__AIRHOOK__SOURCE_CACHE_SECONDS="0.2",
        )
        self.env = env
        self.args = [
            sys.executable,
            "-m",
            "airhook.receiver",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *extra_args,
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                self.args,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + STANDALONE_START_SECONDS
        while True:
            assert self.process.poll() is None, f"it exited:\n{self.log()}"
            try:
                health = requests.get(self.base + "receiver/health", timeout=2)
            except requests.ConnectionError:
                health = None
            if health is not None and health.status_code == 200:
                return
            assert time.monotonic() < deadline, f"no health in time:\n{self.log()}"
            time.sleep(0.2)

    def stop(self) -> int | None:
        """Stop its process group (SIGTERM, then SIGKILL); return its exit status."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        return process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def standalone_home(tmp_path: Any) -> Any:
    home = tmp_path / "airflow-home"
    home.mkdir()
    return home


def _add_source(store: Store, key: str, profile: str) -> str:
    source, secret = make_source(profile)
    SourceRepository(store, Fernet(key.encode())).create(source)
    return secret


def test_standalone_receiver_records_a_signed_delivery_and_answers_404_for_no_source(
    store: Store, standalone_home: Any
) -> None:
    standalone = Standalone(store, standalone_home)
    secret = _add_source(store, standalone.key, "standard")
    body = body_of("standard")
    standalone.start()
    try:
        accepted = requests.post(
            standalone.base + "webhooks/standard",
            data=body,
            headers={"Content-Type": "application/json", **signed("standard", secret, body)},
            timeout=30,
        )
        unknown = requests.post(
            standalone.base + "webhooks/nosuch",
            data=body,
            headers={"Content-Type": "application/json", **signed("standard", secret, body)},
            timeout=30,
        )
        # Airflow's authenticated stats route is the API server's only.
        stats = requests.get(standalone.base + "receiver/stats", timeout=30)
        # Its dispatcher is off: the backlog it counts (every second) reaches the one event.
        deadline = time.monotonic() + 60
        while (health := requests.get(standalone.base + "receiver/health", timeout=30)).json()[
            "backlog"
        ] < 1:
            assert time.monotonic() < deadline, health.text
            time.sleep(0.2)
    finally:
        status = standalone.stop()

    assert health.status_code == 200
    assert health.json() == {
        "running": True,
        "backlog": 1,
        "backlog_bound": 20000,
        "writer_queue": 0,
        "writer_queue_bound": 2000,
        "backpressure": False,
    }

    assert accepted.status_code == 202, accepted.text
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "unknown_source"}
    assert stats.status_code == 404
    [recorded] = InboxRepository(store).find("standard")
    assert recorded.id == accepted.json()["id"]
    assert recorded.body == body.decode()
    assert recorded.dispatched_at is None
    # Its dispatcher is off: it never asked for the dispatcher's lease (the API server's job).
    with store.read() as connection:
        holders = connection.execute(sa.text("SELECT name FROM airhook_lease")).all()
    assert holders == []
    log = standalone.log()
    # A graceful stop on SIGTERM (uvicorn re-raises the signal once it has shut down).
    assert status in (0, -signal.SIGTERM), log
    assert "Application shutdown complete" in log
    assert "airhook rejected a delivery to _unknown: 404 unknown_source" in log
    assert secret not in log
    assert not any(marker in log for marker in PAYLOAD_MARKERS)


def test_standalone_receiver_with_two_workers_records_each_delivery_once(
    store: Store, standalone_home: Any
) -> None:
    standalone = Standalone(store, standalone_home, "--workers", "2")
    secret = _add_source(store, standalone.key, "rkt")
    copies = body_of("rkt")
    unique = [
        dumps({**PAYLOADS["rkt"][0], "timestamp": f"2026-03-26T15:{n:02d}:00.000Z"})
        for n in range(20)
    ]
    standalone.start()
    try:
        local = threading.local()

        def deliver(body: bytes) -> requests.Response:
            if not hasattr(local, "session"):
                local.session = requests.Session()
            return local.session.post(
                standalone.base + "webhooks/rkt",
                data=body,
                headers={"Content-Type": "application/json", **signed("rkt", secret, body)},
                timeout=30,
            )

        with ThreadPoolExecutor(16) as pool:
            responses = list(pool.map(deliver, [copies] * 20 + unique))
    finally:
        standalone.stop()

    first = responses[:20]
    assert sorted(r.status_code for r in first) == [200] * 19 + [202]
    assert len({r.json()["id"] for r in first}) == 1
    assert [r.status_code for r in responses[20:]] == [202] * 20
    recorded = InboxRepository(store).find("rkt")
    assert len(recorded) == 21
    assert {e.id for e in recorded} == {r.json()["id"] for r in responses}


def test_standalone_receiver_that_cannot_start_exits_with_an_error(
    standalone_home: Any,
) -> None:
    # No Fernet key: the sources' secrets cannot be read, so it must not pretend to receive.
    store = Store(f"sqlite:///{standalone_home / 'airhook.db'}")
    standalone = Standalone(store, standalone_home)
    standalone.env.pop("AIRFLOW__CORE__FERNET_KEY")
    with standalone.log_path.open("ab") as log_file:
        process = subprocess.run(
            standalone.args,
            env=standalone.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            timeout=STANDALONE_START_SECONDS,
            start_new_session=True,
            check=False,
        )
    store.dispose()

    assert process.returncode == 3  # uvicorn's status for a failed start-up
    assert "airhook receiver could not start" in standalone.log()


def test_standalone_app_serves_under_the_plugin_url_prefix() -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"Using `httpx` with `starlette.testclient` is deprecated"
        )
        from airhook.plugin import URL_PREFIX

    assert STANDALONE_PREFIX == URL_PREFIX
    paths = {getattr(route, "path", None) for route in create_standalone_app().routes}
    assert f"{URL_PREFIX}/webhooks/{{source_name}}" in paths
    assert f"{URL_PREFIX}/receiver/health" in paths
