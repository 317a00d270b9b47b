"""The delivery engine: publish events to subscriptions, deliver what is due, replay, test.

:class:`DeliveryEngine` is the façade the operator, the CLI and the benchmarks call; each job
behind it lives in its own module of :mod:`airhook.delivery`: planning the deliveries
(:mod:`~airhook.delivery.planning`), a subscription's per-round target and destination verdict
(:mod:`~airhook.delivery.targets`), the HTTP request (:mod:`~airhook.delivery.http`), a round of
claimed deliveries (:mod:`~airhook.delivery.rounds`) and its outcome writes
(:mod:`~airhook.delivery.recorder`). What stays here: when to claim, how long to wait for
retries, and running all of it from synchronous code.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from airhook.core.catalog import Catalog
from airhook.core.delivery_rules import Outcome, message_id
from airhook.core.ssrf import DestinationPolicy
from airhook.core.subscription import Subscription
from airhook.delivery.events import Event, PublishResult, Summary
from airhook.delivery.http import open_session, post
from airhook.delivery.planning import Planner
from airhook.delivery.rounds import CLAIM_SECONDS, Round, RoundSender
from airhook.delivery.targets import build_target, check_targets
from airhook.store.outbox import (
    FINAL_FAILURES,
    AttemptRecord,
    Claimed,
    NewDelivery,
    OutboxRepository,
)
from airhook.store.subscriptions import SubscriptionRepository
from airhook.store.times import utc_now

if TYPE_CHECKING:
    import aiohttp

    from airhook.core.secrets import Cipher
    from airhook.store.engine import Store

__all__ = ["BATCH_SIZE", "DEFAULT_CONCURRENCY", "DeliveryEngine"]

log = logging.getLogger(__name__)

#: Requests in flight at once, over one connection pool.
DEFAULT_CONCURRENCY = 64
#: Deliveries claimed and sent per round (by :meth:`DeliveryEngine.deliver`).
BATCH_SIZE = 2000

T = TypeVar("T")


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

    thread = threading.Thread(target=target, name="airhook-delivery")
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
        # Render timeout: ``[airhook] render_timeout_seconds``.
        self._planner = Planner(catalog, _configured_float("render_timeout_seconds"))

    @property
    def policy(self) -> DestinationPolicy:
        """The destination policy (read from configuration on first use)."""
        if self._policy is None:
            self._policy = _configured_policy()
        return self._policy

    @property
    def catalog(self) -> Catalog:
        """The event catalog."""
        return self._planner.catalog

    @property
    def render_timeout(self) -> float:
        """Seconds one body template may take to render: ``[airhook] render_timeout_seconds``."""
        return self._planner.render_timeout

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
        return self._planner.plan(
            events, self.subscriptions.all, publication=publication, subscriptions=subscriptions
        )

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
            (the background sender, :mod:`airhook.delivery.sender`; the operator, when it
            resumes; ``airhook deliveries deliver-due``).
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
            delay = (summary.next_attempt_at - utc_now()).total_seconds()
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
        limit: int | None = None,
    ) -> Summary:
        """Send every due delivery among those selected (all due ones, if nothing selects).

        Returns the counts of what was attempted now (``pending``: retries scheduled).
        ``limit``: claim at most this many (the background sender's bounded round).
        """
        return _run(
            lambda: self.adeliver(
                message_ids=message_ids,
                publication=publication,
                subscription=subscription,
                limit=limit,
            )
        )

    async def adeliver(
        self,
        *,
        message_ids: Sequence[str] | None = None,
        publication: str | None = None,
        subscription: str | None = None,
        limit: int | None = None,
    ) -> Summary:
        """Asynchronous :meth:`deliver`."""
        async with self._session() as session:
            return await self._adeliver(
                session,
                message_ids=message_ids,
                publication=publication,
                subscription=subscription,
                limit=limit,
            )

    def _session(self) -> aiohttp.ClientSession:
        """The HTTP session of one deliver or publish call: its connections serve every round."""
        return open_session(self.policy, limit=self.concurrency)

    async def _adeliver(
        self,
        session: aiohttp.ClientSession,
        *,
        message_ids: Sequence[str] | None = None,
        publication: str | None = None,
        subscription: str | None = None,
        limit: int | None = None,
    ) -> Summary:
        counts: dict[str, int] = defaultdict(int)
        left = limit
        while left is None or left > 0:
            batch = BATCH_SIZE if left is None else min(BATCH_SIZE, left)
            claimed = await asyncio.to_thread(
                self.outbox.claim,
                now=utc_now(),
                lease_seconds=CLAIM_SECONDS,
                message_ids=message_ids,
                publication=publication,
                subscription=subscription,
                limit=batch,
            )
            if not claimed:
                break
            state = await self._send_round(session, claimed)
            for status, count in state.counts.items():
                counts[status] += count
            if len(claimed) < batch:
                break
            if left is not None:
                left -= len(claimed)
        return Summary.of(counts, None)

    async def _send_round(
        self, session: aiohttp.ClientSession, claimed: Sequence[Claimed]
    ) -> Round:
        """Send claimed deliveries with this engine's settings (:class:`RoundSender`)."""
        sender = RoundSender(
            outbox=self.outbox,
            subscriptions=self.subscriptions,
            policy=self.policy,
            concurrency=self.concurrency,
            disable_after=self.disable_after,
            default_timeout=self.default_timeout,
        )
        return await sender.send(session, claimed)

    async def send(
        self,
        session: aiohttp.ClientSession,
        subscription: Subscription,
        mid: str,
        body: bytes,
        *,
        destinations: dict[str, asyncio.Future[None]] | None = None,
    ) -> tuple[AttemptRecord, Outcome | None, float | None]:
        """Make one signed request; return its logged attempt, outcome and ``Retry-After``.

        The outcome is ``None`` when the destination policy refused the URL (nothing sent).
        ``destinations`` caches the policy's verdict per origin across calls.
        """
        target = build_target(subscription, self.default_timeout)
        if target.refused is None:  # the policy is read only when there is something to check
            await check_targets([target], self.policy, destinations)
        return await post(session, target, mid, body)

    # --- one-off test, summaries, replay ----------------------------------------------------

    def send_test(
        self,
        subscription: Subscription,
        payload: Any,
        *,
        event: str = "test",
        platform: str | None = None,
    ) -> AttemptRecord:
        """Send an event to a subscription now, whatever its state; record nothing.

        The body is what a real delivery would carry (the subscription's template, if any).
        The message id is fresh (``msg_test_…``), so a receiver never takes it for a real event.
        """
        mid = message_id("test", subscription.name, time.time_ns(), prefix="msg_test_")
        test_event = Event(event, payload, mid, platform=platform)
        body = self._planner.body(
            subscription, test_event, mid, self._planner.validate(test_event)
        ).encode()

        async def go() -> AttemptRecord:
            async with open_session(self.policy) as session:
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
