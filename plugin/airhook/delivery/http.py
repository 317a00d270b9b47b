"""The HTTP side of a delivery: the session, its SSRF-checking resolver, one signed request.

Why aiohttp: at 64 requests in flight it sends ~6,000 small POSTs a second on two cores, where
httpx's async client degrades with concurrency (encode/httpx#3215); see the issue's measurements.

A request never follows a redirect (it could lead past the destination policy), reads at most
:data:`_READ_LIMIT` bytes of the answer, and keeps :data:`EXCERPT_CHARS` characters of it with
every secret of the request blanked (:func:`airhook.core.redaction.excerpt`, as the operator's
hook does). The answer is settled by :mod:`airhook.core.delivery_rules`, as in the hook. A
failure is described without naming the URL (URLs can be credentials).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airhook.core.delivery_rules import Outcome, classify, honoured_retry_after
from airhook.core.errors import DeliveryError
from airhook.core.redaction import EXCERPT_CHARS, excerpt
from airhook.core.ssrf import DestinationNotAllowedError, DestinationPolicy
from airhook.delivery.targets import PUBLIC_HEADERS, Target
from airhook.store.outbox import AttemptRecord
from airhook.store.times import utc_now

if TYPE_CHECKING:
    import aiohttp

__all__ = ["EXCERPT_CHARS", "CheckingResolver", "open_session", "post"]

_READ_LIMIT = 64 * 1024  # read this much of a response at most: enough for the excerpt


class CheckingResolver:
    """A resolver that refuses addresses the destination policy forbids.

    The policy is also checked before each batch (with a clear reason on the delivery); this
    closes the gap between that check and the connection, should DNS answer differently then.
    """

    def __init__(self, policy: DestinationPolicy) -> None:
        from aiohttp.resolver import ThreadedResolver

        self._inner = ThreadedResolver()
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[Any]:
        results = await self._inner.resolve(host, port, family)
        allowed = []
        for result in results:
            address = result["host"]
            literal = f"[{address}]" if ":" in address else address
            try:
                self._policy.check(f"http://{literal}/")
            except DeliveryError:
                continue
            allowed.append(result)
        if not allowed:
            raise OSError(f"{host} resolves to no address outbound calls may reach")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def open_session(policy: DestinationPolicy, *, limit: int | None = None) -> aiohttp.ClientSession:
    """A session whose connections reach only what ``policy`` allows, without cookies.

    :param limit: connections at once; default aiohttp's.
    """
    import aiohttp

    if limit is None:
        connector = aiohttp.TCPConnector(resolver=CheckingResolver(policy))  # type: ignore[arg-type]
    else:
        connector = aiohttp.TCPConnector(
            limit=limit,
            resolver=CheckingResolver(policy),  # type: ignore[arg-type]
        )
    # One session, many endpoints: no cookies.
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())


def _describe(exc: BaseException, timeout: float) -> str:
    """A short reason for a failed request that names no URL (URLs can be credentials)."""
    import aiohttp

    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror if exc.os_error and exc.os_error.strerror else "refused"
        return f"cannot connect: {reason}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server disconnected before answering"
    if isinstance(exc, aiohttp.ClientOSError):
        return f"connection error: {exc.strerror or type(exc).__name__}"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "response body broken off"
    return f"request failed: {type(exc).__name__}"


async def post(
    session: aiohttp.ClientSession, target: Target, mid: str, body: bytes
) -> tuple[AttemptRecord, Outcome | None, float | None]:
    """Make one signed request; return its logged attempt, outcome and ``Retry-After``.

    For a target whose verdict is known: the per-delivery path. The outcome is ``None`` when the
    destination policy refused the URL (nothing sent); a verdict that is not a
    :class:`DeliveryError` (the check itself failed) is raised.
    """
    import aiohttp

    name = target.subscription.name
    attempted_at = utc_now()
    refused = target.refused
    if refused is not None:
        if isinstance(refused, DestinationNotAllowedError):
            reason = f"destination refused: {refused.reason}"
            return AttemptRecord(mid, name, attempted_at, "refused", error=reason), None, None
        if isinstance(refused, DeliveryError):
            attempt = AttemptRecord(mid, name, attempted_at, "retry", error="host does not resolve")
            return attempt, Outcome.RETRY, None
        raise refused.with_traceback(None)  # not a verdict: the check itself failed
    headers = target.headers.copy()
    headers["webhook-id"] = mid
    signed: dict[str, str] | None = None
    if target.scheme is not None:
        signed = target.scheme.sign(body, target.secrets, now=time.time(), message_id=mid)
        headers.update(signed)
    started = time.monotonic()
    status: int | None = None
    raw = b""
    retry_after: float | None = None
    error: str | None = None
    try:
        async with session.request(
            target.subscription.method,
            target.url,
            data=body,
            headers=headers,
            timeout=target.client_timeout,
            allow_redirects=False,  # a redirect could lead past the destination policy
        ) as response:
            status = response.status
            retry_after = honoured_retry_after(status, response.headers.get("Retry-After"))
            try:
                raw = await response.content.read(_READ_LIMIT)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                raw = b""  # the status is what counts; the excerpt is a courtesy
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        error = _describe(exc, target.timeout)
    latency_ms = (time.monotonic() - started) * 1000.0
    outcome = classify(status)
    if status is not None and outcome is not Outcome.DELIVERED:
        error = f"HTTP {status}"
    kept: str | None = None
    if raw:
        # Signatures change per request: hidden along with the round's fixed values.
        hidden: Sequence[str] = target.hidden
        if signed:
            hidden = (
                *target.hidden,
                *(v for k, v in signed.items() if k.lower() not in PUBLIC_HEADERS),
            )
        # Why blank anything: some receivers echo the request (headers included) when they fail.
        kept = excerpt(raw, hidden) or None
    attempt = AttemptRecord(
        mid,
        name,
        attempted_at,
        outcome.value,
        status_code=status,
        latency_ms=round(latency_ms, 3),
        error=error,
        response_excerpt=kept,
    )
    return attempt, outcome, retry_after
