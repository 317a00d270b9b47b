"""One signed request of a round: sign, send through the one client, settle, log the attempt.

The HTTP itself is :mod:`airhook.delivery.client`'s (pinned sessions, no redirects, bounded
reads, one failure vocabulary), shared with the task hook. The answer is settled by
:mod:`airhook.core.delivery_rules` and its excerpt kept with every secret of the request blanked
(:func:`airhook.core.redaction.excerpt`), as the hook does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from airhook.core.delivery_rules import Outcome, classify, honoured_retry_after
from airhook.core.errors import DeliveryError
from airhook.core.redaction import EXCERPT_CHARS, excerpt
from airhook.core.ssrf import DestinationNotAllowedError
from airhook.delivery.client import exchange, open_session
from airhook.delivery.targets import PUBLIC_HEADERS, Target
from airhook.store.outbox import AttemptRecord
from airhook.store.times import utc_now

if TYPE_CHECKING:
    import aiohttp

__all__ = ["EXCERPT_CHARS", "open_session", "post"]

_READ_LIMIT = 64 * 1024  # read this much of a response at most: enough for the excerpt


async def post(
    session: aiohttp.ClientSession, target: Target, mid: str, body: bytes
) -> tuple[AttemptRecord, Outcome | None, float | None]:
    """Make one signed request; return its logged attempt, outcome and ``Retry-After``.

    For a target whose verdict is known: the per-delivery path. The outcome is ``None`` when the
    destination policy refused the URL (nothing sent); a verdict that is not a
    :class:`DeliveryError` (the check itself failed) is raised. A request that got no answer
    is retried or failed as :func:`airhook.delivery.client.describe_failure` says.
    """
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
    status: int | None = None
    raw = b""
    retry_after: float | None = None
    error: str | None = None
    started = time.monotonic()
    try:
        answer = await exchange(
            session,
            target.subscription.method,
            target.url,
            headers=headers,
            body=body,
            timeout=target.timeout,
            shown=target.shown,
            read_limit=_READ_LIMIT,
            deadline=target.client_timeout,
        )
    except DestinationNotAllowedError as refused_now:  # the name was rebound since the check
        reason = f"destination refused: {refused_now.reason}"
        return AttemptRecord(mid, name, attempted_at, "refused", error=reason), None, None
    except DeliveryError as failed:
        outcome = Outcome.RETRY if failed.retryable else Outcome.FAILED
        waited = round((time.monotonic() - started) * 1000.0, 3)
        attempt = AttemptRecord(
            mid, name, attempted_at, outcome.value, latency_ms=waited, error=failed.reason
        )
        return attempt, outcome, None
    status = answer.status
    raw = answer.body
    retry_after = honoured_retry_after(status, answer.header("Retry-After"))
    outcome = classify(status)
    if outcome is not Outcome.DELIVERED:
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
        latency_ms=round(answer.latency * 1000.0, 3),
        error=error,
        response_excerpt=kept,
    )
    return attempt, outcome, retry_after
