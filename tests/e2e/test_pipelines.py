"""The example pipelines of ``dags/``, end to end on a real Airflow, against stand-in endpoints.

One Airflow (SQLite metadata DB) runs the four DAGs of ``dags/`` as they ship, with the
connections ``airhook_crm`` and ``airhook_chat`` pointing at HTTP servers of this test on
127.0.0.1. Those servers only record each call; the tests verify every signature with code that
is not airhook's (the ``standardwebhooks`` package, :mod:`hmac`) and compare the bodies.

The analytics table is checked twice: first with no ``airhook_analytics`` connection (the
SQLite file under ``$AIRFLOW_HOME``, as in ``make demo``), then with one added to Airflow's
connections for a PostgreSQL database. Each time duplicate deliveries, a re-dispatch and a
re-run of every DAG run must leave exactly one row per insight.

Waits are on states and calls, never on time windows: a duplicate delivery is answered as one
by the receiver (and so starts nothing); "exactly once" is counted once every run has finished.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
import standardwebhooks

from airhook.core.catalog import load_catalog
from devstack import AirflowStack
from tests.conftest import create_postgres_database
from tests.e2e import senders
from tests.e2e.conftest import create_sources, post, unique, wait_for

REPO = Path(__file__).resolve().parents[2]
CATALOG = load_catalog()
PIPELINES = [
    "airhook_insight_export",
    "airhook_lead_sync",
    "airhook_escalation_alert",
    "airhook_insight_digest",
]
FINISHED = {"success", "failed"}

CRM_SECRET = "whsec_" + "Y3JtLXN0YW5kLWluLXNlY3JldC0wMTIz"  # base64 of 24 bytes
CRM_TOKEN = "pat-e2e-crm-token"
CHAT_SECRET = "8f14e45fceea167a5a36dedd4bea2543"
CHAT_PATH = "/services/T0E2E/B0E2E/e2e0chat0webhook0path"
DIGEST_SECRET = "whsec_" + "ZGlnZXN0LXN1YnNjcmliZXItc2VjcmV0"
UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"


def sample(platform: str, event: str) -> dict[str, Any]:
    return dict(CATALOG.event(platform, event).sample)


# --- stand-in endpoints ------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Endpoint:
    """An HTTP server on 127.0.0.1 that records every call and answers 200 with ``answer``."""

    answer: bytes
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> Endpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _record(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                call = Call(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body
                )
                with endpoint.lock:
                    endpoint.calls.append(call)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(endpoint.answer)))
                self.end_headers()
                self.wfile.write(endpoint.answer)

            do_POST = do_PUT = do_PATCH = _record

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def received(self) -> list[Call]:
        with self.lock:
            return list(self.calls)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class Endpoints:
    crm: Endpoint
    chat: Endpoint
    subscriber: Endpoint


def verify_standard(call: Call, secret: str) -> None:
    """Standard Webhooks, checked by the ``standardwebhooks`` package."""
    standardwebhooks.Webhook(secret).verify(call.body, call.headers, json_parse=False)


def verify_slack_v0(call: Call) -> None:
    """Slack's layout: ``v0=`` + hex HMAC-SHA256 of ``v0:{timestamp}:{body}``."""
    timestamp = call.headers["x-slack-request-timestamp"]
    assert abs(time.time() - int(timestamp)) < 300
    expected = hmac.new(
        CHAT_SECRET.encode(), b"v0:" + timestamp.encode() + b":" + call.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest("v0=" + expected, call.headers["x-slack-signature"])


@pytest.fixture(scope="module")
def endpoints() -> Iterator[Endpoints]:
    started = Endpoints(
        crm=Endpoint(b'{"status": "COMPLETE", "results": []}').start(),
        chat=Endpoint(b'"ok"').start(),
        subscriber=Endpoint(b'{"ok": true}').start(),
    )
    try:
        yield started
    finally:
        for endpoint in (started.crm, started.chat, started.subscriber):
            endpoint.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, endpoints: Endpoints) -> Iterator[AirflowStack]:
    """Airflow with the example DAGs as they ship, connections to the stand-ins, four sources."""
    root = tmp_path_factory.mktemp("pipelines")
    dags = root / "dags"
    dags.mkdir()
    for source in (REPO / "dags").glob("*.py"):
        shutil.copy(source, dags / source.name)
    crm = {
        "conn_type": "airhook_webhook",
        "host": endpoints.crm.url,
        "password": CRM_SECRET,
        "extra": {"signing": "standard", "token": CRM_TOKEN},
    }
    chat = {
        "conn_type": "airhook_webhook",
        "host": endpoints.chat.url + CHAT_PATH,
        "password": CHAT_SECRET,
        "extra": {
            "signing": "hmac",
            "signing_options": {
                "header": "X-Slack-Signature",
                "prefix": "v0=",
                "timestamp_header": "X-Slack-Request-Timestamp",
                "content": "v0:{timestamp}:{body}",
            },
        },
    }
    airflow = AirflowStack(
        home=root / "home",
        dags_folder=dags,
        extra_env={
            "AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS": "127.0.0.1/32",
            "AIRFLOW_CONN_AIRHOOK_CRM": json.dumps(crm),
            "AIRFLOW_CONN_AIRHOOK_CHAT": json.dumps(chat),
        },
    )
    airflow.migrate()
    create_sources(airflow)
    try:
        airflow.start()
        airflow.wait_for_dags(PIPELINES)
        yield airflow
    except BaseException:
        for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
            print(f"--- {component} ---\n{airflow.tail(component)}")
        raise
    finally:
        airflow.stop()


# --- Airflow -------------------------------------------------------------------------------------


def runs(stack: AirflowStack, dag_id: str, token: str) -> list[dict[str, Any]]:
    return stack.dag_runs(dag_id, token=token)


def all_finished(stack: AirflowStack, dag_id: str, token: str) -> list[dict[str, Any]]:
    """The DAG's runs once there is one and every one has finished; else nothing."""
    found = runs(stack, dag_id, token)
    return found if found and all(run["state"] in FINISHED for run in found) else []


def task_instance(
    stack: AirflowStack, dag_id: str, run_id: str, task_id: str, token: str, map_index: int = -1
) -> dict[str, Any]:
    path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
    return dict(stack.api("GET", path + (f"/{map_index}" if map_index >= 0 else ""), token=token))


def clear_and_rerun(
    stack: AirflowStack, dag_id: str, task_id: str, token: str, run_ids: list[str] | None = None
) -> None:
    """Clear ``task_id`` in these runs (default: every run of the DAG); wait until each has run
    again, successfully."""
    for run in runs(stack, dag_id, token):
        if run_ids is not None and run["dag_run_id"] not in run_ids:
            continue
        before = task_instance(stack, dag_id, run["dag_run_id"], task_id, token)["try_number"]
        stack.api(
            "POST",
            f"/api/v2/dags/{dag_id}/clearTaskInstances",
            {
                "dry_run": False,
                "only_failed": False,
                "dag_run_id": run["dag_run_id"],
                "task_ids": [task_id],
            },
            token=token,
        )

        def again(run_id: str = run["dag_run_id"], before: int = before) -> bool:
            ti = task_instance(stack, dag_id, run_id, task_id, token)
            return ti["try_number"] > before and ti["state"] in FINISHED

        wait_for(again)
        assert task_instance(stack, dag_id, run["dag_run_id"], task_id, token)["state"] == "success"


def trigger(
    stack: AirflowStack, dag_id: str, token: str, conf: dict[str, Any] | None = None
) -> str:
    run = stack.api(
        "POST",
        f"/api/v2/dags/{dag_id}/dagRuns",
        {"logical_date": None, "conf": conf or {}},
        token=token,
    )
    return str(run["dag_run_id"])


def deliver_twice(stack: AirflowStack, source: str, payload: dict[str, Any]) -> str:
    """Send an event, then the same delivery again: the second is answered as a duplicate."""
    sign = getattr(senders, source)
    first = post(stack, source, *sign(payload))
    assert first.status_code == 202, first.text
    again = post(stack, source, *sign(payload))
    assert again.status_code == 200, again.text
    assert again.json() == {"id": first.json()["id"], "duplicate": True}
    return str(first.json()["id"])


# --- insight export ------------------------------------------------------------------------------


def insight_samples() -> list[dict[str, Any]]:
    """One fresh event of each Caleida insight kind (new delivery and insight ids)."""
    events = []
    for event in CATALOG.events("caleida"):
        if event.name.startswith("insight."):
            events.append(unique(unique(dict(event.sample), "id"), "data", "insight_id"))
    return events


def rows_for(url: str, ids: list[str] | None = None) -> list[dict[str, Any]]:
    """The analytics table's rows of these event ids (default: every row); none before it exists."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table("insights"):
                return []
            if ids is None:
                return [
                    dict(row)
                    for row in connection.execute(sa.text("SELECT * FROM insights")).mappings()
                ]
            query = sa.text("SELECT * FROM insights WHERE event_id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            )
            return [dict(row) for row in connection.execute(query, {"ids": ids}).mappings()]
    finally:
        engine.dispose()


def check_insights_land_once(stack: AirflowStack, url: str) -> None:
    token = stack.token()
    earlier = {run["dag_run_id"] for run in runs(stack, "airhook_insight_export", token)}
    events = insight_samples()
    assert len(events) == 5
    ids = [deliver_twice(stack, "caleida", event) for event in events]
    wait_for(lambda: len(rows_for(url, ids)) == len(ids))
    wait_for(lambda: all_finished(stack, "airhook_insight_export", token))
    # A re-dispatch (a new run with the same events) and a re-run of every run change nothing.
    count = len(runs(stack, "airhook_insight_export", token))
    stack.airhook("events", "redispatch", *ids)
    wait_for(lambda: len(all_finished(stack, "airhook_insight_export", token)) > count)
    mine = [r["dag_run_id"] for r in runs(stack, "airhook_insight_export", token)]
    clear_and_rerun(
        stack,
        "airhook_insight_export",
        "load_insights",
        token,
        [r for r in mine if r not in earlier],
    )

    rows = rows_for(url, ids)
    assert sorted(row["event_id"] for row in rows) == sorted(ids)
    finished = wait_for(lambda: all_finished(stack, "airhook_insight_export", token))
    assert {run["state"] for run in finished} == {"success"}
    by_kind = {row["kind"]: row for row in rows}
    summary = next(e for e in events if e["event"] == "insight.summary")
    assert by_kind["insight.summary"]["summary"] == summary["data"]["summary"]
    assert by_kind["insight.summary"]["conversation_id"] == summary["data"]["chat_id"]
    assert by_kind["insight.summary"]["insight_id"] == summary["data"]["insight_id"]
    assert by_kind["insight.topic"]["topic"] == "billing, refund"
    assert (by_kind["insight.sentiment"]["sentiment"], by_kind["insight.sentiment"]["score"]) == (
        "negative",
        -0.42,
    )
    assert json.loads(by_kind["insight.conversation"]["value"])["metrics"]["message_count"] == 14
    assert {row["source"] for row in rows} == {row["platform"] for row in rows} == {"caleida"}


def test_insights_land_once_in_the_default_sqlite_file(stack: AirflowStack) -> None:
    check_insights_land_once(stack, f"sqlite:///{stack.home / 'analytics.db'}")


@pytest.fixture(scope="module")
def postgres_analytics(stack: AirflowStack, postgres_url: str) -> str:
    """The ``airhook_analytics`` connection, added to Airflow's for a fresh PostgreSQL database."""
    url = create_postgres_database(postgres_url)
    stack.airflow(
        "connections",
        "add",
        "airhook_analytics",
        "--conn-type",
        "generic",
        "--conn-extra",
        json.dumps({"sqlalchemy_url": url}),
    )
    return url


def test_insights_land_once_in_postgresql_through_the_connection(
    stack: AirflowStack, postgres_analytics: str
) -> None:
    check_insights_land_once(stack, postgres_analytics)


# --- lead sync -----------------------------------------------------------------------------------


def test_lead_is_upserted_then_updated_when_its_session_ends(
    stack: AirflowStack, endpoints: Endpoints
) -> None:
    token = stack.token()
    tag = uuid.uuid4().hex[:10]
    lead = sample("rkt", "lead.captured")
    lead["data"].update(
        leadId=f"lead_{tag}", sessionId=f"rkt_{tag}", email=f"john.{tag}@example.com"
    )
    email = lead["data"]["email"]
    deliver_twice(stack, "rkt", lead)

    def calls_for_lead() -> list[Call]:
        return [
            call
            for call in endpoints.crm.received()
            if email in call.body.decode() or quote(email, safe="@") in call.path
        ]

    upsert = wait_for(calls_for_lead)[0]
    assert (upsert.method, upsert.path) == ("POST", UPSERT_PATH)
    verify_standard(upsert, CRM_SECRET)
    assert upsert.headers["authorization"] == f"Bearer {CRM_TOKEN}"
    assert upsert.json() == {
        "inputs": [
            {
                "idProperty": "email",
                "id": email,
                "properties": {
                    "email": email,
                    "firstname": "John",
                    "lastname": "Doe",
                    "lifecyclestage": "lead",
                },
            }
        ]
    }

    # The sensor waits in the triggerer for this session's end; another session's does nothing.
    (run,) = runs(stack, "airhook_lead_sync", token)
    wait_for(
        lambda: (
            task_instance(
                stack,
                "airhook_lead_sync",
                run["dag_run_id"],
                "sync_lead.wait_for_session_end",
                token,
                map_index=0,
            )["state"]
            == "deferred"
        )
    )
    other = sample("rkt", "session.resolved")
    other["data"]["sessionId"] = f"rkt_other_{tag}"
    assert post(stack, "rkt", *senders.rkt(other)).status_code == 202
    ended = sample("rkt", "session.resolved")
    ended["data"].update(sessionId=f"rkt_{tag}", resolvedBy="agent", messageCount=12)
    assert post(stack, "rkt", *senders.rkt(ended)).status_code == 202

    wait_for(lambda: len(calls_for_lead()) >= 2)
    (finished,) = wait_for(lambda: all_finished(stack, "airhook_lead_sync", token))
    assert finished["state"] == "success"
    upserted, update = calls_for_lead()
    assert upserted == upsert
    assert update.method == "PATCH"
    assert update.path == f"/crm/v3/objects/contacts/{quote(email, safe='@')}?idProperty=email"
    verify_standard(update, CRM_SECRET)
    assert update.headers["authorization"] == f"Bearer {CRM_TOKEN}"
    assert update.json() == {
        "properties": {
            "hs_lead_status": "CONNECTED",
            "chat_session_id": f"rkt_{tag}",
            "chat_resolved_by": "agent",
            "chat_message_count": 12,
        }
    }
    assert upsert.headers["webhook-id"] != update.headers["webhook-id"]


# --- escalation alert ----------------------------------------------------------------------------


def test_each_escalation_posts_one_signed_chat_message(
    stack: AirflowStack, endpoints: Endpoints
) -> None:
    token = stack.token()
    tag = uuid.uuid4().hex[:10]
    ccai = sample("ccai", "chat.escalated")
    ccai["event_id"] = f"evt-ccai-{tag}"
    eev = sample("eev", "conversation.escalated")
    eev["id"] = f"evt_eev_{tag}"
    rkt = sample("rkt", "handoff.escalated")
    rkt["data"]["sessionId"] = f"rkt_{tag}"
    # The eeV.ai AI agent's own decision is another kind (agent.escalation): no message.
    agent = unique(sample("eev", "agent.escalation"), "id")
    for source, payload in (("ccai", ccai), ("eev", eev), ("rkt", rkt), ("eev", agent)):
        deliver_twice(stack, source, payload)

    marks = {"ccai": ccai["event_id"], "eev": eev["id"], "rkt": f"rkt_{tag}"}

    def messages() -> dict[str, list[Call]]:
        found: dict[str, list[Call]] = {platform: [] for platform in marks}
        for call in endpoints.chat.received():
            for platform, mark in marks.items():
                if mark in call.body.decode():
                    found[platform].append(call)
        return found

    wait_for(lambda: all(messages().values()))
    wait_for(lambda: all_finished(stack, "airhook_escalation_alert", token))
    assert {r["state"] for r in runs(stack, "airhook_escalation_alert", token)} == {"success"}
    received = messages()
    assert {platform: len(calls) for platform, calls in received.items()} == {
        "ccai": 1,
        "eev": 1,
        "rkt": 1,
    }
    assert not any(agent["id"] in call.body.decode() for call in endpoints.chat.received())
    for platform, (call,) in received.items():
        assert call.path == CHAT_PATH
        verify_slack_v0(call)
        message = call.json()
        assert message["text"].startswith(f"{platform} escalation")
        assert message["blocks"][0]["text"]["text"] == f"{platform} escalation"
    assert "end user requested an agent" in received["ccai"][0].json()["text"]


# --- insight digest ------------------------------------------------------------------------------


def test_digest_publishes_the_days_summaries_once(
    stack: AirflowStack, endpoints: Endpoints, postgres_analytics: str
) -> None:
    token = stack.token()
    stack.airhook(
        "subscriptions",
        "create",
        "digest",
        "--url",
        endpoints.subscriber.url + "/hooks/digest",
        "--events",
        "insight.digest",
        "--allow-unknown-events",
        "--secret-file",
        "-",
        stdin=DIGEST_SECRET + "\n",
    )
    summary = unique(unique(sample("caleida", "insight.summary"), "id"), "data", "insight_id")
    summary_id = deliver_twice(stack, "caleida", summary)
    wait_for(lambda: rows_for(postgres_analytics, [summary_id]))
    in_table = {
        r["event_id"] for r in rows_for(postgres_analytics) if r["kind"] == "insight.summary"
    }
    # A run the scheduler made when the DAG was first seen (its window ended at midnight, before
    # any of these summaries) has published nothing; let it finish first.
    wait_for(
        lambda: (
            all_finished(stack, "airhook_insight_digest", token)
            or not runs(stack, "airhook_insight_digest", token)
        )
    )
    before = len(endpoints.subscriber.received())

    run_id = trigger(stack, "airhook_insight_digest", token)
    wait_for(
        lambda: (
            task_instance(stack, "airhook_insight_digest", run_id, "publish", token)["state"]
            in FINISHED
        )
    )
    assert task_instance(stack, "airhook_insight_digest", run_id, "publish", token)["state"] == (
        "success"
    )
    calls = endpoints.subscriber.received()[before:]
    assert len(calls) == 1
    (call,) = calls
    assert call.path == "/hooks/digest"
    verify_standard(call, DIGEST_SECRET)
    digest = call.json()
    assert digest["type"] == "insight.digest"
    assert digest["count"] == len(digest["summaries"])
    published = {entry["event_id"] for entry in digest["summaries"]}
    assert summary_id in published
    assert published <= in_table
    mine = next(entry for entry in digest["summaries"] if entry["event_id"] == summary_id)
    assert mine["summary"] == summary["data"]["summary"]
    assert mine["conversation_id"] == summary["data"]["chat_id"]

    # A re-run of the publishing task finds the delivery in the outbox: nothing goes out again.
    clear_and_rerun(stack, "airhook_insight_digest", "publish", token, [run_id])
    assert endpoints.subscriber.received()[before:] == [call]
