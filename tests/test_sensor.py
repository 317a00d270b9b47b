"""WebhookEventTrigger and WebhookEventSensor against a real airhook store, and one dag.test()."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException, TaskDeferred
from airflow.triggers.base import TriggerEvent

from airhook.core.ids import new_event_id
from airhook.sensors.event import WebhookEventSensor
from airhook.store import Store, get_store
from airhook.store.inbox import InboxRepository, NewEvent
from airhook.store.migrate import upgrade
from airhook.triggers.event import WebhookEventTrigger
from tests.airflow_run import run_in_fresh_airflow

SOURCE = "caleida-main"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def url(store: Store) -> Iterator[str]:
    """The store's URL, as sensors and triggers get it; their cached engine is closed after."""
    yield store.url
    get_store(store.url).dispose()


def _record(
    store: Store,
    *,
    source: str = SOURCE,
    event: str = "insight.summary",
    chat_id: str = "cht_1",
    received_at: datetime | None = None,
) -> str:
    payload = {"event": event, "data": {"chat_id": chat_id, "summary": "asked for a refund"}}
    new = NewEvent(
        id=new_event_id(),
        source=source,
        profile="caleida",
        event=event,
        kind=event if event.startswith("insight.") else None,
        dedupe_key=new_event_id(),
        body=json.dumps(payload),
        received_at=received_at or datetime.now(timezone.utc),
    )
    [outcome] = InboxRepository(store).record([new])
    assert outcome.status == "created"
    return new.id


def _trigger(url: str, **changes: Any) -> WebhookEventTrigger:
    arguments: dict[str, Any] = {
        "source": SOURCE,
        "events": ["insight.*"],
        "match": {"data.chat_id": "cht_1"},
        "received_after": None,
        "timeout_at": (datetime.now(timezone.utc) + timedelta(seconds=10)).isoformat(),
        "poll_interval": 0.05,
        "database_url": url,
    }
    arguments.update(changes)
    return WebhookEventTrigger(**arguments)


async def _first(events: AsyncIterator[TriggerEvent], timeout: float = 15) -> TriggerEvent:
    try:
        return await asyncio.wait_for(events.__anext__(), timeout)
    finally:
        await events.aclose()  # type: ignore[attr-defined]


def _first_event(trigger: WebhookEventTrigger) -> dict[str, Any]:
    return dict(asyncio.run(_first(trigger.run())).payload)


def _sensor(url: str, **changes: Any) -> WebhookEventSensor:
    arguments: dict[str, Any] = {
        "task_id": "wait",
        "source": SOURCE,
        "events": "insight.*",
        "match": {"data.chat_id": "cht_1"},
        "database_url": url,
        "timeout": 60,
    }
    arguments.update(changes)
    return WebhookEventSensor(**arguments)


# --- the trigger -----------------------------------------------------------------------------


def test_trigger_serializes_its_class_path_and_every_argument() -> None:
    trigger = WebhookEventTrigger(
        source="rkt",
        events=["lead.*", "message.received"],
        match={"data.chat_id": "cht_1"},
        received_after="2026-03-01T12:00:00+00:00",
        timeout_at="2026-03-01T13:00:00+00:00",
        fire_not_before="2026-03-01T12:00:05+00:00",
        poll_interval=0.5,
        database_url="sqlite:////tmp/airhook.db",
    )
    assert trigger.serialize() == (
        "airhook.triggers.event.WebhookEventTrigger",
        {
            "source": "rkt",
            "events": ["lead.*", "message.received"],
            "match": {"data.chat_id": "cht_1"},
            "received_after": "2026-03-01T12:00:00+00:00",
            "timeout_at": "2026-03-01T13:00:00+00:00",
            "fire_not_before": "2026-03-01T12:00:05+00:00",
            "poll_interval": 0.5,
            "database_url": "sqlite:////tmp/airhook.db",
        },
    )


def test_trigger_rebuilt_from_serialize_is_equal() -> None:
    trigger = _trigger("sqlite:////tmp/airhook.db")
    class_path, kwargs = trigger.serialize()
    assert WebhookEventTrigger(**kwargs).serialize() == (class_path, kwargs)


def test_trigger_yields_an_event_already_recorded(store: Store, url: str) -> None:
    event_id = _record(store)
    fired = _first_event(_trigger(url))
    assert fired["status"] == "success"
    assert fired["event"]["id"] == event_id
    assert fired["event"]["source"] == SOURCE
    assert fired["event"]["event"] == "insight.summary"
    assert fired["event"]["payload"]["data"]["chat_id"] == "cht_1"


def test_trigger_yields_an_event_recorded_while_it_polls(store: Store, url: str) -> None:
    async def scenario() -> tuple[TriggerEvent, str]:
        waiting = asyncio.ensure_future(_first(_trigger(url).run()))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        event_id = await asyncio.to_thread(_record, store)
        return await waiting, event_id

    fired, event_id = asyncio.run(scenario())
    assert fired.payload["status"] == "success"
    assert fired.payload["event"]["id"] == event_id


def test_trigger_skips_other_event_names(store: Store, url: str) -> None:
    _record(store, event="chat")
    wanted = _record(store, event="insight.topic")
    assert _first_event(_trigger(url))["event"]["id"] == wanted


def test_trigger_skips_payloads_that_do_not_match(store: Store, url: str) -> None:
    _record(store, chat_id="cht_other")
    wanted = _record(store)
    assert _first_event(_trigger(url))["event"]["id"] == wanted


def test_trigger_skips_other_sources(store: Store, url: str) -> None:
    _record(store, source="other")
    wanted = _record(store)
    assert _first_event(_trigger(url))["event"]["id"] == wanted


def test_trigger_skips_events_received_before_received_after(store: Store, url: str) -> None:
    _record(store, received_at=T0 - timedelta(seconds=1))
    wanted = _record(store, received_at=T0)
    fired = _first_event(_trigger(url, received_after=T0.isoformat()))
    assert fired["event"]["id"] == wanted


def test_trigger_times_out_at_timeout_at(store: Store, url: str) -> None:
    _record(store, chat_id="cht_other")
    timeout_at = datetime.now(timezone.utc) + timedelta(seconds=0.5)
    fired = _first_event(_trigger(url, timeout_at=timeout_at.isoformat()))
    assert fired == {"status": "timeout"}
    assert datetime.now(timezone.utc) >= timeout_at


def test_trigger_prefers_a_match_to_a_passed_timeout(store: Store, url: str) -> None:
    event_id = _record(store)
    fired = _first_event(_trigger(url, timeout_at=T0.isoformat()))
    assert fired["status"] == "success"
    assert fired["event"]["id"] == event_id


# --- the sensor ------------------------------------------------------------------------------


def test_sensor_template_fields() -> None:
    assert tuple(WebhookEventSensor.template_fields) == (
        "source",
        "events",
        "match",
        "received_after",
    )


def test_sensor_is_deferrable_by_default() -> None:
    assert _sensor("sqlite://").deferrable is True


def test_poke_finds_a_matching_event(store: Store, url: str) -> None:
    _record(store, chat_id="cht_other")
    event_id = _record(store)
    result = _sensor(url).poke({})
    assert result.is_done
    assert result.xcom_value is not None
    assert result.xcom_value["id"] == event_id
    assert result.xcom_value["payload"]["data"]["chat_id"] == "cht_1"


def test_poke_finds_nothing_without_a_match(store: Store, url: str) -> None:
    _record(store, chat_id="cht_other")
    _record(store, event="chat")
    result = _sensor(url).poke({})
    assert not result.is_done
    assert result.xcom_value is None


def test_poke_honours_received_after(store: Store, url: str) -> None:
    _record(store, received_at=T0 - timedelta(minutes=1))
    assert not _sensor(url, received_after=T0.isoformat()).poke({}).is_done
    assert _sensor(url, received_after=T0 - timedelta(hours=1)).poke({}).is_done


def test_execute_complete_returns_the_event_on_success() -> None:
    event = {"id": "evt_1", "payload": {"a": 1}}
    assert _sensor("sqlite://").execute_complete({}, {"status": "success", "event": event}) == (
        event
    )


def test_execute_complete_raises_sensor_timeout_on_timeout() -> None:
    with pytest.raises(AirflowSensorTimeout, match="caleida-main"):
        _sensor("sqlite://").execute_complete({}, {"status": "timeout"})


def test_execute_complete_skips_on_timeout_with_soft_fail() -> None:
    with pytest.raises(AirflowSkipException):
        _sensor("sqlite://", soft_fail=True).execute_complete({}, {"status": "timeout"})


def test_execute_complete_refuses_an_unknown_status() -> None:
    with pytest.raises(RuntimeError, match="unexpected trigger event"):
        _sensor("sqlite://").execute_complete({}, {"status": "error"})


def test_execute_returns_an_event_already_there_without_deferring(store: Store, url: str) -> None:
    event_id = _record(store)
    assert _sensor(url).execute({})["id"] == event_id


def test_execute_defers_with_the_rendered_arguments(store: Store, url: str) -> None:
    _record(store, chat_id="cht_other")
    sensor = _sensor(
        url,
        source="{{ params_source }}",
        events=["insight.summary", "{{ dag_run.conf['extra_event'] }}"],
        match={"data.chat_id": "{{ dag_run.conf['chat_id'] }}"},
        received_after="{{ since }}",
        poll_interval=1.5,
        timeout=timedelta(minutes=5),
    )
    context: Any = {
        "params_source": SOURCE,
        "dag_run": SimpleNamespace(conf={"chat_id": "cht_42", "extra_event": "insight.topic"}),
        "since": "2026-03-01T12:00:00+00:00",
    }
    sensor.render_template_fields(context)
    before = datetime.now(timezone.utc)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    after = datetime.now(timezone.utc)
    assert deferred.value.method_name == "execute_complete"
    trigger = deferred.value.trigger
    assert isinstance(trigger, WebhookEventTrigger)
    _, kwargs = trigger.serialize()
    timeout_at = datetime.fromisoformat(kwargs.pop("timeout_at"))
    fire_not_before = datetime.fromisoformat(kwargs.pop("fire_not_before"))
    assert before + timedelta(seconds=15) <= fire_not_before <= after + timedelta(seconds=15)
    assert kwargs == {
        "source": SOURCE,
        "events": ["insight.summary", "insight.topic"],
        "match": {"data.chat_id": "cht_42"},
        "received_after": "2026-03-01T12:00:00+00:00",
        "poll_interval": 1.5,
        "database_url": url,
    }
    assert before + timedelta(minutes=5) <= timeout_at <= after + timedelta(minutes=5)


def test_execute_with_a_single_pattern_defers_with_a_list(store: Store, url: str) -> None:
    with pytest.raises(TaskDeferred) as deferred:
        _sensor(url, events="lead.*").execute({})
    assert deferred.value.trigger.serialize()[1]["events"] == ["lead.*"]


# --- one real run ----------------------------------------------------------------------------

_DAG_FILE = """
import json
from datetime import datetime, timezone

from airflow.sdk import DAG, task

from airhook.sensors.event import WebhookEventSensor

with DAG(
    "airhook_sensor_test",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
) as dag:
    wait = WebhookEventSensor(
        task_id="wait",
        source="{source}",
        events="insight.*",
        match={{"data.chat_id": "{{{{ dag_run.conf['chat_id'] }}}}"}},
        deferrable=False,
        poke_interval=0.5,
        timeout=60,
        database_url="{url}",
    )

    @task
    def use(event):
        with open("{out}", "w") as out:
            json.dump(event, out)

    use(wait.output)

if __name__ == "__main__":
    run = dag.test(run_conf={{"chat_id": "cht_1"}})
    print(json.dumps({{"state": str(run.state)}}))
"""


def test_dag_run_with_the_sensor_hands_the_event_downstream(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'airhook.db'}")
    try:
        upgrade(store)
        _record(store, chat_id="cht_other")
        event_id = _record(store)
    finally:
        store.dispose()
    home, dags, out = tmp_path / "airflow", tmp_path / "dags", tmp_path / "event.json"
    dags.mkdir()
    dag_file = dags / "sensor_dag.py"
    dag_file.write_text(textwrap.dedent(_DAG_FILE).format(source=SOURCE, url=store.url, out=out))
    result = run_in_fresh_airflow(home, dags, [str(dag_file)])
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"state": "success"}
    handed = json.loads(out.read_text())
    assert handed["id"] == event_id
    assert handed["payload"] == {
        "event": "insight.summary",
        "data": {"chat_id": "cht_1", "summary": "asked for a refund"},
    }


def test_trigger_does_not_fire_before_fire_not_before(store: Store, url: str) -> None:
    _record(store)
    not_before = datetime.now(timezone.utc) + timedelta(seconds=1.5)
    trigger = WebhookEventTrigger(
        source=SOURCE,
        events=["insight.summary"],
        fire_not_before=not_before.isoformat(),
        poll_interval=0.1,
        database_url=url,
    )
    fired = _first_event(trigger)
    assert fired["status"] == "success"
    assert datetime.now(timezone.utc) >= not_before
