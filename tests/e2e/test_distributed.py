"""Distributed Airflow: PostgreSQL for Airflow and the airhook store, two API servers.

Every delivery is recorded and dispatched exactly once whichever API server takes it, also when
the same delivery reaches both at once; one dispatcher holds the lease and another takes over
when its API server dies.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from airhook.core.catalog import load_catalog
from devstack import AirflowStack, free_port
from tests.conftest import create_postgres_database
from tests.e2e import senders
from tests.e2e.conftest import asset_events, create_sources, make_dags_folder, unique, wait_for

LEAD = load_catalog().event("rkt", "lead.captured").sample


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str
) -> Iterator[tuple[AirflowStack, int, str]]:
    """Airflow on PostgreSQL with two API servers; yields (stack, second port, store URL)."""
    root = tmp_path_factory.mktemp("distributed")
    store_url = create_postgres_database(postgres_url)
    stack = AirflowStack(
        home=root / "home",
        dags_folder=make_dags_folder(root),
        metadata_url=create_postgres_database(postgres_url),
        airhook_url=store_url,
    )
    stack.migrate()
    create_sources(stack)
    second = free_port()
    try:
        stack.start(["api-server", "scheduler", "dag-processor"])
        stack.start_component("api-server", name="api-server-2", port=second)
        stack.wait_healthy(name="api-server-2", port=second)
        stack.wait_for_dags(["e2e_rkt_leads"])
        yield stack, second, store_url
    except BaseException:
        for name in ("api-server", "api-server-2", "scheduler", "dag-processor"):
            print(f"--- {name} ---\n{stack.tail(name)}")
        raise
    finally:
        stack.stop()


def _post(port: int, headers: dict[str, str], body: bytes) -> requests.Response:
    return requests.post(
        f"http://127.0.0.1:{port}/airhook/webhooks/rkt", data=body, headers=headers, timeout=30
    )


def _lease_holder(store_url: str) -> str | None:
    engine = sa.create_engine(store_url)
    try:
        with engine.connect() as connection:
            return connection.execute(
                sa.text("SELECT holder FROM airhook_lease WHERE name = 'dispatcher'")
            ).scalar()
    finally:
        engine.dispose()


def _asset_event_counts(stack: AirflowStack, ids: set[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for event in asset_events(stack):
        event_id = event["extra"].get("airhook_event_id")
        if event_id in ids:
            counts[event_id] = counts.get(event_id, 0) + 1
    return counts


def test_every_delivery_is_dispatched_once_across_two_api_servers(
    cluster: tuple[AirflowStack, int, str],
) -> None:
    stack, second, _ = cluster
    ports = [stack.port, second]
    unique_leads = [senders.rkt(unique(dict(LEAD), "data", "leadId")) for _ in range(60)]
    twice = [senders.rkt(unique(dict(LEAD), "data", "leadId")) for _ in range(20)]

    jobs: list[tuple[int, dict[str, str], bytes, str]] = []
    for index, (headers, body) in enumerate(unique_leads):
        jobs.append((ports[index % 2], headers, body, f"u{index}"))
    for index, (headers, body) in enumerate(twice):
        jobs.extend((port, headers, body, f"d{index}") for port in ports)  # same delivery to both

    def send(job: tuple[int, dict[str, str], bytes, str]) -> tuple[str, int, Any]:
        port, headers, body, key = job
        answer = _post(port, headers, body)
        return key, answer.status_code, answer.json()

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(send, jobs))

    ids_by_key: dict[str, set[str]] = {}
    for key, status, answer in results:
        assert status in (200, 202), answer
        ids_by_key.setdefault(key, set()).add(answer["id"])
    assert all(len(ids) == 1 for ids in ids_by_key.values()), "a delivery got two ids"
    statuses = sorted(status for key, status, _ in results if key.startswith("d"))
    assert statuses == [200] * 20 + [202] * 20  # each duplicate pair: one recorded, one duplicate

    expected = {next(iter(ids)) for ids in ids_by_key.values()}
    assert len(expected) == 80
    wait_for(lambda: set(_asset_event_counts(stack, expected)) == expected, timeout=120, interval=2)
    time.sleep(2)
    assert set(_asset_event_counts(stack, expected).values()) == {1}


def test_dispatcher_lease_moves_to_the_surviving_api_server(
    cluster: tuple[AirflowStack, int, str],
) -> None:
    stack, second, store_url = cluster
    holder = wait_for(lambda: _lease_holder(store_url), timeout=30)
    pids = {name: process.pid for name, process in stack.processes.items()}
    owner = next(name for name, pid in pids.items() if f":{pid}:" in holder)
    assert owner in ("api-server", "api-server-2")
    survivor_port = second if owner == "api-server" else stack.port
    stack.kill_component(owner)

    headers, body = senders.rkt(unique(dict(LEAD), "data", "leadId"))
    answer = _post(survivor_port, headers, body)
    assert answer.status_code == 202
    event_id = answer.json()["id"]
    # The dead holder's lease expires (15 s) and the survivor's dispatcher takes over.
    wait_for(
        lambda: _asset_event_counts(stack, {event_id}) == {event_id: 1}, timeout=90, interval=2
    )
    new_holder = _lease_holder(store_url)
    assert new_holder is not None
    assert new_holder != holder
