"""Throughput of airhook's outbound fan-out against the fastest plain client and task-per-event.

Run it with ``make bench-outbound`` (or ``.venv/bin/python bench/outbound.py``); it takes two to
four minutes, most of it the httpx loop's and Airflow's. Every server is on 127.0.0.1.

What is measured, in one run, against one receiver:

0. **The receiver**: a minimal raw ASGI app (:class:`CountingReceiver`) under uvicorn (1 worker,
   access log off) in a subprocess of its own process group, stopped at the end. It reads every
   request body, answers 200 ``ok``, and counts requests and ``webhook-id`` headers; ``GET
   /stats`` and ``GET /ids?from=N`` read the counts. Every target below talks to this receiver.
1. **airhook**: ``--events`` (10,000) RKT ``message.received`` events, each the catalog sample
   with its ``data.messageId`` numbered and ``data.content`` padded so the delivered body is
   about 1 KB, published with ``DeliveryEngine.publish`` to one subscription pointing at the
   receiver: the event validated against its schema, the body rendered by the shipped template
   ``envelope/rkt.json.j2``, signed with the ``standard`` scheme with a primary and a secondary
   secret (two HMACs per request), delivered concurrently over one aiohttp session, every
   outcome and attempt recorded in the airhook store (SQLite in a temp dir), as in production.
   The rate is deliveries per second of the whole ``publish`` call. The receiver must have got
   exactly the published ``webhook-id`` values, each once, and the engine must report every
   delivery delivered.
2. **plain loops** (the baselines): the very bodies the engine renders (``engine.prepare``,
   before any measurement), sent with no templating, no signing, no validation, no store:

   a. **plain aiohttp**: ``--concurrency`` (the engine's ``DEFAULT_CONCURRENCY``, 64) coroutines
      sharing one ``aiohttp.ClientSession``, each posting the next body, reading the answer and
      checking its status. aiohttp is the client the engine uses (the fastest asyncio client
      measured for this: the issue's numbers, requests 1,300/s, httpx async 330/s, aiohttp
      6,000/s), so this ratio is what airhook adds around the same client.
   b. **plain pycurl**: ``--concurrency`` reused libcurl easy handles (keep-alive connections)
      on one ``CurlMulti`` loop; libcurl does the HTTP in C, so this is the fastest plain loop a
      user could write in Python that we measured (2–3 times aiohttp's rate here): the aim's
      baseline is the fastest plain loop in each slot.
   c. **plain httpx**: ``--concurrency`` coroutines sharing one ``httpx.AsyncClient`` (HTTP/1.1,
      its pool limited to ``--concurrency`` connections, all kept alive), each posting the next
      body, reading the answer and checking its status: the aiohttp loop with httpx, the client
      Airflow itself installs, so that the project's one outbound client is chosen by measurement.

   All three run right before and right after each airhook run; each ratio uses the mean of the two,
   so a change of the machine's load biases neither side (``--rounds N``: N airhook runs, each
   between two slots of plain runs, each with 10,000 new events; the median ratio is
   reported). ``requests.Session``, sequential, on the first ``--requests-count`` (2,000)
   bodies, is printed for context only.
3. **task per event**: what a user gets with one Airflow task per event. A separate Airflow
   (:class:`devstack.AirflowStack`: its own ``AIRFLOW_HOME``, SQLite, ``airflow db
   migrate`` first, every process on 127.0.0.1) runs a DAG whose ``WebhookOperator`` is mapped
   over ``--tasks`` (20) of the same events, with the same template and the same signing (an
   ``airhook_webhook`` connection, ``standard``, two secrets), twice:

   a. ``dag.test()`` in a subprocess: every task instance runs in that one process, one after
      the other, with no scheduler, executor or worker start-up in between: the most favourable
      case for task-per-event. Timed around ``dag.test()`` alone (interpreter start, imports and
      DAG parse excluded).
   b. the LocalExecutor (``[core] parallelism`` 2, for 2 cores), as a deployment runs tasks:
      ``airflow dags test --use-executor`` with an API server running (the task processes talk
      to its execution API). Timed as the DAG run's start to end in Airflow's database.
      ``--no-executor`` skips it.

   The rate is tasks per second; the aim is judged against the faster of the two.

The machine this runs on may be small and shared (the receiver, the clients and Airflow share
the cores), so nothing here asserts a timing: the issue's aims (airhook at least 70 % of the
plain loop, and at least 50 times the task-per-event rate) are printed as information. The exit
status is 1 only if a correctness check fails: a count or id mismatch at the receiver, a
non-200 answer to a plain client, a delivery not delivered, a task that did not succeed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import json
import os
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import httpx
import requests
from _servers import uvicorn_app
from cryptography.fernet import Fernet

from airhook.core.catalog import load_catalog
from airhook.core.secrets import Secret, SecretPair
from airhook.core.ssrf import DestinationPolicy
from airhook.core.subscription import Subscription
from airhook.delivery import DEFAULT_CONCURRENCY, DeliveryEngine, Event
from airhook.store import Store
from airhook.store.migrate import upgrade
from devstack import AirflowStack

#: Events published by airhook and sent by the plain aiohttp loop.
EVENTS = 10_000
#: airhook runs per invocation, each between two plain aiohttp runs.
ROUNDS = 1
#: Bodies sent one at a time by requests.Session (context only).
REQUESTS_COUNT = 2_000
#: Tasks (one event each) of the task-per-event DAG.
TASKS = 20
#: Warm-up posts before the first measurement (new connections, the receiver's first requests).
WARMUP = 500
#: The shipped template, platform and event every target sends.
TEMPLATE = "envelope/rkt.json.j2"
PLATFORM = "rkt"
EVENT_NAME = "message.received"
#: The delivered body's size, about: data.content is padded to reach it.
BODY_SIZE = 1024
SUBSCRIPTION = "bench"
HOOK_PATH = "/hook"
CONN_ID = "bench_out"
DAG_ID = "airhook_bench_task_per_event"
#: The LocalExecutor's task processes at once (``[core] parallelism``).
EXECUTOR_PARALLELISM = 2
#: The issue's aims (information only).
AIM_PLAIN_RATIO = 0.70
AIM_TASK_RATIO = 50.0
#: Limits: a request or an Airflow command that takes longer has hung, not measured.
REQUEST_TIMEOUT_SECONDS = 10.0
AIRFLOW_TIMEOUT_SECONDS = 300


# --- the receiver --------------------------------------------------------------------------

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class CountingReceiver:
    """A raw ASGI app: 200 ``ok`` to every POST/PUT/PATCH, counting requests and webhook ids.

    ``GET /stats``: ``{"posts", "bytes", "with_id", "distinct_ids", "duplicates"}``.
    ``GET /ids?from=N``: the ``webhook-id`` values received, in arrival order, from the N-th.
    """

    def __init__(self) -> None:
        self.posts = 0
        self.bytes = 0
        self.ids: list[str] = []
        self.seen: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["method"] == "GET":
            await self._get(scope, send)
            return
        size = 0
        more = True
        while more:
            message = await receive()
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        self.posts += 1
        self.bytes += size
        for name, value in scope["headers"]:
            if name == b"webhook-id":
                mid = value.decode("latin-1")
                self.ids.append(mid)
                self.seen[mid] += 1
                break
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"2")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})

    async def _get(self, scope: Scope, send: Send) -> None:
        if scope["path"] == "/ids":
            query = parse_qs(scope.get("query_string", b"").decode())
            start = int(query.get("from", ["0"])[0])
            answer: Any = self.ids[start:]
        else:
            answer = {
                "posts": self.posts,
                "bytes": self.bytes,
                "with_id": len(self.ids),
                "distinct_ids": len(self.seen),
                "duplicates": sum(count - 1 for count in self.seen.values() if count > 1),
            }
        body = json.dumps(answer).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def receiver_app() -> CountingReceiver:
    """The receiver, for ``uvicorn --factory outbound:receiver_app``."""
    return CountingReceiver()


@contextmanager
def receiver_server(workdir: Path) -> Iterator[str]:
    """Run :func:`receiver_app` under uvicorn on 127.0.0.1 in its own process group.

    Yield its base URL; stop exactly that process group at the end.
    """
    log = workdir / "receiver-uvicorn.log"
    with uvicorn_app("outbound:receiver_app", "/stats", log, ["--backlog", "1024"]) as (url, _):
        yield url


def receiver_stats(url: str) -> dict[str, int]:
    """The receiver's counters."""
    answer = requests.get(url + "/stats", timeout=10)
    answer.raise_for_status()
    return dict(answer.json())


def receiver_ids(url: str, start: int) -> list[str]:
    """The webhook ids the receiver got, from the ``start``-th on."""
    answer = requests.get(url + "/ids", params={"from": start}, timeout=30)
    answer.raise_for_status()
    return list(answer.json())


# --- the events ----------------------------------------------------------------------------


def make_events(count: int, nonce: str) -> list[Event]:
    """``count`` RKT message.received events: the catalog sample, numbered and padded."""
    sample = load_catalog().event(PLATFORM, EVENT_NAME).sample
    events = []
    for index in range(count):
        payload = copy.deepcopy(dict(sample))
        payload["data"]["messageId"] = f"m_{nonce}_{index:06d}"
        events.append(Event(EVENT_NAME, payload, f"{nonce}/{index}", platform=PLATFORM))
    # Pad the text so that the rendered envelope is about BODY_SIZE bytes.
    probe = json.dumps(
        {"event": EVENT_NAME, "chatbotId": "", "timestamp": "", "data": events[0].payload["data"]},
        separators=(",", ":"),
    )
    pad = max(0, BODY_SIZE - len(probe) - len(sample["chatbotId"]) - len(sample["timestamp"]))
    text = (sample["data"]["content"] + " " + "lorem ipsum " * (pad // 12 + 1))[
        : len(sample["data"]["content"]) + pad
    ]
    for event in events:
        event.payload["data"]["content"] = text
    return events


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


# --- the targets ---------------------------------------------------------------------------


@dataclass
class Rate:
    """One measured run: ``count`` requests in ``seconds``.

    :param cpu_seconds: this process's CPU time (user + system, every thread) meanwhile, when
        the work ran in this process: the client's cost, whatever the receiver's.
    """

    count: int
    seconds: float
    cpu_seconds: float | None = None

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us(self) -> float | None:
        """Client CPU per request, in µs."""
        return None if self.cpu_seconds is None else self.cpu_seconds / self.count * 1e6


@contextmanager
def timed(into: list[float]) -> Iterator[None]:
    """Append the wall and the process CPU seconds the block took to ``into``."""
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    into.extend([time.perf_counter() - wall, time.process_time() - cpu])


@dataclass
class Airhook:
    """The engine over a fresh store with one subscription pointing at the receiver."""

    store: Store
    engine: DeliveryEngine
    subscription: Subscription


def setup_airhook(workdir: Path, receiver_url: str, concurrency: int) -> Airhook:
    """Create the store (SQLite in ``workdir``), the subscription and the engine.

    The engine gets what ``[airhook]`` configuration would give it (127.0.0.1 allowed as the
    tests allow it, 10 failures to disable, 10 s timeout) without reading Airflow's.
    """
    store = Store(f"sqlite:///{workdir / 'airhook.db'}")
    upgrade(store)
    cipher = Fernet(Fernet.generate_key())
    engine = DeliveryEngine(
        store,
        cipher,
        policy=DestinationPolicy(allow=["127.0.0.1/32"]),
        concurrency=concurrency,
        disable_after=10,
        default_timeout=10.0,
    )
    subscription = engine.subscriptions.create(
        Subscription(
            name=SUBSCRIPTION,
            url=receiver_url + HOOK_PATH,
            events=(EVENT_NAME,),
            scheme="standard",
            secrets=SecretPair(Secret(new_secret()), Secret(new_secret())),
            body_template=TEMPLATE,
        )
    )
    return Airhook(store, engine, subscription)


@dataclass
class Published:
    """What the airhook run did."""

    rate: Rate
    message_ids: list[str]
    summary: dict[str, Any]


def run_airhook(setup: Airhook, events: Sequence[Event], nonce: str) -> Published:
    """Publish the events through the engine; time the whole call."""
    spent: list[float] = []
    with timed(spent):
        result = setup.engine.publish(events, publication=f"bench-{nonce}")
    return Published(
        Rate(len(result.message_ids), *spent), result.message_ids, result.summary.as_dict()
    )


async def _plain_aiohttp(url: str, bodies: Sequence[bytes], concurrency: int) -> Counter[int]:
    statuses: Counter[int] = Counter()
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        pending = iter(bodies)

        async def worker() -> None:
            for body in pending:  # shared: each body is taken by exactly one worker
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    statuses[response.status] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def run_plain_aiohttp(url: str, bodies: Sequence[bytes], concurrency: int) -> tuple[Rate, int]:
    """Send every body; return the rate and how many answers were not 200."""
    spent: list[float] = []
    with timed(spent):
        statuses = asyncio.run(_plain_aiohttp(url, bodies, concurrency))
    return Rate(len(bodies), *spent), sum(n for code, n in statuses.items() if code != 200)


async def _plain_httpx(url: str, bodies: Sequence[bytes], concurrency: int) -> Counter[int]:
    statuses: Counter[int] = Counter()
    headers = {"Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        limits=limits, timeout=REQUEST_TIMEOUT_SECONDS, http1=True, http2=False
    ) as client:
        pending = iter(bodies)

        async def worker() -> None:
            for body in pending:  # shared: each body is taken by exactly one worker
                response = await client.post(url, content=body, headers=headers)
                statuses[response.status_code] += 1  # post() has read the whole answer

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def run_plain_httpx(url: str, bodies: Sequence[bytes], concurrency: int) -> tuple[Rate, int]:
    """The aiohttp loop with ``httpx.AsyncClient`` (HTTP/1.1, ``concurrency`` pooled
    connections); return the rate and how many answers were not 200."""
    spent: list[float] = []
    with timed(spent):
        statuses = asyncio.run(_plain_httpx(url, bodies, concurrency))
    return Rate(len(bodies), *spent), sum(n for code, n in statuses.items() if code != 200)


def run_plain_pycurl(url: str, bodies: Sequence[bytes], concurrency: int) -> tuple[Rate, int]:
    """Send every body with libcurl's multi interface: ``concurrency`` reused easy handles
    (keep-alive connections) driven by one ``CurlMulti`` loop; return the rate and how many
    answers were not 200 (transport errors included)."""
    import pycurl

    multi = pycurl.CurlMulti()
    idle: list[pycurl.Curl] = []
    for _ in range(min(concurrency, len(bodies))):
        handle = pycurl.Curl()
        handle.setopt(pycurl.URL, url)
        handle.setopt(pycurl.POST, 1)
        # "Expect:" off: libcurl would otherwise wait for a 100-continue before large bodies.
        handle.setopt(pycurl.HTTPHEADER, ["Content-Type: application/json", "Expect:"])
        handle.setopt(pycurl.TIMEOUT_MS, int(REQUEST_TIMEOUT_SECONDS * 1000))
        handle.setopt(pycurl.WRITEFUNCTION, len)  # read the answer, keep nothing
        idle.append(handle)
    handles = list(idle)
    bad = done = 0
    pending = iter(bodies)
    spent: list[float] = []
    with timed(spent):
        while done < len(bodies):
            while idle:
                body = next(pending, None)
                if body is None:
                    break
                handle = idle.pop()
                handle.setopt(pycurl.POSTFIELDS, body)
                multi.add_handle(handle)
            while multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                pass
            while True:
                queued, finished, failed = multi.info_read()
                for handle in finished:
                    bad += handle.getinfo(pycurl.RESPONSE_CODE) != 200
                bad += len(failed)
                for handle in [*finished, *(f[0] for f in failed)]:
                    multi.remove_handle(handle)
                    idle.append(handle)
                    done += 1
                if not queued:
                    break
            if done < len(bodies):
                multi.select(1.0)
    for handle in handles:
        handle.close()
    multi.close()
    return Rate(len(bodies), *spent), bad


def run_plain_requests(url: str, bodies: Sequence[bytes]) -> tuple[Rate, int]:
    """Send the bodies one at a time over one ``requests.Session``."""
    bad = 0
    headers = {"Content-Type": "application/json"}
    spent: list[float] = []
    with requests.Session() as session, timed(spent):
        for body in bodies:
            if (
                session.post(
                    url, data=body, headers=headers, timeout=REQUEST_TIMEOUT_SECONDS
                ).status_code
                != 200
            ):
                bad += 1
    return Rate(len(bodies), *spent), bad


# --- task per event ------------------------------------------------------------------------

DAG_FILE = f'''"""One WebhookOperator task per event (mapped), for bench/outbound.py."""

import json
from pathlib import Path

from airflow.sdk import dag

from airhook.operators.webhook import WebhookOperator

EVENTS = json.loads((Path(__file__).parent / "events.json").read_text())


@dag(schedule=None, catchup=False)
def {DAG_ID}():
    WebhookOperator.partial(
        task_id="send",
        webhook_conn_id="{CONN_ID}",
        body_template="{TEMPLATE}",
        event_type=("{PLATFORM}", "{EVENT_NAME}"),
        retries=0,
    ).expand(
        template_vars=[
            {{"event": e, "event_name": "{EVENT_NAME}", "platform": "{PLATFORM}"}} for e in EVENTS
        ]
    )


bench_dag = {DAG_ID}()
'''

# Runs in the Airflow subprocess: time dag.test() alone, report JSON on the last line.
RUNNER = textwrap.dedent(
    """
    import json, runpy, sys, time
    namespace = runpy.run_path(sys.argv[1])
    dag = next(v for v in namespace.values() if getattr(v, "dag_id", None) == sys.argv[2])
    started = time.perf_counter()
    run = dag.test()
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "run_id": run.run_id}))
    """
)


@dataclass
class TaskRun:
    """One DAG run of the task-per-event DAG.

    :param rate: tasks in seconds: ``dag.test()`` timed in its process, or the DAG run's start
        to end as Airflow recorded it (LocalExecutor).
    :param command_seconds: the whole command, interpreter start and DAG parse included.
    """

    label: str
    rate: Rate
    command_seconds: float
    state: str
    states: Counter[str] = field(default_factory=Counter)


def _read_run(home: Path, run_id: str | None) -> tuple[str, Counter[str], float | None]:
    """A run's state, its task instances' states and its duration, from Airflow's SQLite DB.

    ``run_id`` ``None``: the DAG's latest run.
    """
    database = sqlite3.connect(f"file:{home / 'airflow.db'}?mode=ro", uri=True)
    try:
        if run_id is None:
            run_id = database.execute(
                "SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1", (DAG_ID,)
            ).fetchone()[0]
        state, start, end = database.execute(
            "SELECT state, start_date, end_date FROM dag_run WHERE dag_id = ? AND run_id = ?",
            (DAG_ID, run_id),
        ).fetchone()
        states = Counter(
            str(row[0])
            for row in database.execute(
                "SELECT state FROM task_instance WHERE dag_id = ? AND run_id = ?",
                (DAG_ID, run_id),
            )
        )
    finally:
        database.close()
    seconds = None
    if start and end:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    return str(state), states, seconds


def _run_command(args: list[str], env: dict[str, str], what: str, log: Path) -> tuple[str, float]:
    """Run a command in its own process group; return its output and wall time."""
    started = time.perf_counter()
    result = subprocess.run(
        args,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=AIRFLOW_TIMEOUT_SECONDS,
        start_new_session=True,
    )
    seconds = time.perf_counter() - started
    with log.open("a") as out:
        out.write(f"--- {what}\n{result.stdout}{result.stderr}")
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise RuntimeError(f"{what} failed (exit {result.returncode}):\n{tail}")
    return result.stdout, seconds


def run_task_per_event(
    workdir: Path, receiver_url: str, events: Sequence[Event], executor: bool
) -> tuple[list[TaskRun], float]:
    """Run the mapped DAG in a fresh Airflow: ``dag.test()``, then (``executor``) under the
    LocalExecutor with an API server. Return the runs and how long ``db migrate`` took."""
    dags = workdir / "dags"
    dags.mkdir()
    (dags / "events.json").write_text(json.dumps([e.payload for e in events]))
    dag_file = dags / f"{DAG_ID}.py"
    dag_file.write_text(DAG_FILE)
    connection = {
        "conn_type": "airhook_webhook",
        "host": receiver_url + HOOK_PATH,
        "password": new_secret(),
        "extra": {"signing": "standard", "secondary_secret": new_secret()},
    }
    stack = AirflowStack(
        home=workdir / "airflow",
        dags_folder=dags,
        extra_env={
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": str(EXECUTOR_PARALLELISM),
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
            "AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS": "127.0.0.1/32",
            f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps(connection),
        },
    )
    log = workdir / "airflow.log"
    stack.home.mkdir(parents=True)
    env = stack.env()
    _, migrate_seconds = _run_command(
        [sys.executable, "-m", "airflow", "db", "migrate"], env, "airflow db migrate", log
    )
    runs: list[TaskRun] = []

    output, command_seconds = _run_command(
        [sys.executable, "-c", RUNNER, str(dag_file), DAG_ID], env, "dag.test()", log
    )
    report = json.loads(output.strip().splitlines()[-1])
    state, states, _ = _read_run(stack.home, report["run_id"])
    rate = Rate(len(events), float(report["seconds"]))
    runs.append(TaskRun("dag.test()", rate, command_seconds, state, states))

    if executor:
        try:
            stack.start(components=("api-server",), timeout=AIRFLOW_TIMEOUT_SECONDS)
            _, command_seconds = _run_command(
                [sys.executable, "-m", "airflow", "dags", "test", DAG_ID, "--use-executor"],
                env,
                "airflow dags test --use-executor",
                log,
            )
        finally:
            stack.stop()
        state, states, seconds = _read_run(stack.home, None)
        rate = Rate(len(events), seconds if seconds is not None else command_seconds)
        label = f"LocalExecutor ({EXECUTOR_PARALLELISM} parallel)"
        runs.append(TaskRun(label, rate, command_seconds, state, states))
    return runs, migrate_seconds


# --- the run -------------------------------------------------------------------------------


def _met(flag: bool) -> str:
    return "met" if flag else "NOT met"


@dataclass
class Checked:
    """The receiver's view of the airhook run."""

    posts: int
    distinct: int
    duplicates: int
    missing: int
    unexpected: int

    @property
    def ok(self) -> bool:
        return self.posts == self.distinct and not (
            self.duplicates or self.missing or self.unexpected
        )


def check_airhook(receiver: str, before: dict[str, int], published: Published) -> Checked:
    """Compare the webhook ids the receiver got since ``before`` with the published ones."""
    after = receiver_stats(receiver)
    counts = Counter(receiver_ids(receiver, before["with_id"]))
    expected = set(published.message_ids)
    return Checked(
        posts=after["posts"] - before["posts"],
        distinct=len(counts),
        duplicates=sum(n - 1 for n in counts.values() if n > 1),
        missing=len(expected - set(counts)),
        unexpected=len(set(counts) - expected),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run every target; print the table and the summary; exit 1 on a failed check."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=EVENTS, help="events airhook publishes")
    parser.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help="airhook runs, each between two plain aiohttp runs (ratios: their median)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help="the engine's requests in flight, and the plain loop's coroutines",
    )
    parser.add_argument("--requests-count", type=int, default=REQUESTS_COUNT)
    parser.add_argument("--tasks", type=int, default=TASKS, help="tasks of the task-per-event DAG")
    parser.add_argument(
        "--no-executor", action="store_true", help="task per event with dag.test() only"
    )
    parser.add_argument("--no-airflow", action="store_true", help="no task-per-event run at all")
    args = parser.parse_args(argv)

    total_started = time.perf_counter()
    failures: list[str] = []
    nonce = secrets.token_hex(4)
    plains: list[Rate] = []
    curls: list[Rate] = []
    httpxs: list[Rate] = []
    rounds: list[tuple[Published, Checked]] = []
    task_runs: list[TaskRun] = []
    migrate_seconds = 0.0
    with tempfile.TemporaryDirectory(prefix="airhook-bench-outbound-") as tmp:
        workdir = Path(tmp)
        with receiver_server(workdir) as receiver:
            hook_url = receiver + HOOK_PATH
            setup = setup_airhook(workdir, receiver, args.concurrency)
            events = make_events(args.events, f"{nonce}-1")

            # The bytes airhook will send, rendered by the engine itself (timed for information).
            started = time.perf_counter()
            bodies = [d.body.encode("utf-8") for d in setup.engine.prepare(events)]
            prepare_seconds = time.perf_counter() - started
            sizes = sorted(len(b) for b in bodies)

            def plain(label: str, count: int, send: Callable[[], tuple[Rate, int]]) -> Rate:
                before = receiver_stats(receiver)["posts"]
                rate, bad = send()
                got = receiver_stats(receiver)["posts"] - before
                if bad or got != count:
                    failures.append(f"{label}: {bad} answers not 200, {got} of {count} received")
                return rate

            def plain_loops(number: int) -> None:
                """One slot of plain runs: aiohttp, pycurl (the fastest loop here), httpx."""
                plains.append(
                    plain(
                        f"plain aiohttp {number}",
                        len(bodies),
                        lambda: run_plain_aiohttp(hook_url, bodies, args.concurrency),
                    )
                )
                curls.append(
                    plain(
                        f"plain pycurl {number}",
                        len(bodies),
                        lambda: run_plain_pycurl(hook_url, bodies, args.concurrency),
                    )
                )
                httpxs.append(
                    plain(
                        f"plain httpx {number}",
                        len(bodies),
                        lambda: run_plain_httpx(hook_url, bodies, args.concurrency),
                    )
                )

            warm = bodies[:WARMUP]
            plain("warm-up", len(warm), lambda: run_plain_aiohttp(hook_url, warm, 8))
            plain("warm-up", len(warm), lambda: run_plain_pycurl(hook_url, warm, 8))
            plain("warm-up", len(warm), lambda: run_plain_httpx(hook_url, warm, 8))
            plain_loops(1)
            for number in range(1, args.rounds + 1):
                if number > 1:
                    events = make_events(args.events, f"{nonce}-{number}")
                before = receiver_stats(receiver)
                published = run_airhook(setup, events, f"{nonce}-{number}")
                checked = check_airhook(receiver, before, published)
                if not (
                    checked.ok
                    and checked.posts == len(events) == len(published.message_ids)
                    and published.summary["delivered"] == len(events)
                ):
                    failures.append(
                        f"airhook {number}: {len(events)} events, {len(published.message_ids)} "
                        f"deliveries, engine summary {published.summary}; the receiver got "
                        f"{checked.posts} requests, {checked.distinct} distinct ids, "
                        f"{checked.duplicates} duplicates, {checked.missing} missing, "
                        f"{checked.unexpected} unexpected"
                    )
                rounds.append((published, checked))
                plain_loops(number + 1)
            few = bodies[: args.requests_count]
            sequential = plain(
                "requests.Session", len(few), lambda: run_plain_requests(hook_url, few)
            )
            setup.store.dispose()

            if not args.no_airflow:
                before = receiver_stats(receiver)
                task_runs, migrate_seconds = run_task_per_event(
                    workdir, receiver, events[: args.tasks], executor=not args.no_executor
                )
                after = receiver_stats(receiver)
                expected = args.tasks * len(task_runs)
                got = after["posts"] - before["posts"]
                new_ids = after["distinct_ids"] - before["distinct_ids"]
                for run in task_runs:
                    if run.state != "success" or run.states != Counter(success=args.tasks):
                        failures.append(
                            f"task per event, {run.label}: run {run.state}, "
                            f"tasks {dict(run.states)}"
                        )
                if got != expected or new_ids != expected:
                    failures.append(
                        f"task per event: the receiver got {got} requests with {new_ids} new ids "
                        f"for {expected} tasks"
                    )

    # Each airhook run against the mean of the plain runs right before and after it: the same
    # client (aiohttp), and the fastest plain loop of each slot (the aim's baseline).
    fastest_plain = [
        max(slot, key=lambda r: r.per_second) for slot in zip(plains, curls, httpxs, strict=True)
    ]

    def ratios_to(baseline: list[Rate]) -> list[float]:
        return [
            published.rate.per_second
            / statistics.mean([baseline[i].per_second, baseline[i + 1].per_second])
            for i, (published, _) in enumerate(rounds)
        ]

    ratios = ratios_to(plains)
    ratio_plain = statistics.median(ratios)
    fastest_ratios = ratios_to(fastest_plain)
    ratio_fastest = statistics.median(fastest_ratios)
    airhook_rate = statistics.median(p.rate.per_second for p, _ in rounds)
    plain_rate = statistics.median(p.per_second for p in plains)
    curl_rate = statistics.median(p.per_second for p in curls)
    httpx_rate = statistics.median(p.per_second for p in httpxs)
    # Each plain loop against the fastest loop of its own slot (the same minute of load).
    httpx_to_fastest = statistics.median(
        h.per_second / f.per_second for h, f in zip(httpxs, fastest_plain, strict=True)
    )
    aiohttp_to_fastest = statistics.median(
        a.per_second / f.per_second for a, f in zip(plains, fastest_plain, strict=True)
    )

    print(
        f"airhook bench/outbound.py: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"{args.events:,} {PLATFORM} {EVENT_NAME} events per airhook run, rendered with "
        f"{TEMPLATE} ({sizes[0]}-{sizes[-1]} B), concurrency {args.concurrency}; total "
        f"{time.perf_counter() - total_started:.0f} s"
    )
    print()
    print(f"{'target':<44} {'requests':>8} {'seconds':>8} {'per s':>9} {'client CPU µs':>14}")

    def line(name: str, rate: Rate) -> None:
        per_second = (
            f"{rate.per_second:,.0f}" if rate.per_second >= 10 else f"{rate.per_second:.2f}"
        )
        cpu = "" if rate.cpu_us is None else f"{rate.cpu_us:,.0f}"
        print(f"{name:<44} {rate.count:>8,} {rate.seconds:>8.2f} {per_second:>9} {cpu:>14}")

    for number, (published, _) in enumerate(rounds, 1):
        line(f"plain aiohttp ({number})", plains[number - 1])
        line(f"plain pycurl ({number})", curls[number - 1])
        line(f"plain httpx ({number})", httpxs[number - 1])
        line(f"airhook DeliveryEngine.publish ({number})", published.rate)
    line(f"plain aiohttp ({len(plains)})", plains[-1])
    line(f"plain pycurl ({len(curls)})", curls[-1])
    line(f"plain httpx ({len(httpxs)})", httpxs[-1])
    line("requests.Session, sequential", sequential)
    for run in task_runs:
        line(f"task per event, {run.label}", run.rate)
    print()
    print(
        "  airhook: validate, render, outbox rows (added claimed), sign (standard, primary + "
        "secondary), send, record each attempt (SQLite); end to end"
    )
    print(
        f"    validate + render alone (engine.prepare, before the runs): {prepare_seconds:.2f} s "
        f"= {prepare_seconds / args.events * 1e6:.0f} µs per event"
    )
    for number, (_, checked) in enumerate(rounds, 1):
        verdict = "OK" if checked.ok and checked.posts == args.events else "FAILED"
        print(
            f"    receiver ({number}): {checked.posts:,} requests, {checked.distinct:,} distinct "
            f"webhook ids, {checked.duplicates} duplicates, {checked.missing} missing → {verdict}"
        )
    print(
        f"  plain aiohttp: the same bodies, {args.concurrency} coroutines on one session; no "
        "template, no signature, no store"
    )
    print(
        f"  plain pycurl: the same bodies, {args.concurrency} reused libcurl handles on one "
        "CurlMulti loop (C does the HTTP); the fastest plain Python loop measured here"
    )
    print(
        f"  plain httpx: the same bodies, {args.concurrency} coroutines on one httpx.AsyncClient "
        f"(HTTP/1.1, {args.concurrency} pooled connections)"
    )
    print(
        "  client CPU µs: this process's user + system CPU time (all threads) per request "
        "while the target ran; the receiver is another process"
    )
    for run in task_runs:
        how = (
            "timed around dag.test() (sequential, in one process)"
            if run.label == "dag.test()"
            else "the DAG run's start to end in Airflow's DB (airflow dags test --use-executor, "
            "API server running)"
        )
        print(
            f"  task per event, {run.label}: {args.tasks} mapped WebhookOperator tasks; {how}; "
            f"the whole command {run.command_seconds:.1f} s"
        )
    if task_runs:
        print(f"  airflow db migrate: {migrate_seconds:.1f} s (not counted)")
    print()
    print(
        f"ratio airhook / fastest plain loop: {ratio_fastest:.2f} (each airhook run against the "
        f"mean of the fastest plain runs before and after it: "
        f"{', '.join(f'{r:.2f}' for r in fastest_ratios)})"
    )
    print(
        f"ratio airhook / plain aiohttp (the client airhook uses): {ratio_plain:.2f} "
        f"({', '.join(f'{r:.2f}' for r in ratios)})"
    )
    airhook_cpu = statistics.median(p.rate.cpu_us or 0.0 for p, _ in rounds)
    plain_cpu = statistics.median(p.cpu_us or 0.0 for p in plains)
    curl_cpu = statistics.median(p.cpu_us or 0.0 for p in curls)
    httpx_cpu = statistics.median(p.cpu_us or 0.0 for p in httpxs)
    print(
        f"client CPU per request, airhook / plain aiohttp / plain pycurl / plain httpx: "
        f"{airhook_cpu:,.0f} / {plain_cpu:,.0f} / {curl_cpu:,.0f} / {httpx_cpu:,.0f} µs"
    )
    print(f"ratio plain pycurl / plain aiohttp: {curl_rate / plain_rate:.1f}")
    print(
        f"ratio plain httpx / plain aiohttp: {httpx_rate / plain_rate:.2f}; to the fastest plain "
        f"loop of the same slot (median): httpx {httpx_to_fastest:.2f}, aiohttp "
        f"{aiohttp_to_fastest:.2f}"
    )
    print(f"ratio plain aiohttp / requests.Session: {plain_rate / sequential.per_second:.1f}")
    task_ratios = {run.label: airhook_rate / run.rate.per_second for run in task_runs}
    for label, ratio in task_ratios.items():
        print(f"ratio airhook / task per event, {label}: {ratio:,.0f}")
    print()
    print("the issue's aims (information only; the exit status does not depend on them):")
    print(
        f"  ≥ {AIM_PLAIN_RATIO:.0%} of the fastest plain loop: {ratio_fastest:.0%} → "
        f"{_met(ratio_fastest >= AIM_PLAIN_RATIO)}"
    )
    if task_ratios:
        # Judged against the fastest task-per-event variant: the hardest comparison for airhook.
        least = min(task_ratios.values())
        print(
            f"  ≥ {AIM_TASK_RATIO:.0f}x the task-per-event rate: {least:,.0f}x (against the "
            f"fastest variant) → {_met(least >= AIM_TASK_RATIO)}"
        )
    print()
    for failure in failures:
        print(f"FAILED: {failure}")
    summary = (
        f"airhook outbound: {airhook_rate:,.0f} signed, templated deliveries/s = "
        f"{ratio_fastest:.2f}x the fastest plain loop (pycurl {curl_rate:,.0f}/s, aiohttp "
        f"{plain_rate:,.0f}/s, httpx {httpx_rate:,.0f}/s), {ratio_plain:.2f}x plain aiohttp"
    )
    if task_ratios:
        fastest = max(task_runs, key=lambda run: run.rate.per_second)
        summary += (
            f", {min(task_ratios.values()):,.0f}x one task per event "
            f"({fastest.rate.per_second:.2f}/s, {fastest.label})"
        )
    print(summary + ("; CORRECTNESS CHECK FAILED" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
