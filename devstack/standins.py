"""Stand-in endpoints for the demo: a CRM, a chat channel and a subscriber, on 127.0.0.1.

Each is a small HTTP server in a thread of the demo's process that checks every call the way the
real system's receiving end would, **without airhook's code**: the Standard Webhooks signature with
the ``standardwebhooks`` package, Slack's ``v0`` layout and bearer tokens with :mod:`hmac` and
:mod:`hashlib`, and the body's shape. It records every call (verified or not, and why not), in
memory and as one JSON line per call in ``<folder>/<name>.jsonl``, and answers as the real thing
would: 200 with a HubSpot-style result, Slack's ``ok``, or ``{"ok": true}``; a call that fails its
check gets 401 (signature, token) or 400 (body), as a real endpoint answers it, so the sending task
fails visibly too.

=============  ==========================  ===============================================
stand-in       stands for                  checks
=============  ==========================  ===============================================
``crm``        HubSpot's contacts API      bearer token (a private app's), Standard
                                           Webhooks signature, a batch upsert keyed by
                                           e-mail or a contact update
``chat``       a Slack incoming webhook    the secret URL path, Slack-style ``v0``
                                           signature over ``v0:{timestamp}:{body}``, a
                                           message with ``text``
``subscriber`` a service subscribed to     Standard Webhooks signature (primary or
               airhook's digest            secondary secret), a JSON body
=============  ==========================  ===============================================
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

__all__ = [
    "Call",
    "Rejected",
    "StandIn",
    "bearer_check",
    "chat_stand_in",
    "crm_stand_in",
    "new_standard_secret",
    "slack_v0_check",
    "standard_webhooks_check",
    "subscriber_stand_in",
]

#: How far a signed timestamp may be from this clock (as Slack and Standard Webhooks allow).
TOLERANCE_SECONDS = 300
#: HubSpot's batch upsert of contacts, and one contact by id.
CRM_UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"
_CRM_CONTACT_PATH = re.compile(r"^/crm/v3/objects/contacts/([^/?]+)$")


class Rejected(Exception):
    """A call that fails a check: answered with ``status``, recorded with ``reason``."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


#: A check: raises :class:`Rejected`, or returns nothing.
Check = Callable[[str, str, Mapping[str, str], bytes], None]
#: What answers a verified call: (method, path, parsed body) → (status, JSON or text).
Responder = Callable[[str, str, Any], tuple[int, Any]]


@dataclass(frozen=True)
class Call:
    """One call as received and judged."""

    endpoint: str
    method: str
    path: str
    headers: dict[str, str]
    body: str
    verified: bool
    reason: str
    status: int
    received_at: float


def new_standard_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


# --- checks --------------------------------------------------------------------------------------


def standard_webhooks_check(secrets: Sequence[str]) -> Check:
    """Verify ``webhook-id``/``-timestamp``/``-signature`` with the ``standardwebhooks`` package.

    Any of ``secrets`` may have signed (a sender in the middle of a rotation signs with both).
    """
    from standardwebhooks.webhooks import Webhook

    webhooks = [Webhook(secret) for secret in secrets]

    def check(_method: str, _path: str, headers: Mapping[str, str], body: bytes) -> None:
        for webhook in webhooks:
            try:
                webhook.verify(body, dict(headers), json_parse=False)
            except Exception:  # noqa: S112 (the package raises several kinds; the next secret)
                continue
            return
        raise Rejected(401, "standard webhooks signature not verified")

    return check


def slack_v0_check(secret: str, *, header: str, timestamp_header: str) -> Check:
    """Verify Slack's layout: ``v0=`` + hex HMAC-SHA256 of ``v0:{timestamp}:{body}``."""

    def check(_method: str, _path: str, headers: Mapping[str, str], body: bytes) -> None:
        timestamp = headers.get(timestamp_header.lower(), "")
        if not timestamp.isdigit():
            raise Rejected(401, f"no {timestamp_header}")
        if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
            raise Rejected(401, "stale timestamp")
        message = b"v0:" + timestamp.encode() + b":" + body
        expected = "v0=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, headers.get(header.lower(), "")):
            raise Rejected(401, f"{header} not verified")

    return check


def bearer_check(token: str) -> Check:
    """The ``Authorization: Bearer`` token, compared in constant time."""
    expected = f"Bearer {token}".encode()

    def check(_method: str, _path: str, headers: Mapping[str, str], _body: bytes) -> None:
        given = headers.get("authorization", "").encode()
        if not hmac.compare_digest(expected, given):
            raise Rejected(401, "bearer token missing or wrong")

    return check


def path_check(path: str) -> Check:
    """The URL path, for endpoints whose URL is the credential (Slack's incoming webhooks)."""

    def check(_method: str, given: str, _headers: Mapping[str, str], _body: bytes) -> None:
        if not hmac.compare_digest(path.encode(), given.split("?")[0].encode()):
            raise Rejected(404, "no such webhook")

    return check


def _json_body(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as error:
        raise Rejected(400, f"body is not JSON: {error}") from None


# --- the server ----------------------------------------------------------------------------------


@dataclass
class StandIn:
    """One endpoint: checks in order, then the responder; every call recorded.

    :param name: the endpoint's name, and its record file's (``<folder>/<name>.jsonl``).
    :param checks: run in order; the first :class:`Rejected` answers the call.
    :param respond: answers a call that passed every check; may raise :class:`Rejected`.
    """

    name: str
    checks: Sequence[Check]
    respond: Responder
    folder: Path | None = None
    #: The CRM's contacts (the other stand-ins keep no state but their calls).
    contacts: Contacts | None = None
    calls: list[Call] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> StandIn:
        """Listen on a free port of 127.0.0.1, in a daemon thread."""
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, answer = stand_in.handle(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
                kind = "text/plain" if isinstance(answer, str) else "application/json"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PUT = do_PATCH = do_GET = _handle

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the record file has every call."""

        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.record_path.write_text("")
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"stand-in {self.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def record_path(self) -> Path:
        assert self.folder is not None
        return self.folder / f"{self.name}.jsonl"

    def handle(
        self, method: str, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, Any]:
        """Judge one call, record it, return (status, answer)."""
        try:
            for check in self.checks:
                check(method, path, headers, body)
            status, answer = self.respond(method, path, _json_body(body) if body else None)
            verified, reason = True, ""
        except Rejected as rejected:
            status, answer = rejected.status, {"error": rejected.reason}
            verified, reason = False, rejected.reason
        call = Call(
            endpoint=self.name,
            method=method,
            path=path,
            headers=dict(headers),
            body=body.decode(errors="replace"),
            verified=verified,
            reason=reason,
            status=status,
            received_at=time.time(),
        )
        with self._lock:
            self.calls.append(call)
            if self.folder is not None:
                with self.record_path.open("a") as record:
                    record.write(json.dumps(asdict(call)) + "\n")
        return status, answer

    def received(self) -> int:
        """Calls received."""
        with self._lock:
            return len(self.calls)

    def verified(self) -> list[Call]:
        """Calls that passed every check."""
        with self._lock:
            return [call for call in self.calls if call.verified]


# --- the three endpoints -------------------------------------------------------------------------


@dataclass
class Contacts:
    """The CRM's contacts, keyed by e-mail, with how often each was created or updated."""

    by_email: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: int = 0
    updated: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def upsert(self, email: str, properties: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        with self._lock:
            contact = self.by_email.get(email)
            new = contact is None
            if contact is None:
                contact = {"id": str(1001 + len(self.by_email)), "properties": {}}
                self.by_email[email] = contact
                self.created += 1
            else:
                self.updated += 1
            contact["properties"].update(properties)
            return contact, new

    def update(self, contact_id: str, properties: Mapping[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            for email, contact in self.by_email.items():
                # HubSpot addresses a contact by its id, or by e-mail with ?idProperty=email.
                if contact_id in (contact["id"], email):
                    contact["properties"].update(properties)
                    self.updated += 1
                    return contact
            return None


def _crm_responder(contacts: Contacts) -> Responder:
    def respond(method: str, path: str, body: Any) -> tuple[int, Any]:
        route = path.split("?")[0]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if method == "POST" and route == CRM_UPSERT_PATH:
            inputs = body.get("inputs") if isinstance(body, dict) else None
            if not inputs or not isinstance(inputs, list):
                raise Rejected(400, "a batch upsert needs inputs")
            results = []
            for item in inputs:
                properties = item.get("properties") if isinstance(item, dict) else None
                if item.get("idProperty") != "email" or not isinstance(properties, dict):
                    raise Rejected(400, "each input needs idProperty email and properties")
                email = item.get("id") or properties.get("email")
                if not isinstance(email, str) or "@" not in email:
                    raise Rejected(400, "an upsert keyed by email needs an email")
                contact, new = contacts.upsert(email, properties)
                results.append({**contact, "new": new, "updatedAt": now})
            return 200, {"status": "COMPLETE", "results": results, "completedAt": now}
        match = _CRM_CONTACT_PATH.match(route)
        if method in ("PATCH", "PUT") and match:
            properties = body.get("properties") if isinstance(body, dict) else None
            if not isinstance(properties, dict):
                raise Rejected(400, "an update needs properties")
            contact = contacts.update(unquote(match.group(1)), properties)
            if contact is None:
                raise Rejected(404, "no such contact")
            return 200, {**contact, "updatedAt": now}
        raise Rejected(404, f"no route {method} {route}")

    return respond


def crm_stand_in(*, secret: str, token: str, folder: Path | None = None) -> StandIn:
    """HubSpot's contacts API, as far as the lead sync uses it."""
    contacts = Contacts()
    return StandIn(
        "crm",
        [bearer_check(token), standard_webhooks_check([secret])],
        _crm_responder(contacts),
        folder=folder,
        contacts=contacts,
    )


def _chat_responder(_method: str, _path: str, body: Any) -> tuple[int, Any]:
    text = body.get("text") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise Rejected(400, "no_text")  # Slack's own answer to a message without text
    return 200, "ok"


def chat_stand_in(*, secret: str, path: str, folder: Path | None = None) -> StandIn:
    """A Slack incoming webhook at ``path``, signed Slack's ``v0`` way."""
    return StandIn(
        "chat",
        [
            path_check(path),
            slack_v0_check(
                secret, header="X-Slack-Signature", timestamp_header="X-Slack-Request-Timestamp"
            ),
        ],
        _chat_responder,
        folder=folder,
    )


def _subscriber_responder(_method: str, _path: str, body: Any) -> tuple[int, Any]:
    if body is None:
        raise Rejected(400, "empty body")
    return 200, {"ok": True}


def subscriber_stand_in(*, secrets: Sequence[str], folder: Path | None = None) -> StandIn:
    """A service subscribed to airhook's events, verifying Standard Webhooks signatures."""
    return StandIn(
        "subscriber", [standard_webhooks_check(secrets)], _subscriber_responder, folder=folder
    )


# --- the demo's set, and the connections that point at it ----------------------------------------

#: Slack's incoming-webhook URL path: the credential (``/services/T…/B…/…``).
CHAT_PATH = "/services/T0DEMO/B0DEMO/" + "demo0chat0webhook0path"
#: Where the digest subscription sends.
SUBSCRIBER_PATH = "/hooks/airhook-digest"
SLACK_SIGNING = {
    "header": "X-Slack-Signature",
    "prefix": "v0=",
    "timestamp_header": "X-Slack-Request-Timestamp",
    "content": "v0:{timestamp}:{body}",
}


@dataclass
class Endpoints:
    """The three stand-ins with their secrets, started together."""

    crm: StandIn
    chat: StandIn
    subscriber: StandIn
    crm_secret: str
    crm_token: str
    chat_secret: str
    subscriber_secrets: tuple[str, str]

    @classmethod
    def start(cls, folder: Path | None = None) -> Endpoints:
        """Fresh secrets, three servers on free ports of 127.0.0.1."""
        crm_secret, crm_token = new_standard_secret(), "pat-demo-" + os.urandom(12).hex()
        chat_secret = os.urandom(16).hex()  # Slack's signing secrets are 32 hex digits
        subscriber_secrets = (new_standard_secret(), new_standard_secret())
        return cls(
            crm=crm_stand_in(secret=crm_secret, token=crm_token, folder=folder).start(),
            chat=chat_stand_in(secret=chat_secret, path=CHAT_PATH, folder=folder).start(),
            subscriber=subscriber_stand_in(secrets=subscriber_secrets, folder=folder).start(),
            crm_secret=crm_secret,
            crm_token=crm_token,
            chat_secret=chat_secret,
            subscriber_secrets=subscriber_secrets,
        )

    def all(self) -> tuple[StandIn, StandIn, StandIn]:
        return (self.crm, self.chat, self.subscriber)

    def stop(self) -> None:
        for stand_in in self.all():
            stand_in.stop()

    @property
    def subscriber_url(self) -> str:
        return self.subscriber.base_url + SUBSCRIBER_PATH

    def connections(self) -> dict[str, str]:
        """``AIRFLOW_CONN_…`` variables: ``airhook_crm`` and ``airhook_chat``."""
        crm = {
            "conn_type": "airhook_webhook",
            "host": self.crm.base_url,
            "password": self.crm_secret,
            "extra": {"signing": "standard", "token": self.crm_token},
        }
        chat = {
            "conn_type": "airhook_webhook",
            "host": self.chat.base_url + CHAT_PATH,
            "password": self.chat_secret,
            "extra": {"signing": "hmac", "signing_options": SLACK_SIGNING},
        }
        return {
            "AIRFLOW_CONN_AIRHOOK_CRM": json.dumps(crm),
            "AIRFLOW_CONN_AIRHOOK_CHAT": json.dumps(chat),
        }
