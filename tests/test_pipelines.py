"""The example pipelines of ``dags/``, piece by piece (tests/e2e/test_pipelines.py runs them whole).

Every DAG file parses without any of its connections and documents itself; the analytics table
keeps one row per insight however often, and however concurrently, the same events are written,
on SQLite and on PostgreSQL; the connection ``airhook_analytics`` is read in each documented form.
"""

from __future__ import annotations

import importlib.util
import json
import runpy
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import sqlalchemy as sa

from airhook.core.catalog import load_catalog
from airhook.operators.publish import PublishEventOperator
from airhook.operators.webhook import WebhookOperator
from airhook.sensors.event import WebhookEventSensor
from tests.conftest import create_postgres_database

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "dags"
PIPELINES = {
    "airhook_insight_export": {"load_insights"},
    "airhook_lead_sync": {
        "leads",
        "sync_lead.upsert_contact",
        "sync_lead.wait_for_session_end",
        "sync_lead.session_outcome",
        "sync_lead.update_contact",
    },
    "airhook_escalation_alert": {"escalations", "post_alert"},
    "airhook_insight_digest": {"digest", "publish"},
}
CATALOG = load_catalog()
RECEIVED = datetime(2026, 3, 26, 15, 41, 12, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def table() -> ModuleType:
    """``dags/airhook_analytics_table.py``, imported as the DAGs import it."""
    spec = importlib.util.spec_from_file_location(
        "airhook_analytics_table", DAGS / "airhook_analytics_table.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def no_analytics_connection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_AIRHOOK_ANALYTICS", raising=False)
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow-home"))


# --- the DAG files -------------------------------------------------------------------------------


def test_the_dag_folder_holds_the_four_pipelines_and_their_helper() -> None:
    assert sorted(p.name for p in DAGS.glob("*.py")) == sorted(
        [f"{dag_id}.py" for dag_id in PIPELINES] + ["airhook_analytics_table.py"]
    )


@pytest.mark.parametrize("dag_id", sorted(PIPELINES))
def test_each_pipeline_parses_without_connections_and_documents_itself(
    dag_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AIRHOOK_CRM", "AIRHOOK_CHAT"):
        monkeypatch.delenv(f"AIRFLOW_CONN_{name}", raising=False)
    namespace = runpy.run_path(str(DAGS / f"{dag_id}.py"))
    dag = namespace[dag_id]()
    assert dag.dag_id == dag_id
    assert set(dag.task_ids) == PIPELINES[dag_id]
    assert "airhook" in dag.tags
    doc = namespace["__doc__"]
    assert dag.doc_md == doc
    for section in ("**Connection", "**Idempotent"):
        assert section in doc, (dag_id, section)
    assert "**Runs" in doc


def _dag(dag_id: str) -> Any:
    return runpy.run_path(str(DAGS / f"{dag_id}.py"))[dag_id]()


def test_the_event_driven_pipelines_schedule_on_canonical_kinds() -> None:
    def walk(condition: Any) -> set[str]:
        if hasattr(condition, "objects"):  # AssetAny
            return set().union(*(walk(part) for part in condition.objects))
        return {condition.name}

    def uris(dag_id: str) -> set[str]:
        return walk(_dag(dag_id).timetable.asset_condition)

    assert uris("airhook_insight_export") == {
        f"airhook-kind://insight.{name}"
        for name in ("summary", "topic", "key", "conversation", "sentiment")
    }
    assert uris("airhook_lead_sync") == {"airhook-kind://lead.captured"}
    assert uris("airhook_escalation_alert") == {"airhook-kind://conversation.escalated"}
    # One kind gathers the three platforms' escalations and hand-offs to a human.
    escalated = {
        (e.platform, e.name) for e in CATALOG.events(None) if e.kind == "conversation.escalated"
    }
    assert escalated == {
        ("ccai", "chat.escalated"),
        ("eev", "conversation.escalated"),
        ("rkt", "handoff.escalated"),
    }


def test_the_senders_use_the_contract_connections_and_shipped_templates() -> None:
    lead_sync = _dag("airhook_lead_sync")
    upsert = lead_sync.get_task("sync_lead.upsert_contact")
    update = lead_sync.get_task("sync_lead.update_contact")
    sensor = lead_sync.get_task("sync_lead.wait_for_session_end")
    assert isinstance(sensor, WebhookEventSensor)
    assert (sensor.events, sensor.soft_fail) == ("session.resolved", True)
    for sender in (upsert, update):
        assert isinstance(sender, WebhookOperator)
        assert sender.webhook_conn_id == "airhook_crm"
    assert (upsert.method, upsert.url, upsert.body_template) == (
        "POST",
        "/crm/v3/objects/contacts/batch/upsert",
        "hubspot_contact_upsert.json.j2",
    )
    assert update.method == "PATCH"
    alert = _dag("airhook_escalation_alert").get_task("post_alert")
    assert alert.partial_kwargs["webhook_conn_id"] == "airhook_chat"
    assert alert.partial_kwargs["body_template"] == "slack.json.j2"
    publish = _dag("airhook_insight_digest").get_task("publish")
    assert isinstance(publish, PublishEventOperator)


# --- the connection ------------------------------------------------------------------------------


def test_no_connection_means_an_sqlite_file_in_airflow_home(
    table: ModuleType, tmp_path: Path
) -> None:
    assert table.analytics_url() == f"sqlite:///{tmp_path / 'airflow-home' / 'analytics.db'}"


@pytest.mark.parametrize(
    ("connection", "url"),
    [
        (
            {"conn_type": "generic", "extra": {"sqlalchemy_url": "postgresql+psycopg2://a@h/db"}},
            "postgresql+psycopg2://a@h/db",
        ),
        ("postgresql://etl:s%40cret@db.example.com:5432/analytics", None),
        ({"conn_type": "sqlite", "host": "/data/analytics.db"}, "sqlite:////data/analytics.db"),
    ],
    ids=["extra", "uri", "sqlite"],
)
def test_the_connection_gives_the_url(
    table: ModuleType, monkeypatch: pytest.MonkeyPatch, connection: Any, url: str | None
) -> None:
    value = connection if isinstance(connection, str) else json.dumps(connection)
    monkeypatch.setenv("AIRFLOW_CONN_AIRHOOK_ANALYTICS", value)
    if url is None:
        parsed = sa.make_url(table.analytics_url())
        assert (parsed.drivername, parsed.username, parsed.password) == (
            "postgresql",
            "etl",
            "s@cret",
        )
        assert (parsed.host, parsed.port, parsed.database) == ("db.example.com", 5432, "analytics")
    else:
        assert table.analytics_url() == url


# --- the table -----------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def analytics(request: pytest.FixtureRequest, tmp_path: Path, table: ModuleType) -> Iterator[Any]:
    """The analytics table, created, on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'analytics.db'}"
    else:
        url = create_postgres_database(request.getfixturevalue("postgres_url"))
    engine = table.analytics_engine(url)
    yield engine
    engine.dispose()


def _insights() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(asset event extra, payload) of every Caleida insight sample."""
    found = []
    for number, event in enumerate(CATALOG.events("caleida")):
        if event.kind.startswith("insight."):
            extra = {
                "airhook_event_id": f"evt_{number:032x}",
                "source": "caleida-prod",
                "profile": "caleida",
                "event": event.name,
                "kind": event.kind,
                "received_at": (RECEIVED + timedelta(seconds=number)).isoformat(),
            }
            found.append((extra, event.sample))
    return found


def _count(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.text("SELECT count(*) FROM insights")).scalar_one())


def test_the_same_insights_written_again_add_no_row(table: ModuleType, analytics: Any) -> None:
    rows = [table.insight_row(extra, payload) for extra, payload in _insights()]
    assert len(rows) == 5
    assert table.insert_insights(analytics, rows) == 5
    assert table.insert_insights(analytics, rows) == 0
    assert table.insert_insights(analytics, [*rows[:2], *rows[:2]]) == 0
    assert _count(analytics) == 5


def test_concurrent_writers_of_the_same_insights_leave_one_row_each(
    table: ModuleType, analytics: Any
) -> None:
    rows = [table.insight_row(extra, payload) for extra, payload in _insights()]
    added: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def write() -> None:
        try:
            start.wait()
            added.append(table.insert_insights(analytics, rows))
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sum(added) == 5
    assert _count(analytics) == 5


def test_two_runs_creating_the_table_at_once_both_succeed(
    table: ModuleType, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def create() -> None:
        try:
            start.wait()
            table.analytics_engine(url).dispose()
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []


def test_each_kind_fills_its_columns(table: ModuleType) -> None:
    rows = {row["kind"]: row for row in (table.insight_row(e, p) for e, p in _insights())}
    summary = rows["insight.summary"]
    assert summary["summary"].startswith("The customer was billed for the Pro plan")
    assert (summary["conversation_id"], summary["insight_id"]) == ("cht_8f2c1a", "ins_sum_77a1")
    assert (summary["source"], summary["platform"], summary["event"]) == (
        "caleida-prod",
        "caleida",
        "insight.summary",
    )
    assert summary["received_at"] == RECEIVED.replace(tzinfo=None) + timedelta(seconds=4)
    assert rows["insight.topic"]["topic"] == "billing, refund"
    assert rows["insight.key"]["summary"] == (
        "Wrong plan billed in March; Refund promised within 5 days; "
        "Customer considers switching provider"
    )
    assert (rows["insight.sentiment"]["sentiment"], rows["insight.sentiment"]["score"]) == (
        "negative",
        -0.42,
    )
    metrics = json.loads(rows["insight.conversation"]["value"])["metrics"]
    assert metrics["message_count"] == 14


def test_the_digest_reads_the_summaries_of_its_window(table: ModuleType, analytics: Any) -> None:
    table.insert_insights(analytics, [table.insight_row(e, p) for e, p in _insights()])
    (summary_extra,) = [e for e, _ in _insights() if e["kind"] == "insight.summary"]
    received = datetime.fromisoformat(summary_extra["received_at"])
    found = table.summaries_between(analytics, received, received + timedelta(seconds=1))
    assert [entry["event_id"] for entry in found] == [summary_extra["airhook_event_id"]]
    assert found[0]["received_at"] == received.isoformat()
    assert found[0]["conversation_id"] == "cht_8f2c1a"
    # The window is half-open: an insight received at its end belongs to the next one.
    assert table.summaries_between(analytics, received - timedelta(days=1), received) == []
