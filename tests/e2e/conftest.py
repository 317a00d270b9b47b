"""A real Airflow (api-server, scheduler, dag-processor, triggerer on 127.0.0.1) for e2e tests."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from devstack import AirflowStack
from tests.e2e import senders

REPO = Path(__file__).resolve().parents[2]
E2E_DAGS = Path(__file__).parent / "dags"


def make_dags_folder(root: Path) -> Path:
    """The e2e DAGs (tests/e2e/dags), in one folder.

    Not the examples of ``dags/``: those call out (a CRM, a chat channel) and schedule on
    canonical kinds too, which would change what these tests count; ``test_pipelines.py`` runs
    them against stand-in endpoints, and ``test_demo.py`` as ``make demo`` does.
    """
    folder = root / "dags"
    folder.mkdir(parents=True)
    for source in sorted(E2E_DAGS.glob("*.py")):
        shutil.copy(source, folder / source.name)
    return folder


def create_sources(stack: AirflowStack) -> None:
    """One source per platform, secrets as the platform would show them."""
    stack.airhook(
        "sources",
        "create",
        "rkt",
        "--profile",
        "rkt",
        "--secret-file",
        "-",
        stdin=senders.RKT_SECRET + "\n",
    )
    secondary = stack.home / "ccai-secondary"
    secondary.write_text(senders.CCAI_SECONDARY)
    stack.airhook(
        "sources",
        "create",
        "ccai",
        "--profile",
        "ccai",
        "--secret-file",
        "-",
        "--secondary-secret-file",
        str(secondary),
        stdin=senders.CCAI_PRIMARY + "\n",
    )
    stack.airhook(
        "sources",
        "create",
        "caleida",
        "--profile",
        "caleida",
        "--secret-file",
        "-",
        stdin=senders.CALEIDA_TOKEN + "\n",
    )
    options = [arg for option in senders.EEV_OPTIONS for arg in ("--option", option)]
    stack.airhook(
        "sources",
        "create",
        "eev",
        "--profile",
        "eev",
        "--secret-file",
        "-",
        *options,
        stdin=senders.EEV_SECRET + "\n",
    )


RECEIVING_DAGS = [
    "e2e_caleida_insights",
    "e2e_conversation_started",
    "e2e_rkt_leads",
    "e2e_eev_tickets",
    "e2e_ccai_handoffs",
    "e2e_wait_for_summary",
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    """Airflow with the e2e DAGs and one source per platform, on SQLite."""
    root = tmp_path_factory.mktemp("airflow")
    airflow = AirflowStack(home=root / "home", dags_folder=make_dags_folder(root))
    airflow.migrate()
    create_sources(airflow)
    try:
        airflow.start()
        airflow.wait_for_dags([*RECEIVING_DAGS, "e2e_sensor_timeout", "e2e_sensor_soft_fail"])
        yield airflow
    except BaseException:
        for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
            print(f"--- {component} ---\n{airflow.tail(component)}")
        raise
    finally:
        airflow.stop()


def post(
    stack: AirflowStack, source: str, headers: dict[str, str], body: bytes
) -> requests.Response:
    return requests.post(
        f"{stack.base_url}/airhook/webhooks/{source}", data=body, headers=headers, timeout=30
    )


def inbox_count(stack: AirflowStack) -> int:
    engine = sa.create_engine(f"sqlite:///{stack.home / 'airhook.db'}")
    try:
        with engine.connect() as connection:
            return int(
                connection.exec_driver_sql("SELECT count(*) FROM airhook_inbox").scalar_one()
            )
    finally:
        engine.dispose()


def wait_for(condition: Callable[[], Any], timeout: float = 240, interval: float = 1.0) -> Any:
    """Return the first truthy value of ``condition()``, or fail after ``timeout`` seconds.

    The default is generous: a wait ends as soon as its condition holds, and on a loaded
    two-core machine a task can take minutes to be scheduled, run and reported (a run of the
    pipeline suite beside other suites once took over 120 s for one task).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def unique(payload: dict[str, Any], *path: str) -> dict[str, Any]:
    """Return a copy of ``payload`` with a fresh value at ``path`` (so it is a new event)."""
    import copy

    fresh = copy.deepcopy(payload)
    node = fresh
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = f"{node[path[-1]]}-{uuid.uuid4().hex[:10]}"
    return fresh


def xcom(stack: AirflowStack, dag_id: str, run_id: str, task_id: str, token: str) -> Any:
    from urllib.parse import quote

    path = (
        f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
        "/xcomEntries/return_value?deserialize=true&stringify=false"
    )
    return stack.api("GET", path, token=token)["value"]


def successful_runs(stack: AirflowStack, dag_id: str, token: str) -> list[dict[str, Any]]:
    return [run for run in stack.dag_runs(dag_id, token=token) if run["state"] == "success"]


def asset_events(stack: AirflowStack, token: str | None = None) -> list[dict[str, Any]]:
    """Every asset event in Airflow's metadata DB, with its asset's name and its extra.

    Read from the database rather than GET /api/v2/assets/events: in Airflow 3.3.2 that endpoint
    answers 500 while an event's DAG run is queued but not started (created_dagruns.start_date is
    None in its response model).
    """
    import json

    url = stack.metadata_url or f"sqlite:///{stack.home / 'airflow.db'}"
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text(
                    "SELECT asset.name, asset_event.extra FROM asset_event "
                    "JOIN asset ON asset.id = asset_event.asset_id ORDER BY asset_event.id"
                )
            ).all()
    finally:
        engine.dispose()
    return [
        {"asset": name, "extra": json.loads(extra) if isinstance(extra, str) else (extra or {})}
        for name, extra in rows
    ]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        item.stash.setdefault(FAILED, True)


FAILED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def component_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a failed test, print the end of every component's log (shown with the failure)."""
    yield
    if request.node.stash.get(FAILED, False):
        for name in ("stack", "cluster"):
            if name in request.fixturenames:
                value = request.getfixturevalue(name)
                airflow = value[0] if isinstance(value, tuple) else value
                for component in list(airflow.processes) or ["api-server"]:
                    print(f"--- {component} ---\n{airflow.tail(component, 40)}")
