"""Outbound deliveries: a filtered page of them, one with every attempt, and replays.

A replay makes the chosen deliveries due now with a fresh round of attempts and sends them at
once, in this process, as ``airhook deliveries replay`` does (no background sender runs in the
API server): one delivery, a selection of them, or a subscription's in a time window. A
subscription that is not active gets its replayed deliveries back as paused, and they go out
when it is enabled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airhook.core.errors import ConfigurationError, DeliveryNotFoundError
from airhook.core.subscription import SUBSCRIPTION_NAME_RE
from airhook.delivery.events import Summary
from airhook.manage import fields
from airhook.manage.views import DeliveryView, Page
from airhook.store.outbox import FINAL_FAILURES, STATUSES

if TYPE_CHECKING:
    from airhook.manage.container import Services

__all__ = ["REPLAY_BATCH", "DeliveryService", "Progress"]

#: Longest message id (``msg_`` and a digest; test ids are longer but never stored).
_MAX_ID = 40
#: Deliveries a replay with progress sends per step.
REPLAY_BATCH = 100

#: ``(done, total)``: told after each batch of a replay.
Progress = Callable[[int, int], None]


class DeliveryService:
    """Deliveries and their attempts, as the CLI, the API and the page see them."""

    def __init__(self, services: Services) -> None:
        self._engine = services.engine
        self._outbox = services.engine.outbox
        self._background_sender = services.background_sender

    def list(
        self,
        *,
        subscription: str | None = None,
        statuses: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Page[DeliveryView]:
        """A page of deliveries, newest first, selected by subscription, status and creation
        time (``since`` inclusive, ``until`` exclusive)."""
        if statuses is not None:
            for status in statuses:
                if status not in STATUSES:
                    raise ConfigurationError(
                        f"status is one of {', '.join(STATUSES)}", field="status"
                    )
        found, total = self._outbox.page(
            subscription=subscription,
            statuses=list(statuses) if statuses else None,
            since=fields.utc(since, "since"),
            until=fields.utc(until, "until"),
            limit=limit,
            offset=offset,
        )
        return Page([DeliveryView(d) for d in found], total, limit, offset)

    def get(self, message_id: str) -> DeliveryView:
        """One delivery with every attempt, oldest first."""
        if not isinstance(message_id, str) or not 0 < len(message_id) <= _MAX_ID:
            raise DeliveryNotFoundError(str(message_id)[:_MAX_ID])
        delivery = self._outbox.get(message_id)
        return DeliveryView(delivery, self._outbox.attempts(message_id))

    def replay(
        self,
        *,
        ids: Sequence[str] | None = None,
        subscription: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        dead_only: bool = True,
        include_delivered: bool = False,
        wait: float = 0.0,
        progress: Progress | None = None,
        batch: int = REPLAY_BATCH,
        background_beyond: int | None = None,
    ) -> dict[str, Any]:
        """Send deliveries again, now; return ``{"replayed": [ids], **summary}``.

        :param ids: these deliveries, whatever their status (one being sent right now is a
            conflict); or else
        :param subscription: that subscription's dead letters (``dead_only``), or its
            undelivered ones (``include_delivered``: all of them) created in ``[since, until)``.
        :param wait: keep making the retries that fall due within this many seconds.
        :param progress: called with ``(done, total)`` after each ``batch`` of deliveries has
            been sent (the CLI's progress bar); without it, all are sent in one go.
        :param background_beyond: more deliveries than this are made due and left to this
            process's background sender, when one runs (the answer then has
            ``"background": true`` and their counts as they stand): a replay asked for in an
            HTTP request must not hold it for as long as thousands of deliveries take.
        """
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ConfigurationError("batch is a positive number of deliveries", field="batch")
        if (ids is None) == (subscription is None):
            raise ConfigurationError("replay names ids, or a subscription (not both)", field="ids")
        if ids is not None:
            if since is not None or until is not None:
                raise ConfigurationError("since and until go with a subscription", field="since")
            chosen = fields.check_ids(ids)
            for message_id in chosen:
                self.get(message_id)  # an unknown id is a 404, before anything changes
            replayed: list[str] = []
            if progress is not None:
                # Reset and send a batch at a time, so that the progress shown is real.
                progress(0, len(chosen))
                for start in range(0, len(chosen), batch):
                    done: list[str] = []
                    for message_id in chosen[start : start + batch]:
                        done += self._outbox.replay(message_id=message_id)
                    if done:
                        self._engine.run_due(message_ids=done)
                    replayed += done
                    progress(min(start + batch, len(chosen)), len(chosen))
                return self._replayed(replayed, wait)
            for message_id in chosen:
                replayed += self._outbox.replay(message_id=message_id)
        else:
            if not isinstance(subscription, str) or not SUBSCRIPTION_NAME_RE.fullmatch(
                subscription
            ):
                raise ConfigurationError("no such subscription", field="subscription")
            self._engine.subscriptions.get(subscription)  # a typo is a 404, not "0 replayed"
            statuses: tuple[str, ...] = FINAL_FAILURES
            if not dead_only:
                statuses = (*FINAL_FAILURES, "paused")
                if include_delivered:
                    statuses += ("delivered",)
            replayed = self._outbox.replay(
                subscription=subscription,
                since=fields.utc(since, "since"),
                until=fields.utc(until, "until"),
                statuses=statuses,
            )
        if (
            background_beyond is not None
            and len(replayed) > background_beyond
            and self._background_sender()
        ):
            summary = self._engine.summary(message_ids=replayed)
            return {"replayed": replayed, "background": True, **summary.as_dict()}
        if progress is not None and replayed:
            progress(0, len(replayed))
            for start in range(0, len(replayed), batch):
                self._engine.run_due(message_ids=replayed[start : start + batch])
                progress(min(start + batch, len(replayed)), len(replayed))
            return self._replayed(replayed, wait)
        summary = self._engine.run_due(message_ids=replayed, wait=wait) if replayed else Summary()
        return {"replayed": replayed, **summary.as_dict()}

    def _replayed(self, replayed: Sequence[str], wait: float) -> dict[str, Any]:
        """The answer of a replay sent in batches: the retries due within ``wait`` made too."""
        if not replayed:
            summary = Summary()
        elif wait > 0:
            summary = self._engine.run_due(message_ids=replayed, wait=wait)
        else:
            summary = self._engine.summary(message_ids=replayed)
        return {"replayed": [*replayed], **summary.as_dict()}

    def deliver_due(self, *, subscription: str | None = None) -> dict[str, Any]:
        """Send every delivery whose attempt is due (``subscription``: only its own), as a
        scheduled sweep does; ``{"attempted": n, **counts of what was attempted}``."""
        if subscription is not None:
            if not isinstance(subscription, str) or not SUBSCRIPTION_NAME_RE.fullmatch(
                subscription
            ):
                raise ConfigurationError("no such subscription", field="subscription")
            self._engine.subscriptions.get(subscription)  # a typo is a 404, not "0 attempted"
        attempted = self._engine.deliver(subscription=subscription)
        return {"attempted": attempted.deliveries, **attempted.as_dict()}
