"""airhook's one HTTP client: every outbound call, from a task's hook or the fan-out engine.

One job: put bytes on the wire to a URL the destination policy allows, and say what came back
or why nothing did. Signing, settling and recording are the callers' (through the core).

- **Pinning.** Sessions resolve host names through :class:`PolicyResolver`, aiohttp's public
  resolver interface: every address a connection may go to has just been passed by the
  :class:`~airhook.core.ssrf.DestinationPolicy`, so a DNS answer that changes after a caller's
  :meth:`~airhook.core.ssrf.DestinationPolicy.check` (rebinding) reaches nothing. TLS still
  sends and verifies the URL's host name. Literal IP hosts skip resolvers; the caller's check
  has judged them already, and they cannot change.
- **No redirects**: one could lead past the policy.
- **One request per call**: a broken connection is not silently retried (aiohttp resends a
  PUT on a reset connection by itself); the caller's retry schedule decides.
- **Bounded reads**: at most ``read_limit`` bytes of an answer.
- **One failure vocabulary** (:func:`describe_failure`): a call that got no answer raises
  :class:`~airhook.core.errors.DeliveryError` whose ``retryable`` is the rule for everyone: a
  certificate that does not verify or a request that cannot be made is final; timeouts, refused
  or reset connections, a handshake cut short, a name that does not resolve are worth retrying.
  Reasons never name the URL (URLs can be credentials).
- **Proxies**: none (aiohttp's ``trust_env`` is off). A proxy is a private address that the
  policy would refuse, and a proxied connection could not be pinned.

Why aiohttp: at 64 requests in flight it sends ~6,000 small POSTs a second on two cores, where
httpx's async client reaches 0.06–0.11 of it (``bench/outbound.py``; docs/performance.md).
Synchronous callers (a task's :class:`~airhook.hooks.webhook.WebhookHook`) use
:class:`BlockingClient`: the same session code on an event loop of their own.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airhook import __version__
from airhook.core.errors import DeliveryError
from airhook.core.ssrf import DestinationPolicy

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "USER_AGENT",
    "Answer",
    "BlockingClient",
    "PolicyResolver",
    "client_timeout",
    "describe_failure",
    "exchange",
    "open_session",
    "tls_setting",
]

#: Sent with every call, by the hook and the engine alike.
USER_AGENT = f"airhook/{__version__}"


@dataclass(frozen=True, slots=True)
class Answer:
    """What a receiver answered.

    :param status: the HTTP status.
    :param raw_headers: the response headers as received: ``(name, value)`` byte pairs, in
        order (aiohttp's ``raw_headers``). :attr:`headers` and :meth:`header` read them, only
        when asked: the fan-out looks up one header per answer, the hook all of them.
    :param body: the start of the body, at most the call's ``read_limit`` bytes; empty when
        the body broke off (the status is what counts).
    :param latency: seconds from sending the request to having read the answer.
    """

    status: int
    raw_headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    latency: float

    @property
    def headers(self) -> dict[str, str]:
        """The response headers, names as the receiver wrote them (a repeated one's values
        joined with ``", "``)."""
        return _as_written(self.raw_headers)

    def header(self, name: str) -> str | None:
        """The value of header ``name``, whatever the case of either: that of the first header
        whose name matches, joined with any repeats written the same (as in :attr:`headers`)."""
        wanted = name.lower().encode("latin-1")
        written: bytes | None = None
        values: list[bytes] = []
        for key, value in self.raw_headers:
            if written is None:
                if key.lower() != wanted:
                    continue
                written = key
            elif key != written:
                continue
            values.append(value)
        return None if written is None else ", ".join(v.decode("latin-1") for v in values)


class PolicyResolver:
    """An aiohttp resolver that returns only addresses the destination policy passes.

    Resolves through the policy itself (:meth:`DestinationPolicy.addresses`, in a thread:
    resolving blocks), so that what the check saw and what the connection uses come from one
    resolver. A refused name raises the policy's
    :class:`~airhook.core.ssrf.DestinationNotAllowedError`, which aiohttp passes through
    unchanged (it is not an ``OSError``).
    """

    def __init__(self, policy: DestinationPolicy) -> None:
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_UNSPEC
    ) -> list[dict[str, Any]]:
        addresses = await asyncio.to_thread(self._policy.addresses, host, port)
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        return None


def open_session(policy: DestinationPolicy, *, limit: int | None = None) -> aiohttp.ClientSession:
    """A session whose connections reach only what ``policy`` allows, without cookies.

    :param limit: connections at once; default aiohttp's (100).
    """
    import aiohttp

    connector = aiohttp.TCPConnector(
        resolver=PolicyResolver(policy),  # type: ignore[arg-type]
        limit=100 if limit is None else limit,
    )
    # One session, many endpoints: no cookies.
    session = aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        headers={"User-Agent": USER_AGENT},
        trust_env=False,
    )
    # aiohttp sends an idempotent request (PUT, DELETE) a second time, at once, when the
    # connection breaks before the answer (RFC 9112 §9.3.1 allows it). Here one attempt is one
    # request: the receiver may have acted on the first, the retry schedule says when the next
    # comes, and every attempt is logged. Only this private switch turns it off (aiohttp's own
    # test client sets it); tests/test_client_resend.py fails should it stop working.
    session._retry_connection = False
    return session


def client_timeout(seconds: float) -> aiohttp.ClientTimeout:
    """A whole call's deadline: connecting, sending and reading the answer."""
    import aiohttp

    return aiohttp.ClientTimeout(total=seconds)


def tls_setting(verify: bool | str) -> bool | ssl.SSLContext:
    """aiohttp's ``ssl`` argument for a connection's TLS setting.

    :param verify: ``True`` (verify against the system's CAs), ``False`` (do not verify), or the
        path of a CA bundle to verify against.
    """
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return bool(verify)


def describe_failure(exc: BaseException, timeout: float) -> tuple[str, bool]:
    """Why a call got no answer, and whether a later attempt could get one.

    The reason names no URL: aiohttp's own messages quote it, query string included.
    """
    import aiohttp

    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return f"no answer within {timeout:g} s", True
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return "TLS certificate did not verify", False  # stays so until someone fixes it
    if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        return f"TLS handshake failed ({_cause_name(exc)})", True
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "host does not resolve", True
    if isinstance(exc, aiohttp.InvalidURL | ValueError):
        return f"invalid request ({type(exc).__name__})", False
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror if exc.os_error and exc.os_error.strerror else "refused"
        return f"connection failed: {reason}", True
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "connection failed: server disconnected before answering", True
    if isinstance(exc, aiohttp.ClientOSError):
        return f"connection failed: {exc.strerror or _cause_name(exc)}", True
    return f"connection failed ({_cause_name(exc)})", True


def _cause_name(exc: BaseException) -> str:
    """The innermost cause's class name (only the name: messages may quote the URL)."""
    seen: set[int] = set()
    current: BaseException = exc
    while id(current) not in seen:
        seen.add(id(current))
        nested = current.__cause__ or current.__context__
        if nested is None:
            break
        current = nested
    return type(current).__name__


async def exchange(
    session: aiohttp.ClientSession,
    method: str,
    url: Any,
    *,
    headers: Mapping[str, str],
    body: bytes,
    timeout: float,
    shown: str,
    read_limit: int,
    tls: bool | ssl.SSLContext = True,
    deadline: aiohttp.ClientTimeout | None = None,
) -> Answer:
    """Send one request and read at most ``read_limit`` bytes of the answer.

    :param url: a string or a parsed ``yarl.URL`` (a round parses each subscription's once).
    :param timeout: seconds for the whole call.
    :param shown: the URL as errors may show it (:func:`~airhook.core.ssrf.redact_url`).
    :param deadline: ``client_timeout(timeout)`` built once by a caller that sends many.
    :raises DestinationNotAllowedError: the name resolves to a refused address (nothing sent).
    :raises DeliveryError: no answer arrived; ``retryable`` per :func:`describe_failure`.
    """
    import aiohttp

    started = time.monotonic()
    try:
        async with session.request(
            method,
            url,
            data=body,
            headers=headers,
            timeout=deadline or client_timeout(timeout),
            allow_redirects=False,  # a redirect could lead past the destination policy
            ssl=tls,
        ) as response:
            status = response.status
            answered = response.raw_headers
            try:
                raw = await response.content.read(read_limit)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                raw = b""  # the status is what counts; the body is a courtesy
    except DeliveryError:
        raise  # the policy refused what the name resolves to
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
        reason, retryable = describe_failure(exc, timeout)
        raise DeliveryError(shown, None, reason, retryable=retryable) from None
    return Answer(
        status=status,
        raw_headers=answered,
        body=raw,
        latency=time.monotonic() - started,
    )


def _as_written(raw: tuple[tuple[bytes, bytes], ...]) -> dict[str, str]:
    """Response headers with their names as the receiver wrote them (aiohttp's parsed headers
    normalise well-known names: ``X-Request-Id`` would become ``X-Request-ID``)."""
    headers: dict[str, str] = {}
    for name_bytes, value_bytes in raw:
        name = name_bytes.decode("latin-1")
        value = value_bytes.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


class _LoopAndSession:
    """What a :class:`BlockingClient` holds open, apart from the client so that a finalizer can
    close it when the client is dropped without :meth:`BlockingClient.close` (hooks often are)."""

    def __init__(self) -> None:
        self.runner: asyncio.Runner | None = None
        self.session: aiohttp.ClientSession | None = None

    def close(self) -> None:
        runner, session = self.runner, self.session
        self.runner = self.session = None
        if runner is None:
            return
        try:
            if session is not None:
                runner.run(session.close())
        finally:
            runner.close()


def _close_when_dropped(held: _LoopAndSession) -> None:
    """Close what a dropped client held. The garbage collector may call this anywhere, inside
    another event loop's callback too, where no loop may run: then in a thread of its own."""
    if held.runner is None:
        return
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        held.close()
        return
    closer = threading.Thread(target=held.close, name="airhook-client-close")
    closer.start()
    closer.join()


class BlockingClient:
    """The client for synchronous callers: one event loop and one pooled session, reused.

    For code that runs in a worker's task (the hook); not for code already inside an event
    loop, which uses :func:`open_session` and :func:`exchange` itself.
    """

    def __init__(self, policy: DestinationPolicy) -> None:
        self._policy = policy
        self._held = _LoopAndSession()
        self._finalizer = weakref.finalize(self, _close_when_dropped, self._held)

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: bytes,
        timeout: float,
        shown: str,
        read_limit: int,
        tls: bool | ssl.SSLContext = True,
    ) -> Answer:
        """:func:`exchange` on this client's session; see there."""
        if self._held.runner is None:
            self._held.runner = asyncio.Runner()
        return self._held.runner.run(
            self._request(
                method,
                url,
                headers=headers,
                body=body,
                timeout=timeout,
                shown=shown,
                read_limit=read_limit,
                tls=tls,
            )
        )

    async def _request(self, method: str, url: str, **kwargs: Any) -> Answer:
        if self._held.session is None:
            self._held.session = open_session(self._policy)
        return await exchange(self._held.session, method, url, **kwargs)

    def close(self) -> None:
        """Close the pooled connections and the loop; the next call opens new ones."""
        self._held.close()
