"""A subscription as a round of deliveries sends to it, and the destination policy's verdict.

What stays the same from request to request (headers, signing scheme and secrets, the parsed URL,
the timeout, the values to hide from the log, the retry policy) is worked out once per round, so
that a request costs a copy of the headers, its signature and the HTTP call. The destination
policy is asked once per origin per round, concurrently, in threads (resolving a host blocks).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airhook import __version__
from airhook.core.delivery_rules import RetryPolicy
from airhook.core.redaction import sensitive_forms
from airhook.core.ssrf import DestinationPolicy, redact_url
from airhook.core.subscription import Subscription

if TYPE_CHECKING:
    import aiohttp

    from airhook.core.secrets import Secret
    from airhook.core.signing import SigningScheme

__all__ = ["PUBLIC_HEADERS", "Target", "build_target", "check_targets"]

log = logging.getLogger(__name__)

#: Headers whose values may appear in the log (the rest may be credentials or signatures).
PUBLIC_HEADERS = frozenset({"content-type", "user-agent", "webhook-id", "webhook-timestamp"})


@dataclass(slots=True)
class Target:
    """One subscription as a round sends to it: what stays the same from request to request.

    Built once per round from the subscription as read when the round starts, so that a request
    costs a copy of ``headers``, its signature and the HTTP call, not revealing the secrets,
    parsing the URL, building a timeout and listing the values to hide all over again.
    """

    subscription: Subscription
    #: the URL, parsed once (aiohttp would parse the string on every request).
    url: Any
    #: the URL as a failure may show it (:func:`~airhook.core.ssrf.redact_url`), worked out once.
    shown: str
    #: extra headers (revealed), Content-Type and User-Agent; each request adds its own.
    headers: dict[str, str]
    scheme: SigningScheme | None
    secrets: Sequence[Secret]
    #: what may never reach the log: secrets, extra header values, the URL, its path and query.
    hidden: tuple[str, ...]
    timeout: float
    client_timeout: aiohttp.ClientTimeout
    retry: RetryPolicy
    #: the destination policy's verdict for this round (``None``: allowed); an exception
    #: other than a :class:`DeliveryError` means the check itself failed.
    refused: Exception | None = None


def _retry_policy_of(subscription: Subscription) -> RetryPolicy:
    """The subscription's retry policy, or the default one should its schedule be unusable."""
    try:
        return subscription.retry_policy()
    except Exception:
        return RetryPolicy()


def build_target(subscription: Subscription, default_timeout: float) -> Target:
    """The round's view of ``subscription``; one whose settings cannot be used (a URL that
    passes ``urlsplit`` but not yarl, say) gets a target that refuses each request, so that
    its deliveries are settled as internal errors and the round's others still go out.

    :param default_timeout: seconds per attempt when the subscription sets none.
    """
    try:
        return _usable_target(subscription, default_timeout)
    except Exception as exc:
        import aiohttp

        log.error("subscription %s cannot be sent to: %s", subscription.name, type(exc).__name__)
        timeout = default_timeout
        return Target(
            subscription=subscription,
            url=None,
            shown="(unusable URL)",  # never sent: the target refuses every request
            headers={},
            scheme=None,
            secrets=(),
            hidden=sensitive_forms([subscription.url]),
            timeout=timeout,
            client_timeout=aiohttp.ClientTimeout(total=timeout),
            retry=_retry_policy_of(subscription),
            refused=exc,
        )


def _usable_target(subscription: Subscription, default_timeout: float) -> Target:
    import aiohttp
    from yarl import URL

    headers = {name: value.reveal() for name, value in subscription.headers.items()}
    headers.setdefault("Content-Type", "application/json")
    headers["User-Agent"] = f"airhook/{__version__}"
    secrets = tuple(subscription.signing_secrets())
    parts = urlsplit(subscription.url)
    hidden = [s.reveal() for s in secrets]
    hidden += [v for k, v in headers.items() if k.lower() not in PUBLIC_HEADERS]
    hidden += [subscription.url, parts.path if parts.path != "/" else "", parts.query]
    timeout = subscription.timeout or default_timeout
    return Target(
        subscription=subscription,
        url=URL(subscription.url),
        shown=redact_url(subscription.url),
        headers=headers,
        scheme=subscription.signing_scheme(),
        secrets=secrets,
        hidden=sensitive_forms(hidden),
        timeout=timeout,
        client_timeout=aiohttp.ClientTimeout(total=timeout),
        retry=subscription.retry_policy(),
    )


async def check_targets(
    targets: Iterable[Target],
    policy: DestinationPolicy,
    cache: dict[str, asyncio.Future[None]] | None = None,
) -> None:
    """Give each target the destination policy's verdict: once per origin, concurrently.

    A target refused already (its settings are unusable) keeps that verdict.
    ``cache`` holds the verdict per origin across calls.
    """
    cache = {} if cache is None else cache
    targets = [t for t in targets if t.refused is None]
    verdicts = await asyncio.gather(*(_verdict(t.subscription, policy, cache) for t in targets))
    for target, verdict in zip(targets, verdicts, strict=True):
        target.refused = verdict


async def _verdict(
    subscription: Subscription,
    policy: DestinationPolicy,
    cache: dict[str, asyncio.Future[None]],
) -> Exception | None:
    """Check the URL's origin once per round (resolving a host blocks: in a thread).

    Returns what the check raised: a :class:`DeliveryError` is the verdict; anything else
    (a bug, a broken setting) is raised again by each request, which settles it as an
    internal error, as when the check ran per request.
    """
    origin = subscription.origin
    future = cache.get(origin)
    if future is None:
        future = cache[origin] = asyncio.ensure_future(
            asyncio.to_thread(policy.check, subscription.url)  # type: ignore[arg-type]
        )
    try:
        await asyncio.shield(future)
    except Exception as exc:
        return exc
    return None
