"""``PublishEventOperator`` and ``publish_events``: publish events to every matching subscription.

The operator is thin: it turns its ``events`` into :class:`~airhook.delivery.Event` objects with
stable keys and hands them to the :class:`~airhook.delivery.DeliveryEngine`, which validates,
fans out, signs, sends and logs. While deliveries of its publication wait for a retry it defers
to the triggerer until the earliest one is due (no worker slot held), then resumes and sends
them; a retry due within seconds is made in the task instead, where waiting is cheaper.

Why the keys leave out the try number: a task retry must publish the *same* events, which the
outbox already holds, so nothing goes out twice; DAG id, run id, task id, map index and each
event's position (or its own ``key``) identify an event for good.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airhook.core.delivery_rules import message_id
from airhook.core.errors import ConfigurationError, PayloadError
from airhook.delivery import DEFAULT_CONCURRENCY, DeliveryEngine, Event, Summary
from airhook.triggers import MIN_DEFER_SECONDS, SETTLE_SECONDS
from airhook.triggers.delay import WebhookDelayTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["PublishEventOperator", "build_events", "publication_id", "publish_events"]

log = logging.getLogger(__name__)

_migrated: set[str] = set()
_migrated_lock = threading.Lock()


def _engine(database_url: str | None, concurrency: int) -> DeliveryEngine:
    """The engine over the configured store (migrated once per process) and Airflow's key."""
    from airhook.crypto import airflow_cipher
    from airhook.store import get_store
    from airhook.store.migrate import upgrade

    store = get_store(database_url)
    with _migrated_lock:
        if store.url not in _migrated:
            upgrade(store)  # a store created before subscriptions existed gains their tables
            _migrated.add(store.url)
    return DeliveryEngine(store, airflow_cipher(), concurrency=concurrency)


def _identity(context: Mapping[str, Any]) -> tuple[str, str, str, int]:
    ti = context["ti"]
    map_index = getattr(ti, "map_index", -1)
    return ti.dag_id, ti.run_id, ti.task_id, -1 if map_index is None else int(map_index)


def publication_id(context: Mapping[str, Any]) -> str:
    """The id grouping one task's deliveries: DAG, run, task and map index, never the try."""
    return message_id(*_identity(context), prefix="pub_")


def build_events(
    events: Any,
    *,
    key_prefix: str,
    event: str | None = None,
    platform: str | None = None,
) -> list[Event]:
    """Turn an operator's ``events`` into :class:`~airhook.delivery.Event` objects.

    Accepted: a list of ``{"event": name, "payload": {...}}`` (optionally ``"key"``,
    ``"platform"``, ``"chatbot_id"``), or a list of payloads with ``event`` naming them all,
    or (with ``platform``) a list of platform payloads that name their own event; a single
    mapping stands for a list of one; a JSON string (a rendered template) is parsed first.

    :param key_prefix: what identifies the publisher; each event's key is the prefix and the
        event's own ``key``, else its position.
    """
    if isinstance(events, str):
        try:
            events = json.loads(events)
        except ValueError:
            raise PayloadError("events is not a list of events (nor JSON of one)") from None
    if isinstance(events, Mapping):
        events = [events]
    if not isinstance(events, Sequence) or isinstance(events, str | bytes):
        raise PayloadError("events is a list of events")
    catalog = None
    built: list[Event] = []
    for position, item in enumerate(events):
        own_key: Any = None
        item_platform = platform
        chatbot_id = None
        if event is not None:
            name, payload = event, item
        elif isinstance(item, Mapping) and "payload" in item and "event" in item:
            name, payload = item["event"], item["payload"]
            own_key = item.get("key")
            item_platform = item.get("platform", platform)
            chatbot_id = item.get("chatbot_id")
        elif platform is not None:
            from airhook.core.catalog import load_catalog

            catalog = catalog or load_catalog()
            name, payload = catalog.event_name(platform, item), item
        else:
            raise PayloadError(
                f"event {position}: give {{'event': name, 'payload': {{...}}}}, or event= for "
                "a list of payloads"
            )
        if not isinstance(name, str) or not name:
            raise PayloadError(f"event {position} has no event name")
        key = f"{key_prefix}\x1f{'k:' + str(own_key) if own_key is not None else position}"
        built.append(Event(name, payload, key, platform=item_platform, chatbot_id=chatbot_id))
    return built


def _key_prefix(context: Mapping[str, Any]) -> str:
    return "\x1f".join(str(part) for part in _identity(context))


class PublishEventOperator(BaseOperator):
    """Publish events to every active subscription that matches them, and see them delivered.

    Each event is validated (with ``platform``) before anything is sent: one invalid event fails
    the task and sends nothing. Deliveries go out concurrently over pooled connections, signed
    per subscription. Retries wait in the triggerer (deferred, no worker slot) until the
    earliest is due; those due within ``min_defer_seconds`` are made in the task. Returns a
    summary to XCom: ``deliveries``, ``delivered``, ``pending``, ``failed``, ``dead``,
    ``paused`` and the ``publication`` id; never a secret or a URL.

    :param events: a list of ``{"event": name, "payload": {...}}`` (an optional ``"key"``
        identifies an event better than its position), or a list of payloads with ``event``.
        (templated)
    :param event: the event name of every payload in ``events``. (templated)
    :param platform: validate each event against this platform's schema (``caleida``, ``rkt``,
        …); with it, ``events`` may also be the platform's own payloads. (templated)
    :param subscriptions: publish to these subscriptions only (by name). (templated)
    :param fail_on_dead_letter: fail the task when a delivery finally failed (``dead`` after
        its last attempt, or ``failed`` for good: 4xx, 410, a refused destination).
    :param min_defer_seconds: retries due sooner than this are made in the task, sleeping on
        the worker (as ``WebhookOperator`` does): deferring and resuming costs more than such a
        wait (the default schedule's second attempt comes within 5 s).
    :param settle_seconds: a deferral lasts at least this long. Airflow 3.3 marks a task failed
        when its trigger fires before the scheduler has processed the deferring worker's exit
        (apache/airflow#66374, #67287, #72716); the sensor measured ~6 s, hence 15 s.
    :param concurrency: requests in flight at once.
    :param database_url: the airhook store; default ``[airhook] database_url``.
    """

    template_fields: Sequence[str] = ("events", "event", "platform", "subscriptions")
    template_fields_renderers = {"events": "json"}  # noqa: RUF012
    ui_color = "#fdf1e8"

    def __init__(
        self,
        *,
        events: Any,
        event: str | None = None,
        platform: str | None = None,
        subscriptions: Sequence[str] | None = None,
        fail_on_dead_letter: bool = False,
        min_defer_seconds: float = MIN_DEFER_SECONDS,
        settle_seconds: float = SETTLE_SECONDS,
        concurrency: int = DEFAULT_CONCURRENCY,
        database_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.events = events
        self.event = event
        self.platform = platform
        self.subscriptions = subscriptions
        self.fail_on_dead_letter = fail_on_dead_letter
        self.min_defer_seconds = min_defer_seconds
        self.settle_seconds = settle_seconds
        self.concurrency = concurrency
        self.database_url = database_url

    def execute(self, context: Context) -> Any:
        """Validate and publish the events, send what is due, then wait or finish."""
        events = build_events(
            self.events,
            key_prefix=_key_prefix(context),
            event=self.event or None,
            platform=self.platform or None,
        )
        engine = _engine(self.database_url, self.concurrency)
        names = [self.subscriptions] if isinstance(self.subscriptions, str) else self.subscriptions
        result = engine.publish(
            events,
            publication=publication_id(context),
            subscriptions=names,
            wait=self.min_defer_seconds,
        )
        self.log.info(
            "published %d events: %d deliveries (%d new)",
            result.events,
            len(result.message_ids),
            result.created,
        )
        return self._wait_or_finish(context, engine)

    def execute_complete(self, context: Context, event: Any = None) -> Any:
        """Resume when the earliest retry is due: send the due deliveries, then wait or finish."""
        engine = _engine(self.database_url, self.concurrency)
        engine.run_due(publication=publication_id(context), wait=self.min_defer_seconds)
        return self._wait_or_finish(context, engine)

    def _wait_or_finish(self, context: Context, engine: DeliveryEngine) -> dict[str, Any]:
        publication = publication_id(context)
        summary = engine.summary(publication=publication)
        if summary.pending:
            now = datetime.now(timezone.utc)
            due = summary.next_attempt_at or now
            moment = max(due, now + timedelta(seconds=self.settle_seconds))
            self.log.info(
                "%d deliveries wait for a retry; deferring until %s",
                summary.pending,
                moment.isoformat(),
            )
            # The same trigger as WebhookOperator's waits: it wakes at the moment, not on the
            # next whole second. The state is in the store, so the event carries none.
            self.defer(
                trigger=WebhookDelayTrigger(moment=moment.isoformat()),
                method_name="execute_complete",
            )
        return _finish(summary, publication, self.fail_on_dead_letter)


def _finish(summary: Summary, publication: str, fail_on_dead_letter: bool) -> dict[str, Any]:
    result = {"publication": publication, **summary.as_dict()}
    log.info(
        "publication %s: %d delivered, %d failed, %d dead, %d paused, %d pending",
        publication,
        summary.delivered,
        summary.failed,
        summary.dead,
        summary.paused,
        summary.pending,
    )
    if fail_on_dead_letter and summary.dead_letters:
        from airflow.sdk.exceptions import AirflowFailException

        # AirflowFailException: a retry would publish the same events, which are settled.
        raise AirflowFailException(
            f"{summary.dead_letters} deliveries finally failed ({summary.dead} dead, "
            f"{summary.failed} failed); replay them with 'airhook deliveries replay'"
        )
    return result


def publish_events(
    events: Any,
    *,
    event: str | None = None,
    platform: str | None = None,
    subscriptions: Sequence[str] | None = None,
    key: str | None = None,
    wait: float = 60.0,
    fail_on_dead_letter: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
    database_url: str | None = None,
) -> dict[str, Any]:
    """Publish events from inside a ``@task`` (synchronously); return the summary.

    The same engine as :class:`PublishEventOperator`, without deferring: retries due within
    ``wait`` seconds are made in this process; later ones stay pending in the outbox (``pending``
    in the summary) for ``airhook deliveries deliver-due``. Use the operator when retries may be
    minutes or hours away.

    :param key: what identifies this publication when called outside a task; inside one,
        DAG id, run id, task id and map index are used (never the try number), so a retried
        task sends nothing twice.
    """
    if key is None:
        from airflow.sdk import get_current_context

        try:
            context = get_current_context()
        except RuntimeError:
            raise ConfigurationError("outside a task, publish_events needs a key") from None
        prefix, publication = _key_prefix(context), publication_id(context)
    else:
        prefix, publication = key, message_id(key, prefix="pub_")
    built = build_events(events, key_prefix=prefix, event=event, platform=platform)
    engine = _engine(database_url, concurrency)
    names = [subscriptions] if isinstance(subscriptions, str) else subscriptions
    result = engine.publish(built, publication=publication, subscriptions=names, wait=wait)
    return _finish(result.summary, publication, fail_on_dead_letter)
