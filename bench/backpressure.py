"""Backpressure: the sustained rate at which airhook's receiver starts answering 503, and the
dispatch lag under it.

Run it with ``make bench-backpressure`` (= ``PYTHONPATH=. .venv/bin/python bench/backpressure.py``)
or ``bench/receiver.py --backpressure``; about 4–5 minutes per target. ``--standalone`` measures the
standalone receiver too (its events dispatched by the API server); ``--airhook-db-url
postgresql+psycopg2://…/<empty database>`` puts the airhook store on PostgreSQL (Airflow's own
database stays SQLite); ``--keep`` keeps the working directory (Airflow home, logs).

Setup: one local Airflow 3 (:class:`devstack.AirflowStack`, every process on 127.0.0.1, SQLite
for Airflow and the airhook store unless told otherwise), started by bench/receiver.py's
``start_airflow``: the API server (1 worker, its dispatcher thread on) and two ``rkt`` sources
with one secret, ``bench``, which a DAG is scheduled on (so that the dispatcher writes real asset
events), and ``bench-nodag``, which no DAG listens to (the dispatcher only marks its events).
Backpressure is configured for the bench: ``backpressure_backlog`` = BACKLOG_BOUND (2,000) and
``backpressure_check_seconds`` = 0.2; the writer-queue bound and ``Retry-After`` keep their
defaults. Why 2,000 and not the default 20,000: the backlog grows at (accepted − dispatched)
per second, so a step of STEP_SECONDS (25 s) reaches 2,000 when the receiver outruns the
dispatcher by 80 events/s or more; the default bound would need 250 s per step at that excess
(more than 4 minutes per step). A lower bound, on the other hand, would be reached by the jitter
of one dispatcher batch (``dispatch_batch_size``, 500). The rate at which the backlog starts to
grow does not depend on the bound; only how soon it reaches it does.

Load: **open loop**, one asyncio + aiohttp client in this process. Request i of a step is sent at
start + i / rate whatever the earlier answers (at most MAX_IN_FLIGHT outstanding: if the server
holds that many, sending waits, and the step's achieved send rate falls below its target; the
report gives the achieved rate, never only the target). Each request is a unique, correctly
signed 1,024-byte RKT ``message.received`` delivery (bench/receiver.py's ``Deliveries``), each
step its own set. A 503 is counted and not retried (a real sender would come back after
``Retry-After``). The steps go up RATES (50, 100, … 3,200 req/s, doubling) on ``bench`` for
STEP_SECONDS each, until a step gets 503s or the client cannot keep the rate; then one step at
the geometric middle between the last step without backpressure and the first with it (REFINE),
then the highest step without backpressure and the lowest with it again (``--repeats``, in all 2
runs each by default), whose medians are quoted. Between steps the bench waits (at most
DRAIN_WAIT_SECONDS) until every event is dispatched, so that each step starts from an empty
backlog.

Per step: achieved send rate, 202s per second, the share of ``503 backpressure``, every other
answer, the undispatched backlog over time (the receiver's own view, capped at the bound: ``GET
/airhook/receiver/stats`` with an Airflow login, or the standalone receiver's health answer; and
the store's uncapped count, both every SAMPLE_SECONDS), the largest writer queue seen, the
server's CPU (its process group's user + system time ÷ the step's seconds), when the first 503
came, the dispatcher's drain rate (the step's events whose ``dispatched_at`` falls within the
step, per second) and the dispatch lag (``dispatched_at`` − ``received_at`` from the airhook
inbox for every event of the step, dispatched during the step or the drain after it: median,
p99, max). Backpressure **started** in a step when its backlog reached the bound and it got
``503 backpressure`` answers; the **threshold** is the lowest step rate where it did.

Baseline (same process, same minutes): the receiver's accept rate without dispatch load, a
flood step (open loop at BASELINE_RATE, BASELINE_SECONDS) on ``bench-nodag`` right before and
right after each target's ladder; the threshold and the drain rate are also given as ratios to
the mean of the two.

Nothing here asserts a timing. The exit status is 1 only on a correctness failure: an
acknowledged (202) event missing from the inbox, an answer other than a 2xx or a 503 with
``Retry-After``, or a request that got no answer at all (backpressure exists so that the receiver
answers instead of timing out).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import math
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import sqlalchemy as sa
from receiver import (
    FREE_PATH,
    FREE_SOURCE,
    PATH,
    SOURCE,
    Deliveries,
    _store_engine,
    group_cpu_seconds,
    percentile,
    standalone_server,
    start_airflow,
)

from airhook.store.tables import inbox as inbox_table
from airhook.store.times import aware

#: Target request rates of the ladder (req/s), tried in this order.
RATES = (50, 100, 200, 400, 800, 1600, 3200)
#: Seconds of load per step.
STEP_SECONDS = 25.0
#: The bench's backlog bound (``backpressure_backlog``) and how often it is counted.
BACKLOG_BOUND = 2000
CHECK_SECONDS = 0.2
#: The baseline flood on the source no DAG listens to: target rate and seconds.
BASELINE_RATE = 3000
BASELINE_SECONDS = 10.0
#: A short warm-up on the source no DAG listens to, before anything is measured.
WARMUP_RATE = 200
WARMUP_SECONDS = 3.0
#: Most requests outstanding at once; past it the client cannot keep the rate.
MAX_IN_FLIGHT = 256
#: A request unanswered after this long counts as no answer (a failure).
REQUEST_TIMEOUT = 30.0
#: How often the backlog is sampled during a step.
SAMPLE_SECONDS = 1.0
#: Longest wait for the dispatcher to empty the backlog after a step.
DRAIN_WAIT_SECONDS = 120.0
#: Steps at the geometric middle between the last rate without backpressure and the first with.
REFINE = 1
#: A step "kept" its rate when it sent at least this share of its target.
KEEP_RATE = 0.9


@dataclass
class Settings:
    """What the command line may change: seconds per step and the backlog bound."""

    step_seconds: float = STEP_SECONDS
    bound: int = BACKLOG_BOUND


#: This run's settings (set once by :func:`main`).
settings = Settings()


@dataclass
class Sample:
    """The backlog at one moment of a step."""

    at: float  # seconds since the step started
    seen: int | None  # the receiver's own count (capped at the bound); None: no answer
    stored: int  # the store's count of undispatched events, uncapped
    writer_queue: int | None
    over: bool | None


@dataclass
class Step:
    """One step of open-loop load."""

    name: str
    path: str
    target: float
    seconds: float
    nonce: str = ""
    sent: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    acked: list[str] = field(default_factory=list)
    first_503_s: float | None = None
    samples: list[Sample] = field(default_factory=list)
    cpu_seconds: float | None = None
    started_wall: float = 0.0
    ended_wall: float = 0.0
    # filled in after the drain
    rows: int = 0
    missing: int = 0
    dispatched_in_step: int = 0
    left: int = 0
    drain_s: float = 0.0
    lag_ms: list[float] = field(default_factory=list)

    @property
    def send_rate(self) -> float:
        """Requests sent per second."""
        return self.sent / self.seconds

    @property
    def kept_rate(self) -> bool:
        """Whether the client sent at (nearly) the target rate."""
        return self.sent >= KEEP_RATE * self.target * self.seconds

    def rate(self, answer: str) -> float:
        """Answers of one kind per second."""
        return self.answers[answer] / self.seconds

    @property
    def backpressure_share(self) -> float:
        """The share of answers that were ``503 backpressure``."""
        total = sum(self.answers.values())
        return self.answers["503 backpressure"] / total if total else 0.0

    @property
    def other(self) -> dict[str, int]:
        """Answers neither 202 nor ``503 backpressure``, and requests with no answer."""
        other = {k: n for k, n in self.answers.items() if k not in ("202", "503 backpressure")}
        return {**other, **{f"no answer: {k}": n for k, n in self.errors.items()}}

    @property
    def reached_bound(self) -> bool:
        """Whether the backlog reached the bound (the receiver's count or the store's)."""
        return any(
            (s.seen is not None and s.seen >= settings.bound) or s.stored >= settings.bound
            for s in self.samples
        )

    @property
    def backpressure(self) -> bool:
        """Backpressure started: the backlog reached the bound and senders got 503s."""
        return self.reached_bound and self.answers["503 backpressure"] > 0

    @property
    def drain_rate(self) -> float:
        """The step's events dispatched per second during the step."""
        return self.dispatched_in_step / self.seconds

    @property
    def cpu_percent(self) -> float | None:
        """The server's CPU time during the step, in % of one core."""
        return None if self.cpu_seconds is None else self.cpu_seconds / self.seconds * 100

    def backlog_at(self, second: float) -> int | None:
        """The store's backlog at the sample nearest ``second`` into the step."""
        if not self.samples:
            return None
        return min(self.samples, key=lambda s: abs(s.at - second)).stored

    def growth_per_s(self) -> float | None:
        """How fast the backlog grew until it first reached the bound (or the step's end)."""
        points = []
        for s in self.samples:
            points.append((s.at, s.stored))
            if s.stored >= settings.bound:
                break
        if len(points) < 3:
            return None
        xs, ys = zip(*points, strict=True)
        return statistics.linear_regression(xs, ys).slope

    def failures(self) -> list[str]:
        """Correctness failures of the step."""
        found = []
        if self.missing:
            found.append(f"{self.name}: {self.missing} acknowledged events missing from the inbox")
        bad = {
            k: n
            for k, n in self.answers.items()
            if not (k[0] == "2" or (k.startswith("503 ") and "no Retry-After" not in k))
        }
        if bad:
            found.append(f"{self.name}: answers other than 2xx or 503 with Retry-After: {bad}")
        if self.errors:
            found.append(f"{self.name}: requests with no answer: {dict(self.errors)}")
        return found


@dataclass
class Target:
    """One receiver under test: where it answers and how its backlog view is read."""

    name: str
    base_url: str
    pgid: int
    view_path: str  # stats (API server, with a login) or health (standalone)
    token: str | None
    #: where the baseline floods go (None: this target itself)
    baseline: Target | None = None
    steps: list[Step] = field(default_factory=list)
    warmups: list[Step] = field(default_factory=list)
    baselines: list[Step] = field(default_factory=list)
    loads: list[str] = field(default_factory=list)


def loadavg() -> str:
    """The 1-minute load average and the running / total tasks, from /proc/loadavg."""
    with contextlib.suppress(OSError):
        parts = Path("/proc/loadavg").read_text().split()
        return f"{parts[0]} (1 min), {parts[1]} (5 min)"
    return "n/a"


def store_backlog(store_url: str) -> int:
    """Undispatched events in the whole store, uncapped."""
    with _store_engine(store_url).connect() as db:
        count = db.scalar(
            sa.select(sa.func.count())
            .select_from(inbox_table)
            .where(inbox_table.c.dispatched_at.is_(None))
        )
    return int(count or 0)


# --- the open-loop client --------------------------------------------------------------------


async def _send(
    session: aiohttp.ClientSession, url: str, body: bytes, signature: str, step: Step, t0: float
) -> None:
    headers = {"Content-Type": "application/json", "X-RKT-Signature": signature}
    try:
        async with session.post(url, data=body, headers=headers) as response:
            raw = await response.read()
            status = response.status
            if status == 202:
                step.answers["202"] += 1
                step.acked.append(str((await response.json(content_type=None))["id"]))
                return
            if status == 503:
                kind = "backpressure" if b'"backpressure"' in raw else "other"
                if "Retry-After" not in response.headers:
                    kind += ", no Retry-After"
                step.answers[f"503 {kind}"] += 1
                if step.first_503_s is None:
                    step.first_503_s = time.monotonic() - t0
                return
            step.answers[str(status)] += 1
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        step.errors[type(exc).__name__] += 1


async def _sample(
    session: aiohttp.ClientSession, target: Target, store_url: str, step: Step, t0: float
) -> None:
    headers = {"Authorization": f"Bearer {target.token}"} if target.token else {}
    while True:
        at = time.monotonic() - t0
        seen = queue = over = None
        with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            async with session.get(
                target.base_url + target.view_path,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=5),
            ) as response:
                view = await response.json(content_type=None)
                seen, queue, over = (
                    view.get("backlog"),
                    view.get("writer_queue"),
                    view.get("backpressure"),
                )
        stored = await asyncio.to_thread(store_backlog, store_url)
        step.samples.append(Sample(round(at, 1), seen, stored, queue, over))
        await asyncio.sleep(max(0.0, SAMPLE_SECONDS - (time.monotonic() - t0 - at)))


async def _load(target: Target, store_url: str, step: Step, deliveries: Deliveries) -> None:
    count = int(step.target * step.seconds)
    # Signed before the clock starts, so that the loop only sends.
    key = deliveries.secret.encode()
    bodies = [deliveries.body(i) for i in range(count)]
    signatures = [hmac.new(key, b, hashlib.sha256).hexdigest() for b in bodies]
    url = target.base_url + step.path
    connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT + 4)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()

        async def one(i: int, t0: float) -> None:
            try:
                await _send(session, url, bodies[i], signatures[i], step, t0)
            finally:
                slots.release()

        before = group_cpu_seconds(target.pgid)
        step.started_wall = time.time()
        t0 = time.monotonic()
        sampler = asyncio.create_task(_sample(session, target, store_url, step, t0))
        i = 0
        while i < count:
            elapsed = time.monotonic() - t0
            if elapsed >= step.seconds:
                break
            due = min(count, int(elapsed * step.target) + 1)
            while i < due and time.monotonic() - t0 < step.seconds:
                await slots.acquire()  # waits only when MAX_IN_FLIGHT are outstanding
                task = asyncio.create_task(one(i, t0))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
            await asyncio.sleep(0.002)
        # The step lasts its seconds even if the set ran out early (it does not: count = rate × s).
        await asyncio.sleep(max(0.0, step.seconds - (time.monotonic() - t0)))
        step.sent = i
        step.ended_wall = time.time()
        after = group_cpu_seconds(target.pgid)
        if tasks:
            await asyncio.wait(set(tasks), timeout=REQUEST_TIMEOUT + 5)
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    if before is not None and after is not None:
        step.cpu_seconds = after - before


def run_step(
    target: Target, store_url: str, secret: str, name: str, path: str, rate: float, seconds: float
) -> Step:
    """Send one open-loop step, then wait for its events to be dispatched and read the inbox."""
    deliveries = Deliveries.build(secret, secrets.token_hex(4))
    step = Step(name, path, rate, seconds, nonce=deliveries.nonce)
    asyncio.run(_load(target, store_url, step, deliveries))
    settle(step, store_url, FREE_SOURCE if path.endswith(FREE_SOURCE) else SOURCE)
    return step


def settle(step: Step, store_url: str, source: str) -> None:
    """Wait until the whole backlog is dispatched (at most DRAIN_WAIT_SECONDS); then read the
    step's inbox rows: missing acknowledged ids, the drain rate during the step, the lag."""
    began = time.monotonic()
    time.sleep(0.5)  # what was in flight when the step ended
    while store_backlog(store_url) and time.monotonic() - began < DRAIN_WAIT_SECONDS:
        time.sleep(0.25)
    step.drain_s = time.monotonic() - began
    with _store_engine(store_url).connect() as db:
        rows = db.execute(
            sa.select(
                inbox_table.c.id, inbox_table.c.received_at, inbox_table.c.dispatched_at
            ).where(
                inbox_table.c.source == source,
                inbox_table.c.body.like(f"%m-{step.nonce}-%"),
            )
        ).all()
    step.rows = len(rows)
    stored = {row.id for row in rows}
    step.missing = len(set(step.acked) - stored) + (step.answers["202"] - len(step.acked))
    for row in rows:
        dispatched = aware(row.dispatched_at)
        if dispatched is None:
            step.left += 1
            continue
        received = aware(row.received_at)
        assert received is not None
        step.lag_ms.append((dispatched - received).total_seconds() * 1000)
        if dispatched.timestamp() <= step.ended_wall:
            step.dispatched_in_step += 1


# --- the run ---------------------------------------------------------------------------------


def ladder(
    target: Target, store_url: str, secret: str, rates: Sequence[float], repeats: int
) -> None:
    """The steps up the rates, the refinement and the repeats, on the source with a DAG."""

    def step(rate: float, label: str) -> Step:
        s = run_step(target, store_url, secret, label, PATH, rate, settings.step_seconds)
        target.steps.append(s)
        print(f"  {describe(s)}", flush=True)
        return s

    below: float | None = None
    above: float | None = None
    middle: float
    for rate in rates:
        s = step(rate, f"{rate:g}/s")
        if s.answers["503 backpressure"]:
            above = rate
            break
        below = rate
        if not s.kept_rate:
            print(f"  the client could not keep {rate:g}/s: the ladder stops", flush=True)
            break
    if above is None:
        return
    for _ in range(REFINE if below is not None else 0):
        assert below is not None
        middle = round(math.sqrt(below * above))
        if middle in (below, above):
            break
        s = step(middle, f"{middle:g}/s (refine)")
        if s.answers["503 backpressure"]:
            above = middle
        else:
            below = middle
    for _ in range(repeats - 1):
        for again in (below, above):
            if again is not None:
                step(again, f"{again:g}/s (repeat)")


def describe(step: Step) -> str:
    """One line of progress."""
    lag = (
        f"lag p50/p99 {percentile(step.lag_ms, 50):,.0f}/{percentile(step.lag_ms, 99):,.0f} ms"
        if step.lag_ms
        else "no lag"
    )
    return (
        f"{step.name}: sent {step.send_rate:,.0f}/s, 202 {step.rate('202'):,.0f}/s, 503 bp "
        f"{step.backpressure_share:.1%}, other {step.other or '-'}, backlog max "
        f"{max((s.stored for s in step.samples), default=0):,}, drained "
        f"{step.drain_rate:,.0f}/s, {lag}, cpu {step.cpu_percent or 0:.0f}%"
    )


def measure_target(target: Target, store_url: str, secret: str, args: argparse.Namespace) -> None:
    """Warm-up, baseline, ladder, baseline."""
    print(f"{target.name}: load average {loadavg()}", flush=True)
    target.loads.append(loadavg())
    target.warmups.append(
        run_step(target, store_url, secret, "warm-up", FREE_PATH, WARMUP_RATE, WARMUP_SECONDS)
    )

    def baseline(label: str) -> None:
        s = run_step(
            target.baseline or target,
            store_url,
            secret,
            label,
            FREE_PATH,
            BASELINE_RATE,
            args.baseline_seconds,
        )
        target.baselines.append(s)
        print(f"  {describe(s)}", flush=True)

    baseline("baseline (before)")
    ladder(target, store_url, secret, args.rates, args.repeats)
    baseline("baseline (after)")
    target.loads.append(loadavg())


def _ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) / 1000:,.1f}" if values else "-"


def report(target: Target) -> float | None:
    """Print the target's table and threshold; return its threshold rate (None: none found)."""
    base = statistics.mean(s.rate("202") for s in target.baselines)
    print()
    print(f"## {target.name} (load average {' → '.join(target.loads)})")
    print()
    print(
        "| step | target /s | sent /s | 202 /s | 503 bp | other | backlog at 5/10/15/20/25 s "
        "(store) | max writer queue | server CPU | first 503 | drained /s | lag p50 / p99 / max "
        "(s) | backpressure |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in [*target.baselines[:1], *target.steps, *target.baselines[1:]]:
        backlog = " / ".join(
            f"{b:,}" if (b := s.backlog_at(t)) is not None else "-"
            for t in (5, 10, 15, 20, 25)
            if t <= s.seconds + 0.5
        )
        queue = max((q.writer_queue or 0 for q in s.samples), default=0)
        cpu = f"{s.cpu_percent:.0f} %" if s.cpu_percent is not None else "n/a"
        first = f"{s.first_503_s:.1f} s" if s.first_503_s is not None else "-"
        lag = (
            f"{_ms(s.lag_ms, 50)} / {_ms(s.lag_ms, 99)} / {max(s.lag_ms) / 1000:,.1f}"
            if s.lag_ms
            else "-"
        )
        other = ", ".join(f"{k}: {n}" for k, n in s.other.items()) or "-"
        left = f" ({s.left:,} undispatched after {s.drain_s:.0f} s)" if s.left else ""
        print(
            f"| {s.name} | {s.target:,.0f} | {s.send_rate:,.0f} | {s.rate('202'):,.0f} | "
            f"{s.backpressure_share:.1%} | {other} | {backlog} | {queue:,} | {cpu} | {first} | "
            f"{s.drain_rate:,.0f} | {lag}{left} | {'yes' if s.backpressure else 'no'} |"
        )
    print()
    print(
        f"baseline (source {FREE_SOURCE!r}, no DAG; open loop at {BASELINE_RATE:,}/s): 202 "
        + " / ".join(f"{s.rate('202'):,.0f}" for s in target.baselines)
        + f" /s (before / after), mean {base:,.0f}/s"
    )
    by_rate: dict[float, list[Step]] = {}
    for s in target.steps:
        by_rate.setdefault(s.target, []).append(s)
    started = sorted(rate for rate, runs in by_rate.items() if any(r.backpressure for r in runs))
    quiet = sorted(
        rate
        for rate, runs in by_rate.items()
        if not any(r.answers["503 backpressure"] for r in runs)
    )
    if not started:
        print(
            f"backpressure did not start up to {max(by_rate, default=0):,.0f}/s (the highest step "
            f"sent {target.steps[-1].send_rate:,.0f}/s)"
        )
        return None
    threshold = started[0]
    runs = by_rate[threshold]
    sent = statistics.median(r.send_rate for r in runs)
    accepted = statistics.median(r.rate("202") for r in runs)
    drained = statistics.median(r.drain_rate for r in runs)
    growth = [g for r in runs if (g := r.growth_per_s()) is not None]
    lags = [r.lag_ms for r in runs if r.lag_ms]
    print(
        f"threshold: backpressure starts at {threshold:,.0f}/s target (sent {sent:,.0f}/s, "
        f"median of {len(runs)} run{'s' if len(runs) > 1 else ''}) = {sent / base:.2f}x the "
        f"accept rate without a DAG ({base:,.0f}/s); 202s {accepted:,.0f}/s; dispatcher drained "
        f"{drained:,.0f}/s = {drained / base:.2f}x baseline"
        + (f"; backlog grew {statistics.median(growth):,.0f}/s until the bound" if growth else "")
    )
    if lags:
        print(
            "dispatch lag at the threshold (received → dispatched, every event of the step, "
            "median over runs): p50 "
            f"{statistics.median(percentile(x, 50) for x in lags) / 1000:,.2f} s, p99 "
            f"{statistics.median(percentile(x, 99) for x in lags) / 1000:,.2f} s"
        )
    if quiet:
        below = (
            max(r for r in quiet if r < threshold) if any(r < threshold for r in quiet) else None
        )
        if below is not None:
            runs_below = by_rate[below]
            print(
                f"highest step without backpressure: {below:,.0f}/s (sent "
                f"{statistics.median(r.send_rate for r in runs_below):,.0f}/s, drained "
                f"{statistics.median(r.drain_rate for r in runs_below):,.0f}/s, lag p50/p99 "
                f"{statistics.median(percentile(r.lag_ms, 50) for r in runs_below) / 1000:,.2f}/"
                f"{statistics.median(percentile(r.lag_ms, 99) for r in runs_below) / 1000:,.2f}"
                " s)"
            )
    return threshold


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurement; print the results; return 1 if a correctness check failed."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--standalone",
        action="store_true",
        help="also measure the standalone receiver (python -m airhook.receiver, 1 worker), "
        "whose events the API server's dispatcher dispatches",
    )
    parser.add_argument(
        "--rates",
        type=lambda text: [float(r) for r in text.split(",")],
        default=list(RATES),
        help="the ladder's target rates, req/s, comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--step-seconds", type=float, default=STEP_SECONDS, help="seconds per step (%(default)s)"
    )
    parser.add_argument(
        "--baseline-seconds",
        type=float,
        default=BASELINE_SECONDS,
        help="seconds per baseline flood (%(default)s)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=2,
        help="runs of the threshold step and of the step below it, medians quoted (%(default)s)",
    )
    parser.add_argument(
        "--backlog-bound",
        type=int,
        default=BACKLOG_BOUND,
        help="[airhook] backpressure_backlog for the run (%(default)s)",
    )
    parser.add_argument(
        "--airhook-db-url",
        default=None,
        help="the airhook store: an empty PostgreSQL database (postgresql+psycopg2://…); "
        "default: an SQLite file in the run's Airflow home",
    )
    parser.add_argument(
        "--dispatch-batch-size",
        type=int,
        default=None,
        help="[airhook] dispatch_batch_size (default: the configuration's default)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the working directory and print its path"
    )
    args = parser.parse_args(argv)
    settings.step_seconds, settings.bound = args.step_seconds, args.backlog_bound
    began = time.monotonic()
    secret = "whsec_" + secrets.token_urlsafe(24)
    env = {
        "AIRFLOW__AIRHOOK__BACKPRESSURE_BACKLOG": str(settings.bound),
        "AIRFLOW__AIRHOOK__BACKPRESSURE_CHECK_SECONDS": str(CHECK_SECONDS),
    }
    if args.dispatch_batch_size:
        env["AIRFLOW__AIRHOOK__DISPATCH_BATCH_SIZE"] = str(args.dispatch_batch_size)
    targets: list[Target] = []
    with contextlib.ExitStack() as cleanup:
        tmp = tempfile.mkdtemp(prefix="airhook-bench-backpressure-")
        if args.keep:
            print(f"working directory (kept): {tmp}", flush=True)
        else:
            cleanup.callback(shutil.rmtree, tmp, ignore_errors=True)
        workdir = Path(tmp)
        stack = start_airflow(workdir, secret, args.airhook_db_url, env)
        cleanup.callback(stack.stop)
        store_url = args.airhook_db_url or f"sqlite:///{stack.home / 'airhook.db'}"
        setup_s = time.monotonic() - began
        print(f"Airflow up in {setup_s:.0f} s; airhook store {store_url.split(':')[0]}", flush=True)
        in_server = Target(
            "in-server (the API server's receiver and dispatcher)",
            stack.base_url,
            stack.processes["api-server"].pid,
            "/airhook/receiver/stats",
            stack.token(),
        )
        targets.append(in_server)
        measure_target(in_server, store_url, secret, args)
        if args.standalone:
            sa_url, sa_pgid = cleanup.enter_context(standalone_server(stack, 1))
            # The baseline's twin: the same receiver with no backlog bound. The API server marks
            # the no-DAG source's events far slower than a standalone receiver accepts them, so
            # with the bound its flood would soon be answered 503 and measure the dispatcher.
            bench_env = stack.extra_env
            stack.extra_env = {**bench_env, "AIRFLOW__AIRHOOK__BACKPRESSURE_BACKLOG": "0"}
            try:
                free_url, free_pgid = cleanup.enter_context(standalone_server(stack, 1))
            finally:
                stack.extra_env = bench_env
            standalone = Target(
                "standalone (python -m airhook.receiver, 1 worker; the API server dispatches)",
                sa_url,
                sa_pgid,
                "/airhook/receiver/health",
                None,
                baseline=Target(
                    "standalone, no backlog bound",
                    free_url,
                    free_pgid,
                    "/airhook/receiver/health",
                    None,
                ),
            )
            targets.append(standalone)
            measure_target(standalone, store_url, secret, args)
    print()
    print(
        f"airhook bench/backpressure.py: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
        f"airhook store {'PostgreSQL' if args.airhook_db_url else 'SQLite'} (Airflow's: SQLite); "
        f"backpressure_backlog {settings.bound:,}, backpressure_check_seconds {CHECK_SECONDS}, "
        f"open loop, {settings.step_seconds:g} s per step, at most {MAX_IN_FLIGHT} in flight; "
        f"total {time.monotonic() - began:.0f} s (setup {setup_s:.0f} s)"
    )
    failures: list[str] = []
    for target in targets:
        report(target)
        for s in [*target.warmups, *target.baselines, *target.steps]:
            failures += s.failures()
    print()
    if failures:
        print("CORRECTNESS FAILURES:")
        for failure in failures:
            print(f"  {failure}")
        return 1
    print(
        "every acknowledged event was in the inbox; every answer was a 2xx or a 503 with "
        "Retry-After"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
