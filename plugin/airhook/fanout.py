"""Fan-out: publish events to every matching subscription and deliver them, reliably.

One publication's path::

    events ─▶ validate (catalog, when a platform is named) ─▶ match active/disabled
           ─▶ render each body once (subscription's template, else the payload)
           ─▶ outbox rows, one per (subscription, event), keyed by a stable message id
           ─▶ claim the due ones ─▶ sign ─▶ HTTP (one aiohttp session, ≤64 in flight)
           ─▶ attempt logged ─▶ delivered │ retry at the next scheduled time │ failed │ dead

Why the message id is ``message_id(subscription, event key)``: the same events published again
(a task retry, a re-run of the same DAG run) compute the same ids, the outbox already has them,
and nothing is sent twice. A receiver sees the id as ``webhook-id`` on every attempt.

Why aiohttp: at 64 requests in flight it sends ~6,000 small POSTs a second on two cores, where
httpx's async client degrades with concurrency (encode/httpx#3215); see the issue's measurements.

Delivery is at least once: a sender that crashes after a request left but before its outcome was
recorded leaves the delivery claimed; once the claim lapses (:data:`CLAIM_SECONDS`) it goes out
again, with the same ``webhook-id``, so a receiver can tell.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import orjson

from airhook import __version__
from airhook.catalog import Catalog, load_catalog
from airhook.errors import DeliveryError, PayloadError
from airhook.outbound import Outcome, classify, message_id, parse_retry_after
from airhook.ssrf import DestinationNotAllowedError, DestinationPolicy
from airhook.store.outbox import (
    FINAL_FAILURES,
    Attempt,
    Delivery,
    NewDelivery,
    OutboxRepository,
    Settled,
)
from airhook.store.subscriptions import SubscriptionRepository
from airhook.subscription import Subscription

if TYPE_CHECKING:
    import aiohttp

    from airhook.store.engine import Store
    from airhook.store.sources import Cipher

__all__ = [
    "CLAIM_SECONDS",
    "DEFAULT_CONCURRENCY",
    "EXCERPT_CHARS",
    "DeliveryEngine",
    "Event",
    "PublishResult",
    "Summary",
]

log = logging.getLogger(__name__)

#: Requests in flight at once, over one connection pool.
DEFAULT_CONCURRENCY = 64
#: At most this many characters of a response body are kept in the attempt log.
EXCERPT_CHARS = 512
#: How long a sender's claim on a batch of deliveries lasts: longer than a batch can take
#: (:data:`BATCH_SIZE` deliveries at 64 in flight, each within its timeout).
CLAIM_SECONDS = 900.0
#: Deliveries claimed and sent per round.
BATCH_SIZE = 2000
_READ_LIMIT = 64 * 1024  # read this much of a response at most: enough for the excerpt
_FLUSH_EVERY = 256  # record outcomes in transactions of this many ...
_FLUSH_SECONDS = 0.5  # ... or at least this often while a batch runs
_REDACTED = "[redacted]"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Event:
    """One event to publish.

    :param name: the event name as its platform spells it, e.g. ``insight.summary``.
    :param payload: the event, JSON-serialisable; sent as is unless a subscription renders its
        own body from it.
    :param key: stable identity of this event for its publisher (e.g. DAG, run, task, map index
        and position): the same key means the same event, sent once per subscription.
    :param platform: validate the payload against this platform's schema for ``name``.
    :param chatbot_id: the chatbot the event is about, for subscriptions with a chatbot filter;
        default: the platform's chatbot field (RKT ``chatbotId``) of the payload.
    """

    name: str
    payload: Any
    key: str
    platform: str | None = None
    chatbot_id: str | None = None


@dataclass(frozen=True)
class Summary:
    """Deliveries per status (``pending`` counts those being sent too), no secrets, no URLs."""

    delivered: int = 0
    pending: int = 0
    failed: int = 0
    dead: int = 0
    paused: int = 0
    next_attempt_at: datetime | None = None

    @property
    def deliveries(self) -> int:
        """All deliveries counted."""
        return self.delivered + self.pending + self.failed + self.dead + self.paused

    @property
    def dead_letters(self) -> int:
        """Deliveries that will not go out without a replay (``failed`` and ``dead``)."""
        return self.failed + self.dead

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the operator returns to XCom)."""
        return {
            "deliveries": self.deliveries,
            "delivered": self.delivered,
            "pending": self.pending,
            "failed": self.failed,
            "dead": self.dead,
            "paused": self.paused,
            "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at else None,
        }

    @classmethod
    def of(cls, counts: Mapping[str, int], next_attempt_at: datetime | None) -> Summary:
        """Build from per-status counts."""
        return cls(
            delivered=counts.get("delivered", 0),
            pending=counts.get("pending", 0) + counts.get("sending", 0),
            failed=counts.get("failed", 0),
            dead=counts.get("dead", 0),
            paused=counts.get("paused", 0),
            next_attempt_at=next_attempt_at,
        )


@dataclass(frozen=True)
class PublishResult:
    """What :meth:`DeliveryEngine.publish` did.

    :param message_ids: every delivery of these events (new or added by an earlier publish).
    :param created: how many of them this call added.
    :param summary: their state after this call's attempts.
    """

    events: int
    message_ids: list[str]
    created: int
    summary: Summary

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, without the ids."""
        return {"events": self.events, "created": self.created, **self.summary.as_dict()}


@dataclass
class _Batch:
    """State shared by the requests of one delivery round."""

    subscriptions: dict[str, Subscription]
    destinations: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    disabled: set[str] = field(default_factory=set)
    #: consecutive failures per subscription as this batch sees them, to stop sending at the
    #: threshold at once rather than at the next flush (the store keeps the real count).
    failures: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _run(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from synchronous code, even under a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(factory())  # type: ignore[arg-type]
    # Called from inside an event loop (a notebook, an async task): run in a thread of its own.
    result: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(factory()))  # type: ignore[arg-type]
        except BaseException as exc:  # handed back to the caller below
            failure.append(exc)

    thread = threading.Thread(target=target, name="airhook-fanout")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def _configured_policy() -> DestinationPolicy:
    from airhook.config import get_str

    allow = [part for part in get_str("outbound_allow_networks").split(",") if part.strip()]
    return DestinationPolicy(allow=allow)


def _configured_float(name: str) -> float:
    from airhook.config import get_float

    return get_float(name)


def _configured_int(name: str) -> int:
    from airhook.config import get_int

    return get_int(name)


def _excerpt(raw: bytes, secrets: Iterable[str]) -> str | None:
    """The first characters of a response body, with every secret of the request blanked.

    Why blank anything: some receivers echo the request (headers included) when they fail.
    """
    if not raw:
        return None
    text = raw.decode("utf-8", errors="replace")
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, _REDACTED)
    return text[:EXCERPT_CHARS]


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


class _CheckingResolver:
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


class DeliveryEngine:
    """Publish events to subscriptions and deliver them.

    :param store: the airhook store.
    :param cipher: decrypts the subscriptions' credentials (Airflow's Fernet).
    :param policy: which destinations may be called; default ``[airhook]
        outbound_allow_networks``.
    :param concurrency: requests in flight at once.
    :param disable_after: consecutive failed deliveries that disable a subscription; default
        ``[airhook] disable_after_failures`` (10).
    :param default_timeout: seconds per attempt for subscriptions without their own; default
        ``[airhook] outbound_timeout_seconds`` (10).
    :param catalog: the event catalog used to validate events that name a platform.
    """

    def __init__(
        self,
        store: Store,
        cipher: Cipher,
        *,
        policy: DestinationPolicy | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        disable_after: int | None = None,
        default_timeout: float | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency is at least 1")
        self.subscriptions = SubscriptionRepository(store, cipher)
        self.outbox = OutboxRepository(store)
        self._policy = policy
        self.concurrency = concurrency
        self.disable_after = (
            disable_after
            if disable_after is not None
            else _configured_int("disable_after_failures")
        )
        if self.disable_after < 1:
            raise ValueError("disable_after is at least 1")
        self.default_timeout = (
            default_timeout
            if default_timeout is not None
            else _configured_float("outbound_timeout_seconds")
        )
        self._catalog = catalog

    @property
    def policy(self) -> DestinationPolicy:
        """The destination policy (read from configuration on first use)."""
        if self._policy is None:
            self._policy = _configured_policy()
        return self._policy

    @property
    def catalog(self) -> Catalog:
        """The event catalog."""
        if self._catalog is None:
            self._catalog = load_catalog()
        return self._catalog

    # --- publishing ------------------------------------------------------------------------------

    def prepare(
        self,
        events: Sequence[Event],
        *,
        publication: str | None = None,
        subscriptions: Sequence[str] | None = None,
    ) -> list[NewDelivery]:
        """Validate every event, match subscriptions, render bodies; store and send nothing.

        Raises :class:`~airhook.errors.PayloadError` for an invalid event and
        :class:`~airhook.errors.TemplateRenderError` for a body template that fails, before any
        delivery exists.
        """
        chatbots = [self._validate(event) for event in events]
        candidates = self.subscriptions.all()
        if subscriptions is not None:
            wanted = set(subscriptions)
            unknown = wanted - {s.name for s in candidates}
            if unknown:
                raise ValueError(f"no subscriptions named {sorted(unknown)}")
            candidates = [s for s in candidates if s.name in wanted]
        # Inactive ones (never switched on) are skipped; disabled ones keep their events.
        candidates = [s for s in candidates if s.state != "inactive"]
        new: list[NewDelivery] = []
        for event, chatbot_id in zip(events, chatbots, strict=True):
            for subscription in candidates:
                if not subscription.accepts(event.name, chatbot_id):
                    continue
                mid = message_id(subscription.name, event.key)
                new.append(
                    NewDelivery(
                        message_id=mid,
                        subscription=subscription.name,
                        event=event.name,
                        platform=event.platform,
                        publication=publication,
                        body=self._body(subscription, event, mid, chatbot_id),
                        status="pending" if subscription.active else "paused",
                    )
                )
        return new

    def publish(
        self,
        events: Sequence[Event],
        *,
        publication: str | None = None,
        subscriptions: Sequence[str] | None = None,
        wait: float = 0.0,
    ) -> PublishResult:
        """Publish events: add their deliveries (once), send those due, return the outcome.

        :param publication: a label grouping these deliveries (the operator waits on it).
        :param subscriptions: only these subscriptions (by name), if given.
        :param wait: keep making the retries that fall due within this many seconds, in this
            process; later retries stay in the outbox for whoever delivers due deliveries next
            (the operator, when it resumes; ``airhook deliveries deliver-due``).
        """
        new = self.prepare(events, publication=publication, subscriptions=subscriptions)
        created = self.outbox.add(new)
        ids = list(dict.fromkeys(d.message_id for d in new))
        log.info("publishing %d events: %d deliveries, %d new", len(events), len(ids), len(created))
        summary = self.run_due(message_ids=ids, wait=wait)
        return PublishResult(len(events), ids, len(created), summary)

    def _validate(self, event: Event) -> str | None:
        if not isinstance(event.name, str) or not event.name:
            raise PayloadError("an event needs a name")
        if not isinstance(event.key, str) or not event.key:
            raise PayloadError(f"event {event.name!r} needs a key")
        chatbot_id = event.chatbot_id
        if event.platform is not None:
            self.catalog.event(event.platform, event.name).validate(event.payload)
            chatbot_field = self.catalog.platform(event.platform).chatbot_field
            if chatbot_id is None and chatbot_field and isinstance(event.payload, dict):
                found = event.payload.get(chatbot_field)
                chatbot_id = found if isinstance(found, str) else None
        elif chatbot_id is None and isinstance(event.payload, dict):
            found = event.payload.get("chatbotId")  # RKT's spelling, the one chatbot platform
            chatbot_id = found if isinstance(found, str) else None
        try:
            orjson.dumps(event.payload)
        except TypeError as exc:
            raise PayloadError(f"event {event.name!r} is not JSON-serialisable: {exc}") from None
        return chatbot_id

    def _body(
        self, subscription: Subscription, event: Event, mid: str, chatbot_id: str | None
    ) -> str:
        """The body's text, rendered once per delivery (retries and replays send these bytes)."""
        if subscription.body_template is None:
            return orjson.dumps(event.payload).decode("utf-8")
        from airhook.templates import renderer_for, template_context

        kind = self.catalog.event(event.platform, event.name).kind if event.platform else None
        extra: dict[str, Any] = {
            "payload": event.payload,
            "message_id": mid,
            "subscription": subscription.name,
        }
        if chatbot_id is not None:
            extra["chatbot_id"] = chatbot_id
        context = template_context(
            event=event.payload if isinstance(event.payload, Mapping) else None,
            event_name=event.name,
            kind=kind,
            platform=event.platform,
            **extra,
        )
        rendered = renderer_for().render_json(
            subscription.body_template,
            context,
            name=f"body template of subscription {subscription.name}",
        )
        return orjson.dumps(rendered).decode("utf-8")

    def run_due(
        self,
        *,
        message_ids: Sequence[str] | None = None,
        publication: str | None = None,
        wait: float = 0.0,
    ) -> Summary:
        """Send the due deliveries among those selected, then keep making the retries that fall
        due within ``wait`` seconds; return the selection's summary.
        """
        deadline = time.monotonic() + wait
        while True:
            self.deliver(message_ids=message_ids, publication=publication)
            summary = self.summary(message_ids=message_ids, publication=publication)
            if not summary.pending or summary.next_attempt_at is None:
                return summary
            delay = (summary.next_attempt_at - _utcnow()).total_seconds()
            if time.monotonic() + max(delay, 0.0) > deadline:
                return summary
            if delay > 0:
                time.sleep(delay)

    # --- delivering ------------------------------------------------------------------------------

    def deliver(
        self,
        *,
        message_ids: Sequence[str] | None = None,
        publication: str | None = None,
        subscription: str | None = None,
    ) -> Summary:
        """Send every due delivery among those selected (all due ones, if nothing selects).

        Returns the counts of what was attempted now (``pending``: retries scheduled).
        """
        return _run(
            lambda: self.adeliver(
                message_ids=message_ids, publication=publication, subscription=subscription
            )
        )

    async def adeliver(
        self,
        *,
        message_ids: Sequence[str] | None = None,
        publication: str | None = None,
        subscription: str | None = None,
    ) -> Summary:
        """Asynchronous :meth:`deliver`."""
        counts: dict[str, int] = defaultdict(int)
        while True:
            claimed = await asyncio.to_thread(
                self.outbox.claim,
                now=_utcnow(),
                lease_seconds=CLAIM_SECONDS,
                message_ids=message_ids,
                publication=publication,
                subscription=subscription,
                limit=BATCH_SIZE,
            )
            if not claimed:
                break
            for status, count in (await self._send_batch(claimed)).items():
                counts[status] += count
            if len(claimed) < BATCH_SIZE:
                break
        return Summary.of(counts, None)

    async def _send_batch(self, claimed: Sequence[Delivery]) -> dict[str, int]:
        import aiohttp

        names = {d.subscription for d in claimed}
        loaded = await asyncio.to_thread(self.subscriptions.all)
        batch = _Batch({s.name: s for s in loaded if s.name in names})
        batch.failures = {name: s.consecutive_failures for name, s in batch.subscriptions.items()}
        counts: dict[str, int] = defaultdict(int)
        global_gate = asyncio.Semaphore(self.concurrency)
        # A slow endpoint may take at most half the pool, so the others keep moving.
        gates = {name: asyncio.Semaphore(max(1, self.concurrency // 2)) for name in names}
        connector = aiohttp.TCPConnector(
            limit=self.concurrency,
            resolver=_CheckingResolver(self.policy),  # type: ignore[arg-type]
        )
        async with aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),  # one session, many endpoints: no cookies
        ) as session:

            async def one(delivery: Delivery) -> Settled | None:
                async with gates[delivery.subscription], global_gate:
                    try:
                        return await self._attempt(session, batch, delivery)
                    except Exception as exc:
                        # A bug or a broken setting must not strand the batch's other claims;
                        # the type names the cause without quoting anything secret.
                        log.error(
                            "delivery %s: unexpected %s", delivery.message_id, type(exc).__name__
                        )
                        attempt = Attempt(
                            delivery.message_id,
                            delivery.subscription,
                            _utcnow(),
                            Outcome.RETRY.value,
                            error=f"internal error: {type(exc).__name__}",
                        )
                        subscription = batch.subscriptions[delivery.subscription]
                        return self._settle(subscription, delivery, attempt, Outcome.RETRY, None)

            tasks = [asyncio.ensure_future(one(d)) for d in _interleave(claimed)]
            done: list[Settled] = []
            last_flush = time.monotonic()
            try:
                for next_done in asyncio.as_completed(tasks):
                    settled = await next_done
                    if settled is not None:
                        done.append(settled)
                        counts[settled.status] += 1
                    if len(done) >= _FLUSH_EVERY or (
                        done and time.monotonic() - last_flush > _FLUSH_SECONDS
                    ):
                        await self._flush(done, batch)
                        done, last_flush = [], time.monotonic()
            finally:
                for task in tasks:
                    task.cancel()
                if done:
                    await self._flush(done, batch)
                if batch.skipped:
                    await asyncio.to_thread(self.outbox.release, batch.skipped)
        return counts

    async def _flush(self, done: list[Settled], batch: _Batch) -> None:
        recorded = await asyncio.to_thread(
            self.outbox.record, list(done), disable_after=self.disable_after
        )
        for name, reason in recorded.disabled.items():
            batch.disabled.add(name)
            log.warning("subscription %s disabled: %s", name, reason)

    async def _attempt(
        self, session: aiohttp.ClientSession, batch: _Batch, delivery: Delivery
    ) -> Settled | None:
        subscription = batch.subscriptions.get(delivery.subscription)
        if subscription is None or not subscription.active:
            batch.skipped.append(delivery.message_id)  # deleted or disabled meanwhile
            return None
        if subscription.name in batch.disabled:
            batch.skipped.append(delivery.message_id)  # disabled by this very batch
            return None
        attempt, outcome, retry_after = await self.send(
            session,
            subscription,
            delivery.message_id,
            delivery.body.encode("utf-8"),
            destinations=batch.destinations,
        )
        settled = self._settle(subscription, delivery, attempt, outcome, retry_after)
        if settled.status == "delivered":
            batch.failures[subscription.name] = 0
        elif settled.status in FINAL_FAILURES:
            batch.failures[subscription.name] = batch.failures.get(subscription.name, 0) + 1
            if settled.disable or batch.failures[subscription.name] >= self.disable_after:
                batch.disabled.add(subscription.name)
        return settled

    def _settle(
        self,
        subscription: Subscription,
        delivery: Delivery,
        attempt: Attempt,
        outcome: Outcome | None,
        retry_after: float | None,
    ) -> Settled:
        if outcome is Outcome.DELIVERED:
            return Settled(attempt, "delivered")
        if outcome is Outcome.GONE:
            log.warning(
                "subscription %s answered 410 Gone for %s", subscription.name, delivery.message_id
            )
            return Settled(attempt, "failed", disable="the endpoint answered 410 Gone")
        if outcome is Outcome.FAILED or outcome is None:
            log.info(
                "delivery %s to %s failed: %s",
                delivery.message_id,
                subscription.name,
                attempt.error or attempt.status_code,
            )
            return Settled(attempt, "failed")
        delay = subscription.retry_policy().next_delay(delivery.attempts + 1, retry_after)
        if delay is None:
            log.info(
                "delivery %s to %s dead-lettered after %d attempts",
                delivery.message_id,
                subscription.name,
                delivery.attempts + 1,
            )
            return Settled(attempt, "dead")
        return Settled(attempt, "pending", next_attempt_at=_utcnow() + timedelta(seconds=delay))

    async def send(
        self,
        session: aiohttp.ClientSession,
        subscription: Subscription,
        mid: str,
        body: bytes,
        *,
        destinations: dict[str, asyncio.Future[None]] | None = None,
    ) -> tuple[Attempt, Outcome | None, float | None]:
        """Make one signed request; return its logged attempt, outcome and ``Retry-After``.

        The outcome is ``None`` when the destination policy refused the URL (nothing sent).
        ``destinations`` caches the policy's verdict per origin across one batch.
        """
        import aiohttp

        attempted_at = _utcnow()
        refused = await self._check_destination(subscription, destinations)
        if refused is not None:
            if isinstance(refused, DestinationNotAllowedError):
                error = f"destination refused: {refused.reason}"
                attempt = Attempt(mid, subscription.name, attempted_at, "refused", error=error)
                return attempt, None, None
            attempt = Attempt(
                mid, subscription.name, attempted_at, "retry", error="host does not resolve"
            )
            return attempt, Outcome.RETRY, None
        headers = {name: value.reveal() for name, value in subscription.headers.items()}
        headers.setdefault("Content-Type", "application/json")
        headers["User-Agent"] = f"airhook/{__version__}"
        headers["webhook-id"] = mid
        scheme = subscription.signing_scheme()
        if scheme is not None:
            headers.update(
                scheme.sign(body, subscription.signing_secrets(), now=time.time(), message_id=mid)
            )
        timeout = subscription.timeout or self.default_timeout
        # What may never reach the log: secrets, signatures, extra header values, the URL.
        hidden = [s.reveal() for s in subscription.signing_secrets()]
        hidden += [v for k, v in headers.items() if k.lower() not in _PUBLIC_HEADERS]
        target = urlsplit(subscription.url)
        hidden += [subscription.url, target.path if target.path != "/" else "", target.query]
        started = time.monotonic()
        status: int | None = None
        raw = b""
        retry_after: float | None = None
        error: str | None = None
        try:
            async with session.request(
                subscription.method,
                subscription.url,
                data=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,  # a redirect could lead past the destination policy
            ) as response:
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                try:
                    raw = await response.content.read(_READ_LIMIT)
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    raw = b""  # the status is what counts; the excerpt is a courtesy
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            error = _describe(exc, timeout)
        latency_ms = (time.monotonic() - started) * 1000.0
        outcome = classify(status)
        if status is not None and outcome is not Outcome.DELIVERED:
            error = f"HTTP {status}"
        attempt = Attempt(
            mid,
            subscription.name,
            attempted_at,
            outcome.value,
            status_code=status,
            latency_ms=round(latency_ms, 3),
            error=error,
            response_excerpt=_excerpt(raw, hidden),
        )
        return attempt, outcome, retry_after

    async def _check_destination(
        self, subscription: Subscription, cache: dict[str, asyncio.Future[None]] | None
    ) -> DeliveryError | None:
        """Check the URL's origin once per batch (resolving a host blocks: in a thread)."""
        origin = subscription.origin
        if cache is None:
            cache = {}
        future = cache.get(origin)
        if future is None:
            future = cache[origin] = asyncio.ensure_future(
                asyncio.to_thread(self.policy.check, subscription.url)  # type: ignore[arg-type]
            )
        try:
            await asyncio.shield(future)
        except DeliveryError as exc:
            return exc
        return None

    # --- one-off test, summaries, replay ----------------------------------------------------

    def send_test(
        self,
        subscription: Subscription,
        payload: Any,
        *,
        event: str = "test",
        platform: str | None = None,
    ) -> Attempt:
        """Send an event to a subscription now, whatever its state; record nothing.

        The body is what a real delivery would carry (the subscription's template, if any).
        The message id is fresh (``msg_test_…``), so a receiver never takes it for a real event.
        """
        import aiohttp

        mid = message_id("test", subscription.name, time.time_ns(), prefix="msg_test_")
        test_event = Event(event, payload, mid, platform=platform)
        body = self._body(subscription, test_event, mid, self._validate(test_event)).encode()

        async def go() -> Attempt:
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    resolver=_CheckingResolver(self.policy)  # type: ignore[arg-type]
                ),
                cookie_jar=aiohttp.DummyCookieJar(),
            ) as session:
                attempt, _, _ = await self.send(session, subscription, mid, body)
                return attempt

        return _run(go)

    def summary(
        self,
        *,
        publication: str | None = None,
        subscription: str | None = None,
        message_ids: Sequence[str] | None = None,
    ) -> Summary:
        """Count deliveries per status, with the earliest pending attempt."""
        counts, earliest = self.outbox.counts(
            publication=publication, subscription=subscription, message_ids=message_ids
        )
        return Summary.of(counts, earliest)

    def replay(
        self,
        *,
        message_id: str | None = None,
        subscription: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        dead_only: bool = False,
        include_delivered: bool = False,
        wait: float = 0.0,
    ) -> list[str]:
        """Reset deliveries to pending and deliver them now; return their ids.

        One delivery, or a subscription's dead letters (``dead_only``: ``failed`` and ``dead``)
        or, in a time window, its undelivered ones (``include_delivered``: all of them).
        A disabled subscription's deliveries become ``paused``: they go out on enable.
        """
        if dead_only:
            statuses: tuple[str, ...] = FINAL_FAILURES
        else:
            statuses = (*FINAL_FAILURES, "paused")
            if include_delivered:
                statuses += ("delivered",)
        ids = self.outbox.replay(
            message_id=message_id,
            subscription=subscription,
            since=since,
            until=until,
            statuses=statuses,
        )
        if ids:
            log.info("replaying %d deliveries", len(ids))
            self.run_due(message_ids=ids, wait=wait)
        return ids


#: Headers whose values may appear in the log (the rest may be credentials or signatures).
_PUBLIC_HEADERS = frozenset({"content-type", "user-agent", "webhook-id", "webhook-timestamp"})


def _interleave(claimed: Sequence[Delivery]) -> list[Delivery]:
    """Order deliveries round-robin over subscriptions, oldest first within each.

    So that a batch of thousands for one endpoint does not queue the others' behind it.
    """
    queues: dict[str, list[Delivery]] = defaultdict(list)
    for delivery in claimed:
        queues[delivery.subscription].append(delivery)
    ordered: list[Delivery] = []
    lists = list(queues.values())
    for index in range(max((len(q) for q in lists), default=0)):
        ordered.extend(q[index] for q in lists if index < len(q))
    return ordered
