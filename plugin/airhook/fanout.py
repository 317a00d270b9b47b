"""Fan-out: publish events to every matching subscription and deliver them, reliably.

One publication's path::

    events ─▶ validate (catalog, when a platform is named) ─▶ match active/disabled
           ─▶ render each body once (subscription's template, else the payload)
           ─▶ outbox rows, one per (subscription, event), keyed by a stable message id, the new
              ones added already claimed (committed before any request leaves)
           ─▶ sign ─▶ HTTP (one aiohttp session per call, ≤64 in flight, ≤32 per subscription)
           ─▶ attempt logged ─▶ delivered │ retry at the next scheduled time │ failed │ dead

The new deliveries go out from memory; retries, replays and deliveries an earlier call left due
are claimed from the outbox (:meth:`DeliveryEngine.deliver`, :meth:`DeliveryEngine.run_due`).
Per delivery the engine does only what differs per request (the ``webhook-id``, the signature,
the call, the outcome): a subscription's headers, signing scheme, timeout, destination verdict
and values to hide are worked out once per round, and outcomes are written in batches (up to
1,000 rows or every 0.5 s) while the requests go on.

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
import functools
import logging
import socket
import threading
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import orjson

from airhook import __version__
from airhook.core.catalog import Catalog, load_catalog
from airhook.core.delivery_rules import (
    Outcome,
    RetryPolicy,
    classify,
    message_id,
    parse_retry_after,
)
from airhook.core.errors import DeliveryError, PayloadError
from airhook.core.redaction import redact, sensitive_forms
from airhook.core.ssrf import DestinationNotAllowedError, DestinationPolicy
from airhook.core.subscription import Subscription
from airhook.store.outbox import (
    FINAL_FAILURES,
    Attempt,
    Claimed,
    NewDelivery,
    OutboxRepository,
    Settled,
)
from airhook.store.subscriptions import SubscriptionRepository

if TYPE_CHECKING:
    import aiohttp

    from airhook.core.secrets import Cipher, Secret
    from airhook.core.signing import SigningScheme
    from airhook.store.engine import Store

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
#: How long a sender's claim on a round of deliveries lasts; a round that takes longer renews
#: the claims of the deliveries it has not settled yet every third of this.
CLAIM_SECONDS = 900.0
#: Deliveries claimed and sent per round (by :meth:`DeliveryEngine.deliver`).
BATCH_SIZE = 2000
_READ_LIMIT = 64 * 1024  # read this much of a response at most: enough for the excerpt
# Record outcomes in transactions of this many (a commit and the per-statement work are paid
# once per flush, not per row) ...
_FLUSH_EVERY = 1000
_FLUSH_SECONDS = 0.5  # ... or at least this often while a round runs
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


@dataclass(slots=True)
class _Target:
    """One subscription as a round sends to it: what stays the same from request to request.

    Built once per round from the subscription as read when the round starts, so that a request
    costs a copy of ``headers``, its signature and the HTTP call, not revealing the secrets,
    parsing the URL, building a timeout and listing the values to hide all over again.
    """

    subscription: Subscription
    #: the URL, parsed once (aiohttp would parse the string on every request).
    url: Any
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


@dataclass
class _Round:
    """State shared by the requests of one round: fresh deliveries, or one claim's."""

    #: the round's active subscriptions' targets, by name (a missing name: skip its deliveries).
    targets: dict[str, _Target]
    disabled: set[str] = field(default_factory=set)
    #: consecutive failures per subscription as this round sees them, to stop sending at the
    #: threshold at once rather than at the next flush (the store keeps the real count).
    failures: dict[str, int] = field(default_factory=dict)
    #: deliveries handed back unattempted (released at the end of the round).
    skipped: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    #: deliveries that settled ``pending`` (a retry is scheduled): possibly due again soon.
    retrying: list[str] = field(default_factory=list)
    #: deliveries whose outcome settled nothing: another sender took them over meanwhile.
    stale: list[str] = field(default_factory=list)


class _Recorder:
    """Records a round's outcomes in the background: one flush at a time, in order.

    A flush runs in a thread while the requests go on; it starts once ``_FLUSH_EVERY`` outcomes
    are waiting or ``_FLUSH_SECONDS`` have passed since the last one began, and the round's end
    flushes the rest. A failed flush stops the round (see ``error``): its deliveries stay
    claimed, and go out again once the claim lapses.
    """

    def __init__(self, engine: DeliveryEngine, state: _Round, held: dict[str, str | None]) -> None:
        self._engine = engine
        self._state = state
        self._held = held  # id -> claim token, outcome not recorded yet: claims to keep alive
        self._pending: list[Settled] = []
        self._task: asyncio.Future[None] | None = None
        self._last = time.monotonic()
        self.error: BaseException | None = None

    def add(self, settled: Settled) -> None:
        self._pending.append(settled)
        if self._task is None and (
            len(self._pending) >= _FLUSH_EVERY or time.monotonic() - self._last >= _FLUSH_SECONDS
        ):
            self._task = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        done, self._pending = self._pending, []
        self._last = time.monotonic()
        try:
            recorded = await asyncio.to_thread(
                self._engine.outbox.record, done, disable_after=self._engine.disable_after
            )
        except Exception as exc:
            self.error = exc
            return
        finally:
            self._task = None
        for name, reason in recorded.disabled.items():
            self._state.disabled.add(name)
            log.warning("subscription %s disabled: %s", name, reason)
        if recorded.stale:
            log.warning(
                "%d deliveries were taken over by another sender while this one sent them "
                "(their claims lapsed); their outcomes here settle nothing",
                len(recorded.stale),
            )
            # Not this round's outcomes any more: out of its counts (the summary then comes
            # from the store, where the other sender's claim shows).
            stale = set(recorded.stale)
            for settled in done:
                mid = settled.attempt.message_id
                if mid in stale:
                    self._state.counts[settled.status] -= 1
                    self._state.stale.append(mid)
                    if settled.status == "pending" and mid in self._state.retrying:
                        self._state.retrying.remove(mid)
        for settled in done:
            self._held.pop(settled.attempt.message_id, None)

    async def close(self) -> None:
        """Wait for the running flush, flush the rest; raise what a flush raised."""
        if self._task is not None:
            await self._task
        if self._pending and self.error is None:
            await self._flush()
        if self.error is not None:
            raise self.error


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _by_token(ids: Sequence[str], tokens: Mapping[str, str | None]) -> dict[str | None, list[str]]:
    """Message ids grouped by the claim they are held under."""
    groups: dict[str | None, list[str]] = defaultdict(list)
    for mid in ids:
        groups[tokens.get(mid)].append(mid)
    return dict(groups)


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


@functools.cache
def _template_functions() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``renderer_for`` and ``template_context``, imported once (not once per body)."""
    from airhook.core.rendering import renderer_for, template_context

    return renderer_for, template_context


def _retry_policy_of(subscription: Subscription) -> RetryPolicy:
    """The subscription's retry policy, or the default one should its schedule be unusable."""
    try:
        return subscription.retry_policy()
    except Exception:
        return RetryPolicy()


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


def _excerpt(raw: bytes, secrets: Sequence[str]) -> str | None:
    """The first characters of a response body, with every secret of the request blanked.

    Why blank anything: some receivers echo the request (headers included) when they fail.
    """
    if not raw:
        return None
    # PostgreSQL's text refuses NUL characters: one in a response must not fail the whole
    # flush of outcomes it is recorded with.
    # Only what can reach the excerpt is searched (a secret echoed escaped takes up to six
    # times its length): a secret further on neither withholds the excerpt nor costs time.
    window = EXCERPT_CHARS + 6 * max((len(s) for s in secrets), default=0)
    text = raw[: window * 4].decode("utf-8", errors="replace")[:window].replace("\x00", "\ufffd")
    return redact(text, secrets, _REDACTED)[:EXCERPT_CHARS]


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
        self._kinds: dict[tuple[str, str], str | None] = {}
        #: Seconds one body template may take to render: ``[airhook] render_timeout_seconds``.
        self.render_timeout = _configured_float("render_timeout_seconds")

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

        Raises :class:`~airhook.core.errors.PayloadError` for an invalid event and
        :class:`~airhook.core.errors.TemplateRenderError` for a body template that fails, before any
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
        ids = list(dict.fromkeys(d.message_id for d in new))
        return _run(lambda: self._apublish(len(events), new, ids, wait))

    async def _apublish(
        self, events: int, new: Sequence[NewDelivery], ids: list[str], wait: float
    ) -> PublishResult:
        # The new deliveries are inserted already claimed and sent from memory: reading back
        # what was just written (a claim) cost more than the insert itself. The rows are
        # committed before the first request leaves.
        added = await asyncio.to_thread(self.outbox.add_claimed, new, lease_seconds=CLAIM_SECONDS)
        log.info(
            "publishing %d events: %d deliveries, %d new", events, len(ids), len(added.created)
        )
        async with self._session() as session:
            created = set(added.created)
            # Deliveries added by an earlier publish may be due (a crashed run's lapsed claims,
            # retries); so may this round's own retries and skipped ones: one claim for those.
            again = [mid for mid in ids if mid not in created]
            if added.claimed:
                state = await self._send_round(session, added.claimed)
                unsettled = state.retrying + state.skipped
                if (
                    not again
                    and not unsettled
                    and len(added.claimed) == len(ids) == sum(state.counts.values())
                ):
                    # Every delivery was new, claimed and attempted here, and each outcome is
                    # final: the counts are the summary, without reading the thousands of rows
                    # back.
                    summary = Summary.of(state.counts, None)
                    return PublishResult(events, ids, len(added.created), summary)
                if wait > 0:
                    # Retries due within the wait: the first pass may take those due already.
                    # Without a wait, one pass, as deliver() makes: a retry waits for its time
                    # and the next call, however soon it falls due.
                    again += unsettled
            summary = await self._arun_due(session, message_ids=ids, wait=wait, first=again)
        return PublishResult(events, ids, len(added.created), summary)

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

    def _kind(self, platform: str, name: str) -> str | None:
        # Looked up once per event type: a publication of thousands asks for the same few.
        key = (platform, name)
        if key not in self._kinds:
            self._kinds[key] = self.catalog.event(platform, name).kind
        return self._kinds[key]

    def _body(
        self, subscription: Subscription, event: Event, mid: str, chatbot_id: str | None
    ) -> str:
        """The body's text, rendered once per delivery (retries and replays send these bytes)."""
        if subscription.body_template is None:
            return orjson.dumps(event.payload).decode("utf-8")
        renderer_for, template_context = _template_functions()
        kind = self._kind(event.platform, event.name) if event.platform else None
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
        rendered = renderer_for(render_timeout_seconds=self.render_timeout).render_json(
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

        async def go() -> Summary:
            async with self._session() as session:
                return await self._arun_due(
                    session, message_ids=message_ids, publication=publication, wait=wait
                )

        return _run(go)

    async def _arun_due(
        self,
        session: aiohttp.ClientSession,
        *,
        message_ids: Sequence[str] | None = None,
        publication: str | None = None,
        wait: float = 0.0,
        first: Sequence[str] | None = None,
    ) -> Summary:
        """:meth:`run_due` over one session; ``first``: claim only these in the first pass."""
        deadline = time.monotonic() + wait
        selection = first if first is not None else message_ids
        while True:
            if selection is None or selection:
                await self._adeliver(session, message_ids=selection, publication=publication)
            summary = await asyncio.to_thread(
                self.summary, message_ids=message_ids, publication=publication
            )
            if not summary.pending or summary.next_attempt_at is None:
                return summary
            delay = (summary.next_attempt_at - _utcnow()).total_seconds()
            if time.monotonic() + max(delay, 0.0) > deadline:
                return summary
            if delay > 0:
                await asyncio.sleep(delay)
            selection = message_ids

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
        async with self._session() as session:
            return await self._adeliver(
                session, message_ids=message_ids, publication=publication, subscription=subscription
            )

    def _session(self) -> aiohttp.ClientSession:
        """The HTTP session of one deliver or publish call: its connections serve every round."""
        import aiohttp

        connector = aiohttp.TCPConnector(
            limit=self.concurrency,
            resolver=_CheckingResolver(self.policy),  # type: ignore[arg-type]
        )
        # One session, many endpoints: no cookies.
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    async def _adeliver(
        self,
        session: aiohttp.ClientSession,
        *,
        message_ids: Sequence[str] | None = None,
        publication: str | None = None,
        subscription: str | None = None,
    ) -> Summary:
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
            state = await self._send_round(session, claimed)
            for status, count in state.counts.items():
                counts[status] += count
            if len(claimed) < BATCH_SIZE:
                break
        return Summary.of(counts, None)

    async def _send_round(
        self, session: aiohttp.ClientSession, claimed: Sequence[Claimed]
    ) -> _Round:
        """Send claimed deliveries, record every outcome, hand back what was not attempted.

        Each subscription gets a lane (its deliveries, oldest first) worked by up to half the
        concurrency, so that a slow endpoint takes at most half the pool and a round of
        thousands for one endpoint does not queue the others' behind it; a shared gate caps the
        requests in flight. Workers take the next delivery as soon as one is done (no task per
        delivery); outcomes are recorded by a :class:`_Recorder` while the requests go on.
        """
        lanes: dict[str, deque[Claimed]] = defaultdict(deque)
        for delivery in claimed:
            lanes[delivery.subscription].append(delivery)
        tokens = {d.message_id: d.token for d in claimed}
        held = dict(tokens)
        state = _Round({})
        recorder: _Recorder | None = None
        keeper: asyncio.Future[None] | None = None
        workers: list[asyncio.Future[None]] = []
        try:
            # Set up inside the try: should reading the subscriptions fail, the finally below
            # hands every claim back instead of leaving them to lapse.
            loaded = await asyncio.to_thread(self.subscriptions.all)
            state.targets = {
                s.name: self._target(s) for s in loaded if s.name in lanes and s.active
            }
            state.failures = {
                name: target.subscription.consecutive_failures
                for name, target in state.targets.items()
            }
            await self._check_targets(state.targets.values())
            recorder = _Recorder(self, state, held)
            per_lane = max(1, self.concurrency // 2)
            workers_of = {name: min(len(lane), per_lane) for name, lane in lanes.items()}
            gate = (
                asyncio.Semaphore(self.concurrency)
                if sum(workers_of.values()) > self.concurrency
                else None  # the lanes' workers alone stay within the concurrency
            )
            keeper = asyncio.ensure_future(self._keep_claims(held))
            workers = [
                asyncio.ensure_future(self._work(session, state, lane, recorder, gate))
                for name, lane in lanes.items()
                for _ in range(workers_of[name])
            ]
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            if keeper is not None:
                keeper.cancel()
            try:
                if recorder is not None:
                    await recorder.close()
            finally:
                # Deliveries not attempted (skipped, or left when the round stopped) go back
                # due now, so that nobody waits for their claims to lapse.
                unsent = state.skipped + [d.message_id for lane in lanes.values() for d in lane]
                for token, ids in _by_token(unsent, tokens).items():
                    await asyncio.to_thread(self.outbox.release, ids, token=token)
        return state

    async def _work(
        self,
        session: aiohttp.ClientSession,
        state: _Round,
        lane: deque[Claimed],
        recorder: _Recorder,
        gate: asyncio.Semaphore | None,
    ) -> None:
        """One worker of a lane: send its deliveries one after another until none are left."""
        while lane and recorder.error is None:
            delivery = lane.popleft()
            if gate is None:
                settled = await self._attempt(session, state, delivery)
            else:
                async with gate:
                    settled = await self._attempt(session, state, delivery)
            if settled is not None:
                recorder.add(settled)

    async def _attempt(
        self, session: aiohttp.ClientSession, state: _Round, delivery: Claimed
    ) -> Settled | None:
        name = delivery.subscription
        target = state.targets.get(name)
        if target is None or name in state.disabled:
            # Deleted or disabled meanwhile, or disabled by this very round: not attempted.
            state.skipped.append(delivery.message_id)
            return None
        try:
            attempt, outcome, retry_after = await self._post(
                session, target, delivery.message_id, delivery.body.encode("utf-8")
            )
            settled = self._settle(target, delivery, attempt, outcome, retry_after)
        except Exception as exc:
            # A bug or a broken setting must not strand the round's other claims; the type
            # names the cause without quoting anything secret.
            log.error("delivery %s: unexpected %s", delivery.message_id, type(exc).__name__)
            attempt = Attempt(
                delivery.message_id,
                name,
                _utcnow(),
                Outcome.RETRY.value,
                error=f"internal error: {type(exc).__name__}",
            )
            settled = self._settle(target, delivery, attempt, Outcome.RETRY, None)
        status = settled.status
        state.counts[status] += 1
        if status == "delivered":
            state.failures[name] = 0
        elif status in FINAL_FAILURES:
            state.failures[name] = state.failures.get(name, 0) + 1
            if settled.disable or state.failures[name] >= self.disable_after:
                state.disabled.add(name)
        elif status == "pending":
            state.retrying.append(delivery.message_id)
        return settled

    async def _keep_claims(self, held: dict[str, str | None]) -> None:
        """Renew the claims of a round's unrecorded deliveries while it lasts.

        A round of many deliveries to a slow endpoint may outlast one claim; without renewal
        another sender would take them over and send them a second time.
        """
        while True:
            await asyncio.sleep(CLAIM_SECONDS / 3)
            if not held:
                continue
            try:
                for token, ids in _by_token(list(held), held).items():
                    await asyncio.to_thread(
                        self.outbox.extend, ids, lease_seconds=CLAIM_SECONDS, token=token
                    )
            except Exception as exc:  # the round goes on; at worst a claim lapses
                log.warning("could not renew delivery claims: %s", type(exc).__name__)

    def _settle(
        self,
        target: _Target,
        delivery: Claimed,
        attempt: Attempt,
        outcome: Outcome | None,
        retry_after: float | None,
    ) -> Settled:
        if outcome is Outcome.DELIVERED:
            return Settled(attempt, "delivered", token=delivery.token)
        name = target.subscription.name
        if outcome is Outcome.GONE:
            log.warning("subscription %s answered 410 Gone for %s", name, delivery.message_id)
            return Settled(
                attempt, "failed", disable="the endpoint answered 410 Gone", token=delivery.token
            )
        if outcome is Outcome.FAILED or outcome is None:
            log.info(
                "delivery %s to %s failed: %s",
                delivery.message_id,
                name,
                attempt.error or attempt.status_code,
            )
            return Settled(attempt, "failed", token=delivery.token)
        delay = target.retry.next_delay(delivery.attempts + 1, retry_after)
        if delay is None:
            log.info(
                "delivery %s to %s dead-lettered after %d attempts",
                delivery.message_id,
                name,
                delivery.attempts + 1,
            )
            return Settled(attempt, "dead", token=delivery.token)
        return Settled(
            attempt,
            "pending",
            next_attempt_at=_utcnow() + timedelta(seconds=delay),
            token=delivery.token,
        )

    def _target(self, subscription: Subscription) -> _Target:
        """The round's view of ``subscription``; one whose settings cannot be used (a URL that
        passes ``urlsplit`` but not yarl, say) gets a target that refuses each request, so that
        its deliveries are settled as internal errors and the round's others still go out."""
        try:
            return self._usable_target(subscription)
        except Exception as exc:
            import aiohttp

            log.error(
                "subscription %s cannot be sent to: %s", subscription.name, type(exc).__name__
            )
            timeout = self.default_timeout
            return _Target(
                subscription=subscription,
                url=None,
                headers={},
                scheme=None,
                secrets=(),
                hidden=sensitive_forms([subscription.url]),
                timeout=timeout,
                client_timeout=aiohttp.ClientTimeout(total=timeout),
                retry=_retry_policy_of(subscription),
                refused=exc,
            )

    def _usable_target(self, subscription: Subscription) -> _Target:
        import aiohttp
        from yarl import URL

        headers = {name: value.reveal() for name, value in subscription.headers.items()}
        headers.setdefault("Content-Type", "application/json")
        headers["User-Agent"] = f"airhook/{__version__}"
        secrets = tuple(subscription.signing_secrets())
        parts = urlsplit(subscription.url)
        hidden = [s.reveal() for s in secrets]
        hidden += [v for k, v in headers.items() if k.lower() not in _PUBLIC_HEADERS]
        hidden += [subscription.url, parts.path if parts.path != "/" else "", parts.query]
        timeout = subscription.timeout or self.default_timeout
        return _Target(
            subscription=subscription,
            url=URL(subscription.url),
            headers=headers,
            scheme=subscription.signing_scheme(),
            secrets=secrets,
            hidden=sensitive_forms(hidden),
            timeout=timeout,
            client_timeout=aiohttp.ClientTimeout(total=timeout),
            retry=subscription.retry_policy(),
        )

    async def _check_targets(
        self,
        targets: Iterable[_Target],
        cache: dict[str, asyncio.Future[None]] | None = None,
    ) -> None:
        """Give each target the destination policy's verdict: once per origin, concurrently.

        A target refused already (its settings are unusable) keeps that verdict."""
        cache = {} if cache is None else cache
        targets = [t for t in targets if t.refused is None]
        verdicts = await asyncio.gather(*(self._verdict(t.subscription, cache) for t in targets))
        for target, verdict in zip(targets, verdicts, strict=True):
            target.refused = verdict

    async def _verdict(
        self, subscription: Subscription, cache: dict[str, asyncio.Future[None]]
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
                asyncio.to_thread(self.policy.check, subscription.url)  # type: ignore[arg-type]
            )
        try:
            await asyncio.shield(future)
        except Exception as exc:
            return exc
        return None

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
        ``destinations`` caches the policy's verdict per origin across calls.
        """
        target = self._target(subscription)
        await self._check_targets([target], destinations)
        return await self._post(session, target, mid, body)

    async def _post(
        self, session: aiohttp.ClientSession, target: _Target, mid: str, body: bytes
    ) -> tuple[Attempt, Outcome | None, float | None]:
        """The request itself, for a target whose verdict is known: the per-delivery path."""
        import aiohttp

        name = target.subscription.name
        attempted_at = _utcnow()
        refused = target.refused
        if refused is not None:
            if isinstance(refused, DestinationNotAllowedError):
                reason = f"destination refused: {refused.reason}"
                return Attempt(mid, name, attempted_at, "refused", error=reason), None, None
            if isinstance(refused, DeliveryError):
                attempt = Attempt(mid, name, attempted_at, "retry", error="host does not resolve")
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
                if not 200 <= status < 300:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
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
        excerpt: str | None = None
        if raw:
            # Signatures change per request: hidden along with the round's fixed values.
            hidden: Sequence[str] = target.hidden
            if signed:
                hidden = (
                    *target.hidden,
                    *(v for k, v in signed.items() if k.lower() not in _PUBLIC_HEADERS),
                )
            excerpt = _excerpt(raw, hidden)
        attempt = Attempt(
            mid,
            name,
            attempted_at,
            outcome.value,
            status_code=status,
            latency_ms=round(latency_ms, 3),
            error=error,
            response_excerpt=excerpt,
        )
        return attempt, outcome, retry_after

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
