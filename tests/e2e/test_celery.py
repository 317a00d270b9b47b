"""Distributed Airflow with CeleryExecutor, and ``kill -9`` of its scheduler, triggerer and worker.

One cluster for the whole module, every process on 127.0.0.1: PostgreSQL for Airflow's metadata
DB and the airhook store, Redis (Debian's ``redis-server``, ``devstack/redis.py``) as the Celery
broker, two API servers (each with the receiver and a dispatcher, one holding the lease), airhook's
standalone receiver, a scheduler, a DAG processor, a triggerer and a Celery worker, and an HTTP
endpoint of the test's that records every outbound call (``Recorder``).

Deliveries go to all three receivers in turn. ``e2e_celery_leads`` (tests/e2e/dags/e2e_celery.py)
runs on the leads: its tasks report the runner they ran in (only the Celery worker's environment
names one), publish each lead again to the ``recorder`` subscription (``PublishEventOperator``)
and send one call listing the run's events (``WebhookOperator``). The sensor DAGs wait for a
Caleida summary by poking on the worker and deferred in the triggerer.

The fault tests run the same load and, at a random moment in it, ``kill -9`` one component's
process group, then start it again. Once Airflow has settled (every acknowledged event consumed,
every run that consumed one finished, no delivery of the publication left to send; waited for with
generous deadlines, never a fixed sleep before an assertion) they check: every acknowledged event
is exactly one asset event, consumed by exactly one run, which succeeded; every lead was published
with one message id however often it arrived, and every event was listed by one ``WebhookOperator``
message id. The random moments come from a seed printed with each test (``AIRHOOK_FAULT_SEED``
repeats one).
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple

import pytest
import requests
import sqlalchemy as sa

from airhook.core.catalog import load_catalog
from devstack import CELERY_WORKER, RECEIVER, AirflowStack, free_port
from devstack.redis import RedisServer, redis_binary
from tests.conftest import create_postgres_database
from tests.e2e import senders
from tests.e2e.conftest import make_dags_folder, unique, wait_for

LEADS_DAG = "e2e_celery_leads"
LEADS_ASSET = "airhook://celery-rkt/lead.captured"
RUNNER = "celery-worker"
LEAD = load_catalog().event("rkt", "lead.captured").sample
SUMMARY = load_catalog().event("caleida", "insight.summary").sample
FINAL = {"success", "failed"}
#: How long a fault test's load runs in all, and the window its kill falls in.
LOAD_SECONDS = 12.0
KILL_WINDOW = (2.0, 7.0)
#: The most a settled cluster may take after the load; far more than it needs.
SETTLE_SECONDS = 420.0

# Shorter than Airflow's defaults (minutes to a day), so that what a killed component held is
# taken over within seconds; each says which fault it is for.
FAULT_SETTINGS = {
    # a task on a killed worker: failed (and retried) once its heartbeat is this late
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    # a killed scheduler's tasks: adopted by the next scheduler once the old one's job is stale
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "15",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "10",
    # a message a killed worker took but never started: back in the queue after this long
    # (longer than any task here runs: a running task's message would be handed out again)
    "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "60",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "90",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
    # a killed triggerer's triggers: taken by the next triggerer once the old one is stale
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "15",
}


# --- the outbound endpoint ----------------------------------------------------------------------


@dataclass
class Recorder:
    """An HTTP server on 127.0.0.1 that answers 200 and records every call."""

    server: ThreadingHTTPServer
    calls: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.calls)


def _recorder() -> Recorder:
    recorder: Recorder

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            call = {
                "path": self.path,
                "webhook_id": self.headers.get("webhook-id"),
                "idempotency_key": self.headers.get("Idempotency-Key"),
                "body": json.loads(body) if body else None,
            }
            with recorder.lock:
                recorder.calls.append(call)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    recorder = Recorder(server)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return recorder


# --- the cluster --------------------------------------------------------------------------------


class Cluster(NamedTuple):
    """The stack first: tests/e2e/conftest.py prints its components' logs after a failure."""

    stack: AirflowStack
    recorder: Recorder
    #: the three receivers' webhook URLs for a source: two API servers, the standalone receiver
    ports: tuple[int, int, int]

    def urls(self, source: str) -> list[str]:
        return [f"http://127.0.0.1:{port}/airhook/webhooks/{source}" for port in self.ports]

    def restart(self, component: str) -> None:
        """Start a component again and wait until it works (the worker: until Celery is ready)."""
        if component == CELERY_WORKER:
            self.stack.start_component(CELERY_WORKER, env={"AIRHOOK_E2E_RUNNER": RUNNER})
            self.stack.wait_log(CELERY_WORKER, "ready.")
        else:
            self.stack.start_component(component)


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    if redis_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing (.ci/run installs it)")
        pytest.skip("no redis-server on this machine")
    with RedisServer.start() as server:
        yield server.url


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_url: str
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("celery")
    recorder = _recorder()
    connection = {"conn_type": "airhook_webhook", "host": recorder.url}
    stack = AirflowStack(
        home=root / "home",
        dags_folder=make_dags_folder(root),
        metadata_url=create_postgres_database(postgres_url),
        airhook_url=create_postgres_database(postgres_url),
        celery_broker_url=redis_url,
        extra_env={
            **FAULT_SETTINGS,
            "AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS": "127.0.0.1/32",
            "AIRFLOW_CONN_AIRHOOK_RECORDER": json.dumps(connection),
        },
    )
    ports = (stack.port, free_port(), free_port())
    try:
        stack.migrate()
        for name, profile, secret in (
            ("celery-rkt", "rkt", senders.RKT_SECRET),
            ("celery-caleida", "caleida", senders.CALEIDA_TOKEN),
        ):
            stack.airhook(
                "sources", "create", name, "--profile", profile, "--secret-file", "-",
                stdin=secret + "\n",
            )  # fmt: skip
        stack.airhook(
            "subscriptions", "create", "recorder", "--url", f"{recorder.url}/publish",
            "--events", "lead.captured",
        )  # fmt: skip
        stack.start(["api-server", "scheduler", "dag-processor", "triggerer"])
        stack.start_component("api-server", name="api-server-2", port=ports[1])
        stack.start_component(RECEIVER, port=ports[2])
        cluster = Cluster(stack, recorder, ports)
        cluster.restart(CELERY_WORKER)
        stack.wait_healthy(name="api-server-2", port=ports[1])
        stack.wait_healthy(name=RECEIVER, port=ports[2], component=RECEIVER)
        stack.wait_for_dags([LEADS_DAG, "e2e_celery_wait_deferred", "e2e_celery_wait_poking"])
        # The dispatcher writes only to assets that exist: leads before that start nothing.
        wait_for(lambda: _scheduled(stack), timeout=120)
        yield cluster
    except BaseException:
        for name in stack.processes:
            print(f"--- {name} ---\n{stack.tail(name)}")
        raise
    finally:
        stack.stop()
        recorder.server.shutdown()
        recorder.server.server_close()


# --- reading Airflow and the store --------------------------------------------------------------


def _query(url: str, sql: str, **params: Any) -> list[Any]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(sa.text(sql), params).all())
    finally:
        engine.dispose()


def _scheduled(stack: AirflowStack) -> bool:
    rows = _query(
        str(stack.metadata_url),
        "SELECT 1 FROM asset JOIN dag_schedule_asset_reference r ON r.asset_id = asset.id "
        "WHERE asset.name = :name AND r.dag_id = :dag",
        name=LEADS_ASSET,
        dag=LEADS_DAG,
    )
    return bool(rows)


@dataclass(frozen=True)
class Leads:
    """What Airflow made of the leads: their asset events, the runs that consumed them."""

    #: airhook event id -> asset event ids
    events: dict[str, list[int]]
    #: asset event id -> dag_run ids of e2e_celery_leads
    consumers: dict[int, list[int]]
    #: dag_run id -> state, every run of e2e_celery_leads
    runs: dict[int, str]
    #: queue rows of e2e_celery_leads (runs the scheduler is yet to create)
    queued: int

    def runs_of(self, ids: set[str]) -> set[int]:
        return {
            run for i in ids for e in self.events.get(i, ()) for run in self.consumers.get(e, ())
        }


def _leads(stack: AirflowStack) -> Leads:
    url = str(stack.metadata_url)
    events: dict[str, list[int]] = defaultdict(list)
    for event, extra in _query(
        url,
        "SELECT asset_event.id, asset_event.extra FROM asset_event "
        "JOIN asset ON asset.id = asset_event.asset_id WHERE asset.name = :name",
        name=LEADS_ASSET,
    ):
        extra = json.loads(extra) if isinstance(extra, str) else extra
        events[extra["airhook_event_id"]].append(event)
    consumers: dict[int, list[int]] = defaultdict(list)
    for event, run in _query(
        url,
        "SELECT l.event_id, l.dag_run_id FROM dagrun_asset_event l "
        "JOIN dag_run ON dag_run.id = l.dag_run_id WHERE dag_run.dag_id = :dag",
        dag=LEADS_DAG,
    ):
        consumers[event].append(run)
    runs = dict(_query(url, "SELECT id, state FROM dag_run WHERE dag_id = :dag", dag=LEADS_DAG))
    queued = _query(
        url, "SELECT count(*) FROM asset_dag_run_queue WHERE target_dag_id = :dag", dag=LEADS_DAG
    )[0][0]
    return Leads(dict(events), dict(consumers), runs, int(queued))


def _pending_deliveries(stack: AirflowStack) -> int:
    """Deliveries in the store still to be sent: due, waiting for a retry, or being sent."""
    rows = _query(
        str(stack.airhook_url),
        "SELECT count(*) FROM airhook_delivery WHERE status IN ('pending', 'sending')",
    )
    return int(rows[0][0])


def _lead_id(body: Any) -> str | None:
    """The RKT ``leadId`` anywhere in a published body (the payload sits in an envelope)."""
    if isinstance(body, dict):
        if "leadId" in body:
            return str(body["leadId"])
        values: list[Any] = list(body.values())
    elif isinstance(body, list):
        values = body
    else:
        return None
    for value in values:
        found = _lead_id(value)
        if found:
            return found
    return None


# --- the load -----------------------------------------------------------------------------------


@dataclass
class Load:
    """Unique signed leads sent to the three receivers in turn, until stopped."""

    urls: list[str]
    #: acknowledged airhook event id -> the lead's id
    acknowledged: dict[str, str] = field(default_factory=dict)
    #: lead ids sent whose answer was lost (a transport error): recorded or not, never acked
    unanswered: set[str] = field(default_factory=set)
    answers: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self, senders_per_url: int = 1, pause: float = 0.05) -> None:
        for url in self.urls:
            for _ in range(senders_per_url):
                thread = threading.Thread(target=self._send, args=(url, pause), daemon=True)
                thread.start()
                self.threads.append(thread)

    def _send(self, url: str, pause: float) -> None:
        session = requests.Session()
        while not self.stop.is_set():
            lead = unique(LEAD, "data", "leadId")
            lead_id = lead["data"]["leadId"]
            headers, body = senders.rkt(lead)
            try:
                answer = session.post(url, data=body, headers=headers, timeout=30)
            except requests.RequestException as exc:
                with self.lock:
                    self.unanswered.add(lead_id)
                    self.answers[type(exc).__name__] += 1
                time.sleep(0.2)
                continue
            with self.lock:
                self.answers[str(answer.status_code)] += 1
                if answer.status_code == 202:
                    self.acknowledged[answer.json()["id"]] = lead_id
            time.sleep(pause)

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


# --- checks -------------------------------------------------------------------------------------


def _settled(cluster: Cluster, load: Load) -> Leads | None:
    """The leads' state once everything acknowledged went through, else None."""
    ids = set(load.acknowledged)
    leads = _leads(cluster.stack)
    if not ids <= set(leads.events):
        return None
    if any(not leads.consumers.get(e) for i in ids for e in leads.events[i]):
        return None
    runs = leads.runs_of(ids)
    if any(leads.runs[run] not in FINAL for run in runs):
        return None
    if _pending_deliveries(cluster.stack):
        return None
    return leads


def _check_exactly_once(cluster: Cluster, load: Load, leads: Leads, since: int) -> list[str]:
    """Everything that went wrong with the leads of ``load``, as sentences (none: all well).

    :param since: how many recorded calls came before this load.
    """
    failures: list[str] = []
    acked = load.acknowledged
    strange = {a: n for a, n in load.answers.items() if a not in ("202", "200")}
    if strange:
        failures.append(f"answers other than 202/200: {strange}")
    twice = [i for i in acked if len(leads.events.get(i, ())) != 1]
    if twice:
        failures.append(f"{len(twice)} acknowledged events are not exactly one asset event")
    consumed = Counter(
        len(leads.consumers.get(e, ())) for i in acked for e in leads.events.get(i, ())
    )
    if set(consumed) != {1}:
        failures.append(f"asset events by number of runs that consumed them: {dict(consumed)}")
    runs = leads.runs_of(set(acked))
    unsuccessful = Counter(leads.runs[run] for run in runs if leads.runs[run] != "success")
    if unsuccessful:
        failures.append(f"runs that did not succeed: {dict(unsuccessful)}")

    calls = cluster.recorder.snapshot()[since:]
    known = set(acked.values()) | load.unanswered
    published: dict[str, set[str]] = defaultdict(set)
    for call in calls:
        if call["path"] == "/publish":
            lead_id = _lead_id(call["body"])
            if lead_id not in known:
                failures.append(f"published a lead nobody sent: {lead_id}")
            published[str(lead_id)].add(str(call["webhook_id"]))
    missing = [lead for lead in acked.values() if lead not in published]
    if missing:
        failures.append(f"{len(missing)} acknowledged leads were never published")
    many = {lead: ids for lead, ids in published.items() if len(ids) > 1}
    if many:
        failures.append(f"{len(many)} leads published with several message ids: {many}")
    shared = Counter(i for ids in published.values() for i in ids)
    if any(n > 1 for n in shared.values()):
        failures.append("one message id was published for several leads")

    listed: dict[str, set[str]] = defaultdict(set)
    runners: Counter[Any] = Counter()
    for call in calls:
        if call["path"] == "/notify":
            if call["webhook_id"] != call["idempotency_key"]:
                failures.append(f"webhook-id and Idempotency-Key differ: {call}")
            runners[call["body"]["runner"]] += 1
            for event_id in call["body"]["ids"]:
                listed[event_id].add(str(call["webhook_id"]))
    unlisted = [i for i in acked if i not in listed]
    if unlisted:
        failures.append(f"{len(unlisted)} acknowledged events were in no WebhookOperator call")
    listed_twice = {i: ids for i, ids in listed.items() if i in acked and len(ids) > 1}
    if listed_twice:
        failures.append(
            f"{len(listed_twice)} events were sent by WebhookOperator under several message ids"
        )
    if set(runners) - {RUNNER}:
        failures.append(f"tasks ran outside the Celery worker: {dict(runners)}")
    return failures


# --- the tests ----------------------------------------------------------------------------------


def _trigger(stack: AirflowStack, dag_id: str, conf: dict[str, Any], token: str) -> str:
    run = stack.api(
        "POST",
        f"/api/v2/dags/{dag_id}/dagRuns",
        {"logical_date": None, "conf": conf},
        token=token,
    )
    return str(run["dag_run_id"])


def _task_state(stack: AirflowStack, dag_id: str, run_id: str, task_id: str) -> str | None:
    rows = _query(
        str(stack.metadata_url),
        "SELECT state FROM task_instance WHERE dag_id = :dag AND run_id = :run AND task_id = :task",
        dag=dag_id,
        run=run_id,
        task=task_id,
    )
    return rows[0][0] if rows else None


def _shown(stack: AirflowStack, dag_id: str, run_id: str) -> Any:
    rows = _query(
        str(stack.metadata_url),
        "SELECT value FROM xcom WHERE dag_id = :dag AND run_id = :run AND task_id = 'show' "
        "AND key = 'return_value'",
        dag=dag_id,
        run=run_id,
    )
    value = rows[0][0] if rows else None
    while isinstance(value, str | bytes):
        value = json.loads(value)
    return value


def _post_summary(cluster: Cluster, chat_id: str) -> None:
    summary = unique(SUMMARY, "id")
    summary["data"]["chat_id"] = chat_id
    summary["data"]["summary"] = f"summary for {chat_id}"
    url = cluster.urls("celery-caleida")[2]  # the standalone receiver
    headers, body = senders.caleida(summary)
    answer = requests.post(url, data=body, headers=headers, timeout=30)
    assert answer.status_code == 202, answer.text


def test_leads_run_on_the_celery_worker_and_both_operators_deliver_once(
    cluster: Cluster,
) -> None:
    since = len(cluster.recorder.snapshot())
    load = Load(cluster.urls("celery-rkt"))
    # Each receiver also gets one delivery twice: the second is a duplicate (200, same id).
    for url in load.urls:
        lead = unique(LEAD, "data", "leadId")
        headers, body = senders.rkt(lead)
        first, again = (requests.post(url, data=body, headers=headers, timeout=30) for _ in "12")
        assert (first.status_code, again.status_code) == (202, 200)
        assert first.json()["id"] == again.json()["id"]
        load.acknowledged[first.json()["id"]] = lead["data"]["leadId"]
    load.answers["202"] += 3
    load.start(pause=0.3)
    try:
        wait_for(lambda: load.count() >= 30, timeout=120, interval=0.2)
    finally:
        load.finish()
    leads = wait_for(lambda: _settled(cluster, load), timeout=SETTLE_SECONDS, interval=2)
    assert _check_exactly_once(cluster, load, leads, since) == []


def test_the_sensor_waits_on_a_worker_and_in_the_triggerer(cluster: Cluster) -> None:
    stack = cluster.stack
    token = stack.token()
    chats = {
        dag_id: f"cht_{dag_id[-8:]}_{time.time_ns()}"
        for dag_id in ("e2e_celery_wait_deferred", "e2e_celery_wait_poking")
    }
    runs = {
        dag_id: _trigger(stack, dag_id, {"chat_id": chat}, token) for dag_id, chat in chats.items()
    }
    wait_for(
        lambda: (
            _task_state(stack, "e2e_celery_wait_deferred", runs["e2e_celery_wait_deferred"], "wait")
            == "deferred"
        ),
        timeout=180,
    )
    wait_for(
        lambda: (
            _task_state(stack, "e2e_celery_wait_poking", runs["e2e_celery_wait_poking"], "wait")
            == "running"
        ),
        timeout=180,
    )
    for chat in chats.values():
        _post_summary(cluster, chat)
    for dag_id, run_id in runs.items():
        wait_for(lambda d=dag_id, r=run_id: _task_state(stack, d, r, "show") in FINAL, timeout=240)
        assert _task_state(stack, dag_id, run_id, "show") == "success"
        assert _shown(stack, dag_id, run_id) == {
            "summary": f"summary for {chats[dag_id]}",
            "runner": RUNNER,
        }


@pytest.mark.parametrize("component", ["scheduler", "triggerer", CELERY_WORKER])
def test_kill_9_under_load_loses_nothing_and_sends_nothing_twice(
    cluster: Cluster, component: str
) -> None:
    stack = cluster.stack
    seed = int(os.environ.get("AIRHOOK_FAULT_SEED") or random.SystemRandom().randrange(2**32))
    chance = random.Random(seed)
    kill_at = chance.uniform(*KILL_WINDOW)
    dead_for = chance.uniform(0.5, 3.0)
    print(f"\n{component}: seed {seed}, kill after {kill_at:.1f} s, dead {dead_for:.1f} s")

    since = len(cluster.recorder.snapshot())
    token = stack.token()
    # Sensors deferred before the kill, satisfied while the component is down.
    waiting = {
        f"cht_kill_{component}_{n}_{time.time_ns()}": ""
        for n in range(2 if component == "triggerer" else 1)
    }
    for chat in waiting:
        waiting[chat] = _trigger(stack, "e2e_celery_wait_deferred", {"chat_id": chat}, token)
    for run_id in waiting.values():
        wait_for(
            lambda r=run_id: (
                _task_state(stack, "e2e_celery_wait_deferred", r, "wait") == "deferred"
            ),
            timeout=180,
        )

    load = Load(cluster.urls("celery-rkt"))
    started = time.monotonic()
    load.start()
    try:
        wait_for(lambda: time.monotonic() - started >= kill_at, timeout=60, interval=0.05)
        process = stack.processes[component]
        acked_at_kill = load.count()
        stack.kill_component(component)
        assert process.returncode == -9
        for chat in waiting:
            _post_summary(cluster, chat)
        time.sleep(dead_for)  # how long it stays dead; nothing is asserted on it
        cluster.restart(component)
        wait_for(
            lambda: (
                time.monotonic() - started >= LOAD_SECONDS and load.count() > acked_at_kill + 20
            ),
            timeout=120,
            interval=0.2,
        )
    finally:
        load.finish()
    print(
        f"{load.count()} acknowledged, {acked_at_kill} before the kill; "
        f"answers {dict(load.answers)}"
    )
    leads = wait_for(lambda: _settled(cluster, load), timeout=SETTLE_SECONDS, interval=2)
    retried = _query(
        str(stack.metadata_url),
        "SELECT count(*) FROM task_instance WHERE dag_id = :dag AND try_number > 1",
        dag=LEADS_DAG,
    )[0][0]
    print(f"settled; {retried} task instances of {LEADS_DAG} ran more than once so far")
    failures = _check_exactly_once(cluster, load, leads, since)
    for chat, run_id in waiting.items():
        wait_for(
            lambda r=run_id: _task_state(stack, "e2e_celery_wait_deferred", r, "show") in FINAL,
            timeout=SETTLE_SECONDS,
        )
        shown = _shown(stack, "e2e_celery_wait_deferred", run_id)
        if shown != {"summary": f"summary for {chat}", "runner": RUNNER}:
            failures.append(f"the sensor waiting for {chat} ended with {shown}")
    assert failures == [], f"seed {seed}:\n- " + "\n- ".join(failures)
