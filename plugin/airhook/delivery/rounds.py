"""One round of deliveries: claimed deliveries sent, their outcomes settled and recorded.

A round sends the deliveries it was handed (claimed from the outbox, or just added already
claimed), each subscription in a lane of its own, and settles every attempt: delivered, a retry
at the policy's next time, failed (or dead after the last attempt), with the subscription
disabled at the failure threshold. Outcomes are written by a :class:`~.recorder.Recorder` while
the requests go on; the claims of unrecorded deliveries are renewed while the round lasts, and
deliveries not attempted are handed back due at its end.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from airhook.core.delivery_rules import Outcome
from airhook.delivery.http import post
from airhook.delivery.recorder import Recorder
from airhook.delivery.targets import Target, build_target, check_targets
from airhook.store.outbox import FINAL_FAILURES, AttemptRecord, Claimed, Settled
from airhook.store.times import utc_now

if TYPE_CHECKING:
    import aiohttp

    from airhook.core.ssrf import DestinationPolicy
    from airhook.store.outbox import OutboxRepository
    from airhook.store.subscriptions import SubscriptionRepository

__all__ = ["CLAIM_SECONDS", "Round", "RoundSender", "by_token", "settle"]

log = logging.getLogger(__name__)

#: How long a sender's claim on a round of deliveries lasts; a round that takes longer renews
#: the claims of the deliveries it has not settled yet every third of this.
CLAIM_SECONDS = 900.0


@dataclass
class Round:
    """State shared by the requests of one round: fresh deliveries, or one claim's."""

    #: the round's active subscriptions' targets, by name (a missing name: skip its deliveries).
    targets: dict[str, Target]
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


def by_token(ids: Sequence[str], tokens: Mapping[str, str | None]) -> dict[str | None, list[str]]:
    """Message ids grouped by the claim they are held under."""
    groups: dict[str | None, list[str]] = defaultdict(list)
    for mid in ids:
        groups[tokens.get(mid)].append(mid)
    return dict(groups)


class RoundSender:
    """Sends rounds of claimed deliveries with one engine's settings.

    :param outbox: where claims are renewed and released and outcomes recorded.
    :param subscriptions: read once at the start of each round.
    :param policy: the destination policy, asked once per origin per round.
    :param concurrency: requests in flight at once.
    :param disable_after: consecutive failed deliveries that disable a subscription.
    :param default_timeout: seconds per attempt for subscriptions without their own.
    """

    def __init__(
        self,
        *,
        outbox: OutboxRepository,
        subscriptions: SubscriptionRepository,
        policy: DestinationPolicy,
        concurrency: int,
        disable_after: int,
        default_timeout: float,
    ) -> None:
        self.outbox = outbox
        self.subscriptions = subscriptions
        self.policy = policy
        self.concurrency = concurrency
        self.disable_after = disable_after
        self.default_timeout = default_timeout

    async def send(self, session: aiohttp.ClientSession, claimed: Sequence[Claimed]) -> Round:
        """Send claimed deliveries, record every outcome, hand back what was not attempted.

        Each subscription gets a lane (its deliveries, oldest first) worked by up to half the
        concurrency, so that a slow endpoint takes at most half the pool and a round of
        thousands for one endpoint does not queue the others' behind it; a shared gate caps the
        requests in flight. Workers take the next delivery as soon as one is done (no task per
        delivery); outcomes are recorded by a :class:`~.recorder.Recorder` while the requests go on.
        """
        lanes: dict[str, deque[Claimed]] = defaultdict(deque)
        for delivery in claimed:
            lanes[delivery.subscription].append(delivery)
        tokens = {d.message_id: d.token for d in claimed}
        held = dict(tokens)
        state = Round({})
        recorder: Recorder | None = None
        keeper: asyncio.Future[None] | None = None
        workers: list[asyncio.Future[None]] = []
        try:
            # Set up inside the try: should reading the subscriptions fail, the finally below
            # hands every claim back instead of leaving them to lapse.
            loaded = await asyncio.to_thread(self.subscriptions.all)
            state.targets = {
                s.name: build_target(s, self.default_timeout)
                for s in loaded
                if s.name in lanes and s.active
            }
            state.failures = {
                name: target.subscription.consecutive_failures
                for name, target in state.targets.items()
            }
            await check_targets(state.targets.values(), self.policy)
            recorder = Recorder(self.outbox, self.disable_after, state, held)
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
                for token, ids in by_token(unsent, tokens).items():
                    await asyncio.to_thread(self.outbox.release, ids, token=token)
        return state

    async def _work(
        self,
        session: aiohttp.ClientSession,
        state: Round,
        lane: deque[Claimed],
        recorder: Recorder,
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
        self, session: aiohttp.ClientSession, state: Round, delivery: Claimed
    ) -> Settled | None:
        name = delivery.subscription
        target = state.targets.get(name)
        if target is None or name in state.disabled:
            # Deleted or disabled meanwhile, or disabled by this very round: not attempted.
            state.skipped.append(delivery.message_id)
            return None
        try:
            attempt, outcome, retry_after = await post(
                session, target, delivery.message_id, delivery.body.encode("utf-8")
            )
            settled = settle(target, delivery, attempt, outcome, retry_after)
        except Exception as exc:
            # A bug or a broken setting must not strand the round's other claims; the type
            # names the cause without quoting anything secret.
            log.error("delivery %s: unexpected %s", delivery.message_id, type(exc).__name__)
            attempt = AttemptRecord(
                delivery.message_id,
                name,
                utc_now(),
                Outcome.RETRY.value,
                error=f"internal error: {type(exc).__name__}",
            )
            settled = settle(target, delivery, attempt, Outcome.RETRY, None)
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
                for token, ids in by_token(list(held), held).items():
                    await asyncio.to_thread(
                        self.outbox.extend, ids, lease_seconds=CLAIM_SECONDS, token=token
                    )
            except Exception as exc:  # the round goes on; at worst a claim lapses
                log.warning("could not renew delivery claims: %s", type(exc).__name__)


def settle(
    target: Target,
    delivery: Claimed,
    attempt: AttemptRecord,
    outcome: Outcome | None,
    retry_after: float | None,
) -> Settled:
    """The consequence of one attempt: delivered, failed, dead, or pending with its next time."""
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
        next_attempt_at=utc_now() + timedelta(seconds=delay),
        token=delivery.token,
    )
