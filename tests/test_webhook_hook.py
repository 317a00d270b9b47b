"""WebhookHook against real HTTP servers on 127.0.0.1.

Signatures are checked on the server side by code that is not airhook's (``standardwebhooks``,
``svix``, hand-computed HMACs); retries, timeouts and resets run against a small scripted server
that can stall or cut a connection. Connections come from ``AIRFLOW_CONN_<ID>`` variables and the
destination allow-list from ``AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS``, as in a deployment.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks
import svix.webhooks
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from airhook.core.delivery_rules import Outcome, RetryPolicy
from airhook.core.errors import DeliveryError
from airhook.core.redaction import WITHHELD
from airhook.core.secrets import generate_secret
from airhook.core.ssrf import DestinationNotAllowedError
from airhook.hooks.webhook import DEFAULT_RETRY_POLICY, WebhookHook
from tests.tls import self_signed

BODY = b'{"event":"lead.captured","data":{"email":"ana@example.com"}}'
PRIMARY = generate_secret().reveal()
SECONDARY = generate_secret().reveal()
TINY = RetryPolicy(schedule=(0, 0.05, 0.05, 0.05), jitter=False)


# --- servers -------------------------------------------------------------------------------


@dataclass
class Reply:
    """What the scripted server does with one request."""

    status: int = 200
    body: bytes = b'{"ok": true}'
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    delay: float = 0.0  # seconds before answering: a slow endpoint
    reset: bool = False  # cut the connection (TCP RST) instead of answering


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float  # time.monotonic()
    client_port: int


class ScriptedServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 that answers from a script and records requests."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self.replies: deque[Reply] = deque()
        self.received: list[Received] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the hook's pooled connections show

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with server._lock:
                    server.received.append(
                        Received(
                            self.command,
                            self.path,
                            {k.lower(): v for k, v in self.headers.items()},
                            body,
                            time.monotonic(),
                            self.client_address[1],
                        )
                    )
                    reply = server.replies.popleft() if server.replies else Reply()
                if reply.reset:
                    # SO_LINGER 0: close() sends RST, as a crashed load balancer would.
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.close_connection = True
                    self.connection.close()
                    return
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    self.close_connection = True  # the client gave up (timeout) first

            do_POST = do_PUT = do_PATCH = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        scheme = "https" if isinstance(self.httpd.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def reset_log(self) -> None:
        self.replies.clear()
        self.received.clear()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def _scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer()
    yield server
    server.close()


@pytest.fixture
def scripted(_scripted: ScriptedServer) -> ScriptedServer:
    _scripted.reset_log()
    return _scripted


@pytest.fixture(scope="module")
def _httpserver() -> Iterator[HTTPServer]:
    # Our own instance on 127.0.0.1 (the plugin's shared fixture listens on "localhost", which
    # may resolve to ::1 as well, outside the allow-list).
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def httpserver(_httpserver: HTTPServer) -> Iterator[HTTPServer]:
    yield _httpserver
    _httpserver.clear()


# --- environment ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def allow_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests call 127.0.0.1, which airhook refuses unless the configuration allows it."""
    monkeypatch.setenv("AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS", "127.0.0.1/32")
    monkeypatch.delenv("AIRFLOW__AIRHOOK__OUTBOUND_TIMEOUT_SECONDS", raising=False)


def connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, **fields: Any) -> str:
    """Define an Airflow connection through ``AIRFLOW_CONN_<ID>`` (JSON form); return its id."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps({"conn_type": "airhook_webhook", **fields}),
    )
    return conn_id


def send(hook: WebhookHook, url: str | None = None, body: bytes = BODY, **kwargs: Any) -> Any:
    kwargs.setdefault("message_id", "msg_test")
    return hook.send("POST", url, {}, body, **kwargs)


def _capture(httpserver: HTTPServer, status: int = 200) -> list[Request]:
    """Make ``httpserver`` answer every POST to /hook and keep the requests."""
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        request.get_data()
        seen.append(request)
        return Response('{"received": true}', status=status, content_type="application/json")

    httpserver.expect_request("/hook", method="POST").respond_with_handler(handler)
    return seen


# --- signatures, verified by independent code ----------------------------------------------


def test_standard_signature_verifies_with_standardwebhooks_and_svix(
    monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer
) -> None:
    seen = _capture(httpserver)
    conn_id = connection(
        monkeypatch,
        "wh_standard",
        host=httpserver.url_for("/hook"),
        password=PRIMARY,
        extra={"signing": "standard"},
    )
    result = send(WebhookHook(conn_id), message_id="msg_standard_1")
    assert result.status_code == 200
    [request] = seen
    headers = dict(request.headers.items())
    body = request.get_data()
    assert body == BODY
    assert standardwebhooks.Webhook(PRIMARY).verify(body, headers) == json.loads(BODY)
    svix.webhooks.Webhook(PRIMARY).verify(body, headers)
    assert request.headers["webhook-id"] == "msg_standard_1"


def test_standard_signs_with_the_secondary_secret_too(
    monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer
) -> None:
    seen = _capture(httpserver)
    conn_id = connection(
        monkeypatch,
        "wh_standard_rotating",
        host=httpserver.url_for("/hook"),
        password=PRIMARY,
        extra={"signing": "standard", "secondary_secret": SECONDARY},
    )
    send(WebhookHook(conn_id))
    [request] = seen
    headers = dict(request.headers.items())
    assert len(request.headers["webhook-signature"].split()) == 2
    standardwebhooks.Webhook(SECONDARY).verify(request.get_data(), headers)
    svix.webhooks.Webhook(PRIMARY).verify(request.get_data(), headers)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(generate_secret().reveal()).verify(request.get_data(), headers)


def test_rkt_signature_is_the_hex_hmac_of_the_body(
    monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer
) -> None:
    seen = _capture(httpserver)
    conn_id = connection(
        monkeypatch,
        "wh_rkt",
        host=httpserver.url_for("/hook"),
        password=PRIMARY,
        extra={"signing": "rkt"},
    )
    send(WebhookHook(conn_id))
    [request] = seen
    expected = hmac.new(PRIMARY.encode(), BODY, hashlib.sha256).hexdigest()
    assert request.headers["X-RKT-Signature"] == expected


def test_ccai_signs_timestamp_and_body_with_both_secrets(
    monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer
) -> None:
    seen = _capture(httpserver)
    conn_id = connection(
        monkeypatch,
        "wh_ccai",
        host=httpserver.url_for("/hook"),
        password="primary-secret-value",
        extra={"signing": "ccai", "secondary_secret": "secondary-secret-value"},
    )
    before = int(time.time())
    send(WebhookHook(conn_id))
    [request] = seen
    timestamp = request.headers["X-Signature-Timestamp"]
    assert before <= int(timestamp) <= time.time()

    def b64(key: str) -> str:
        digest = hmac.new(key.encode(), timestamp.encode() + BODY, hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    assert request.headers["X-Signature"] == (
        f"primary={b64('primary-secret-value')} secondary={b64('secondary-secret-value')}"
    )


def test_generic_hmac_uses_the_connections_layout(
    monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer
) -> None:
    seen = _capture(httpserver)
    conn_id = connection(
        monkeypatch,
        "wh_hmac",
        host=httpserver.url_for("/hook"),
        password="hmac-secret-value",
        extra={
            "signing": "hmac",
            "signing_options": {
                "header": "X-Hub-Signature-256",
                "prefix": "sha256=",
                "timestamp_header": "X-Hub-Timestamp",
                "content": "v0:{timestamp}:{body}",
            },
        },
    )
    send(WebhookHook(conn_id))
    [request] = seen
    timestamp = request.headers["X-Hub-Timestamp"]
    message = f"v0:{timestamp}:".encode() + BODY
    expected = hmac.new(b"hmac-secret-value", message, hashlib.sha256).hexdigest()
    assert request.headers["X-Hub-Signature-256"] == "sha256=" + expected


def test_unsigned_connection_sends_no_signature(
    monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer
) -> None:
    seen = _capture(httpserver)
    conn_id = connection(monkeypatch, "wh_plain", host=httpserver.url_for("/hook"))
    send(WebhookHook(conn_id), message_id="msg_plain")
    [request] = seen
    assert "webhook-signature" not in request.headers
    assert "Authorization" not in request.headers
    assert request.headers["webhook-id"] == "msg_plain"
    assert request.headers["Idempotency-Key"] == "msg_plain"


# --- auth and headers ----------------------------------------------------------------------


def test_bearer_token_arrives(monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer) -> None:
    seen = _capture(httpserver)
    conn_id = connection(
        monkeypatch,
        "wh_bearer",
        host=httpserver.url_for("/hook"),
        password="tok-123456",
        extra={"auth": "bearer"},
    )
    send(WebhookHook(conn_id))
    assert seen[0].headers["Authorization"] == "Bearer tok-123456"


def test_bearer_token_next_to_a_signing_secret(
    monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer
) -> None:
    seen = _capture(httpserver)
    conn_id = connection(
        monkeypatch,
        "wh_bearer_signed",
        host=httpserver.url_for("/hook"),
        password=PRIMARY,
        extra={"signing": "rkt", "token": "tok-abcdef"},
    )
    send(WebhookHook(conn_id))
    [request] = seen
    assert request.headers["Authorization"] == "Bearer tok-abcdef"
    expected = hmac.new(PRIMARY.encode(), BODY, hashlib.sha256).hexdigest()
    assert request.headers["X-RKT-Signature"] == expected


def test_basic_auth_arrives(monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer) -> None:
    seen = _capture(httpserver)
    conn_id = connection(
        monkeypatch,
        "wh_basic",
        host=httpserver.url_for("/hook"),
        login="airflow",
        password="pa:ss-word",
    )
    send(WebhookHook(conn_id))
    assert seen[0].authorization is not None
    assert seen[0].authorization.type == "basic"
    assert (seen[0].authorization.username, seen[0].authorization.password) == (
        "airflow",
        "pa:ss-word",
    )


def test_signature_and_id_headers_cannot_be_overridden(
    monkeypatch: pytest.MonkeyPatch, httpserver: HTTPServer
) -> None:
    seen = _capture(httpserver)
    conn_id = connection(
        monkeypatch,
        "wh_override",
        host=httpserver.url_for("/hook"),
        password=PRIMARY,
        extra={"signing": "rkt", "token": "tok-abcdef", "headers": {"X-Team": "analytics"}},
    )
    WebhookHook(conn_id).send(
        "POST",
        None,
        {
            "x-rkt-signature": "forged",
            "authorization": "Bearer other",
            "Idempotency-Key": "other",
            "X-Extra": "1",
        },
        BODY,
        message_id="msg_real",
    )
    [request] = seen
    assert request.headers["X-RKT-Signature"] != "forged"
    assert request.headers["Authorization"] == "Bearer tok-abcdef"
    assert request.headers["Idempotency-Key"] == "msg_real"
    assert request.headers["X-Team"] == "analytics"
    assert request.headers["X-Extra"] == "1"
    assert request.headers["Content-Type"] == "application/json"


def test_one_session_serves_every_call(
    monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:
    conn_id = connection(monkeypatch, "wh_pool", host=scripted.url())
    hook = WebhookHook(conn_id)
    for _ in range(3):
        assert send(hook).status_code == 200
    ports = {request.client_port for request in scripted.received}
    assert len(scripted.received) == 3
    assert len(ports) == 1  # one TCP connection, kept alive


# --- URLs ------------------------------------------------------------------------------------


def test_connection_from_host_schema_port_and_path(monkeypatch: pytest.MonkeyPatch) -> None:
    conn_id = connection(
        monkeypatch,
        "wh_parts",
        host="hooks.example.com",
        schema="https",
        port=8443,
        extra={"path": "/services/T0"},
    )
    hook = WebhookHook(conn_id)
    assert hook.resolve_url(None) == "https://hooks.example.com:8443/services/T0"
    assert hook.resolve_url("B1") == "https://hooks.example.com:8443/services/T0/B1"


def test_absolute_url_at_the_connections_origin_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    conn_id = connection(monkeypatch, "wh_origin", host="https://hooks.example.com/a")
    hook = WebhookHook(conn_id)
    assert hook.resolve_url("https://hooks.example.com:443/b?x=1") == (
        "https://hooks.example.com:443/b?x=1"
    )


def test_absolute_url_elsewhere_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    conn_id = connection(monkeypatch, "wh_elsewhere", host="https://hooks.example.com/a")
    with pytest.raises(ValueError, match="not at the origin"):
        WebhookHook(conn_id).resolve_url("https://attacker.example.net/a")


def test_without_a_connection_the_url_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="absolute"):
        WebhookHook(None).resolve_url("/hook")


def test_unknown_extra_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    conn_id = connection(
        monkeypatch, "wh_typo", host="https://x.example.com", extra={"signign": "rkt"}
    )
    with pytest.raises(ValueError, match="unknown extra 'signign'"):
        WebhookHook(conn_id).resolve_url(None)


def test_signing_without_a_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    conn_id = connection(
        monkeypatch, "wh_nosecret", host="https://x.example.com", extra={"signing": "rkt"}
    )
    with pytest.raises(ValueError, match="needs the secret in password"):
        WebhookHook(conn_id).resolve_url(None)


def test_redirects_are_not_followed(
    monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:
    scripted.script(Reply(status=307, headers={"Location": "http://169.254.169.254/latest"}))
    conn_id = connection(monkeypatch, "wh_redirect", host=scripted.url())
    result = send(WebhookHook(conn_id))
    assert result.status_code == 307
    assert result.outcome is Outcome.FAILED
    assert len(scripted.received) == 1


# --- timeouts and TLS ------------------------------------------------------------------------


def test_timeout_defaults_to_the_configured_ten_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    conn_id = connection(monkeypatch, "wh_timeout_default", host="https://x.example.com")
    assert WebhookHook(conn_id)._timeout(None) == 10.0
    monkeypatch.setenv("AIRFLOW__AIRHOOK__OUTBOUND_TIMEOUT_SECONDS", "3.5")
    assert WebhookHook(conn_id)._timeout(None) == 3.5


def test_timeout_from_the_connection_then_the_hook_then_the_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conn_id = connection(
        monkeypatch, "wh_timeout", host="https://x.example.com", extra={"timeout": 4}
    )
    assert WebhookHook(conn_id)._timeout(None) == 4.0
    assert WebhookHook(conn_id, timeout=2)._timeout(None) == 2.0
    assert WebhookHook(conn_id, timeout=2)._timeout(1) == 1.0


def test_slow_endpoint_times_out_as_a_retryable_error(
    monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:
    scripted.script(Reply(delay=1.0))
    conn_id = connection(monkeypatch, "wh_slow", host=scripted.url(), extra={"timeout": 0.2})
    started = time.monotonic()
    with pytest.raises(DeliveryError) as caught:
        send(WebhookHook(conn_id))
    assert time.monotonic() - started < 0.9
    assert caught.value.retryable is True
    assert caught.value.status_code is None
    assert "no answer within 0.2 s" in str(caught.value)


def test_connection_reset_is_a_retryable_error(
    monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:
    scripted.script(Reply(reset=True))
    conn_id = connection(monkeypatch, "wh_reset", host=scripted.url())
    with pytest.raises(DeliveryError) as caught:
        send(WebhookHook(conn_id))
    assert caught.value.retryable is True
    assert "connection failed" in str(caught.value)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and PINNED_NAME: (certificate file, key file)."""
    return self_signed(tmp_path_factory.mktemp("tls"), [PINNED_NAME])


@pytest.fixture(scope="module")
def tls_server(certificate: tuple[Path, Path]) -> Iterator[ScriptedServer]:
    server = ScriptedServer(tls=certificate)
    yield server
    server.close()


def test_tls_certificate_is_verified_by_default(
    monkeypatch: pytest.MonkeyPatch, tls_server: ScriptedServer
) -> None:
    tls_server.reset_log()
    conn_id = connection(monkeypatch, "wh_tls_on", host=tls_server.url())
    with pytest.raises(DeliveryError, match="certificate did not verify") as caught:
        send(WebhookHook(conn_id))
    assert caught.value.retryable is False
    assert tls_server.received == []


def test_tls_verification_can_be_turned_off(
    monkeypatch: pytest.MonkeyPatch,
    tls_server: ScriptedServer,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tls_server.reset_log()
    conn_id = connection(
        monkeypatch, "wh_tls_off", host=tls_server.url(), extra={"verify_tls": False}
    )
    hook = WebhookHook(conn_id)
    with caplog.at_level(logging.WARNING):
        assert send(hook).status_code == 200
        assert send(hook).status_code == 200
    assert len(tls_server.received) == 2
    # Said once per hook, naming the connection (Airflow's task loggers write through structlog
    # to the console: read both channels).
    captured = capsys.readouterr()
    logs = caplog.text + captured.out + captured.err
    assert logs.count("TLS certificates are not verified") == 1
    assert "connection 'wh_tls_off': TLS certificates are not verified" in logs


def test_tls_verifies_against_a_ca_bundle(
    monkeypatch: pytest.MonkeyPatch, tls_server: ScriptedServer, certificate: tuple[Path, Path]
) -> None:
    tls_server.reset_log()
    conn_id = connection(
        monkeypatch, "wh_tls_ca", host=tls_server.url(), extra={"ca_bundle": str(certificate[0])}
    )
    assert send(WebhookHook(conn_id)).status_code == 200


def test_tls_handshake_failure_is_retryable(
    monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:
    # https spoken to a plain-HTTP server: the handshake fails, as it can behind a flaky proxy.
    conn_id = connection(monkeypatch, "wh_tls_fail", host=f"https://127.0.0.1:{scripted.port}/hook")
    with pytest.raises(DeliveryError, match="TLS handshake failed") as caught:
        send(WebhookHook(conn_id))
    assert caught.value.retryable is True


# --- destinations ----------------------------------------------------------------------------


def test_loopback_is_refused_without_the_allow_setting_and_nothing_arrives(
    monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:
    monkeypatch.delenv("AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS")
    conn_id = connection(monkeypatch, "wh_loop", host=scripted.url())
    with pytest.raises(DestinationNotAllowedError, match="loopback"):
        send(WebhookHook(conn_id))
    assert scripted.received == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.1.2.3/hook", "private"),
        ("http://[::1]:8080/hook", "loopback"),
        ("http://[::ffff:169.254.169.254]/hook", "link-local"),
        # IPv6 forms that lead to an IPv4 address: 6to4, Teredo (client 127.0.0.1), NAT64.
        ("http://[2002:a9fe:a9fe::]/hook", "link-local"),
        ("http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/hook", "loopback"),
        ("http://[64:ff9b::a01:203]/hook", "private"),
        # Teredo whose client is public: the Teredo address itself is not a global one.
        ("http://[2001::a9fe:a9fe]/hook", "private"),
    ],
)
def test_private_and_link_local_addresses_are_refused(url: str, reason: str) -> None:
    with pytest.raises(DestinationNotAllowedError, match=reason) as caught:
        send(WebhookHook(None), url)
    assert caught.value.retryable is False


def test_a_hostname_resolving_to_loopback_is_refused(
    monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:
    monkeypatch.delenv("AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS")
    with pytest.raises(DestinationNotAllowedError, match="loopback"):
        send(WebhookHook(None), f"http://localhost:{scripted.port}/hook")
    assert scripted.received == []


#: A name no real DNS answers: only the test's resolver knows it.
PINNED_NAME = "hooks.airhook.test"


def _resolving(monkeypatch: pytest.MonkeyPatch, *answers: str | list[str]) -> list[str]:
    """Give every hook a destination policy (the configured allow list) whose resolver answers
    ``answers`` in turn, the last one from then on; return the names it was asked for."""
    from airhook.config import get_str
    from airhook.core.ssrf import DestinationPolicy

    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        answer = answers[min(len(asked), len(answers)) - 1]
        return [answer] if isinstance(answer, str) else answer

    def policy(self: WebhookHook) -> DestinationPolicy:
        allow = get_str("outbound_allow_networks").split(",")
        return DestinationPolicy(allow=allow, resolver=resolve)

    monkeypatch.setattr(WebhookHook, "destination_policy", policy)
    return asked


def test_a_name_rebound_to_loopback_after_the_check_is_refused_when_connecting(
    monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:
    # The check sees a public address; by the time the connection is made the name points at
    # the Airflow host itself. The connection resolves through the policy, so the second
    # answer is checked too, and nothing reaches the loopback server.
    monkeypatch.delenv("AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS")
    asked = _resolving(monkeypatch, "93.184.216.34", "127.0.0.1")
    with pytest.raises(DestinationNotAllowedError, match="loopback") as caught:
        send(WebhookHook(None), f"http://{PINNED_NAME}:{scripted.port}/hook")
    assert asked == [PINNED_NAME, PINNED_NAME]
    assert caught.value.retryable is False
    assert scripted.received == []


def test_connections_go_to_the_address_the_policy_passed(
    monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:
    scripted.reset_log()
    asked = _resolving(monkeypatch, "127.0.0.1")
    result = send(WebhookHook(None), f"http://{PINNED_NAME}:{scripted.port}/hook")
    assert result.status_code == 200
    assert asked == [PINNED_NAME, PINNED_NAME]  # the check, then the connection
    [request] = scripted.received
    assert request.headers["host"] == f"{PINNED_NAME}:{scripted.port}"


def test_a_pinned_connection_tries_each_address_until_one_answers(
    monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:
    # 127.0.0.2 refuses (nothing listens); 127.0.0.3 never answers the handshake (a listener
    # whose backlog is full drops it: a connect timeout); 127.0.0.1 answers.
    monkeypatch.setenv("AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS", "127.0.0.0/8")
    silent = socket.socket()
    silent.bind(("127.0.0.3", scripted.port))
    silent.listen(0)
    queued: list[socket.socket] = []
    try:
        while len(queued) < 8:  # fill the backlog: the next handshake gets no answer
            probe = socket.socket()
            probe.settimeout(0.3)
            try:
                probe.connect(("127.0.0.3", scripted.port))
            except TimeoutError:
                probe.close()
                break
            queued.append(probe)
        scripted.reset_log()
        _resolving(monkeypatch, ["127.0.0.2", "127.0.0.3", "127.0.0.1"])
        started = time.monotonic()
        result = send(WebhookHook(None, timeout=1.0), f"http://{PINNED_NAME}:{scripted.port}/hook")
        waited = time.monotonic() - started
    finally:
        for sock in (*queued, silent):
            sock.close()
    assert result.status_code == 200
    assert len(scripted.received) == 1
    # Happy Eyeballs (RFC 8305, aiohttp's default): the next address is tried 0.25 s after the
    # silent one, not after its whole timeout, which would have ended the call.
    assert waited < 0.9


def test_a_pinned_tls_connection_still_verifies_the_name(
    monkeypatch: pytest.MonkeyPatch, tls_server: ScriptedServer, certificate: tuple[Path, Path]
) -> None:
    # The socket goes to the pinned address; the certificate is checked against the URL's
    # name, which it carries, and refused for a name it does not.
    tls_server.reset_log()
    _resolving(monkeypatch, "127.0.0.1")
    conn_id = connection(monkeypatch, "wh_tls_pinned", extra={"ca_bundle": str(certificate[0])})
    hook = WebhookHook(conn_id)
    assert send(hook, f"https://{PINNED_NAME}:{tls_server.port}/hook").status_code == 200
    with pytest.raises(DeliveryError, match="certificate did not verify"):
        send(hook, f"https://other.airhook.test:{tls_server.port}/hook")
    assert len(tls_server.received) == 1


def test_allow_list_comes_from_configuration_only() -> None:
    policy = WebhookHook(None).destination_policy()
    assert [str(network) for network in policy.allow] == ["127.0.0.1/32"]


def test_methods_without_a_body_are_refused(scripted: ScriptedServer) -> None:
    with pytest.raises(ValueError, match="method 'GET'"):
        WebhookHook(None).send("GET", scripted.url(), {}, b"", message_id="m")
    assert scripted.received == []


# --- results hold no secret ------------------------------------------------------------------


def test_secrets_echoed_by_the_receiver_are_scrubbed(
    monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:
    echoed = json.dumps(
        {"headers": {"Authorization": "Bearer tok-echoed-123"}, "secret": SECONDARY}
    ).encode()
    scripted.script(
        Reply(
            body=echoed,
            headers={
                "Content-Type": "application/json",
                "Set-Cookie": "session=abc",
                "X-Echo": "Bearer tok-echoed-123",
                "X-Request-Id": "req-1",
            },
        )
    )
    conn_id = connection(
        monkeypatch,
        "wh_echo",
        host=scripted.url(),
        password=PRIMARY,
        extra={"signing": "standard", "secondary_secret": SECONDARY, "token": "tok-echoed-123"},
    )
    result = send(WebhookHook(conn_id))
    shown = repr(result)
    for secret in (PRIMARY, SECONDARY, "tok-echoed-123"):
        assert secret not in shown
        assert secret not in json.dumps(result.json)
    assert result.json == {
        "headers": {"Authorization": "Bearer [redacted]"},
        "secret": "[redacted]",
    }
    assert "Set-Cookie" not in result.headers
    assert result.headers["X-Echo"] == "Bearer [redacted]"
    assert result.headers["X-Request-Id"] == "req-1"


def test_errors_and_logs_hold_no_secret_or_query(
    monkeypatch: pytest.MonkeyPatch,
    scripted: ScriptedServer,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scripted.script(Reply(reset=True), Reply(reset=True))
    conn_id = connection(
        monkeypatch, "wh_quiet", host=scripted.url(), password="tok-quiet-123", extra={}
    )
    hook = WebhookHook(conn_id)
    url = scripted.url("/hook?api_key=k-query-789")
    policy = RetryPolicy(schedule=(0, 0.01), jitter=False)
    # Airflow's task loggers write through structlog to the console: read both channels. (At
    # DEBUG, urllib3 itself logs request lines with the query string: Airflow runs tasks at INFO.)
    with caplog.at_level("INFO"), pytest.raises(DeliveryError) as caught:
        hook.deliver("POST", url, {}, BODY, message_id="m", retry_policy=policy)
    captured = capsys.readouterr()
    logs = caplog.text + captured.out + captured.err
    assert "attempt 1 of m failed" in logs  # the log was captured at all
    text = str(caught.value) + repr(caught.value.__cause__) + logs
    assert "tok-quiet-123" not in text
    assert "k-query-789" not in text
    assert caught.value.url == f"http://127.0.0.1:{scripted.port}/…"


def test_a_url_path_that_is_a_credential_reaches_no_log_error_or_result(
    monkeypatch: pytest.MonkeyPatch,
    scripted: ScriptedServer,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # As in a Slack or Zapier incoming-webhook URL: the path is the key.
    path = "/services/T0AAAA/B0BBBB/XoXoPathToken123"
    scripted.script(
        Reply(body=json.dumps({"you_called": path}).encode()), Reply(reset=True), Reply(reset=True)
    )
    conn_id = connection(monkeypatch, "wh_path", host=scripted.url(path))
    hook = WebhookHook(conn_id)
    policy = RetryPolicy(schedule=(0, 0.01), jitter=False)
    with caplog.at_level("INFO"):
        result = send(hook)
        with pytest.raises(DeliveryError) as caught:
            hook.deliver("POST", None, {}, BODY, message_id="m", retry_policy=policy)
    captured = capsys.readouterr()
    logs = caplog.text + captured.out + captured.err
    assert "attempt 1 of m failed" in logs
    text = str(caught.value) + repr(result) + json.dumps(result.json) + logs
    assert "XoXoPathToken123" not in text
    assert result.url == caught.value.url == f"http://127.0.0.1:{scripted.port}/…"
    assert [r.path for r in scripted.received] == [path] * 3  # the calls themselves used it


def test_an_api_url_in_an_answer_is_not_blanked(
    monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:
    # A short path and the bare origin are an API's, not a key: links in answers stay readable.
    origin = f"http://127.0.0.1:{scripted.port}"
    answer = {"self": f"{origin}/api/v2/items/7", "auth": "Team acme", "origin": origin}
    scripted.script(
        Reply(body=json.dumps(answer).encode(), headers={"Content-Type": "application/json"})
    )
    conn_id = connection(monkeypatch, "wh_api", host=scripted.url("/api/v2/items"))
    assert send(WebhookHook(conn_id)).json == answer


def test_extra_headers_and_secrets_echoed_in_other_forms_are_scrubbed(
    monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:
    # An API key in the connection's extra headers, echoed as sent; the signing secret echoed
    # JSON-escaped as PHP writes it ("\/"): the first is replaced, the second withholds the text.
    api_key = "API-KEY-echoed-4567"
    secret = "whsec_" + base64.b64encode(b"\xff" * 32).decode()  # "////…": escaped by PHP
    scripted.script(
        Reply(
            body=json.dumps({"X-Api-Key": api_key, "accept": "application/json"}).encode(),
            headers={"Content-Type": "application/json", "X-Echo": api_key},
        ),
        Reply(body=json.dumps({"got": secret}).replace("/", "\\/").encode()),
    )
    conn_id = connection(
        monkeypatch,
        "wh_keys",
        host=scripted.url(),
        password=secret,
        extra={
            "signing": "standard",
            "headers": {"X-Api-Key": api_key, "Accept": "application/json"},
        },
    )
    hook = WebhookHook(conn_id)
    first = send(hook)
    assert first.json == {"X-Api-Key": "[redacted]", "accept": "application/json"}
    assert first.headers["X-Echo"] == "[redacted]"
    assert api_key not in repr(first)
    second = send(hook)
    assert second.excerpt == WITHHELD
    assert "////" not in repr(second)


def test_result_reports_latency_and_a_short_excerpt(
    monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:
    scripted.script(
        Reply(status=502, body=b"x" * 5000, headers={"Content-Type": "text/plain"}, delay=0.05)
    )
    result = send(WebhookHook(connection(monkeypatch, "wh_excerpt", host=scripted.url())))
    assert result.status_code == 502
    assert result.json is None
    assert result.excerpt == "x" * 512
    assert 0.05 <= result.latency < 2


# --- Airflow's log masker ----------------------------------------------------------------------

_TOO_SHORT = "too short"


def _handed_over(monkeypatch: pytest.MonkeyPatch, **fields: Any) -> WebhookHook:
    """A hook whose connection is handed over as is, as Airflow's "Test" button does: not fetched
    through the secrets backends, whose own fetch walks the extra with the masker."""
    from airflow.sdk import Connection

    conn = Connection(conn_id="wh_mask", conn_type="airhook_webhook", **fields)
    monkeypatch.setattr(WebhookHook, "get_connection", classmethod(lambda cls, conn_id: conn))
    # Airflow warns about a short value once per process: let this test see its own.
    from airflow.sdk._shared.secrets_masker.secrets_masker import SecretsMasker

    monkeypatch.setattr(SecretsMasker, "_has_warned_short_secret", False)
    return WebhookHook("wh_mask")


def _logs(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    return caplog.text + captured.out + captured.err


def test_reading_a_connection_hands_the_masker_no_value_too_short_for_it(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hook = _handed_over(
        monkeypatch,
        host="api.example.com",
        password="a-long-signing-secret-0001",
        extra=json.dumps(
            {
                "signing": "rkt",
                "auth": "none",
                "path": "/v1",
                "verify_tls": "true",
                "secondary_secret": "",
                "headers": {"X-Env": "dev", "X-Api-Key": "k-long-api-key-0002"},
            }
        ),
    )
    with caplog.at_level("INFO"):
        assert hook.settings.base_url == "https://api.example.com/v1"
        assert _TOO_SHORT not in _logs(caplog, capsys)
        from airflow.sdk.log import mask_secret

        mask_secret("abc")  # the warning, when there is one, is seen here
        assert _TOO_SHORT in _logs(caplog, capsys)


def test_every_secret_of_a_connection_is_masked_in_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.log import redact as masked

    secrets = {
        "password": "a-long-signing-secret-0003",
        "secondary": "a-long-secondary-secret-0004",
        "token": "a-long-bearer-token-0005",
        "api_key": "k-long-api-key-0006",
    }
    hook = _handed_over(
        monkeypatch,
        host="https://api.example.com/hook",
        password=secrets["password"],
        extra=json.dumps(
            {
                "signing": "ccai",
                "secondary_secret": secrets["secondary"],
                "token": secrets["token"],
                "headers": {"X-Api-Key": secrets["api_key"], "X-Env": "dev"},
            }
        ),
    )
    assert hook.settings.authorization is not None
    for name, secret in secrets.items():
        assert secret not in masked(f"logged: {secret}"), name
    assert masked("logged: dev") == "logged: dev"


def test_a_secondary_secret_is_masked_without_a_scheme_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.log import redact as masked

    extra = json.dumps({"secondary_secret": "a-long-unused-secret-0007"})
    hook = _handed_over(monkeypatch, host="https://api.example.com/hook", extra=extra)
    assert hook.settings.scheme is None
    assert "a-long-unused-secret-0007" not in masked("logged: a-long-unused-secret-0007")


def test_a_secret_too_short_to_mask_is_named_never_shown(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hook = _handed_over(monkeypatch, host="https://api.example.com/hook", password="q7Z")
    with caplog.at_level("INFO"):
        assert hook.settings.authorization is not None  # sent as a bearer token all the same
        logs = _logs(caplog, capsys)
    assert "connection 'wh_mask': the password is shorter than 5 characters" in logs
    assert "q7Z" not in logs


def test_an_extra_that_is_not_json_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    hook = _handed_over(monkeypatch, host="https://api.example.com/hook", extra='{"signing": ')
    with pytest.raises(ValueError, match="connection 'wh_mask': extra is not JSON"):
        hook.resolve_url(None)


# --- attempts and retries ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome", "again"),
    [
        (200, Outcome.DELIVERED, False),
        (500, Outcome.RETRY, True),
        (503, Outcome.RETRY, True),
        (408, Outcome.RETRY, True),
        (429, Outcome.RETRY, True),
        (400, Outcome.FAILED, False),
        (404, Outcome.FAILED, False),
        (410, Outcome.GONE, False),
    ],
)
def test_attempt_classifies_the_answer(
    monkeypatch: pytest.MonkeyPatch,
    scripted: ScriptedServer,
    status: int,
    outcome: Outcome,
    again: bool,
) -> None:
    scripted.script(Reply(status=status))
    hook = WebhookHook(connection(monkeypatch, "wh_classify", host=scripted.url()))
    attempt = hook.attempt("POST", None, {}, BODY, message_id="m", retry_policy=TINY)
    assert attempt.number == 1
    assert attempt.outcome is outcome
    assert (attempt.next_delay is not None) is again
    if outcome is Outcome.DELIVERED:
        assert attempt.error is None
    else:
        assert attempt.error is not None
        assert attempt.error.status_code == status
        assert attempt.error.retryable is again


def test_attempt_takes_retry_after_on_429_and_503_only(
    monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:
    hook = WebhookHook(connection(monkeypatch, "wh_retry_after", host=scripted.url()))
    delays = {}
    for status in (429, 503, 500):
        scripted.script(Reply(status=status, headers={"Retry-After": "7"}))
        attempt = hook.attempt("POST", None, {}, BODY, message_id="m", retry_policy=TINY)
        delays[status] = attempt.next_delay
    assert delays == {429: 7.0, 503: 7.0, 500: 0.05}


def test_deliver_retries_500_then_succeeds_with_one_message_id(
    monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:
    scripted.script(Reply(status=500), Reply(status=502), Reply(status=200))
    hook = WebhookHook(
        connection(
            monkeypatch,
            "wh_retry",
            host=scripted.url(),
            password=PRIMARY,
            extra={"signing": "standard"},
        )
    )
    attempt = hook.deliver("POST", None, {}, BODY, message_id="msg_same", retry_policy=TINY)
    assert attempt.number == 3
    assert attempt.result is not None
    assert attempt.result.status_code == 200
    assert [r.headers["webhook-id"] for r in scripted.received] == ["msg_same"] * 3
    # Each attempt is signed anew (fresh timestamp) and verifies.
    for request in scripted.received:
        standardwebhooks.Webhook(PRIMARY).verify(request.body, request.headers)


def test_deliver_gives_up_after_the_schedule(
    monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:
    scripted.script(*[Reply(status=503)] * 4)
    hook = WebhookHook(connection(monkeypatch, "wh_giveup", host=scripted.url()))
    with pytest.raises(DeliveryError, match="gave up after 4 attempts") as caught:
        hook.deliver("POST", None, {}, BODY, message_id="m", retry_policy=TINY)
    assert caught.value.retryable is True
    assert caught.value.status_code == 503
    assert len(scripted.received) == 4


def test_deliver_stops_at_410(monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer) -> None:
    scripted.script(Reply(status=410), Reply(status=200))
    hook = WebhookHook(connection(monkeypatch, "wh_gone", host=scripted.url()))
    with pytest.raises(DeliveryError, match="gone") as caught:
        hook.deliver("POST", None, {}, BODY, message_id="m", retry_policy=TINY)
    assert caught.value.retryable is False
    assert len(scripted.received) == 1


def test_deliver_waits_as_retry_after_asks(
    monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:
    scripted.script(Reply(status=429, headers={"Retry-After": "1"}), Reply(status=200))
    hook = WebhookHook(connection(monkeypatch, "wh_wait", host=scripted.url()))
    hook.deliver("POST", None, {}, BODY, message_id="m", retry_policy=TINY)
    first, second = scripted.received
    assert 1.0 <= second.at - first.at < 1.8


def test_deliver_retries_timeouts_and_resets(
    monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer
) -> None:
    scripted.script(Reply(delay=1.0), Reply(reset=True), Reply(status=201))
    hook = WebhookHook(
        connection(monkeypatch, "wh_flaky", host=scripted.url(), extra={"timeout": 0.2})
    )
    attempt = hook.deliver("POST", None, {}, BODY, message_id="m", retry_policy=TINY)
    assert attempt.number == 3
    assert attempt.result is not None
    assert attempt.result.status_code == 201


def test_default_policy_makes_six_attempts() -> None:
    assert DEFAULT_RETRY_POLICY.max_attempts == 6
    assert DEFAULT_RETRY_POLICY.jitter is True


def test_provider_info_registers_the_connection_type() -> None:
    from airhook.hooks.connection import EXTRA_KEYS
    from airhook.provider_info import get_provider_info

    [entry] = get_provider_info()["connection-types"]
    assert entry["hook-class-name"] == f"{WebhookHook.__module__}.{WebhookHook.__name__}"
    assert entry["connection-type"] == WebhookHook.conn_type == "airhook_webhook"
    assert entry["hook-name"] == WebhookHook.hook_name
    assert set(entry["conn-fields"]) <= EXTRA_KEYS
