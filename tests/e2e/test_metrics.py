"""Every metric airhook declares reaches StatsD from a real API server, as Airflow is configured.

One API server (receiver, dispatcher, background sender and pruner in its process) with
Airflow's ``[metrics] statsd_on`` pointed at a UDP socket of this test. The test makes each
stage happen once, with no task running: deliveries accepted and refused, events dispatched,
outbound deliveries added to the outbox that the background sender delivers, retries, refuses
for good (auto-disabling their subscription), and an event past its retention. Then every name
of ``airhook.metrics.METRICS`` (templates filled in with an outcome this test caused) must have
arrived with its StatsD type.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from airhook.core.catalog import load_catalog
from airhook.core.ids import new_event_id
from airhook.metrics import METRICS
from airhook.store import Store
from airhook.store.inbox import InboxRepository, NewEvent
from airhook.store.migrate import upgrade
from airhook.store.outbox import NewDelivery, OutboxRepository
from devstack import AirflowStack
from tests.e2e import senders
from tests.e2e.conftest import create_sources, post, wait_for
from tests.statsd import StatsdListener
from tests.test_fanout import Receiver, always, fail_first

LEAD = load_catalog().event("rkt", "lead.captured").sample
#: The StatsD type of each kind of metric.
TYPES = {"counter": "c", "gauge": "g", "timer": "ms"}
#: Sent from tasks (WebhookOperator), which this test runs none of: tests/test_metrics.py
#: checks them from a real hook call.
FROM_TASKS = ("airhook.webhook.{outcome}", "airhook.webhook.attempt_seconds")
#: What fills each template's ``{…}`` in this test: outcomes it causes.
FILLED = {
    "airhook.receiver.{outcome}": ("accepted", "no_matching_signature"),
    "airhook.delivery.{outcome}": ("delivered", "retry", "failed"),
    "airhook.prune.{kind}": ("events",),
}


@pytest.fixture(scope="module")
def statsd() -> Iterator[StatsdListener]:
    listener = StatsdListener()
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, statsd: StatsdListener
) -> Iterator[AirflowStack]:
    root = tmp_path_factory.mktemp("metrics")
    dags = root / "dags"
    dags.mkdir()
    stack = AirflowStack(
        home=root / "home",
        dags_folder=dags,
        extra_env={
            **statsd.env,
            "AIRFLOW__AIRHOOK__SENDER_POLL_SECONDS": "0.5",
            "AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS": "127.0.0.1/32",
            "AIRFLOW__AIRHOOK__DISABLE_AFTER_FAILURES": "1",
            "AIRFLOW__AIRHOOK__PRUNE_INTERVAL_SECONDS": "1",
            "AIRFLOW__AIRHOOK__RETENTION_EVENTS_DAYS": "30",
        },
    )
    stack.migrate()
    create_sources(stack)
    try:
        yield stack
    finally:
        stack.stop()


def _store(stack: AirflowStack) -> Store:
    store = Store(f"sqlite:///{stack.home / 'airhook.db'}")
    upgrade(store)
    return store


def _old_dispatched_event(store: Store) -> str:
    """An event received and dispatched 40 days ago: past the 30 days of retention."""
    long_ago = datetime.now(timezone.utc) - timedelta(days=40)
    inbox = InboxRepository(store)
    [recorded] = inbox.record(
        [
            NewEvent(
                id=new_event_id(),
                source="rkt",
                profile="rkt",
                event="lead.captured",
                kind="lead.captured",
                dedupe_key="old-event-for-retention",
                body="{}",
                received_at=long_ago,
                headers="{}",
            )
        ]
    )
    inbox.mark_dispatched([recorded.id], long_ago)
    return recorded.id


def _subscribe(stack: AirflowStack, name: str, url: str) -> None:
    stack.airhook(
        "subscriptions",
        "create",
        name,
        "--url",
        url,
        "--scheme",
        "none",
        "--events",
        "*",
        "--retry-schedule",
        "0,1,1",
    )


def test_every_declared_metric_reaches_statsd_with_no_task_running(
    stack: AirflowStack, statsd: StatsdListener, endpoint: Receiver
) -> None:
    store = _store(stack)
    old = _old_dispatched_event(store)
    endpoint.on("/ok", always(200, b"ok"))
    endpoint.on("/flaky", fail_first(1))
    endpoint.on("/refuses", always(400, b"no"))
    for name, path in (("ok", "/ok"), ("flaky", "/flaky"), ("refuses", "/refuses")):
        _subscribe(stack, name, endpoint.url(path))
    stack.start(["api-server"])

    headers, body = senders.rkt(LEAD)
    accepted = post(stack, "rkt", headers, body)
    refused = post(stack, "rkt", {**headers, "X-RKT-Signature": "0" * 64}, body)
    assert (accepted.status_code, refused.status_code) == (202, 401), refused.text
    OutboxRepository(store).add(
        [
            NewDelivery(f"msg_metrics_{name}", name, "insight.summary", '{"n": 1}')
            for name in ("ok", "flaky", "refuses")
        ]
    )

    inbox = InboxRepository(store)
    wait_for(lambda: inbox.get(accepted.json()["id"]).dispatched_at is not None, timeout=120)
    wait_for(lambda: inbox.get(old) is None, timeout=120)
    wait_for(lambda: len(endpoint.at("/flaky")) == 2 and len(endpoint.at("/ok")) == 1, 120)
    wanted = _expected()

    def missing() -> set[str]:
        return wanted - _seen(statsd.lines())

    deadline = time.monotonic() + 60
    while missing() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not missing(), sorted(missing())
    # The values, where the test knows them: one event recorded, one refused signature.
    lines = statsd.lines()
    assert "airflow.airhook.receiver.no_matching_signature:1|c" in lines
    assert "airflow.airhook.inbox.recorded:1|c" in lines
    assert "airflow.airhook.subscription.auto_disabled:1|c" in lines


def test_metric_templates_filled_here_cover_every_template() -> None:
    templates = {metric.name for metric in METRICS if "{" in metric.name}
    assert templates - set(FROM_TASKS) == set(FILLED)


def _expected() -> set[str]:
    """``airflow.<name>|<type>`` of every declared metric, templates filled from FILLED."""
    expected = set()
    for metric in METRICS:
        if metric.name in FROM_TASKS:
            continue
        kind = TYPES[metric.kind]
        if "{" in metric.name:
            prefix = metric.name.split("{", 1)[0]
            expected |= {f"airflow.{prefix}{value}|{kind}" for value in FILLED[metric.name]}
        else:
            expected.add(f"airflow.{metric.name}|{kind}")
    return expected


def _seen(lines: list[str]) -> set[str]:
    """``name|type`` of each StatsD line (``name:value|type[|@rate][|#tags]``)."""
    seen = set()
    for line in lines:
        name, _, rest = line.partition(":")
        parts = rest.split("|")
        if len(parts) >= 2:
            seen.add(f"{name}|{parts[1]}")
    return seen
