"""How fast retention prunes, and what a prune costs the receiver recording beside it (SQLite).

Run it with ``PYTHONPATH=. .venv/bin/python bench/retention.py``; about a minute.

What is measured, in one process, on an SQLite store (a file in a temp dir, WAL,
``synchronous=FULL``, as the receiver uses it), each round seeded afresh with ``--events``
dispatched events (about 500-byte bodies) and ``--deliveries`` delivered deliveries (two
attempt rows each), all 60 days old:

- **prune throughput**: :func:`airhook.retention.prune` as the background pruner and ``airhook
  prune`` run it (batches of ``--batch-size``, a pause between two batches three times as long
  as the last one took), in rows per second (events plus deliveries; their attempt rows go too
  but are not counted); and the same loop with no pauses, the raw delete rate.
- **the receiver's store-record latency**: one request at a time through the receiver's
  group-commit writer (:class:`airhook.receiver.writer.GroupCommitWriter`: queue, insert,
  fsync'd commit, the request's future resolved), back to back. In each round the baseline
  window (no prune, ``--baseline-seconds``) comes first, then the same recording while the
  prune runs, in the same store a moment later: the ratio of their medians is what the prune
  costs a delivery's acknowledgement, machine speed cancelled out. The p99s are shown too.

Prints each round, then the medians over ``--rounds``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

BODY = '{"event": "lead.captured", "data": {"email": "a@example.com", "note": "' + "x" * 420 + '"}}'


def _seed(store: Any, events: int, deliveries: int, old: datetime, round_no: int) -> None:
    """``events`` dispatched events and ``deliveries`` delivered deliveries, all ``old``."""
    from airhook.store.inbox import InboxRepository, NewEvent
    from airhook.store.tables import attempts
    from airhook.store.tables import deliveries as deliveries_table

    inbox = InboxRepository(store)
    for start in range(0, events, 500):
        ids = [f"evt_r{round_no}_{n}" for n in range(start, min(start + 500, events))]
        inbox.record([NewEvent(i, "old", "rkt", "lead.captured", None, i, BODY, old) for i in ids])
        inbox.mark_dispatched(ids, old)
    for start in range(0, deliveries, 500):
        mids = [f"msg_r{round_no}_{n}" for n in range(start, min(start + 500, deliveries))]
        with store.begin() as connection:
            connection.execute(
                deliveries_table.insert(),
                [
                    {
                        "message_id": mid,
                        "subscription": "crm",
                        "event": "insight.summary",
                        "body": BODY,
                        "status": "delivered",
                        "attempts": 2,
                        "created_at": old,
                        "updated_at": old,
                        "finished_at": old,
                    }
                    for mid in mids
                ],
            )
            connection.execute(
                attempts.insert(),
                [
                    {
                        "message_id": mid,
                        "subscription": "crm",
                        "attempted_at": old,
                        "outcome": outcome,
                        "status_code": code,
                    }
                    for mid in mids
                    for outcome, code in (("retry", 500), ("delivered", 200))
                ],
            )


class Recorder:
    """Records live events one at a time through the receiver's group-commit writer, in a
    thread of its own running an event loop; keeps each record's latency."""

    def __init__(self, store: Any) -> None:
        from airhook.receiver.writer import GroupCommitWriter
        from airhook.store.inbox import InboxRepository

        self._writer = GroupCommitWriter(InboxRepository(store))
        self._writer.start()
        self._serial = 0

    def record_while(self, keep_going: Any) -> list[float]:
        """Record back to back while ``keep_going()``; return the latencies in ms."""
        from airhook.store.inbox import NewEvent
        from airhook.store.times import utc_now

        latencies: list[float] = []

        async def run() -> None:
            while keep_going():
                self._serial += 1
                key = f"live-{self._serial}"
                event = NewEvent(
                    f"evt_live_{self._serial}", "live", "rkt", "lead.captured", None, key, BODY,
                    utc_now(),
                )  # fmt: skip
                started = time.perf_counter()
                recorded = await self._writer.record(event)
                latencies.append((time.perf_counter() - started) * 1000)
                assert recorded.status == "created"

        asyncio.run(run())
        return latencies

    def stop(self) -> None:
        self._writer.stop()


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 100 else max(values)


def _round(args: argparse.Namespace, folder: Path, number: int) -> dict[str, float]:
    from airhook.retention import Retention, prune
    from airhook.store import Store
    from airhook.store.migrate import upgrade
    from airhook.store.retention import RetentionRepository
    from airhook.store.times import utc_now

    rows = args.events + args.deliveries
    store = Store(f"sqlite:///{folder / f'round{number}.db'}")
    upgrade(store)
    try:
        now = utc_now()
        cutoffs = Retention(30, 30).cutoffs(now)
        repository = RetentionRepository(store)
        # Raw delete rate: the loop with no pauses.
        _seed(store, args.events, args.deliveries, now - timedelta(days=60), number * 2)
        started = time.perf_counter()
        raw = prune(repository, cutoffs, batch_size=args.batch_size, between=lambda _p: True)
        raw_seconds = time.perf_counter() - started
        assert raw.events + raw.deliveries == rows, raw
        # As the pruner runs it, beside a receiver: baseline window first, then the prune.
        _seed(store, args.events, args.deliveries, now - timedelta(days=60), number * 2 + 1)
        recorder = Recorder(store)
        try:
            deadline = time.monotonic() + args.baseline_seconds
            baseline = recorder.record_while(lambda: time.monotonic() < deadline)
            outcome: list[Any] = []
            timing: list[float] = []

            def run_prune() -> None:
                begun = time.perf_counter()
                outcome.append(prune(repository, cutoffs, batch_size=args.batch_size))
                timing.append(time.perf_counter() - begun)

            pruning = threading.Thread(target=run_prune)
            pruning.start()
            during = recorder.record_while(pruning.is_alive)
            pruning.join()
        finally:
            recorder.stop()
        [paced] = outcome
        assert paced.events + paced.deliveries == rows, paced
        return {
            "raw_rows_per_s": rows / raw_seconds,
            "rows_per_s": rows / timing[0],
            "prune_s": timing[0],
            "batches": float(paced.batches),
            "baseline_median_ms": statistics.median(baseline),
            "during_median_ms": statistics.median(during),
            "baseline_p99_ms": _p99(baseline),
            "during_p99_ms": _p99(during),
            "records_during": float(len(during)),
        }
    finally:
        store.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=40_000, help="old events seeded per round")
    parser.add_argument(
        "--deliveries", type=int, default=10_000, help="old deliveries seeded per round"
    )
    parser.add_argument("--batch-size", type=int, default=1000, help="rows per transaction")
    parser.add_argument(
        "--baseline-seconds", type=float, default=3.0, help="the baseline window per round"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds (medians over them)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="airhook-bench-retention-") as tmp:
        folder = Path(tmp)
        os.environ["AIRFLOW_HOME"] = str(folder)  # metrics import Airflow: keep it off ~/airflow
        os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
        # The prune counts its rows as metrics, which imports Airflow's stats on first use: do
        # it now, outside every timed window.
        import logging

        from airhook import metrics

        logging.getLogger("alembic").setLevel(logging.WARNING)  # a store per round

        metrics.incr("airhook.prune.events", 0)
        print(
            f"SQLite store, {args.events} events + {args.deliveries} deliveries per round, "
            f"batches of {args.batch_size}, python {sys.version.split()[0]}"
        )
        results = []
        for number in range(args.rounds):
            result = _round(args, folder, number)
            results.append(result)
            print(
                f"round {number + 1}: prune {result['rows_per_s']:,.0f} rows/s "
                f"({result['prune_s']:.1f} s, {result['batches']:.0f} batches; raw "
                f"{result['raw_rows_per_s']:,.0f} rows/s) | record median "
                f"{result['baseline_median_ms']:.2f} ms alone, "
                f"{result['during_median_ms']:.2f} ms during the prune "
                f"({result['records_during']:.0f} records); p99 "
                f"{result['baseline_p99_ms']:.2f} / {result['during_p99_ms']:.2f} ms"
            )

    def median(key: str) -> float:
        return statistics.median(r[key] for r in results)

    ratio = statistics.median(r["during_median_ms"] / r["baseline_median_ms"] for r in results)
    p99_ratio = statistics.median(r["during_p99_ms"] / r["baseline_p99_ms"] for r in results)
    print()
    print(f"prune throughput (as the pruner runs, paused): {median('rows_per_s'):,.0f} rows/s")
    print(f"prune throughput (no pauses, raw deletes):     {median('raw_rows_per_s'):,.0f} rows/s")
    print(
        f"store-record latency median: {median('baseline_median_ms'):.2f} ms alone, "
        f"{median('during_median_ms'):.2f} ms during a prune: ratio {ratio:.2f}x "
        f"(p99 ratio {p99_ratio:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
