"""A burst of webhooks against a complete Airflow, on SQLite and on PostgreSQL.

For each database, one Airflow (api-server, scheduler, dag-processor, triggerer on 127.0.0.1,
AirflowStack's defaults: LocalExecutor) with one DAG, ``e2e_burst``, scheduled on the ``burst``
source's ``message.received`` events. A client on this machine sends unique, signed 1 KB RKT
deliveries over 32 and then over 128 concurrent connections: each phase is LOAD_SECONDS of
sustained load, then TAIL_BURSTS short bursts of TAIL_SECONDS. Once Airflow has settled, a phase
checks:

- every answer was a 2xx or a 503 with ``Retry-After``, with no transport error, and the load
  went past the backpressure bound (BACKLOG_BOUND undispatched events): some answers were
  ``503 backpressure``;
- every component is alive and no lock error (``database is locked``, a deadlock, a lock
  timeout) is in its log;
- every acknowledged event is exactly one asset event, none twice;
- every one of those asset events was consumed by a DAG run, every run that consumed them
  succeeded, and the ids its task saw in ``triggering_asset_events`` (its XCom) are the
  acknowledged ids, each once.

Why the short bursts: events can be lost to every run only at the end of a burst. Airflow's
scheduler reads the DAG's queue row, and a dispatch round that commits before the scheduler
deletes the row loses its events to the run (whose ``run_after`` is older) and its row to the
delete. In the middle of a burst a later round queues the DAG again and the next run takes them;
after the last round nothing does. On SQLite about one burst end in five showed it here (5 of
25 three-second bursts; none of 25 on PostgreSQL), so each phase ends a burst 1 + TAIL_BURSTS
times, and waits after each until every event is consumed, or until Airflow is idle with events
left over (which nothing will consume: sending more would hide them).

Airflow's metadata DB is read directly: tens of thousands of asset events through the REST API
would take longer than the burst. Nothing here asserts a duration: the load stops itself (time
and count), and the waits end when a condition holds, when Airflow has nothing left to do and
nothing changed for STILL_SECONDS, or at a generous deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from airhook.core.catalog import load_catalog
from devstack import COMPONENTS, AirflowStack
from tests.conftest import create_postgres_database
from tests.e2e import senders
from tests.e2e.conftest import E2E_DAGS, wait_for

#: The concurrent connections of each phase, and its seconds of sustained load.
CONNECTIONS = (32, 128)
LOAD_SECONDS = 30
#: Then this many short bursts of this many seconds, each waited out (see the module docstring).
TAIL_BURSTS = 8
TAIL_SECONDS = 2
#: At most this many requests per load (far more than two cores answer in LOAD_SECONDS).
MAX_REQUESTS = 200_000
#: A single request's limit; a load ends by its seconds + this + a margin.
REQUEST_TIMEOUT = 60
#: Size of every request body, in bytes.
BODY_SIZE = 1024
#: How long, at most, a phase waits for Airflow after its sustained load (all waits together).
SETTLE_SECONDS = 240
#: Airflow idle (no queue row, no unfinished run) and nothing changing for this long: it will
#: not consume what is left. airhook's own re-queueing acts within seconds of a burst's end.
STILL_SECONDS = 30
POLL_SECONDS = 1
#: The receiver's backlog bound (``[airhook] backpressure_backlog``): low enough that the load
#: passes it (a dispatch round takes longer than the few ms in which this many arrive), so each
#: phase runs past it and back; every answer is still a 2xx or a 503 with ``Retry-After``.
BACKLOG_BOUND = 20

SOURCE = "burst"
EVENT = "message.received"
ASSET_NAME = f"airhook://{SOURCE}/{EVENT}"
DAG_ID = "e2e_burst"
TASK_ID = "seen"
FINAL_STATES = {"success", "failed"}
LOCK_ERROR = re.compile(
    r"database is locked|deadlock|lock timeout|lock_timeout|LockNotAvailable"
    r"|could not obtain lock",
    re.IGNORECASE,
)

# Airflow's tables, as much of them as these checks read.
ASSET = sa.table("asset", sa.column("id"), sa.column("name"))
ASSET_EVENT = sa.table(
    "asset_event", sa.column("id"), sa.column("asset_id"), sa.column("extra", sa.JSON)
)
DAGRUN_ASSET_EVENT = sa.table("dagrun_asset_event", sa.column("dag_run_id"), sa.column("event_id"))
DAG_RUN = sa.table(
    "dag_run", sa.column("id"), sa.column("dag_id"), sa.column("run_id"), sa.column("state")
)
SCHEDULE_REFERENCE = sa.table(
    "dag_schedule_asset_reference", sa.column("asset_id"), sa.column("dag_id")
)
QUEUE = sa.table("asset_dag_run_queue", sa.column("asset_id"), sa.column("target_dag_id"))
XCOM = sa.table(
    "xcom",
    sa.column("dag_run_id"),
    sa.column("dag_id"),
    sa.column("task_id"),
    sa.column("key"),
    sa.column("value"),
)


# --- the stack ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AirflowStack]:
    """Airflow with the burst DAG and the ``burst`` source, on SQLite or on PostgreSQL."""
    root = tmp_path_factory.mktemp(f"burst-{request.param}")
    dags = root / "dags"
    dags.mkdir()
    shutil.copy(E2E_DAGS / "e2e_burst.py", dags / "e2e_burst.py")
    urls: dict[str, str] = {}
    if request.param == "postgresql":
        base = request.getfixturevalue("postgres_url")
        urls = {
            "metadata_url": create_postgres_database(base),
            "airhook_url": create_postgres_database(base),
        }
    airflow = AirflowStack(
        home=root / "home",
        dags_folder=dags,
        extra_env={
            "AIRFLOW__AIRHOOK__BACKPRESSURE_BACKLOG": str(BACKLOG_BOUND),
            "AIRFLOW__AIRHOOK__BACKPRESSURE_CHECK_SECONDS": "0.2",
            "AIRFLOW__AIRHOOK__BACKPRESSURE_RETRY_AFTER_SECONDS": "1",
        },
        **urls,
    )
    airflow.migrate()
    airflow.airhook(
        "sources",
        "create",
        SOURCE,
        "--profile",
        "rkt",
        "--secret-file",
        "-",
        stdin=senders.RKT_SECRET + "\n",
    )
    try:
        airflow.start()
        airflow.wait_for_dags([DAG_ID])
        # The dispatcher writes only to assets that exist, and queues only DAGs that reference
        # them: deliveries before that would become no asset event at all.
        wait_for(lambda: _scheduled_asset_id(airflow) is not None, timeout=120)
        yield airflow
    finally:
        airflow.stop()


@pytest.fixture(scope="module")
def scanned(stack: AirflowStack) -> dict[str, int]:
    """How many bytes of each component's log the earlier phases have checked already."""
    return {}


def _metadata_engine(stack: AirflowStack) -> sa.Engine:
    return sa.create_engine(stack.metadata_url or f"sqlite:///{stack.home / 'airflow.db'}")


def _scheduled_asset_id(stack: AirflowStack) -> int | None:
    engine = _metadata_engine(stack)
    try:
        with engine.connect() as connection:
            return connection.execute(
                sa.select(ASSET.c.id)
                .select_from(
                    ASSET.join(SCHEDULE_REFERENCE, SCHEDULE_REFERENCE.c.asset_id == ASSET.c.id)
                )
                .where(ASSET.c.name == ASSET_NAME, SCHEDULE_REFERENCE.c.dag_id == DAG_ID)
            ).scalar()
    finally:
        engine.dispose()


# --- the load ----------------------------------------------------------------------------------


class Deliveries:
    """Unique signed RKT ``message.received`` deliveries of BODY_SIZE bytes each."""

    def __init__(self) -> None:
        self._sample = load_catalog().event("rkt", EVENT).sample
        self._nonce = uuid.uuid4().hex[:12]
        content = self._sample["data"]["content"]
        missing = BODY_SIZE - len(senders.body_of(self._payload(0, content)))
        pad = " Please also tell me the delivery times and the customs fees for Ontario."
        self._content = (content + pad * (missing // len(pad) + 1))[: len(content) + missing]
        assert len(senders.body_of(self._payload(0, self._content))) == BODY_SIZE

    def _payload(self, index: int, content: str) -> dict[str, Any]:
        data = {**self._sample["data"], "messageId": f"m-{self._nonce}-{index:09d}"}
        return {**self._sample, "data": {**data, "content": content}}

    def __call__(self, index: int) -> tuple[dict[str, str], bytes]:
        return senders.rkt(self._payload(index, self._content))


@dataclass
class Answers:
    """What the client saw: each answer (by status, or the transport error) and the ids."""

    counts: Counter[str] = field(default_factory=Counter)
    acknowledged: list[str] = field(default_factory=list)

    @property
    def unacceptable(self) -> dict[str, int]:
        """Answers other than a 2xx with an id or a 503 with ``Retry-After``, and errors."""
        return {
            answer: count
            for answer, count in self.counts.items()
            if not re.fullmatch(r"2\d\d|503|503 backpressure", answer)
        }


async def _load(url: str, connections: int, seconds: float, answers: Answers) -> None:
    """Send deliveries over ``connections`` connections for ``seconds``; record every answer."""
    deliveries = Deliveries()
    numbers = itertools.count()
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        while loop.time() < stop_at:
            index = next(numbers)
            if index >= MAX_REQUESTS:
                return
            headers, body = deliveries(index)
            try:
                async with session.post(url, data=body, headers=headers) as answer:
                    raw = await answer.read()
                    status = str(answer.status)
                    if answer.status == 503 and "Retry-After" not in answer.headers:
                        status = "503 without Retry-After"
                    elif answer.status == 503 and b'"backpressure"' in raw:
                        status = "503 backpressure"
                    elif 200 <= answer.status < 300:
                        try:
                            answers.acknowledged.append(str(json.loads(raw)["id"]))
                        except (ValueError, KeyError, TypeError):
                            status = f"{status} without an id"
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                status = type(exc).__name__
            answers.counts[status] += 1

    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.wait_for(
            asyncio.gather(*(client(session) for _ in range(connections))),
            seconds + REQUEST_TIMEOUT + 30,
        )


# --- Airflow's view ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """The burst asset's newer events, their runs and what is left to do, from the metadata DB."""

    #: asset event ids per airhook event id (asset events after the phase began)
    events: dict[str, list[int]]
    #: asset event id -> the dag_run ids (of e2e_burst) that consumed it
    consumers: dict[int, list[int]]
    #: dag_run id -> (run_id, state), every run of e2e_burst
    runs: dict[int, tuple[str, str]]
    #: queue rows of e2e_burst (a run the scheduler is yet to create)
    queued: int

    def summary(self, acknowledged: set[str]) -> tuple[int, int, int, int, int]:
        """(missing, asset events, unconsumed, unfinished runs, queue rows) of these ids."""
        missing = sum(1 for event_id in acknowledged if event_id not in self.events)
        ours = [event for event_id in acknowledged for event in self.events.get(event_id, ())]
        unconsumed = sum(1 for event in ours if not self.consumers.get(event))
        unfinished = sum(1 for _, state in self.runs.values() if state not in FINAL_STATES)
        return missing, len(ours), unconsumed, unfinished, self.queued

    def runs_of(self, acknowledged: set[str]) -> set[int]:
        """The runs that consumed asset events of these ids."""
        return {
            run
            for event_id in acknowledged
            for event in self.events.get(event_id, ())
            for run in self.consumers.get(event, ())
        }


def _newest_event(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.max(ASSET_EVENT.c.id))).scalar() or 0)


def _snapshot(engine: sa.Engine, asset_id: int, since: int) -> Snapshot:
    """Read what Airflow did with the burst asset's events newer than ``since``."""
    # In the order events, links, runs, queue: events and links only grow, so an event read
    # unconsumed was unconsumed when the runs and the queue were read after it.
    event_id = ASSET_EVENT.c.extra["airhook_event_id"].as_string()
    with engine.connect() as connection:
        events: dict[str, list[int]] = {}
        for event, airhook_id in connection.execute(
            sa.select(ASSET_EVENT.c.id, event_id).where(
                ASSET_EVENT.c.asset_id == asset_id, ASSET_EVENT.c.id > since
            )
        ):
            events.setdefault(airhook_id, []).append(event)
        consumers: dict[int, list[int]] = {}
        for event, dag_run in connection.execute(
            sa.select(DAGRUN_ASSET_EVENT.c.event_id, DAGRUN_ASSET_EVENT.c.dag_run_id)
            .select_from(
                DAGRUN_ASSET_EVENT.join(DAG_RUN, DAG_RUN.c.id == DAGRUN_ASSET_EVENT.c.dag_run_id)
            )
            .where(DAG_RUN.c.dag_id == DAG_ID, DAGRUN_ASSET_EVENT.c.event_id > since)
        ):
            consumers.setdefault(event, []).append(dag_run)
        runs = {
            run: (run_id, state)
            for run, run_id, state in connection.execute(
                sa.select(DAG_RUN.c.id, DAG_RUN.c.run_id, DAG_RUN.c.state).where(
                    DAG_RUN.c.dag_id == DAG_ID
                )
            )
        }
        queued = connection.execute(
            sa.select(sa.func.count()).select_from(QUEUE).where(QUEUE.c.target_dag_id == DAG_ID)
        ).scalar_one()
    return Snapshot(events, consumers, runs, int(queued))


@dataclass(frozen=True)
class Waited:
    snapshot: Snapshot
    #: "done", "idle" (events left that nothing will consume) or "deadline"
    outcome: str
    seconds: float


def _wait(
    engine: sa.Engine,
    asset_id: int,
    since: int,
    acknowledged: set[str],
    *,
    deadline: float,
    runs_finished: bool,
) -> Waited:
    """Wait until every acknowledged event is consumed (and every run finished, if asked).

    Also ends when every acknowledged event is an asset event, no queue row and no unfinished
    run is left, some events are unconsumed, and nothing changed for STILL_SECONDS: Airflow
    creates asset-triggered runs from queue rows only, so nothing will consume them.
    """
    started = time.monotonic()
    still_since: float | None = None
    previous: tuple[int, ...] | None = None
    while True:
        snapshot = _snapshot(engine, asset_id, since)
        summary = snapshot.summary(acknowledged)
        missing, _, unconsumed, unfinished, queued = summary
        now = time.monotonic()
        if missing == 0 and unconsumed == 0 and (unfinished == 0 or not runs_finished):
            return Waited(snapshot, "done", now - started)
        idle = missing == 0 and unfinished == 0 and queued == 0
        if not idle or summary != previous:
            still_since = now if idle else None
        elif still_since is not None and now - still_since >= STILL_SECONDS:
            return Waited(snapshot, "idle", now - started)
        if now > deadline:
            return Waited(snapshot, "deadline", now - started)
        previous = summary
        time.sleep(POLL_SECONDS)


def _seen_by_runs(engine: sa.Engine, runs: set[int]) -> dict[int, list[str]]:
    """The ids each of these runs' task returned (its XCom), by dag_run id."""
    seen: dict[int, list[str]] = {}
    with engine.connect() as connection:
        for run, value in connection.execute(
            sa.select(XCOM.c.dag_run_id, XCOM.c.value).where(
                XCOM.c.dag_id == DAG_ID,
                XCOM.c.task_id == TASK_ID,
                XCOM.c.key == "return_value",
            )
        ):
            if run not in runs:
                continue
            while isinstance(value, str | bytes):  # SQLite hands back the JSON text
                value = json.loads(value)
            seen[run] = list(value or [])
    return seen


def _lock_errors(stack: AirflowStack, scanned: dict[str, int]) -> dict[str, tuple[int, str]]:
    """Lock errors in each component's log since the last look: (count, first line)."""
    found: dict[str, tuple[int, str]] = {}
    for name in COMPONENTS:
        path = stack.log_path(name)
        if not path.exists():
            continue
        with path.open("rb") as log:
            log.seek(scanned.get(name, 0))
            text = log.read()
        scanned[name] = scanned.get(name, 0) + len(text)
        lines = [
            line for line in text.decode(errors="replace").splitlines() if LOCK_ERROR.search(line)
        ]
        if lines:
            found[name] = (len(lines), lines[0].strip()[:300])
    return found


# --- the test ----------------------------------------------------------------------------------


@pytest.mark.parametrize("connections", CONNECTIONS)
def test_burst_every_acknowledged_event_runs_the_dag_once(
    stack: AirflowStack, connections: int, scanned: dict[str, int]
) -> None:
    database = "PostgreSQL" if stack.metadata_url else "SQLite"
    asset_id = _scheduled_asset_id(stack)
    assert asset_id is not None
    url = f"{stack.base_url}/airhook/webhooks/{SOURCE}"
    engine = _metadata_engine(stack)
    try:
        since = _newest_event(engine)
        answers = Answers()
        started = time.monotonic()
        asyncio.run(_load(url, connections, LOAD_SECONDS, answers))
        print(
            f"\n{database}, {connections} connections: {len(answers.acknowledged)} acknowledged "
            f"in {time.monotonic() - started:.0f} s"
        )
        deadline = time.monotonic() + SETTLE_SECONDS
        ends: list[str] = []
        for burst in range(TAIL_BURSTS + 1):
            if burst:
                asyncio.run(_load(url, connections, TAIL_SECONDS, answers))
            waited = _wait(
                engine,
                asset_id,
                since,
                set(answers.acknowledged),
                deadline=deadline,
                runs_finished=False,
            )
            ends.append(f"{waited.outcome} {waited.seconds:.0f} s")
            if waited.outcome != "done":
                break  # more load would consume what is left over, and hide it
        acknowledged = set(answers.acknowledged)
        if waited.outcome == "done":
            waited = _wait(
                engine, asset_id, since, acknowledged, deadline=deadline, runs_finished=True
            )
            ends.append(f"runs {waited.outcome} {waited.seconds:.0f} s")
        snapshot = waited.snapshot
        phase_runs = snapshot.runs_of(acknowledged)
        seen = _seen_by_runs(engine, phase_runs)
    finally:
        engine.dispose()
    missing, events, unconsumed, unfinished, queued = snapshot.summary(acknowledged)
    print(
        f"{sum(answers.counts.values())} requests, {len(acknowledged)} acknowledged, answers "
        f"{dict(answers.counts)}; after each burst's end: {', '.join(ends)}; {events} asset "
        f"events, {unconsumed} unconsumed, {len(phase_runs)} runs consumed them "
        f"({unfinished} runs of {DAG_ID} unfinished, {queued} queue rows)"
    )

    failures: list[str] = []
    if answers.unacceptable:
        failures.append(
            f"{sum(answers.unacceptable.values())} of {sum(answers.counts.values())} answers "
            f"were neither 2xx nor a 503 with Retry-After: {answers.unacceptable}"
        )
    if not answers.counts["503 backpressure"]:
        failures.append(
            f"the load never passed the backpressure bound ({BACKLOG_BOUND} undispatched "
            "events): no answer was 503 backpressure"
        )
    if len(acknowledged) != len(answers.acknowledged):
        failures.append(
            f"{len(answers.acknowledged) - len(acknowledged)} ids were acknowledged twice "
            "(each delivery was unique)"
        )
    dead = [
        name
        for name in COMPONENTS
        if name not in stack.processes or stack.processes[name].poll() is not None
    ]
    if dead:
        failures.append(f"components no longer running: {dead}")
    for name, (count, first) in _lock_errors(stack, scanned).items():
        failures.append(f"{count} lock errors in the {name} log, the first: {first}")
    if missing:
        failures.append(f"{missing} of {len(acknowledged)} acknowledged events are no asset event")
    twice = sum(1 for event_id in acknowledged if len(snapshot.events.get(event_id, ())) > 1)
    if twice:
        failures.append(f"{twice} acknowledged events are more than one asset event")
    strangers = set(snapshot.events) - acknowledged
    if strangers:
        failures.append(f"{len(strangers)} asset events are of no acknowledged delivery")
    if unconsumed:
        failures.append(
            f"{unconsumed} of {events} asset events were consumed by no DAG run "
            f"(Airflow {waited.outcome} after {waited.seconds:.0f} s)"
        )
    consumed_twice = sum(
        1
        for event_id in acknowledged
        for event in snapshot.events.get(event_id, ())
        if len(snapshot.consumers.get(event, ())) > 1
    )
    if consumed_twice:
        failures.append(f"{consumed_twice} asset events were consumed by more than one run")
    unsuccessful = [run for run in phase_runs if snapshot.runs[run][1] != "success"]
    if unsuccessful:
        sizes = Counter(
            run for runs in snapshot.consumers.values() for run in runs if run in unsuccessful
        )
        shown = "; ".join(
            f"{snapshot.runs[run][0]} {snapshot.runs[run][1]} ({sizes[run]} events)"
            for run in unsuccessful[:3]
        )
        failures.append(
            f"{len(unsuccessful)} of {len(phase_runs)} runs did not succeed: {shown} "
            f"(task logs under {stack.home / 'logs' / f'dag_id={DAG_ID}'})"
        )
    without_xcom = sum(
        1 for run in phase_runs if snapshot.runs[run][1] == "success" and run not in seen
    )
    if without_xcom:
        failures.append(f"{without_xcom} successful runs have no XCom of their task")
    seen_ids = Counter(event_id for ids in seen.values() for event_id in ids)
    seen_here = {event_id: n for event_id, n in seen_ids.items() if event_id in acknowledged}
    total = sum(seen_here.values())
    if total != len(acknowledged) or len(seen_here) != len(acknowledged):
        failures.append(
            f"the runs' tasks saw {total} events in triggering_asset_events of "
            f"{len(acknowledged)} acknowledged: {len(acknowledged) - len(seen_here)} never, "
            f"{sum(1 for n in seen_here.values() if n > 1)} more than once"
        )
    assert not failures, (
        f"{database}, {connections} connections, {len(acknowledged)} acknowledged:\n- "
        + "\n- ".join(failures)
    )
