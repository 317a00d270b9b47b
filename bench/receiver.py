"""Throughput and latency of airhook's receiver: inside the Airflow API server and standalone.

Run it with ``make bench-receiver`` (or ``.venv/bin/python bench/receiver.py``); it takes about
two minutes and needs ``wrk`` (``apt-get install -y wrk``). ``--standalone-workers N`` gives the
standalone receiver N worker processes (default 1, like the other two targets);
``--airhook-db-url postgresql+psycopg2://…/<empty database>`` puts the airhook store on
PostgreSQL instead of an SQLite file (Airflow's own database stays SQLite); ``--keep`` keeps the
working directory (logs, wrk output). ``--backpressure`` runs only bench/backpressure.py instead
(open-loop steps up to the rate at which backpressure starts, and the dispatch lag under it; the
other arguments are that script's) and exits.

What is measured, in one run (in this order: 4 for both airhook targets, then 2, 1a, 1b, 1c,
2 again, with 3 after each airhook run):

1. **airhook** at two targets that share one local Airflow 3
   (:class:`devstack.AirflowStack`, every process on 127.0.0.1, SQLite for Airflow and
   for the airhook store) and two sources with the ``rkt`` profile and the same secret: ``bench``,
   which a DAG is scheduled on (``airhook.on("bench", "message.received")``), and
   ``bench-nodag``, which no DAG listens to (the dispatcher only marks its events dispatched;
   the warm-ups go there, so that they leave the dispatcher no backlog of asset events):

   a. **in-server**: the API server (1 worker) serves ``POST /airhook/webhooks/bench``; the
      dispatcher thread of the same process turns the recorded events into Airflow asset events
      while the load runs, as in production. After the load, the dispatcher is given up to
      DRAIN_WAIT_SECONDS to finish them (so that it takes no CPU from the next runs for them).
   b. **standalone, no DAG**: ``python -m airhook.receiver`` (the same app under plain uvicorn,
      access log off, 1 worker unless told otherwise, its dispatcher off as by default) with
      the same configuration, on its own port, loaded on ``bench-nodag``: the receiver's own
      capacity, next to an API server that has next to nothing to dispatch.
   c. **standalone**: the same process loaded on ``bench``: its events are turned into asset
      events by the API server's dispatcher, which finds them by polling
      (``dispatch_poll_seconds``, its default 0.2 s here) and runs on the same two cores.

   Every request is a unique, correctly signed RKT ``message.received`` delivery of 1024 bytes,
   so each one takes the full path: signature check, parse, schema validation, dedupe and a
   durable (group-committed, ``synchronous=FULL``) insert into the inbox before the 202
   (in-server, Airflow's middleware first). "req/s" counts 202s (verified deliveries) per
   second. How many recorded events were not asset events yet when the load stopped, and how
   fast the dispatcher then finished them, are printed too.
2. **bare**: a FastAPI app that reads the body and answers 202 with a constant small JSON body,
   on the same path, under plain uvicorn (1 worker, 127.0.0.1, access log off), sent exactly
   the same requests. Why this baseline: whatever a Python webhook receiver does, it runs on an
   ASGI server and a framework and must at least read the request and answer it; uvicorn +
   FastAPI is what Airflow's API server is built on (same event loop and HTTP parser), so the
   ratio airhook/bare is what airhook (and, in-server, the API server) add on top of the
   cheapest possible endpoint of the same stack. The ratio, not the absolute numbers, is the
   result. The bare app runs right before and right after the two airhook targets and both
   ratios use the mean of the two runs, so that a change of the machine's load during the run
   biases no side.
3. **durability**, for each airhook target: after its load, every event id wrk saw in a 202
   body must be a row of ``airhook_inbox`` (read from the store's SQLite file), and the run's
   rows must number the 202s, plus at most the requests still in flight when wrk stopped
   (answered after wrk closed its connections, so never acknowledged to it).
4. **ack → asset event**, for each airhook target: a separate, paced series of deliveries sent
   one at a time from Python (before the loads, with the dispatcher idle); for each, the time
   the 202 arrived (``time.time()``) is compared with the ``timestamp`` Airflow gave the asset
   event that carries its ``airhook_event_id`` (read from Airflow's SQLite metadata DB). Both
   clocks are this machine's wall clock (CLOCK_REALTIME).

Load: wrk, 32 connections, 2 threads, a short warm-up then a fixed duration per target; a Lua
script sends pre-signed requests (each thread its own slice of a pre-generated set; it wraps
around only if the set runs out, and says so), counts responses by status and collects the ids
of the 202s. p50/p99 come from wrk's latency histogram (closed loop: 32 requests in flight).
Each server's CPU time (user + system of its process group, from ``/proc``) during its run is
divided by its answers: unlike req/s, that number barely moves when other programs take the
cores.

The machine this runs on may be small and shared (wrk, the servers and Airflow share the cores),
so nothing here asserts a timing: the issue's aims are printed as information and the exit
status does not depend on them. It is 1 if a check of correctness fails (a non-2xx answer, a
transport error, an acknowledged event missing from the store, an acknowledged event of the
series with no asset event) and 2 if wrk is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import hmac
import json
import math
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import requests
import sqlalchemy as sa
from _servers import served, uvicorn_app
from fastapi import FastAPI, Request
from fastapi.responses import Response

from airhook.core.catalog import load_catalog
from airhook.store.tables import inbox as inbox_table
from airhook.store.times import aware
from devstack import AirflowStack, free_port

#: wrk's concurrency: connections and threads.
CONNECTIONS = 32
THREADS = 2
#: Seconds of load per target, after a warm-up of WARMUP_SECONDS.
DURATION = 10
WARMUP_SECONDS = 2
#: Size of every request body, in bytes.
BODY_SIZE = 1024
#: Pre-generated deliveries for the measured runs and for the warm-ups. Sized from measurement
#: here: the bare app answered at most ~15k req/s on 2 shared cores (with wrk on them too), so
#: 10 s used at most about half the set; airhook far less. The output says whether a run wrapped.
MEASURED_REQUESTS = 300_000
WARMUP_REQUESTS = 60_000
#: The ack → asset event series: this many deliveries, one at a time, at this rate.
SERIES_COUNT = 200
SERIES_RATE = 50.0
#: The API server dispatcher's poll for events other processes recorded: airhook's default.
DISPATCH_POLL_SECONDS = "0.2"
#: How long to wait after a load for its events to become asset events.
DRAIN_WAIT_SECONDS = 30
#: The issue's aims (information only).
AIM_THROUGHPUT_RATIO = 0.5
AIM_ACK_P99_MS = 20.0
AIM_ASSET_P99_MS = 1000.0

SOURCE = "bench"
PATH = f"/airhook/webhooks/{SOURCE}"
#: A second source, same profile and secret, that no DAG listens to: the dispatcher only marks
#: its events (no asset event to write), so a load on it measures the receiver alone. The
#: warm-ups go here too, so that they leave the dispatcher no backlog of asset events.
FREE_SOURCE = "bench-nodag"
FREE_PATH = f"/airhook/webhooks/{FREE_SOURCE}"
DAG_ID = "airhook_bench_receiver"
ID_WIDTH = 10
ID_PLACEHOLDER = "#" * ID_WIDTH

DAG_FILE = f'''"""Listens to the benchmark's source, so that its events become asset events."""

from airflow.sdk import dag, task

import airhook


@dag(
    schedule=airhook.on("{SOURCE}", "message.received"),
    catchup=False,
    is_paused_upon_creation=True,
)
def {DAG_ID}():
    @task
    def noop():
        pass

    noop()


{DAG_ID}()
'''

NOOP_PREFIX = "/bench-noop"
NOOP_PATH = f"{NOOP_PREFIX}/webhooks/{SOURCE}"
# The ceiling of any plugin route in the API server: a plugin whose FastAPI app reads the body and
# answers 202, mounted the way airhook's receiver is (``fastapi_apps``), behind the same middleware.
NOOP_PLUGIN = f'''"""bench/receiver.py's no-op plugin route: the API server's cost per request."""

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI, Request
from fastapi.responses import Response

app = FastAPI()


@app.post("/webhooks/{{source_name}}")
async def accept(source_name: str, request: Request) -> Response:
    await request.body()
    return Response(b'{{"status":"accepted"}}', status_code=202, media_type="application/json")


class BenchNoopPlugin(AirflowPlugin):
    name = "airhook_bench_noop"
    fastapi_apps = [{{"app": app, "url_prefix": "{NOOP_PREFIX}", "name": "bench no-op"}}]
'''

# The wrk script. Each thread reads the pre-generated set (line 1: body before the id, line 2:
# body after it, then one hex signature per delivery), keeps every THREADS-th delivery starting
# at its own index, and builds request i as head .. signature .. middle .. id .. tail.
WRK_LUA = r"""
local counter = 0
local threads = {}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local nthreads = tonumber(os.getenv("BENCH_THREADS"))
  collect = os.getenv("BENCH_IDS_OUT") ~= ""
  local f = assert(io.open(os.getenv("BENCH_REQUESTS"), "rb"))
  local prefix = f:read("*l")
  local suffix = f:read("*l")
  local id_placeholder = os.getenv("BENCH_ID_PLACEHOLDER")
  local sig_placeholder = string.rep("S", 64)
  local template = wrk.format("POST", os.getenv("BENCH_PATH"), {
    ["Content-Type"] = "application/json",
    ["X-RKT-Signature"] = sig_placeholder,
  }, prefix .. id_placeholder .. suffix)
  local s = string.find(template, sig_placeholder, 1, true)
  local b = string.find(template, id_placeholder, s + 64, true)
  head = string.sub(template, 1, s - 1)
  middle = string.sub(template, s + 64, b - 1)
  tail = string.sub(template, b + #id_placeholder)
  sigs = {}
  ids = {}
  local i = 0
  for line in f:lines() do
    if i % nthreads == tid then
      sigs[#sigs + 1] = line
      ids[#ids + 1] = string.format("%0" .. #id_placeholder .. "d", i)
    end
    i = i + 1
  end
  f:close()
  count = #sigs
  pos = 0
  sent = 0
  wrapped = 0
  codes = {}
  acked = {}
end

function request()
  pos = pos + 1
  if pos > count then
    pos = 1
    wrapped = wrapped + 1
  end
  sent = sent + 1
  return head .. sigs[pos] .. middle .. ids[pos] .. tail
end

function response(status, headers, body)
  local key = tostring(status)
  codes[key] = (codes[key] or 0) + 1
  if collect and status == 202 then
    acked[#acked + 1] = string.match(body, '"id"%s*:%s*"([^"]+)"') or ""
  end
end

function done(summary, latency, requests)
  local codes_total = {}
  local sent_total, wraps, available = 0, 0, 0
  local out = nil
  local path = os.getenv("BENCH_IDS_OUT")
  if path ~= "" then out = assert(io.open(path, "w")) end
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("codes")) do codes_total[k] = (codes_total[k] or 0) + v end
    sent_total = sent_total + t:get("sent")
    wraps = math.max(wraps, t:get("wrapped"))
    available = available + t:get("count")
    if out then
      local a = t:get("acked")
      if #a > 0 then out:write(table.concat(a, "\n"), "\n") end
    end
  end
  if out then out:close() end
  local parts = {}
  for k, v in pairs(codes_total) do parts[#parts + 1] = string.format('"%s":%d', k, v) end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"p50_us":%.1f,"p99_us":%.1f,"max_us":%.1f,' ..
    '"sent":%d,"wrapped":%d,"available":%d,"codes":{%s},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, latency:percentile(50.0), latency:percentile(99.0),
    latency.max, sent_total, wraps, available, table.concat(parts, ","),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


# --- the baseline --------------------------------------------------------------------------


def bare_app() -> FastAPI:
    """The baseline: read the body, answer 202 with a constant JSON body (uvicorn ``--factory``)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    answer = b'{"id":"bare"}'

    @app.post(PATH)
    async def receive(request: Request) -> Response:
        await request.body()
        return Response(answer, status_code=202, media_type="application/json")

    return app


@contextmanager
def bare_server(workdir: Path) -> Iterator[tuple[str, int]]:
    """Run :func:`bare_app` under uvicorn on 127.0.0.1 in its own process group.

    Yield its URL and pid.
    """
    # Any answer on the path (a 405 to the GET) means it is up.
    with uvicorn_app("receiver:bare_app", PATH, workdir / "bare-uvicorn.log") as server:
        yield server


# --- the deliveries ------------------------------------------------------------------------


@dataclass(frozen=True)
class Deliveries:
    """A set of unique signed RKT deliveries: body = prefix + zero-padded index + suffix."""

    prefix: bytes
    suffix: bytes
    secret: str
    nonce: str

    @classmethod
    def build(cls, secret: str, nonce: str) -> Deliveries:
        """The sample ``message.received`` with ``messageId`` = nonce + index, padded to 1 KB."""
        sample = copy.deepcopy(load_catalog().event("rkt", "message.received").sample)
        sample["data"]["messageId"] = f"m-{nonce}-{ID_PLACEHOLDER}"
        base = sample["data"]["content"]
        sample["data"]["content"] = base
        size = len(json.dumps(sample, separators=(",", ":")).encode())
        pad = " Please also tell me the delivery times and the customs fees for Ontario."
        sample["data"]["content"] = (base + pad * (BODY_SIZE // len(pad) + 1))[
            : len(base) + BODY_SIZE - size
        ]
        text = json.dumps(sample, separators=(",", ":"))
        prefix, suffix = text.split(ID_PLACEHOLDER)
        deliveries = cls(prefix.encode(), suffix.encode(), secret, nonce)
        assert len(deliveries.body(0)) == BODY_SIZE
        return deliveries

    def body(self, index: int) -> bytes:
        """The body of delivery ``index``."""
        return self.prefix + f"{index:0{ID_WIDTH}d}".encode() + self.suffix

    def signature(self, body: bytes) -> str:
        """RKT's ``X-RKT-Signature``: hex HMAC-SHA256 of the body, keyed by the secret string."""
        return hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()

    def write(self, path: Path, count: int) -> None:
        """Write the set for the wrk script: prefix, suffix, then one signature per delivery."""
        key = self.secret.encode()
        prefix, suffix = self.prefix, self.suffix
        lines = [self.prefix.decode(), self.suffix.decode()]
        lines += [
            hmac.new(
                key, prefix + f"{i:0{ID_WIDTH}d}".encode() + suffix, hashlib.sha256
            ).hexdigest()
            for i in range(count)
        ]
        path.write_text("\n".join(lines) + "\n")


# --- wrk -----------------------------------------------------------------------------------


@dataclass
class WrkResult:
    """One wrk run, as the Lua ``done()`` reported it."""

    requests: int
    duration_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    sent: int
    wrapped: int
    available: int
    codes: dict[str, int]
    errors: dict[str, int]
    acked_ids: list[str] = field(default_factory=list)

    @property
    def ok(self) -> int:
        """Answers with a 2xx status."""
        return sum(n for code, n in self.codes.items() if code.startswith("2"))

    @property
    def non_2xx(self) -> int:
        """Answers with any other status."""
        return sum(n for code, n in self.codes.items() if not code.startswith("2"))

    @property
    def transport_errors(self) -> int:
        """Connect, read, write errors and timeouts (no answer at all)."""
        return sum(n for kind, n in self.errors.items() if kind != "status")

    def rate(self, code: str | None = None) -> float:
        """Answers per second: all 2xx, or those with status ``code``."""
        n = self.ok if code is None else self.codes.get(code, 0)
        return n / self.duration_s


def run_wrk(
    workdir: Path,
    url: str,
    request_file: Path,
    duration: float,
    *,
    collect_ids: bool = False,
    name: str = "run",
    path: str = PATH,
) -> WrkResult:
    """Run wrk against ``url`` + ``path`` with the pre-generated set in ``request_file``."""
    script = workdir / "deliveries.lua"
    if not script.exists():
        script.write_text(WRK_LUA)
    ids_out = workdir / f"{name}-acked.txt" if collect_ids else None
    env = {
        **os.environ,
        "BENCH_THREADS": str(THREADS),
        "BENCH_REQUESTS": str(request_file),
        "BENCH_PATH": path,
        "BENCH_ID_PLACEHOLDER": ID_PLACEHOLDER,
        "BENCH_IDS_OUT": str(ids_out) if ids_out else "",
    }
    completed = subprocess.run(
        [
            "wrk",
            f"-t{THREADS}",
            f"-c{CONNECTIONS}",
            f"-d{duration:g}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url + path,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=duration + 120,
        check=False,
    )
    (workdir / f"{name}-wrk.txt").write_text(completed.stdout + completed.stderr)
    line = next((ln for ln in completed.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if completed.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk failed ({completed.returncode}):\n{completed.stdout}\n{completed.stderr}"
        )
    data = json.loads(line.removeprefix("BENCHJSON "))
    acked = ids_out.read_text().split() if ids_out and ids_out.exists() else []
    return WrkResult(
        requests=data["requests"],
        duration_s=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        sent=data["sent"],
        wrapped=data["wrapped"],
        available=data["available"],
        codes={str(k): int(v) for k, v in data["codes"].items()},
        errors={str(k): int(v) for k, v in data["errors"].items()},
        acked_ids=acked,
    )


# --- durability and the asset-event latency -------------------------------------------------


@dataclass
class Durability:
    """What the store holds for one run's deliveries."""

    acknowledged: int
    rows: int
    missing: int
    in_flight: int

    @property
    def ok(self) -> bool:
        """Every acknowledged id recorded; extra rows only from requests wrk left in flight."""
        return self.missing == 0 and self.acknowledged <= self.rows <= self.acknowledged + (
            self.in_flight
        )


_engines: dict[str, sa.engine.Engine] = {}


def _store_engine(store_url: str) -> sa.engine.Engine:
    """An engine on the airhook store (SQLite file or PostgreSQL), made once per URL."""
    engine = _engines.get(store_url)
    if engine is None:
        engine = _engines[store_url] = sa.create_engine(store_url, hide_parameters=True)
    return engine


def check_durability(
    store_url: str, nonce: str, result: WrkResult, source: str = SOURCE
) -> Durability:
    """Compare the 202s of a wrk run with the rows of its deliveries in the airhook store."""
    time.sleep(1.0)  # let the server finish what was in flight when wrk stopped
    with _store_engine(store_url).connect() as db:
        stored = set(
            db.scalars(
                sa.text("SELECT id FROM airhook_inbox WHERE source = :source AND body LIKE :run"),
                {"source": source, "run": f"%m-{nonce}-%"},
            )
        )
    acked = set(result.acked_ids)
    return Durability(
        acknowledged=result.codes.get("202", 0),
        rows=len(stored),
        missing=len(acked - stored) + (result.codes.get("202", 0) - len(acked)),
        in_flight=max(0, result.sent - result.requests),
    )


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-100) of ``values``."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Series:
    """The ack → asset event series."""

    sent: int
    acknowledged: int
    non_202: int
    ack_ms: list[float]
    to_asset_ms: list[float]
    missing: int


def asset_event_times(home: Path) -> list[tuple[str, float]]:
    """(airhook event id, asset event timestamp as epoch seconds) of every airhook asset event.

    Read from Airflow's SQLite metadata DB (read-only) rather than ``GET /api/v2/assets/events``,
    which in Airflow 3.3.2 answers 500 while an event's DAG run is queued but not started.
    """
    uri = f"file:{home / 'airflow.db'}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=30) as db:
        rows = db.execute("SELECT extra, timestamp FROM asset_event").fetchall()
    times = []
    for extra, timestamp in rows:
        event_id = (json.loads(extra) if isinstance(extra, str) else extra or {}).get(
            "airhook_event_id"
        )
        if event_id:
            stamp = datetime.fromisoformat(str(timestamp))
            if stamp.tzinfo is None:  # Airflow stores UTC without an offset in SQLite
                stamp = stamp.replace(tzinfo=timezone.utc)
            times.append((event_id, stamp.timestamp()))
    return times


def ack_to_asset_series(base_url: str, home: Path, deliveries: Deliveries) -> Series:
    """Send SERIES_COUNT deliveries at SERIES_RATE to ``base_url``; time each 202 and asset event.

    The asset events are always the API server's dispatcher's work, whichever process recorded
    the event (the standalone receiver runs no dispatcher).
    """
    acked: dict[str, float] = {}
    ack_ms: list[float] = []
    non_202 = 0
    url = base_url + PATH
    with requests.Session() as session:
        start = time.monotonic()
        for i in range(SERIES_COUNT):
            delay = start + i / SERIES_RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            body = deliveries.body(i)
            headers = {
                "Content-Type": "application/json",
                "X-RKT-Signature": deliveries.signature(body),
            }
            sent_at = time.perf_counter()
            response = session.post(url, data=body, headers=headers, timeout=30)
            acked_at = time.time()
            ack_ms.append((time.perf_counter() - sent_at) * 1000)
            if response.status_code == 202:
                acked[response.json()["id"]] = acked_at
            else:
                non_202 += 1
    found: dict[str, float] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = {
            event_id: stamp for event_id, stamp in asset_event_times(home) if event_id in acked
        }
        if len(found) >= len(acked):
            break
        time.sleep(0.5)
    return Series(
        sent=SERIES_COUNT,
        acknowledged=len(acked),
        non_202=non_202,
        ack_ms=ack_ms,
        to_asset_ms=[(found[i] - acked[i]) * 1000 for i in found],
        missing=len(acked) - len(found),
    )


# --- the servers ---------------------------------------------------------------------------


def start_airflow(
    workdir: Path, secret: str, store_url: str | None, extra_env: dict[str, str] | None = None
) -> AirflowStack:
    """Migrate, create the source, start the API server and parse the listening DAG."""
    dags = workdir / "dags"
    dags.mkdir()
    (dags / f"{DAG_ID}.py").write_text(DAG_FILE)
    stack = AirflowStack(
        home=workdir / "airflow",
        dags_folder=dags,
        airhook_url=store_url,
        # The default (devstack polls faster): how soon the API server's dispatcher sees events
        # another process (the standalone receiver) recorded.
        extra_env={
            "AIRFLOW__AIRHOOK__DISPATCH_POLL_SECONDS": DISPATCH_POLL_SECONDS,
            **(extra_env or {}),
        },
    )
    plugins = stack.home / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    (plugins / "airhook_bench_noop.py").write_text(NOOP_PLUGIN)
    stack.migrate()
    for name in (SOURCE, FREE_SOURCE):
        stack.airhook(
            "sources", "create", name, "--profile", "rkt", "--secret-file", "-", stdin=secret + "\n"
        )
    try:
        stack.start(components=("api-server", "dag-processor"))
        stack.wait_for_dags([DAG_ID])
        # airhook names each asset by its URI as written (Airflow may normalise the URI itself).
        uri = f"airhook://{SOURCE}/message.received"
        deadline = time.monotonic() + 60
        while not any(
            uri in (a["name"], a["uri"])
            for a in stack.api("GET", "/api/v2/assets?limit=100")["assets"]
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the DAG's asset {uri} did not appear in Airflow")
            time.sleep(0.5)
    except BaseException:
        stack.stop()
        raise
    # The DAG's asset now exists in Airflow's DB: the DAG processor is not needed any more and
    # would take CPU from the measurement. (No scheduler: the asset events start no runs.)
    stack.stop_component("dag-processor")
    return stack


@contextmanager
def standalone_server(stack: AirflowStack, workers: int) -> Iterator[tuple[str, int]]:
    """Run ``python -m airhook.receiver`` with the stack's configuration (same store, same key).

    Its own process group on 127.0.0.1, access log off as for the bare app, dispatcher off (its
    default). Yield its URL and process group id.
    """
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "airhook.receiver",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    log_path = stack.home / "logs" / "standalone-receiver.log"
    with served(
        command,
        port,
        "/airhook/receiver/health",
        log_path,
        env=stack.env(),
        ready_status=200,
        start_seconds=90,
    ) as server:
        yield server


# --- measuring -----------------------------------------------------------------------------


def group_cpu_seconds(pgid: int) -> float | None:
    """User + system CPU time so far of every process in a process group; None off Linux.

    The group, not one pid: ``--workers N`` servers answer from child processes.
    """
    if not Path("/proc/self/stat").exists():
        return None
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[2]) == pgid:  # field 5 of stat, after pid and (comm): state, ppid, pgrp
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@dataclass
class Measured:
    """A wrk run with the CPU time its server's process group used meanwhile."""

    wrk: WrkResult
    cpu_seconds: float | None

    @property
    def cpu_us_per_answer(self) -> float | None:
        """Server CPU time per answer, in µs."""
        if self.cpu_seconds is None or not self.wrk.requests:
            return None
        return self.cpu_seconds / self.wrk.requests * 1e6


def measure(
    workdir: Path,
    url: str,
    pgid: int,
    request_file: Path,
    name: str,
    *,
    collect_ids: bool = False,
    path: str = PATH,
) -> Measured:
    """Run wrk for DURATION seconds and account the server's CPU time."""
    before = group_cpu_seconds(pgid)
    result = run_wrk(
        workdir, url, request_file, DURATION, collect_ids=collect_ids, name=name, path=path
    )
    after = group_cpu_seconds(pgid)
    cpu = after - before if before is not None and after is not None else None
    return Measured(result, cpu)


def backlog(store_url: str, nonce: str, source: str = SOURCE) -> int:
    """The run's inbox events not yet dispatched to Airflow."""
    with _store_engine(store_url).connect() as db:
        count = db.scalar(
            sa.text(
                "SELECT count(*) FROM airhook_inbox"
                " WHERE source = :source AND body LIKE :run AND dispatched_at IS NULL"
            ),
            {"source": source, "run": f"%m-{nonce}-%"},
        )
    return int(count or 0)


@dataclass
class Drain:
    """How the dispatcher kept up with one run's events."""

    rows: int
    at_end: int  # not yet asset events when the load stopped
    left: int  # still not, when we stopped waiting
    waited_s: float
    # per dispatched event of the run: its asset event's timestamp - the inbox row's received_at
    to_asset_ms: list[float] = field(default_factory=list)

    @property
    def during_per_s(self) -> float:
        """Events made asset events per second during the load."""
        return (self.rows - self.at_end) / DURATION

    @property
    def after_per_s(self) -> float:
        """Events made asset events per second after the load, while we waited."""
        return (self.at_end - self.left) / self.waited_s if self.waited_s else 0.0

    def describe(self) -> str:
        """One line for the report."""
        done = (
            f"all dispatched {self.waited_s:.1f} s after the load"
            if not self.left
            else f"{self.left:,} still waiting {self.waited_s:.0f} s after the load"
        )
        latency = (
            f"; received → asset event, every event of the run: p50 "
            f"{percentile(self.to_asset_ms, 50):.0f} ms, p99 {percentile(self.to_asset_ms, 99):.0f}"
            f" ms, max {max(self.to_asset_ms):.0f} ms"
            if self.to_asset_ms
            else ""
        )
        return (
            f"{self.at_end:,} of the run's {self.rows:,} events were not yet asset events when "
            f"the load stopped ({self.during_per_s:,.0f}/s dispatched during the load); {done} "
            f"({self.after_per_s:,.0f}/s after it){latency}"
        )


def drain(store_url: str, home: Path, nonce: str, rows: int, timeout: float) -> Drain:
    """Wait up to ``timeout`` seconds for the run's events to become asset events.

    Then time each of them: the asset event's ``timestamp`` (Airflow's, when the dispatcher
    inserted it) minus the inbox row's ``received_at`` (taken when the request arrived, before
    its commit and 202): an upper bound of ack → asset event for every event of the load.
    """
    began = time.monotonic()
    at_end = left = backlog(store_url, nonce)
    while left and time.monotonic() - began < timeout:
        time.sleep(0.25)
        left = backlog(store_url, nonce)
    waited = time.monotonic() - began
    with _store_engine(store_url).connect() as db:
        received = {
            event_id: aware(at).timestamp()
            for event_id, at in db.execute(
                sa.select(inbox_table.c.id, inbox_table.c.received_at).where(
                    inbox_table.c.source == SOURCE,
                    inbox_table.c.body.like(f"%m-{nonce}-%"),
                )
            )
        }
    to_asset = [
        (stamp - received[event_id]) * 1000
        for event_id, stamp in asset_event_times(home)
        if event_id in received
    ]
    return Drain(rows, at_end, left, waited, to_asset)


@dataclass
class Target:
    """One airhook target's results."""

    name: str
    measured: Measured
    durability: Durability
    drain: Drain | None = None  # None: a source no DAG listens to
    series: Series | None = None


def row(name: str, measured: Measured, code: str | None) -> str:
    """One line of the throughput table."""
    result = measured.wrk
    cpu = measured.cpu_us_per_answer
    return (
        f"{name:<20} {result.rate(code):>8,.0f} {result.p50_ms:>8.2f} {result.p99_ms:>8.2f}"
        f" {result.non_2xx:>8} {result.transport_errors:>7} "
        f"{f'{cpu:,.0f}' if cpu is not None else 'n/a':>14}"
    )


def _met(flag: bool) -> str:
    return "met" if flag else "NOT met"


def _files(workdir: Path, secret: str, name: str) -> tuple[Deliveries, Path, Path, Deliveries]:
    """A target's measured set (written), warm-up set (written) and series set: all unique."""
    measured, warmup, series = (Deliveries.build(secret, secrets.token_hex(4)) for _ in range(3))
    measured_file, warmup_file = workdir / f"{name}-measured.txt", workdir / f"{name}-warmup.txt"
    measured.write(measured_file, MEASURED_REQUESTS)
    warmup.write(warmup_file, WARMUP_REQUESTS)
    return measured, measured_file, warmup_file, series


def _report_target(target: Target, bare_rate: float, failures: list[str]) -> float:
    """Print one airhook target's checks and aims; return its throughput ratio."""
    ah = target.measured.wrk
    ratio = ah.rate("202") / bare_rate if bare_rate else 0.0
    durability, series = target.durability, target.series
    print(f"{target.name}:")
    print(
        f"  ratio to bare: {ratio:.3f} ({ah.rate('202'):,.0f} / {bare_rate:,.0f} req/s, "
        f"the mean of the two bare runs)"
    )
    print(
        f"  durability: {durability.acknowledged:,} acknowledged (202); "
        f"{durability.rows:,} rows of the run in airhook_inbox; "
        f"{durability.missing} acknowledged ids missing; "
        f"{durability.rows - durability.acknowledged} rows beyond the 202s "
        f"(≤ {durability.in_flight} requests were in flight when wrk stopped) → "
        f"{'OK' if durability.ok else 'FAILED'}"
    )
    if target.drain is not None:
        print(f"  dispatch: {target.drain.describe()}")
    if not durability.ok:
        failures.append(f"{target.name}: durability check failed")
    if ah.codes.get("200"):
        failures.append(
            f"{target.name}: {ah.codes['200']} answers 200 (duplicates: wrapped around?)"
        )
    asset_p99: float | None = None
    if series is not None:
        to_asset = series.to_asset_ms
        asset_p99 = percentile(to_asset, 99) if to_asset else math.inf
        print(
            f"  ack → asset event: {series.sent} deliveries one at a time at {SERIES_RATE:g}/s "
            f"before the loads; {series.acknowledged} acknowledged, "
            f"{series.missing} without an asset event"
        )
        if to_asset:
            print(
                f"    202 → asset event: p50 {percentile(to_asset, 50):.1f} ms, "
                f"p99 {asset_p99:.1f} ms, max {max(to_asset):.1f} ms "
                f"(the 202's own round trip: p50 {percentile(series.ack_ms, 50):.1f} ms)"
            )
        if series.non_202 or series.missing:
            failures.append(
                f"{target.name} ack → asset series: {series.non_202} non-202 answers, "
                f"{series.missing} acknowledged events without an asset event"
            )
    aims = (
        f"  aims: ≥ {AIM_THROUGHPUT_RATIO:g}x bare with every ack durable: {ratio:.3f}x, "
        f"durable {'yes' if durability.ok else 'NO'} → "
        f"{_met(ratio >= AIM_THROUGHPUT_RATIO and durability.ok)}; "
        f"ack p99 < {AIM_ACK_P99_MS:g} ms: {ah.p99_ms:.1f} ms → "
        f"{_met(ah.p99_ms < AIM_ACK_P99_MS)}"
    )
    if asset_p99 is not None:
        aims += (
            f"; ack → asset event p99 < {AIM_ASSET_P99_MS:g} ms (paced): {asset_p99:.1f} ms → "
            f"{_met(asset_p99 < AIM_ASSET_P99_MS)}"
        )
    if target.drain is not None and target.drain.to_asset_ms:
        loaded_p99 = percentile(target.drain.to_asset_ms, 99)
        aims += (
            f"; under the load (received → asset event, an upper bound): p99 "
            f"{loaded_p99:.0f} ms → {_met(loaded_p99 < AIM_ASSET_P99_MS)}"
        )
    print(aims)
    return ratio


def main(argv: Sequence[str] | None = None) -> int:
    """Run everything; print the results; return 1 if a correctness check failed."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--standalone-workers",
        type=int,
        default=1,
        help="worker processes of the standalone receiver (1, like the bare app and the API "
        "server; more only help with cores to spare beyond wrk's)",
    )
    parser.add_argument(
        "--airhook-db-url",
        default=None,
        help="the airhook store for both airhook targets: an empty PostgreSQL database "
        "(postgresql+psycopg2://…); default: an SQLite file in the run's Airflow home",
    )
    parser.add_argument(
        "--dispatch-batch-size",
        type=int,
        default=None,
        help="[airhook] dispatch_batch_size for the API server's dispatcher (default: the "
        "configuration's default)",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the working directory (Airflow home, logs, wrk output) and print its path",
    )
    parser.add_argument(
        "--backpressure",
        action="store_true",
        help="run only bench/backpressure.py (the rate at which backpressure starts, the dispatch "
        "lag under it) with the other arguments, which are its own, and exit",
    )
    given = list(sys.argv[1:] if argv is None else argv)
    if "--backpressure" in given:
        import backpressure

        return backpressure.main([arg for arg in given if arg != "--backpressure"])
    args = parser.parse_args(given)
    if shutil.which("wrk") is None:
        print(
            "bench/receiver.py needs wrk, the HTTP load generator, and it is not installed.\n"
            "Install it with: apt-get update && apt-get install -y wrk  (macOS: brew install wrk)",
            file=sys.stderr,
        )
        return 2
    began = time.monotonic()
    secret = "whsec_" + secrets.token_urlsafe(24)
    failures: list[str] = []
    workers = args.standalone_workers
    with contextlib.ExitStack() as cleanup:
        tmp = tempfile.mkdtemp(prefix="airhook-bench-")
        if args.keep:
            print(f"working directory (kept): {tmp}", flush=True)
        else:
            cleanup.callback(shutil.rmtree, tmp, ignore_errors=True)
        workdir = Path(tmp)
        # Every airhook run gets deliveries of its own: the same ones twice would be duplicates
        # (200) the second time. The bare app gets the in-server run's.
        in_set, in_file, in_warmup, in_series = _files(workdir, secret, "in-server")
        free_set, free_file, sa_warmup, _ = _files(workdir, secret, "standalone-free")
        sa_set, sa_file, _, sa_series = _files(workdir, secret, "standalone")

        with bare_server(workdir) as (bare_url, bare_pid):
            stack = start_airflow(
                workdir,
                secret,
                args.airhook_db_url,
                {"AIRFLOW__AIRHOOK__DISPATCH_BATCH_SIZE": str(args.dispatch_batch_size)}
                if args.dispatch_batch_size
                else None,
            )
            store_url = args.airhook_db_url or f"sqlite:///{stack.home / 'airhook.db'}"
            try:
                with standalone_server(stack, workers) as (sa_url, sa_pgid):
                    setup_s = time.monotonic() - began
                    api_pgid = stack.processes["api-server"].pid
                    # 1. ack → asset event, while nothing else runs: through the API server,
                    #    then through the standalone receiver (dispatched by the API server).
                    series_in = ack_to_asset_series(stack.base_url, stack.home, in_series)
                    series_sa = ack_to_asset_series(sa_url, stack.home, sa_series)
                    # 2. bare, in-server, standalone (alone, then with its events dispatched),
                    #    bare again: the mean of the two bare runs is the baseline, so that a
                    #    drift of the machine's load biases no side.
                    run_wrk(workdir, bare_url, in_warmup, WARMUP_SECONDS, name="bare-warmup")
                    bare_before = measure(workdir, bare_url, bare_pid, in_file, "bare-1")
                    run_wrk(
                        workdir,
                        stack.base_url,
                        in_warmup,
                        WARMUP_SECONDS,
                        name="in-warmup",
                        path=FREE_PATH,
                    )
                    in_run = measure(
                        workdir, stack.base_url, api_pgid, in_file, "in-server", collect_ids=True
                    )
                    in_durability = check_durability(store_url, in_set.nonce, in_run.wrk)
                    # Waiting for the in-server run's asset events also keeps the dispatcher
                    # from taking CPU from the standalone runs for them.
                    in_drain = drain(
                        store_url, stack.home, in_set.nonce, in_durability.rows, DRAIN_WAIT_SECONDS
                    )
                    noop_run = measure(
                        workdir, stack.base_url, api_pgid, in_file, "noop-route", path=NOOP_PATH
                    )
                    run_wrk(
                        workdir, sa_url, sa_warmup, WARMUP_SECONDS, name="sa-warmup", path=FREE_PATH
                    )
                    free_run = measure(
                        workdir,
                        sa_url,
                        sa_pgid,
                        free_file,
                        "standalone-free",
                        collect_ids=True,
                        path=FREE_PATH,
                    )
                    free_durability = check_durability(
                        store_url, free_set.nonce, free_run.wrk, FREE_SOURCE
                    )
                    sa_run = measure(
                        workdir, sa_url, sa_pgid, sa_file, "standalone", collect_ids=True
                    )
                    sa_durability = check_durability(store_url, sa_set.nonce, sa_run.wrk)
                    sa_drain = drain(
                        store_url, stack.home, sa_set.nonce, sa_durability.rows, DRAIN_WAIT_SECONDS
                    )
            finally:
                stack.stop()
            bare_after = measure(workdir, bare_url, bare_pid, in_file, "bare-2")
    plural = "s" if workers > 1 else ""
    targets = [
        Target("airhook in the API server", in_run, in_durability, in_drain, series_in),
        Target(
            f"airhook standalone ({workers} worker{plural}), source no DAG listens to",
            free_run,
            free_durability,
        ),
        Target(
            f"airhook standalone ({workers} worker{plural}), events dispatched to a DAG's asset",
            sa_run,
            sa_durability,
            sa_drain,
            series_sa,
        ),
    ]

    bare_rate = (bare_before.wrk.rate() + bare_after.wrk.rate()) / 2
    print(
        f"airhook bench/receiver.py: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}s per target (after a {WARMUP_SECONDS} s "
        f"warm-up), {BODY_SIZE} B signed RKT message.received deliveries, each unique"
    )
    print(
        f"setup {setup_s:.0f} s (Airflow db, sources, api-server, DAG parsed, standalone "
        f"receiver); total {time.monotonic() - began:.0f} s; airhook store: "
        f"{'PostgreSQL' if args.airhook_db_url else 'SQLite'} (Airflow's: SQLite)"
    )
    print()
    print(
        f"{'target':<20} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8} {'errors':>7} "
        f"{'CPU µs/answer':>14}"
    )
    runs = [
        ("bare (before)", bare_before, None),
        ("in-server", in_run, "202"),
        ("no-op plugin route", noop_run, "202"),
        ("standalone, no DAG", free_run, "202"),
        ("standalone", sa_run, "202"),
        ("bare (after)", bare_after, None),
    ]
    for name, m, code in runs:
        print(row(name, m, code))
    print("  bare       = FastAPI app that reads the body and answers 202; plain uvicorn, 1 worker")
    print("  in-server  = Airflow API server (1 worker) with airhook's receiver; req/s = 202s/s")
    print(
        "  no-op plugin route = the same API server, a plugin app that reads the body and "
        "answers 202 (no airhook): the ceiling of any plugin route"
    )
    print(
        f"  standalone = python -m airhook.receiver --workers {workers} (same store and "
        "sources); its events are dispatched by the API server, which runs on the same cores"
    )
    print(
        f"  standalone, no DAG = the same, on source {FREE_SOURCE!r} that no DAG listens to: "
        "the dispatcher only marks its events (the receiver's own capacity)"
    )
    print(
        "  CPU µs/answer = the server's process group's user+system CPU time in the run / answers"
    )
    print("                  (in-server: the whole API server, its dispatcher thread included)")
    for name, m, _ in runs:
        result = m.wrk
        wrap = "WRAPPED AROUND" if result.wrapped else "no wrap-around"
        print(
            f"  {name}: {result.sent:,} requests sent of {result.available:,} unique ({wrap}); "
            f"answers {dict(sorted(result.codes.items()))}"
        )
        if result.non_2xx or result.transport_errors:
            failures.append(
                f"{name}: {result.non_2xx} non-2xx answers {result.codes}, "
                f"transport errors {result.errors}"
            )
    print()
    print(
        "ack → asset event: time.time() when the 202 arrived vs the asset event's timestamp (set "
        "by Airflow when the dispatcher inserts it); same machine, same wall clock. The API "
        f"server's dispatcher polls every {DISPATCH_POLL_SECONDS} s for events other processes "
        "recorded (the default) and is woken at once by its own process's commits."
    )
    print()
    ratios = [_report_target(t, bare_rate, failures) for t in targets]
    noop_rate = noop_run.wrk.rate("202")
    if noop_run.wrk.non_2xx or not noop_rate:
        failures.append(f"no-op plugin route: {noop_run.wrk.codes} (the plugin did not load?)")
    else:
        print(
            f"the API server's ceiling: its no-op plugin route answered {noop_rate:,.0f} req/s = "
            f"{noop_rate / bare_rate:.3f}x bare (p99 {noop_run.wrk.p99_ms:.1f} ms); airhook in "
            f"the API server reached {in_run.wrk.rate('202') / noop_rate:.2f}x that route"
        )
    print()
    if failures:
        print("THE RUN HAD ERRORS (its numbers do not measure the intended path):")
        for failure in failures:
            print(f"  {failure}")
        return 1
    for target, ratio in zip(targets, ratios, strict=True):
        ah = target.measured.wrk
        line = (
            f"{target.name}: {ah.rate('202'):,.0f} verified deliveries/s = {ratio:.3f}x bare "
            f"({bare_rate:,.0f}); ack p50/p99 {ah.p50_ms:.1f}/{ah.p99_ms:.1f} ms"
        )
        if target.series is not None and target.series.to_asset_ms:
            to_asset = target.series.to_asset_ms
            line += (
                f"; ack → asset event p50/p99 {percentile(to_asset, 50):.0f}/"
                f"{percentile(to_asset, 99):.0f} ms"
            )
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
