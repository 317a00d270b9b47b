"""How fast the dispatcher turns a backlog of inbox events into Airflow asset events.

Run it with ``make bench-dispatch`` (or ``.venv/bin/python bench/dispatch.py``); about a minute.

What is measured: one local Airflow metadata DB (SQLite, ``airflow db migrate`` once, in a temp
dir), two DAGs scheduled on airhook assets (``airhook.on("bench", "message.received")`` and
``airhook.on("bench")``, so each event becomes two asset events and queues two DAGs), parsed into
the DB as the DAG processor does. Each run: a fresh airhook store (SQLite file, WAL,
``synchronous=FULL``) holding EVENTS recorded ``message.received`` events (1 KB bodies), then
``Dispatcher.dispatch_once()`` in a loop until the backlog is empty (batches of 500, the
default), timed (wall clock and the process's CPU time). No scheduler runs, so the DAG-run queue
only grows, as it does between two scheduler loops.

Two variants, in the same run, alternated round by round:

- **per event** (the baseline): ``[core] asset_manager_class`` set to a subclass of Airflow's
  ``AssetManager`` that changes nothing; for such a manager airhook calls
  ``register_asset_change`` once per asset event, which is what it did for every manager
  before the batched path.
- **batched**: Airflow's own ``AssetManager``; airhook inserts the earlier events of each asset
  in one statement and calls ``register_asset_change`` for the last event of each asset in the
  batch (see ``airhook.dispatcher._create_asset_events``).

Prints events/s and CPU µs per event for each run, the medians and the ratio batched / per
event. The exit status is 1 only if a run did not dispatch every event or created the wrong
number of asset events.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

EVENTS = 3000

DAGS = {
    "bench_event.py": """
        import airhook
        from airflow.sdk import DAG, task

        with DAG("bench_event", schedule=airhook.on("bench", "message.received")):
            task(lambda: None, task_id="noop")()
    """,
    "bench_source.py": """
        import airhook
        from airflow.sdk import DAG, task

        with DAG("bench_source", schedule=airhook.on("bench")):
            task(lambda: None, task_id="noop")()
    """,
}

PER_EVENT_MANAGER = '''
from airflow.assets.manager import AssetManager


class PerEventAssetManager(AssetManager):
    """Airflow's manager under another name: airhook then registers every event by itself."""
'''

RUN = r"""
import json
import sys
import time
from datetime import datetime, timezone

import sqlalchemy as sa
from airflow.assets.manager import asset_manager
from airflow.dag_processing.bundles.manager import DagBundlesManager
from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
from airflow.models.asset import AssetEvent
from airflow.utils.session import create_session

from airhook.dispatcher import Dispatcher
from airhook.core.ids import new_event_id
from airhook.store import Store
from airhook.store.inbox import InboxRepository, NewEvent
from airhook.store.migrate import upgrade

url, count = sys.argv[1], int(sys.argv[2])
manager = DagBundlesManager()
with create_session() as session:
    manager.sync_bundles_to_db(session=session)
for bundle in manager.get_all_dag_bundles():
    if not bundle.is_initialized:
        bundle.initialize()
    bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
    assert not bag.import_errors, bag.import_errors
    sync_bag_to_db(bag, bundle.name, bundle.version)

store = Store(url)
upgrade(store)
inbox = InboxRepository(store)
body = json.dumps({"event": "message.received", "data": {"content": "x" * 960}})
for start in range(0, count, 500):
    inbox.record([
        NewEvent(
            id=new_event_id(), source="bench", profile="rkt", event="message.received",
            kind="message.received", dedupe_key=new_event_id(),
            body=body, received_at=datetime.now(timezone.utc),
        )
        for _ in range(start, min(count, start + 500))
    ])


def asset_events():
    with create_session() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(AssetEvent))


before = asset_events()
dispatcher = Dispatcher(store)
dispatcher.dispatch_once()  # warm: imports, first queries; counted below as dispatched
wall, cpu = time.perf_counter(), time.process_time()
while dispatcher.dispatch_once():
    pass
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
print(json.dumps({
    "manager": type(asset_manager).__name__,
    "timed_events": count - 500,
    "wall": wall,
    "cpu": cpu,
    "undispatched": inbox.count(dispatched=False),
    "asset_events": asset_events() - before,
}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--events", type=int, default=EVENTS)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="airhook-bench-dispatch-"))
    dags = root / "dags"
    dags.mkdir()
    for name, text in DAGS.items():
        (dags / name).write_text(textwrap.dedent(text))
    (root / "per_event_manager.py").write_text(PER_EVENT_MANAGER)
    (root / "run.py").write_text(RUN)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(root / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
        }
    )
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=env,
        check=True,
        capture_output=True,
    )
    variants = {
        "per event": {
            "AIRFLOW__CORE__ASSET_MANAGER_CLASS": "per_event_manager.PerEventAssetManager"
        },
        "batched": {},
    }
    results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    failed = False
    print(
        f"airhook bench/dispatch.py: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"{args.events:,} events per run (2 asset events each), {args.rounds} rounds"
    )
    header = ("variant", "round", "events", "seconds", "events/s", "CPU µs/event")
    print("{:<12} {:>5} {:>7} {:>8} {:>9} {:>13}".format(*header))
    for round_no in range(1, args.rounds + 1):
        for name, extra_env in variants.items():
            slug = name.replace(" ", "-")
            url = f"sqlite:///{root / f'airhook-{round_no}-{slug}.db'}"
            out = subprocess.run(
                [sys.executable, str(root / "run.py"), url, str(args.events)],
                env={**env, **extra_env},
                check=True,
                capture_output=True,
                text=True,
            )
            run = json.loads(out.stdout.strip().splitlines()[-1])
            if run["undispatched"] or run["asset_events"] != 2 * args.events:
                print(f"FAILED {name}: {run}")
                failed = True
            rate = run["timed_events"] / run["wall"]
            cpu_us = run["cpu"] / run["timed_events"] * 1e6
            results[name].append({"rate": rate, "cpu_us": cpu_us})
            print(
                f"{name:<12} {round_no:>5} {run['timed_events']:>7,} {run['wall']:>8.2f} "
                f"{rate:>9,.0f} {cpu_us:>13,.0f}"
            )
    medians = {
        name: (
            statistics.median(r["rate"] for r in runs),
            statistics.median(r["cpu_us"] for r in runs),
        )
        for name, runs in results.items()
    }
    print()
    for name, (rate, cpu_us) in medians.items():
        print(f"median {name:<10} {rate:>9,.0f} events/s {cpu_us:>9,.0f} CPU µs per event")
    ratio = medians["batched"][0] / medians["per event"][0]
    print(
        f"ratio batched / per event: {ratio:.1f}x events/s "
        f"({medians['per event'][1] / medians['batched'][1]:.1f}x less CPU per event); "
        f"total {time.monotonic() - started:.0f} s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
