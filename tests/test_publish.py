"""PublishEventOperator and publish_events: unit tests in-process, and one real dag.test() run."""

from __future__ import annotations

import copy
import json
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
import standardwebhooks
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred
from cryptography.fernet import Fernet

from airhook.core.catalog import load_catalog
from airhook.core.delivery_rules import message_id
from airhook.core.errors import PayloadError, PayloadValidationError
from airhook.core.secrets import Secret, SecretPair
from airhook.core.subscription import Subscription
from airhook.delivery import DeliveryEngine
from airhook.operators import publish as publish_module
from airhook.operators.publish import (
    PublishEventOperator,
    build_events,
    publication_id,
    publish_events,
)
from airhook.store import Store
from airhook.store.migrate import upgrade
from airhook.store.subscriptions import SubscriptionRepository
from airhook.store.tables import deliveries
from airhook.triggers.delay import WebhookDelayTrigger
from tests.airflow_run import run_in_fresh_airflow
from tests.test_fanout import PRIMARY, Receiver, always, fail_first, make_engine

REPO = Path(__file__).resolve().parent.parent


def _context(try_number: int = 1, map_index: int = -1, **extra: Any) -> dict[str, Any]:
    ti = SimpleNamespace(
        dag_id="export",
        run_id="manual__2026-03-01T12:00:00+00:00",
        task_id="publish",
        map_index=map_index,
        try_number=try_number,
    )
    return {"ti": ti, "run_id": ti.run_id, **extra}


def _sample(name: str = "insight.summary") -> dict[str, Any]:
    return copy.deepcopy(dict(load_catalog().event("caleida", name).sample))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def engine(
    store: Store, cipher: Fernet, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> DeliveryEngine:
    """The operator's engine, over the test store (Airflow's Fernet is cached per process)."""
    SubscriptionRepository(store, cipher).create(
        Subscription(
            name="insights",
            url=receiver.url(),
            events=("insight.*",),
            secrets=SecretPair(Secret(PRIMARY)),
            retry_schedule=(0, 0.05, 0.1),
        )
    )
    built = make_engine(store, cipher)
    monkeypatch.setattr(publish_module, "_engine", lambda url, concurrency: built)
    return built


def _operator(**changes: Any) -> PublishEventOperator:
    arguments: dict[str, Any] = {
        "task_id": "publish",
        "events": [{"event": "insight.summary", "payload": _sample()}],
        "platform": "caleida",
    }
    arguments.update(changes)
    return PublishEventOperator(**arguments)


# --- events and keys -------------------------------------------------------------------------


def test_template_fields() -> None:
    assert tuple(PublishEventOperator.template_fields) == (
        "events",
        "event",
        "platform",
        "subscriptions",
    )


def test_events_in_every_accepted_shape() -> None:
    sample = _sample()
    spec = build_events([{"event": "a.b", "payload": {"x": 1}, "key": "id-7"}], key_prefix="p")
    assert [(e.name, e.payload, e.key) for e in spec] == [("a.b", {"x": 1}, "p\x1fk:id-7")]
    named = build_events([{"x": 1}, {"x": 2}], key_prefix="p", event="a.b")
    assert [(e.name, e.key) for e in named] == [("a.b", "p\x1f0"), ("a.b", "p\x1f1")]
    platform = build_events([sample], key_prefix="p", platform="caleida")
    assert [(e.name, e.platform) for e in platform] == [("insight.summary", "caleida")]
    rendered = build_events(json.dumps([{"event": "a.b", "payload": {}}]), key_prefix="p")
    assert [e.name for e in rendered] == ["a.b"]
    single = build_events({"event": "a.b", "payload": {}}, key_prefix="p")
    assert len(single) == 1


@pytest.mark.parametrize(
    "events", [[{"x": 1}], [{"event": "", "payload": {}}], "not json", 42, [{"payload": {}}]]
)
def test_events_without_a_name_are_refused(events: Any) -> None:
    with pytest.raises(PayloadError):
        build_events(events, key_prefix="p")


def test_keys_and_publication_leave_out_the_try_number() -> None:
    first, retry = _context(try_number=1), _context(try_number=2)
    assert publication_id(first) == publication_id(retry)
    assert publication_id(first) != publication_id(_context(map_index=3))
    assert publication_id(first) == message_id(
        "export", "manual__2026-03-01T12:00:00+00:00", "publish", -1, prefix="pub_"
    )


# --- the operator ----------------------------------------------------------------------------


def test_execute_publishes_and_returns_the_summary(
    engine: DeliveryEngine, receiver: Receiver
) -> None:
    summary = _operator().execute(_context())
    assert summary == {
        "publication": publication_id(_context()),
        "deliveries": 1,
        "delivered": 1,
        "pending": 0,
        "failed": 0,
        "dead": 0,
        "paused": 0,
        "next_attempt_at": None,
    }
    [request] = receiver.requests
    assert request.json() == _sample()
    standardwebhooks.Webhook(PRIMARY).verify(request.body, request.headers)


def test_templated_events_are_rendered(engine: DeliveryEngine, receiver: Receiver) -> None:
    payload = _sample()
    payload["data"] = {**payload["data"], "summary": "run {{ run_id }}"}
    operator = _operator(events=[{"event": "insight.summary", "payload": payload}])
    context = _context()
    operator.render_template_fields(context)  # type: ignore[arg-type]
    operator.execute(context)
    [request] = receiver.requests
    assert request.json()["data"]["summary"] == f"run {context['run_id']}"


def test_execute_defers_while_a_delivery_waits_for_its_retry(
    engine: DeliveryEngine, receiver: Receiver
) -> None:
    receiver.on("/hook", fail_first(1))
    operator = _operator(settle_seconds=2, min_defer_seconds=0)
    before = datetime.now(timezone.utc)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(_context())
    assert deferred.value.method_name == "execute_complete"
    trigger = deferred.value.trigger
    assert isinstance(trigger, WebhookDelayTrigger)
    moment = datetime.fromisoformat(trigger.moment)
    # The retry is due within 0.05 s, but a deferral lasts at least settle_seconds.
    assert before + timedelta(seconds=2) <= moment
    assert moment <= datetime.now(timezone.utc) + timedelta(seconds=2)
    assert len(receiver.requests) == 1
    time.sleep(0.1)  # the retry falls due (the trigger would have fired by now)
    summary = operator.execute_complete(_context(), {"status": "success"})
    assert (summary["delivered"], summary["pending"]) == (1, 0)
    assert [r.webhook_id for r in receiver.requests] == [receiver.requests[0].webhook_id] * 2


def test_execute_defers_until_the_earliest_retry_when_later_than_settle(
    engine: DeliveryEngine, receiver: Receiver, store: Store, cipher: Fernet
) -> None:
    receiver.on("/slow", always(503, headers={"Retry-After": "60"}))
    SubscriptionRepository(store, cipher).create(
        Subscription(
            name="slow",
            url=receiver.url("/slow"),
            events=("insight.*",),
            secrets=SecretPair(Secret(PRIMARY)),
        )
    )
    receiver.on("/hook", fail_first(1, (503, {"Retry-After": "30"}, b"")))
    with pytest.raises(TaskDeferred) as deferred:
        _operator(settle_seconds=0, min_defer_seconds=5).execute(_context())
    moment = datetime.fromisoformat(deferred.value.trigger.moment)
    now = datetime.now(timezone.utc)
    assert now + timedelta(seconds=28) <= moment <= now + timedelta(seconds=31)


def test_a_retry_due_within_seconds_is_made_in_the_task_without_deferring(
    engine: DeliveryEngine, receiver: Receiver
) -> None:
    receiver.on("/hook", fail_first(2))
    summary = _operator().execute(_context())  # the defaults: retries due within 10 s inline
    assert (summary["delivered"], summary["pending"]) == (1, 0)
    assert len(receiver.requests) == 3


def test_default_deferral_lasts_at_least_fifteen_seconds(
    engine: DeliveryEngine, receiver: Receiver
) -> None:
    receiver.on("/hook", fail_first(1, (503, {"Retry-After": "11"}, b"")))
    before = datetime.now(timezone.utc)
    with pytest.raises(TaskDeferred) as deferred:
        _operator().execute(_context())
    assert datetime.fromisoformat(deferred.value.trigger.moment) >= before + timedelta(seconds=15)


def test_task_retry_sends_nothing_twice(engine: DeliveryEngine, receiver: Receiver) -> None:
    first = _operator().execute(_context(try_number=1))
    again = _operator().execute(_context(try_number=2))
    assert first == again
    assert len(receiver.requests) == 1


def test_mapped_instances_are_different_publications(
    engine: DeliveryEngine, receiver: Receiver
) -> None:
    _operator().execute(_context(map_index=0))
    _operator().execute(_context(map_index=1))
    assert len(receiver.ids()) == 2


def test_invalid_event_fails_the_task_and_sends_nothing(
    engine: DeliveryEngine, receiver: Receiver, store: Store
) -> None:
    bad = _sample()
    del bad["data"]["summary"]
    events = [
        {"event": "insight.summary", "payload": _sample()},
        {"event": "insight.summary", "payload": bad},
    ]
    with pytest.raises(PayloadValidationError) as raised:
        _operator(events=events).execute(_context())
    assert raised.value.json_path == "$.data"
    assert receiver.requests == []
    with store.read() as connection:
        assert connection.scalar(sa.select(sa.func.count()).select_from(deliveries)) == 0


def test_fail_on_dead_letter(engine: DeliveryEngine, receiver: Receiver) -> None:
    receiver.on("/hook", always(400))
    with pytest.raises(AirflowFailException, match="1 deliveries finally failed"):
        _operator(fail_on_dead_letter=True).execute(_context())
    summary = _operator(fail_on_dead_letter=False).execute(_context(map_index=2))
    assert summary["failed"] == 1


def test_subscriptions_filter(
    engine: DeliveryEngine, receiver: Receiver, store: Store, cipher: Fernet
) -> None:
    SubscriptionRepository(store, cipher).create(
        Subscription(name="other", url=receiver.url("/other"), secrets=SecretPair(Secret(PRIMARY)))
    )
    summary = _operator(subscriptions="other").execute(_context())
    assert summary["delivered"] == 1
    assert [r.path for r in receiver.requests] == ["/other"]


def test_summary_names_no_secret_and_no_url(engine: DeliveryEngine, receiver: Receiver) -> None:
    text = json.dumps(_operator().execute(_context()))
    assert PRIMARY not in text
    assert str(receiver.server.server_address[1]) not in text


# --- the TaskFlow form -----------------------------------------------------------------------


def test_publish_events_with_a_key_retries_within_wait(
    engine: DeliveryEngine, receiver: Receiver
) -> None:
    receiver.on("/hook", fail_first(1))
    summary = publish_events([_sample()], platform="caleida", key="nightly-2026-03-01", wait=5)
    assert (summary["delivered"], summary["pending"]) == (1, 0)
    again = publish_events([_sample()], platform="caleida", key="nightly-2026-03-01", wait=5)
    assert again["delivered"] == 1
    assert len(receiver.requests) == 2  # one failure, one success; the repeat sent nothing


def test_publish_events_leaves_later_retries_pending(
    engine: DeliveryEngine, receiver: Receiver
) -> None:
    receiver.on("/hook", always(503, headers={"Retry-After": "60"}))
    summary = publish_events([_sample()], platform="caleida", key="k", wait=0.5)
    assert summary["pending"] == 1
    assert summary["next_attempt_at"] is not None


def test_publish_events_outside_a_task_needs_a_key(engine: DeliveryEngine) -> None:
    with pytest.raises(ValueError, match="needs a key"):
        publish_events([_sample()], platform="caleida")


# --- one real run ----------------------------------------------------------------------------

_DAG_FILE = """
import json
from datetime import datetime, timezone

from airflow.sdk import DAG, task

from airhook.operators.publish import PublishEventOperator, publish_events

SAMPLE = {sample}

with DAG(
    "airhook_publish_test",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
) as dag:
    payload = dict(SAMPLE, data=dict(SAMPLE["data"], summary="run {{{{ run_id }}}}"))
    publish = PublishEventOperator(
        task_id="publish",
        events=[{{"event": "insight.summary", "payload": payload}}],
        platform="caleida",
        settle_seconds=0,
        min_defer_seconds=0,  # defer even for the 50 ms retry, to run through the triggerer
        fail_on_dead_letter=True,
    )

    @task
    def taskflow():
        topic = dict(SAMPLE, event="insight.topic")
        return publish_events(
            [{{"event": "insight.summary", "payload": SAMPLE, "key": "second"}}],
            platform="caleida",
            wait=10,
            fail_on_dead_letter=True,
        )

    @task
    def report(operator_summary, taskflow_summary):
        with open("{out}", "w") as out:
            json.dump({{"operator": operator_summary, "taskflow": taskflow_summary}}, out)

    report(publish.output, taskflow())

if __name__ == "__main__":
    from airflow.dag_processing.dagbag import DagBag

    # The example DAG parses with no subscription in the store to look at.
    bag = DagBag(dag_folder="{example}")
    example = {{"dags": sorted(bag.dags), "errors": dict(bag.import_errors)}}
    example["tasks"] = sorted(bag.dags["airhook_insight_digest"].task_dict)
    run = dag.test()
    print(json.dumps({{"state": str(run.state), "example": example}}))
"""


def test_dag_run_publishes_retries_in_the_triggerer_and_reports(tmp_path: Path) -> None:
    key = Fernet.generate_key().decode()
    url = f"sqlite:///{tmp_path / 'airhook.db'}"
    receiver = Receiver()
    receiver.on("/insights", fail_first(1))
    try:
        store = Store(url)
        upgrade(store)
        SubscriptionRepository(store, Fernet(key.encode())).create(
            Subscription(
                name="insights",
                url=receiver.url("/insights"),
                events=("insight.*",),
                secrets=SecretPair(Secret(PRIMARY)),
                retry_schedule=(0, 0.05, 0.1),
            )
        )
        store.dispose()
        home, dags, out = tmp_path / "airflow", tmp_path / "dags", tmp_path / "summary.json"
        dags.mkdir()
        dag_file = dags / "publish_dag.py"
        dag_file.write_text(
            textwrap.dedent(_DAG_FILE).format(
                sample=repr(_sample()),
                out=out,
                example=REPO / "dags" / "airhook_insight_digest.py",
            )
        )
        extra_env = {
            "AIRFLOW__CORE__FERNET_KEY": key,
            "AIRFLOW__AIRHOOK__DATABASE_URL": url,
            "AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS": "127.0.0.1/32",
        }
        result = run_in_fresh_airflow(home, dags, [str(dag_file)], extra_env)
        assert json.loads(result.stdout.strip().splitlines()[-1]) == {
            "state": "success",
            "example": {
                "dags": ["airhook_insight_digest"],
                "errors": {},
                "tasks": ["digest", "publish"],
            },
        }
        reported = json.loads(out.read_text())
        for summary in reported.values():
            assert (summary["deliveries"], summary["delivered"], summary["pending"]) == (1, 1, 0)
        counted = receiver.ids("/insights")
        # Two events (one per task), each failed once and then delivered once.
        assert sorted(counted.values()) == [2, 2]
        bodies = {r.webhook_id: r for r in receiver.at("/insights")}
        summaries = sorted(r.json()["data"]["summary"] for r in bodies.values())
        assert summaries[0] == _sample()["data"]["summary"]
        assert summaries[1].startswith("run manual__")
        for request in receiver.at("/insights"):
            standardwebhooks.Webhook(PRIMARY).verify(request.body, request.headers)
    finally:
        receiver.close()
