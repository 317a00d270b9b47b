"""Recording a round's outcomes in batches while its requests go on.

Why batches: a commit and the per-statement work are paid once per flush, not per row; a round
of thousands of deliveries would otherwise spend more time writing outcomes than sending.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from typing import TYPE_CHECKING

from airhook import metrics

if TYPE_CHECKING:
    from airhook.delivery.rounds import Round
    from airhook.store.outbox import OutboxRepository, Settled

__all__ = ["Recorder"]

#: The metric outcome of each settled status (``pending``: another attempt is scheduled).
_OUTCOMES = {"delivered": "delivered", "pending": "retry", "failed": "failed", "dead": "dead"}

log = logging.getLogger(__name__)

# Record outcomes in transactions of this many (a commit and the per-statement work are paid
# once per flush, not per row) ...
_FLUSH_EVERY = 1000
_FLUSH_SECONDS = 0.5  # ... or at least this often while a round runs


class Recorder:
    """Records a round's outcomes in the background: one flush at a time, in order.

    A flush runs in a thread while the requests go on; it starts once ``_FLUSH_EVERY`` outcomes
    are waiting or ``_FLUSH_SECONDS`` have passed since the last one began, and the round's end
    flushes the rest. A failed flush stops the round (see ``error``): its deliveries stay
    claimed, and go out again once the claim lapses.

    :param outbox: where outcomes are recorded.
    :param disable_after: consecutive failed deliveries that disable a subscription.
    :param state: the round; subscriptions the store disables join its ``disabled``, and
        outcomes another sender took over leave its counts.
    :param held: message id → claim token of the round's deliveries whose outcome is not
        recorded yet; each one recorded leaves it.
    """

    def __init__(
        self,
        outbox: OutboxRepository,
        disable_after: int,
        state: Round,
        held: dict[str, str | None],
    ) -> None:
        self._outbox = outbox
        self._disable_after = disable_after
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
                self._outbox.record, done, disable_after=self._disable_after
            )
        except Exception as exc:
            self.error = exc
            return
        finally:
            self._task = None
        for name, reason in recorded.disabled.items():
            self._state.disabled.add(name)
            log.warning("subscription %s disabled: %s", name, reason)
        if recorded.disabled:
            metrics.incr("airhook.subscription.auto_disabled", len(recorded.disabled))
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
        _count(done, set(recorded.stale))

    async def close(self) -> None:
        """Wait for the running flush, flush the rest; raise what a flush raised."""
        if self._task is not None:
            await self._task
        if self._pending and self.error is None:
            await self._flush()
        if self.error is not None:
            raise self.error


def _count(done: list[Settled], stale: set[str]) -> None:
    """Send the metrics of recorded outcomes: one count per outcome and flush, one timing per
    attempt that got an answer or failed trying (not those another sender took over)."""
    outcomes: Counter[str] = Counter()
    for settled in done:
        if settled.attempt.message_id in stale:
            continue
        outcomes[_OUTCOMES[settled.status]] += 1
        if settled.attempt.latency_ms is not None:
            metrics.timing("airhook.delivery.attempt_seconds", settled.attempt.latency_ms / 1000)
    for outcome, count in outcomes.items():
        metrics.incr(f"airhook.delivery.{outcome}", count)
