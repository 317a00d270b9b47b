"""The operator's hook and the fan-out engine settle the same answers the same way.

Both are driven against real servers on 127.0.0.1: the hook through ``WebhookHook.send`` and
``attempt``, the engine through ``airhook.delivery.http.post``; both go through airhook's one
client (``airhook.delivery.client``). Each answer's outcome, honoured ``Retry-After`` and excerpt,
and each way of getting no answer (refused, silent, untrusted certificate, a failed handshake),
must come out the same in both.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from airhook.core.delivery_rules import RETRY_AFTER_STATUSES, Outcome, honoured_retry_after
from airhook.core.redaction import EXCERPT_CHARS, REDACTED
from airhook.core.secrets import Secret
from airhook.core.ssrf import DestinationPolicy
from airhook.core.subscription import Subscription
from airhook.delivery.http import open_session, post
from airhook.delivery.targets import build_target
from airhook.hooks.webhook import WebhookHook
from tests.tls import self_signed

API_KEY = "key_0123456789abcdef"
#: status, Retry-After sent (None: no header), expected outcome, expected honoured delay.
CASES = [
    (200, None, Outcome.DELIVERED, None),
    (410, None, Outcome.GONE, None),
    (400, None, Outcome.FAILED, None),
    (429, "7", Outcome.RETRY, 7.0),
    (503, "7", Outcome.RETRY, 7.0),
    (500, "7", Outcome.RETRY, None),  # Retry-After means nothing on a 500: the schedule decides
]


class _Echo(BaseHTTPRequestHandler):
    """Answers ``/<status>[/<retry-after>]`` with that status, echoing the API key first."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        parts = self.path.strip("/").split("/")
        body = f"got {self.headers.get('X-Api-Key')} ".encode() + b"x" * 2000
        self.send_response(int(parts[0]))
        if len(parts) > 1:
            self.send_header("Retry-After", parts[1])
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _path(status: int, retry_after: str | None) -> str:
    return f"/{status}" if retry_after is None else f"/{status}/{retry_after}"


def _through_hook(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> tuple[Outcome, float | None, str | None]:
    monkeypatch.setenv("AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS", "127.0.0.1/32")
    monkeypatch.setenv(
        "AIRFLOW_CONN_WH_AGREE",
        json.dumps(
            {
                "conn_type": "airhook_webhook",
                "host": url,
                "extra": {"headers": {"X-Api-Key": API_KEY}},
            }
        ),
    )
    result = WebhookHook("wh_agree").send("POST", None, {}, b"{}", message_id="msg_agree")
    return result.outcome, result.retry_after, result.excerpt


def _through_engine(url: str) -> tuple[Outcome | None, float | None, str | None]:
    subscription = Subscription(
        name="agree", url=url, scheme=None, headers={"X-Api-Key": Secret(API_KEY)}
    )
    target = build_target(subscription, default_timeout=5.0)

    async def run() -> tuple[Outcome | None, float | None, str | None]:
        async with open_session(DestinationPolicy(allow=["127.0.0.1/32"])) as session:
            attempt, outcome, retry_after = await post(session, target, "msg_agree", b"{}")
        return outcome, retry_after, attempt.response_excerpt

    return asyncio.run(run())


@pytest.mark.parametrize(("status", "retry_after", "outcome", "delay"), CASES)
def test_hook_and_engine_settle_an_answer_alike(
    monkeypatch: pytest.MonkeyPatch,
    base_url: str,
    status: int,
    retry_after: str | None,
    outcome: Outcome,
    delay: float | None,
) -> None:
    url = base_url + _path(status, retry_after)
    hook = _through_hook(monkeypatch, url)
    engine = _through_engine(url)
    assert hook == engine
    expected_excerpt = (f"got {REDACTED} " + "x" * EXCERPT_CHARS)[:EXCERPT_CHARS]
    assert (hook[0], hook[1], hook[2]) == (outcome, delay, expected_excerpt)


def test_retry_after_is_honoured_on_429_and_503_only() -> None:
    assert sorted(RETRY_AFTER_STATUSES) == [429, 503]
    honoured = {s: honoured_retry_after(s, "7") for s in (200, 301, 400, 410, 429, 500, 503)}
    assert honoured == {200: None, 301: None, 400: None, 410: None, 429: 7.0, 500: None, 503: 7.0}
    assert honoured_retry_after(None, "7") is None
    assert honoured_retry_after(429, None) is None


# --- no answer: the one client's failure vocabulary ----------------------------------------


@pytest.fixture(scope="module")
def unanswering(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """URLs on 127.0.0.1 that get no answer, each in its own way."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused_port = closed.getsockname()[1]
    closed.close()  # nothing listens there now: connections are refused
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel accepts; nobody ever answers
    tls_httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed(tmp_path_factory.mktemp("untrusted")))
    tls_httpd.socket = context.wrap_socket(tls_httpd.socket, server_side=True)
    tls_httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
    plain_httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    servers = [tls_httpd, plain_httpd]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    yield {
        "refused": f"http://127.0.0.1:{refused_port}/200",
        "silent": f"http://127.0.0.1:{silent.getsockname()[1]}/200",
        "untrusted certificate": f"https://127.0.0.1:{tls_httpd.server_address[1]}/200",
        "https to plain http": f"https://127.0.0.1:{plain_httpd.server_address[1]}/200",
    }
    for server in servers:
        server.shutdown()
        server.server_close()
    silent.close()


#: what each way of getting no answer means, for the hook and the engine alike.
NO_ANSWER = [
    ("refused", Outcome.RETRY, "connection failed: Connect call failed"),
    ("silent", Outcome.RETRY, "no answer within 0.5 s"),
    ("untrusted certificate", Outcome.FAILED, "TLS certificate did not verify"),
    ("https to plain http", Outcome.RETRY, "TLS handshake failed"),
]


@pytest.mark.parametrize(("case", "outcome", "reason"), NO_ANSWER)
def test_hook_and_engine_settle_no_answer_alike(
    monkeypatch: pytest.MonkeyPatch,
    unanswering: dict[str, str],
    case: str,
    outcome: Outcome,
    reason: str,
) -> None:
    url = unanswering[case]
    monkeypatch.setenv("AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS", "127.0.0.1/32")
    hook = WebhookHook(None, timeout=0.5)
    attempt = hook.attempt("POST", url, {}, b"{}", message_id="msg_none")
    hook.close()
    assert attempt.result is None
    assert attempt.error is not None
    hook_says = (attempt.outcome, attempt.error.reason)

    subscription = Subscription(name="none", url=url, scheme=None, timeout=0.5)
    target = build_target(subscription, default_timeout=0.5)

    async def run() -> tuple[Outcome | None, str | None]:
        async with open_session(DestinationPolicy(allow=["127.0.0.1/32"])) as session:
            logged, settled, _ = await post(session, target, "msg_none", b"{}")
        return settled, logged.error

    engine_says = asyncio.run(run())
    assert hook_says == engine_says
    assert hook_says[0] is outcome
    assert hook_says[1] is not None
    assert hook_says[1].startswith(reason)


def test_engine_connects_only_to_addresses_the_policy_passes(base_url: str) -> None:
    # The round's check passed (no verdict on the target); when connecting, the name resolves
    # to loopback, which this policy refuses: the attempt is refused and nothing is sent.
    port = base_url.rsplit(":", 1)[1]
    url = f"http://rebound.airhook.test:{port}/200"
    target = build_target(Subscription(name="rebound", url=url, scheme=None), 5.0)
    asked: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    async def run() -> tuple[Outcome | None, str | None]:
        async with open_session(DestinationPolicy(resolver=resolve)) as session:
            logged, settled, _ = await post(session, target, "msg_rebound", b"{}")
        return settled, logged.outcome + ": " + (logged.error or "")

    settled, logged = asyncio.run(run())
    assert asked == ["rebound.airhook.test"]
    assert settled is None
    assert logged.startswith(
        "refused: destination refused: rebound.airhook.test resolves to a loopback"
    )
