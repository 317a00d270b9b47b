"""``WebhookEventSensor``: wait for a webhook event that matches a pattern and a condition."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException

from airhook.triggers import SETTLE_SECONDS
from airhook.triggers.event import WebhookEventTrigger

__all__ = ["WebhookEventSensor"]


def _as_datetime(value: datetime | str | None) -> datetime | None:
    if value is None or value == "":
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class WebhookEventSensor(BaseSensorOperator):
    """Wait for an event from a source, matching event patterns and payload conditions.

    Deferrable by default: the wait runs in the triggerer and reads the airhook store, never
    Airflow's metadata DB, and holds no worker slot. Returns the event (id, source, event, kind,
    received_at, payload), which goes to XCom.

    :param source: the source's name. (templated)
    :param events: event-name patterns, ``*`` allowed. (templated)
    :param match: payload conditions, dotted path to expected value, e.g.
        ``{"data.chat_id": "{{ dag_run.conf['chat_id'] }}"}``. (templated)
    :param received_after: only events received at or after this time count; default: any time.
        For "the next event" use ``"{{ dag_run.start_date }}"``. (templated)
    :param poll_interval: seconds between looks at the store.
    :param settle_seconds: when deferred, the trigger fires no sooner than this many seconds after
        the deferral. Airflow 3.3 marks a task failed when its trigger fires before the scheduler
        has processed the deferring worker's exit (apache/airflow#66374, #67287, #72716); that
        took about 6 s here even on an idle machine, hence 15 s. An event already recorded when
        the sensor starts is returned at once, without deferring. 0 turns the wait off.
    :param deferrable: wait in the triggerer (default) or poke from a worker.
    :param database_url: the store's URL; default ``[airhook] database_url``.

    ``timeout`` and ``soft_fail`` work as for every sensor: after ``timeout`` seconds the task
    fails (``AirflowSensorTimeout``) or, with ``soft_fail``, is skipped.
    """

    template_fields: Sequence[str] = ("source", "events", "match", "received_after")
    template_fields_renderers = {"match": "json"}  # noqa: RUF012
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        source: str,
        events: str | Sequence[str] = "*",
        match: Mapping[str, Any] | None = None,
        received_after: datetime | str | None = None,
        poll_interval: float = 2.0,
        settle_seconds: float = SETTLE_SECONDS,
        deferrable: bool = True,
        database_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", poll_interval)
        super().__init__(**kwargs)
        self.source = source
        self.events = events
        self.match = match
        self.received_after = received_after
        self.poll_interval = poll_interval
        self.settle_seconds = settle_seconds
        self.deferrable = deferrable
        self.database_url = database_url

    def _patterns(self) -> list[str]:
        return [self.events] if isinstance(self.events, str) else list(self.events)

    def poke(self, context: Any) -> PokeReturnValue:
        """Look once for a matching event."""
        from airhook.hooks.inbox import AirhookInboxHook

        found, _ = AirhookInboxHook(self.database_url).find_event(
            self.source,
            self._patterns(),
            self.match,
            received_after=_as_datetime(self.received_after),
        )
        return PokeReturnValue(
            is_done=found is not None, xcom_value=found.as_dict() if found else None
        )

    def execute(self, context: Any) -> Any:
        """Poke once; if nothing matches yet, defer to the triggerer (or keep poking)."""
        if not self.deferrable:
            return super().execute(context)
        first = self.poke(context)
        if first.is_done:
            return first.xcom_value
        deadline = datetime.now(timezone.utc) + timedelta(seconds=float(self.timeout))
        received_after = _as_datetime(self.received_after)
        self.defer(
            trigger=WebhookEventTrigger(
                source=self.source,
                events=self._patterns(),
                match=dict(self.match or {}),
                received_after=received_after.isoformat() if received_after else None,
                timeout_at=deadline.isoformat(),
                fire_not_before=(
                    datetime.now(timezone.utc) + timedelta(seconds=self.settle_seconds)
                ).isoformat(),
                poll_interval=self.poll_interval,
                database_url=self.database_url,
            ),
            method_name="execute_complete",
        )
        return None  # pragma: no cover - defer raises

    def execute_complete(self, context: Any, event: Mapping[str, Any]) -> Any:
        """Return the matched event, or fail (or skip, with ``soft_fail``) on timeout."""
        status = event.get("status")
        if status == "success":
            return event["event"]
        message = (
            f"no {self._patterns()} event from {self.source!r} matched within {self.timeout} s"
        )
        if status == "timeout":
            if self.soft_fail:
                raise AirflowSkipException(message)
            raise AirflowSensorTimeout(message)
        raise RuntimeError(f"unexpected trigger event {event!r}")
