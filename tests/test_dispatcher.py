"""The dispatcher: inbox events to Airflow asset events, exactly once, against a real metadata DB.

Airflow's configuration is global to a process, so everything that touches Airflow's DB runs in
one subprocess with its own AIRFLOW_HOME (migrated with ``airflow db migrate``): it parses a DAG
folder into the DB as the DAG processor does, runs the scenarios and prints what it saw as JSON;
the tests assert on that. Leases and the extra need no Airflow and run here, on both stores.
"""

from __future__ import annotations

import json
import logging
import os
import textwrap
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airhook.core.ids import new_event_id
from airhook.dispatcher import LEASE_NAME, Dispatcher, asset_extra
from airhook.store import Store
from airhook.store.inbox import InboxEvent, InboxRepository, NewEvent
from airhook.store.leases import LeaseRepository
from airhook.store.migrate import upgrade
from tests.airflow_run import run_in_fresh_airflow

DAGS = {
    "rkt_leads.py": """
        import airhook
        from airflow.sdk import DAG, task

        with DAG("rkt_leads", schedule=airhook.on("rkt", "lead.captured")):
            task(lambda: None, task_id="noop")()
    """,
    "rkt_everything.py": """
        import airhook
        from airflow.sdk import DAG, task

        with DAG("rkt_everything", schedule=airhook.on("rkt")):
            task(lambda: None, task_id="noop")()
    """,
    "conversations.py": """
        import airhook
        from airflow.sdk import DAG, task

        with DAG("conversations", schedule=airhook.on_kind("conversation.started")):
            task(lambda: None, task_id="noop")()
    """,
}

# What every scenario script starts with: the DAG folder parsed into Airflow's DB, helpers.
PRELUDE = r'''
import json
import sys
import time
from datetime import datetime, timezone
from unittest import mock

import sqlalchemy as sa
from airflow.assets.manager import AssetManager, asset_manager
from airflow.dag_processing.bundles.manager import DagBundlesManager
from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
from airflow.models.dag import DagModel
from airflow.utils.session import create_session

from airhook.dispatcher import Dispatcher, LeaseLostError
from airhook.core.ids import new_event_id
from airhook.store import Store
from airhook.store.inbox import InboxRepository, NewEvent
from airhook.store.migrate import upgrade

store = Store(sys.argv[1])
upgrade(store)
inbox = InboxRepository(store)
report = {}

# --- the DAG folder into Airflow's DB, as the DAG processor does it ---------------------------
manager = DagBundlesManager()
with create_session() as session:
    manager.sync_bundles_to_db(session=session)
import_errors = {}
for bundle in manager.get_all_dag_bundles():
    if not bundle.is_initialized:
        bundle.initialize()
    bag = BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name)
    import_errors.update(bag.import_errors)
    sync_bag_to_db(bag, bundle.name, bundle.version)
with create_session() as session:
    report["import_errors"] = {str(k): str(v) for k, v in import_errors.items()}
    report["dags"] = sorted(session.scalars(sa.select(DagModel.dag_id)))
    report["assets"] = sorted(
        [name, uri] for name, uri in session.execute(sa.select(AssetModel.name, AssetModel.uri))
    )


def record(source, event, kind, body=None):
    new = NewEvent(
        id=new_event_id(), source=source, profile="rkt", event=event, kind=kind,
        dedupe_key=new_event_id(),
        body=json.dumps(body if body is not None else {"event": event, "data": {"n": 1}}),
        received_at=datetime.now(timezone.utc),
    )
    assert inbox.record([new])[0].status == "created"
    return new.id


def asset_events():
    """airhook event id -> its asset events ({asset, extra}), sorted by asset."""
    with create_session() as session:
        rows = session.execute(
            sa.select(AssetModel.name, AssetEvent.extra).join(
                AssetModel, AssetEvent.asset_id == AssetModel.id
            )
        ).all()
    found = {}
    for name, extra in rows:
        found.setdefault(extra.get("airhook_event_id"), []).append({"asset": name, "extra": extra})
    return {k: sorted(v, key=lambda e: e["asset"]) for k, v in found.items()}


def inbox_state(event_id):
    event = inbox.get(event_id)
    return {"attempts": event.dispatch_attempts, "dispatched": event.dispatched_at is not None}


def assets_of(event_id):
    return [e["asset"] for e in asset_events().get(event_id, [])]


'''

SCRIPT = (
    PRELUDE
    + r"""
# --- 1: a batch -------------------------------------------------------------------------------
lead_body = {"event": "lead.captured", "data": {"email": "a@b.c"}}
ids = {
    "lead": record("rkt", "lead.captured", "lead.captured", lead_body),
    "started": record("rkt", "session.created", "conversation.started"),
    "unheard": record("github", "push", None),
}
report["batch"] = {
    "ids": ids,
    "handled": Dispatcher(store).dispatch_once(),
    "again": Dispatcher(store).dispatch_once(),
    "events": {k: asset_events().get(v, []) for k, v in ids.items()},
    "inbox": {k: inbox_state(v) for k, v in ids.items()},
}
with create_session() as session:
    queued = session.scalars(sa.select(AssetDagRunQueue.target_dag_id))
    report["batch"]["queued_dags"] = sorted(set(queued))

# --- 2: a crash after Airflow's commit, before the inbox is marked -----------------------------
crash_after = record("rkt", "lead.captured", "lead.captured")
with mock.patch.object(InboxRepository, "mark_dispatched", side_effect=RuntimeError("killed")):
    try:
        Dispatcher(store).dispatch_once()
        raised = None
    except RuntimeError as exc:
        raised = str(exc)
report["crash_after_commit"] = {
    "raised": raised,
    "after_crash": {"assets": assets_of(crash_after), "inbox": inbox_state(crash_after)},
}
report["crash_after_commit"]["handled"] = Dispatcher(store).dispatch_once()
report["crash_after_commit"]["recovered"] = {
    "assets": assets_of(crash_after), "inbox": inbox_state(crash_after)
}

# --- 3: a crash inside Airflow's transaction, before its commit --------------------------------
crash_before = record("rkt", "session.created", "conversation.started")
real_register = asset_manager.register_asset_change
calls = []


def flaky_register(**kwargs):
    calls.append(kwargs["asset"].name)
    if len(calls) == 2:  # the first asset event is already flushed into the transaction
        raise RuntimeError("metadata DB went away")
    return real_register(**kwargs)


notified = mock.Mock()
with mock.patch.object(AssetManager, "notify_asset_changed", notified):
    with mock.patch.object(asset_manager, "register_asset_change", side_effect=flaky_register):
        try:
            Dispatcher(store).dispatch_once()
            raised = None
        except RuntimeError as exc:
            raised = str(exc)
    report["crash_before_commit"] = {
        "raised": raised,
        "registered_before_crash": len(calls),
        "notified_before_commit": notified.call_count,
        "after_crash": {"assets": assets_of(crash_before), "inbox": inbox_state(crash_before)},
    }
    report["crash_before_commit"]["handled"] = Dispatcher(store).dispatch_once()
    report["crash_before_commit"]["notified_after_commit"] = notified.call_count
report["crash_before_commit"]["recovered"] = {
    "assets": assets_of(crash_before), "inbox": inbox_state(crash_before)
}

# --- 3b: the lease was lost while writing: the fence refuses the commit -------------------------
fenced = record("rkt", "lead.captured", "lead.captured")
try:
    Dispatcher(store).dispatch_once(fence=lambda: False)
    raised = None
except LeaseLostError as exc:
    raised = type(exc).__name__
report["lease_lost"] = {
    "raised": raised,
    "after": {"assets": assets_of(fenced), "inbox": inbox_state(fenced)},
}
report["lease_lost"]["handled"] = Dispatcher(store).dispatch_once(fence=lambda: True)
report["lease_lost"]["recovered"] = {"assets": assets_of(fenced), "inbox": inbox_state(fenced)}

# --- 4: payloads too large for the extra --------------------------------------------------------
big = record("rkt", "lead.captured", "lead.captured", {"event": "lead.captured", "data": "x" * 500})
small = record("rkt", "lead.captured", "lead.captured", {"event": "lead.captured", "data": "x"})
Dispatcher(store, payload_max_bytes=200).dispatch_once()
report["payload_limit"] = {
    "big": [e["extra"] for e in asset_events()[big]],
    "small": [e["extra"] for e in asset_events()[small]],
}

# --- 6: a batch with several events per asset -------------------------------------------------
leads = [
    record("rkt", "lead.captured", "lead.captured", {"event": "lead.captured", "data": {"n": i}})
    for i in range(4)
]
starts = [
    record("rkt", "session.created", "conversation.started", {"event": "session.created", "n": i})
    for i in range(3)
]


def count_asset_events():
    with create_session() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(AssetEvent))


emitted = []


def hear(asset_event):
    event_id = asset_event.extra["airhook_event_id"]
    emitted.append([asset_event.asset.name, event_id, count_asset_events()])


real_register = asset_manager.register_asset_change
registered = []


registered_ids = []


def counting_register(**kwargs):
    registered.append(kwargs["asset"].name)
    registered_ids.append(kwargs["extra"]["airhook_event_id"])
    return real_register(**kwargs)


before = count_asset_events()
with mock.patch.object(AssetManager, "nofity_asset_event_emitted", staticmethod(hear)):
    with mock.patch.object(asset_manager, "register_asset_change", side_effect=counting_register):
        handled = Dispatcher(store).dispatch_once()
after = count_asset_events()
with create_session() as session:
    rows = session.execute(
        sa.select(AssetModel.name, AssetEvent.extra, AssetEvent.timestamp, AssetEvent.asset_id)
        .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
        .order_by(AssetEvent.timestamp, AssetEvent.id)
    ).all()
    ours = set(leads + starts)
    order, newest = {}, {}
    for name, extra, stamp, asset_id in rows:
        if extra.get("airhook_event_id") in ours:
            order.setdefault(name, []).append(extra["airhook_event_id"])
            newest[asset_id] = max(stamp, newest.get(asset_id, stamp))
    queue_behind = [
        [row.target_dag_id, row.created_at.isoformat(), newest[row.asset_id].isoformat()]
        for row in session.scalars(sa.select(AssetDagRunQueue))
        if row.asset_id in newest and row.created_at < newest[row.asset_id]
    ]
    queue_rows = sorted(
        [row.asset_id, row.target_dag_id]
        for row in session.scalars(sa.select(AssetDagRunQueue))
        if row.asset_id in newest
    )
report["many_per_asset"] = {
    "manager": type(asset_manager).__name__,
    "handled": handled,
    "created": after - before,
    "order": order,
    "expected_order": {"leads": leads, "starts": starts},
    "queue_behind_newest_event": queue_behind,
    "queue_rows": queue_rows,
    "registered": sorted(registered),
    "registered_ids": registered_ids,
    "emitted": emitted,
    "count_after": after,
}

# --- 5: two running dispatchers, one lease ------------------------------------------------------
one, two = Dispatcher(store, poll_seconds=0.05), Dispatcher(store, poll_seconds=0.05)
one.start()
two.start()
try:
    running_ids = [record("rkt", "session.created", "conversation.started") for _ in range(20)]
    for dispatcher in (one, two):
        dispatcher.wake()
    deadline = time.monotonic() + 30
    while inbox.count(dispatched=False) and time.monotonic() < deadline:
        time.sleep(0.05)
finally:
    one.stop()
    two.stop()
events = asset_events()
report["running"] = {
    "undispatched": inbox.count(dispatched=False),
    "asset_events_per_event": sorted({len(events.get(i, [])) for i in running_ids}),
}

# --- 6: re-dispatch on request ----------------------------------------------------------------
from airhook.airflow_internals import asset_events_of

again_id = record("rkt", "lead.captured", "lead.captured")
waiting_id = record("rkt", "lead.captured", "lead.captured")
Dispatcher(store).dispatch_once()  # both dispatched once
first = len(asset_events().get(again_id, []))
# Only dispatched events go again; the unknown id is ignored.
report["redispatch_count"] = inbox.redispatch([again_id, again_id, "evt_unknown"])
report["redispatch_state"] = inbox_state(again_id)
# A round that began (and counted its attempt) before a crash: the next round must look the
# re-dispatch up in Airflow, and not take the first dispatch's asset events for it.
inbox.begin_dispatch([again_id])
Dispatcher(store).dispatch_once()
report["redispatch"] = {
    "first": first,
    "after": len(asset_events().get(again_id, [])),
    "marks": sorted(
        e["extra"].get("airhook_redispatch", 0) for e in asset_events().get(again_id, [])
    ),
    "state": inbox_state(again_id),
    "redispatches": inbox.get(again_id).redispatches,
    "untouched": inbox.get(waiting_id).redispatches,
    "detail": [
        (e["asset"], e["redispatch"], len(e["dag_runs"]))
        for e in asset_events_of(again_id, inbox.get(again_id).received_at)
    ],
}
# A second pass finds nothing left to do: each request is dispatched once.
report["redispatch"]["second_pass"] = Dispatcher(store).dispatch_once()
report["redispatch"]["after_second_pass"] = len(asset_events().get(again_id, []))

print(json.dumps(report))
"""
)


# The scheduler builds an asset-triggered run in one transaction: it locks the DAG's queue rows
# (FOR UPDATE SKIP LOCKED), reads the events up to the newest row's created_at, creates the run
# and deletes those rows. An event dispatched while it holds them must still leave a queue row.
RACE_SCRIPT = (
    PRELUDE
    + r"""
import threading

from airflow import settings

DAG_ID = "rkt_leads"
queue_rows = sa.select(AssetDagRunQueue.asset_id, AssetDagRunQueue.created_at).where(
    AssetDagRunQueue.target_dag_id == DAG_ID
)
record("rkt", "lead.captured", "lead.captured")
Dispatcher(store).dispatch_once()
with create_session() as session:
    report["queued_before"] = len(session.execute(queue_rows).all())

scheduler = settings.engine.connect()
transaction = scheduler.begin()
report["locked_by_scheduler"] = len(
    scheduler.execute(queue_rows.with_for_update(skip_locked=True)).all()
)
event_id = record("rkt", "lead.captured", "lead.captured")
outcome = {}


def dispatch():
    try:
        outcome["handled"] = Dispatcher(store).dispatch_once()
    except Exception as exc:
        outcome["error"] = repr(exc)


thread = threading.Thread(target=dispatch)
thread.start()
# Let the dispatcher reach the scheduler's lock before the scheduler finishes its run.
waiting = 0
deadline = time.monotonic() + 30
while not waiting and thread.is_alive() and time.monotonic() < deadline:
    with settings.engine.connect() as probe:
        waiting = probe.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
        ).scalar()
    time.sleep(0.02)
report["dispatcher_waited_for_the_scheduler"] = bool(waiting)
scheduler.execute(sa.delete(AssetDagRunQueue).where(AssetDagRunQueue.target_dag_id == DAG_ID))
transaction.commit()
scheduler.close()
thread.join(60)
report["dispatch"] = outcome
with create_session() as session:
    stamp = session.scalar(
        sa.select(AssetEvent.timestamp)
        .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
        .where(AssetModel.name == "airhook://rkt/lead.captured")
        .order_by(AssetEvent.timestamp.desc())
        .limit(1)
    )
    rows = session.execute(queue_rows).all()
report["event_dispatched"] = assets_of(event_id)
report["queue_rows_after"] = len(rows)
report["queue_covers_the_event"] = bool(rows) and all(r.created_at >= stamp for r in rows)
print(json.dumps(report))
"""
)


# A round that stalls after counting its attempt (a GC pause, a frozen VM) while another
# dispatcher takes the lease over, dispatches the same events and goes away (stops, which frees
# the lease, or dies between Airflow's commit and marking the inbox): when the stalled round
# resumes, it must not commit those events a second time.
STALL_SCRIPT = (
    PRELUDE
    + r"""
import threading

from airhook.dispatcher import LEASE_NAME
from airhook.store.leases import LeaseRepository

LEASE = 1.0


def scenario(how):
    leases = LeaseRepository(store)
    leases.release(LEASE_NAME, leases.holder(LEASE_NAME) or "")
    event_id = record("rkt", "lead.captured", "lead.captured")
    stalled_one = Dispatcher(store, lease_seconds=LEASE)
    other = Dispatcher(store, lease_seconds=LEASE)
    assert stalled_one._hold_lease()
    stalled, resume = threading.Event(), threading.Event()
    begin = stalled_one._inbox.begin_dispatch

    def begin_then_stall(ids):
        begin(ids)
        stalled.set()
        resume.wait(60)

    stalled_one._inbox.begin_dispatch = begin_then_stall
    outcome = {}

    def run():
        try:
            outcome["handled"] = stalled_one.dispatch_once(fence=stalled_one._still_leader)
        except Exception as exc:
            outcome["error"] = repr(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert stalled.wait(30)
    time.sleep(LEASE + 0.3)  # the stalled round's lease lapses
    seen = {"other_took_the_lease": other._hold_lease()}
    if how == "dies_before_marking":
        with mock.patch.object(other._inbox, "mark_dispatched", side_effect=RuntimeError("killed")):
            try:
                other.dispatch_once(fence=other._still_leader)
            except RuntimeError:
                pass
        time.sleep(LEASE + 0.3)  # its lease lapses too
    else:
        other.dispatch_once(fence=other._still_leader)
        other.stop()  # frees the lease
    seen["after_the_other"] = assets_of(event_id)
    resume.set()
    thread.join(60)
    seen["stalled_round"] = outcome
    seen["after_the_stalled_round"] = assets_of(event_id)
    seen["inbox"] = inbox_state(event_id)
    return seen


report["stops"] = scenario("stops")
report["dies_before_marking"] = scenario("dies_before_marking")

# A round frozen while it holds the dispatch lock (here: another connection holds it) makes
# the next round give up after the lock timeout, with an error it is retried after.
from airflow import settings

import airhook.airflow_internals as internals

if settings.engine.dialect.name == "postgresql":
    waiting_id = record("rkt", "lead.captured", "lead.captured")
    holder = settings.engine.connect()
    holding = holder.begin()
    holder.execute(
        sa.select(sa.func.pg_advisory_xact_lock(internals.DISPATCH_LOCK_KEY))
    )
    internals.LOCK_TIMEOUT_SECONDS = 1
    started = time.monotonic()
    try:
        Dispatcher(store).dispatch_once()
        report["frozen_holder"] = "no error"
    except Exception as exc:
        report["frozen_holder"] = getattr(getattr(exc, "orig", None), "pgcode", type(exc).__name__)
    report["frozen_waited"] = round(time.monotonic() - started, 1)
    holding.rollback()
    holder.close()
    report["after_the_holder"] = Dispatcher(store).dispatch_once()
    report["dispatched_after"] = assets_of(waiting_id)
print(json.dumps(report))
"""
)


CUSTOM_MANAGER = """
from airflow.assets.manager import AssetManager


class PerEventAssetManager(AssetManager):
    \"\"\"A deployment's own asset manager: airhook must call it for every event.\"\"\"
"""


@pytest.fixture(scope="module", params=["airflow", "custom"])
def report(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Run the scenarios against a freshly migrated Airflow; return what the script saw.

    Twice: with Airflow's own asset manager (the batched path) and with a configured subclass
    (``[core] asset_manager_class``), which gets one ``register_asset_change`` call per event.
    """
    root = tmp_path_factory.mktemp("dispatch")
    home, dags = root / "airflow", root / "dags"
    dags.mkdir()
    for name, text in DAGS.items():
        (dags / name).write_text(textwrap.dedent(text))
    script = root / "scenarios.py"
    script.write_text(SCRIPT)
    extra_env = {"AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False"}
    if request.param == "custom":
        (root / "custom_asset_manager.py").write_text(CUSTOM_MANAGER)
        extra_env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(root), os.environ.get("PYTHONPATH")])
        )
        extra_env["AIRFLOW__CORE__ASSET_MANAGER_CLASS"] = (
            "custom_asset_manager.PerEventAssetManager"
        )
    url = f"sqlite:///{root / 'airhook.db'}"
    result = run_in_fresh_airflow(home, dags, [str(script), url], extra_env)
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


# --- parsing ---------------------------------------------------------------------------------


def test_dags_scheduled_on_airhook_assets_create_those_assets(report: dict[str, Any]) -> None:
    assert report["import_errors"] == {}
    assert report["dags"] == ["conversations", "rkt_everything", "rkt_leads"]
    names = [name for name, _ in report["assets"]]
    assert names == [
        "airhook-kind://conversation.started",
        "airhook://rkt",
        "airhook://rkt/lead.captured",
    ]


# --- one batch -------------------------------------------------------------------------------


def test_each_event_becomes_an_asset_event_on_each_listened_asset(report: dict[str, Any]) -> None:
    batch = report["batch"]
    assert batch["handled"] == 3
    assert [e["asset"] for e in batch["events"]["lead"]] == [
        "airhook://rkt",
        "airhook://rkt/lead.captured",
    ]
    assert [e["asset"] for e in batch["events"]["started"]] == [
        "airhook-kind://conversation.started",
        "airhook://rkt",
    ]


def test_asset_event_extra_carries_the_event(report: dict[str, Any]) -> None:
    batch = report["batch"]
    for asset_event in batch["events"]["lead"]:
        extra = asset_event["extra"]
        assert extra["airhook_event_id"] == batch["ids"]["lead"]
        assert extra["source"] == "rkt"
        assert extra["profile"] == "rkt"
        assert extra["event"] == "lead.captured"
        assert extra["kind"] == "lead.captured"
        assert extra["payload"] == {"event": "lead.captured", "data": {"email": "a@b.c"}}
        assert datetime.fromisoformat(extra["received_at"]).tzinfo is not None
        assert "payload_in_store_only" not in extra


def test_dispatched_events_queue_the_dags_scheduled_on_them(report: dict[str, Any]) -> None:
    assert report["batch"]["queued_dags"] == ["conversations", "rkt_everything", "rkt_leads"]


def test_dispatched_events_are_marked_and_not_dispatched_again(report: dict[str, Any]) -> None:
    batch = report["batch"]
    assert batch["again"] == 0
    for state in batch["inbox"].values():
        assert state == {"attempts": 1, "dispatched": True}


def test_event_no_dag_listens_to_is_marked_without_asset_events(report: dict[str, Any]) -> None:
    assert report["batch"]["events"]["unheard"] == []
    assert report["batch"]["inbox"]["unheard"]["dispatched"] is True


# --- crashes ---------------------------------------------------------------------------------


def test_crash_after_airflow_commit_leaves_the_event_undispatched(report: dict[str, Any]) -> None:
    crash = report["crash_after_commit"]
    assert crash["raised"] == "killed"
    assert crash["after_crash"] == {
        "assets": ["airhook://rkt", "airhook://rkt/lead.captured"],
        "inbox": {"attempts": 1, "dispatched": False},
    }


def test_after_a_crash_after_commit_the_next_round_only_marks_the_event(
    report: dict[str, Any],
) -> None:
    crash = report["crash_after_commit"]
    assert crash["handled"] == 1
    assert crash["recovered"] == {
        "assets": ["airhook://rkt", "airhook://rkt/lead.captured"],
        "inbox": {"attempts": 2, "dispatched": True},
    }


def test_crash_before_airflow_commit_leaves_nothing_in_airflow(report: dict[str, Any]) -> None:
    crash = report["crash_before_commit"]
    assert crash["raised"] == "metadata DB went away"
    assert crash["registered_before_crash"] == 2
    assert crash["after_crash"] == {
        "assets": [],
        "inbox": {"attempts": 1, "dispatched": False},
    }


def test_listeners_hear_only_of_committed_asset_events(report: dict[str, Any]) -> None:
    crash = report["crash_before_commit"]
    assert crash["notified_before_commit"] == 0
    assert crash["notified_after_commit"] == 2


def test_after_a_crash_before_commit_the_next_round_dispatches_once(
    report: dict[str, Any],
) -> None:
    crash = report["crash_before_commit"]
    assert crash["handled"] == 1
    assert crash["recovered"] == {
        "assets": ["airhook-kind://conversation.started", "airhook://rkt"],
        "inbox": {"attempts": 2, "dispatched": True},
    }


# --- payload size and running dispatchers ----------------------------------------------------


def test_lost_lease_rolls_the_round_back_and_the_next_holder_dispatches_once(
    report: dict[str, Any],
) -> None:
    lost = report["lease_lost"]
    assert lost["raised"] == "LeaseLostError"
    assert lost["after"]["assets"] == []
    assert lost["after"]["inbox"]["dispatched"] is False
    assert lost["handled"] >= 1
    # once each on the source's asset and the event's asset, which the test DAGs listen to
    assert sorted(lost["recovered"]["assets"]) == ["airhook://rkt", "airhook://rkt/lead.captured"]
    assert lost["recovered"]["inbox"]["dispatched"] is True


def test_payload_over_the_limit_stays_in_the_store_only(report: dict[str, Any]) -> None:
    for extra in report["payload_limit"]["big"]:
        assert extra["payload"] is None
        assert extra["payload_in_store_only"] is True
        assert extra["airhook_event_id"]
    for extra in report["payload_limit"]["small"]:
        assert extra["payload"] == {"event": "lead.captured", "data": "x"}
        assert "payload_in_store_only" not in extra


def test_two_running_dispatchers_dispatch_each_event_once(report: dict[str, Any]) -> None:
    running = report["running"]
    assert running["undispatched"] == 0
    assert running["asset_events_per_event"] == [2]


# --- several events per asset in one batch ---------------------------------------------------

LEAD_ASSET, SOURCE_ASSET, KIND_ASSET = (
    "airhook://rkt/lead.captured",
    "airhook://rkt",
    "airhook-kind://conversation.started",
)


def test_several_events_per_asset_become_one_asset_event_each_in_inbox_order(
    report: dict[str, Any],
) -> None:
    many = report["many_per_asset"]
    leads, starts = many["expected_order"]["leads"], many["expected_order"]["starts"]
    assert many["handled"] == 7
    assert many["created"] == 14  # each event on its source's asset and on one more
    assert many["order"] == {
        SOURCE_ASSET: leads + starts,
        LEAD_ASSET: leads,
        KIND_ASSET: starts,
    }


def test_the_dag_run_queue_is_never_behind_the_newest_event_of_its_asset(
    report: dict[str, Any],
) -> None:
    many = report["many_per_asset"]
    assert many["queue_behind_newest_event"] == []
    assert sorted(dag for _, dag in many["queue_rows"]) == [
        "conversations",
        "rkt_everything",
        "rkt_leads",
    ]


def test_listeners_hear_of_every_asset_event_once_and_only_after_the_commit(
    report: dict[str, Any],
) -> None:
    many = report["many_per_asset"]
    leads, starts = many["expected_order"]["leads"], many["expected_order"]["starts"]
    expected = sorted(
        [[SOURCE_ASSET, i] for i in leads + starts]
        + [[LEAD_ASSET, i] for i in leads]
        + [[KIND_ASSET, i] for i in starts]
    )
    assert sorted([name, event_id] for name, event_id, _ in many["emitted"]) == expected
    # every listener call saw all of the batch's asset events already committed
    assert {seen for _, _, seen in many["emitted"]} == {many["count_after"]}


def test_airflows_manager_is_called_once_per_asset_and_a_custom_one_once_per_event(
    report: dict[str, Any],
) -> None:
    many = report["many_per_asset"]
    if many["manager"] == "AssetManager":
        assert many["registered"] == sorted([SOURCE_ASSET, LEAD_ASSET, KIND_ASSET])
    else:
        assert many["manager"] == "PerEventAssetManager"
        assert many["registered"] == sorted(
            [SOURCE_ASSET] * 7 + [LEAD_ASSET] * 4 + [KIND_ASSET] * 3
        )
        # A custom manager hears of the events in inbox order, each on all of its assets.
        in_order = [
            i for n, i in enumerate(many["registered_ids"]) if i not in many["registered_ids"][:n]
        ]
        assert in_order == many["expected_order"]["leads"] + many["expected_order"]["starts"]
        assert len(many["registered_ids"]) == 14
        runs = [
            i
            for n, i in enumerate(many["registered_ids"])
            if n == 0 or many["registered_ids"][n - 1] != i
        ]
        assert len(runs) == 7  # each event's calls come together


# --- without Airflow: the extra and the lease ------------------------------------------------


def _inbox_event(body: str) -> InboxEvent:
    return InboxEvent(
        seq=1,
        id="evt_1",
        source="rkt",
        profile="rkt",
        event="lead.captured",
        kind="lead.captured",
        body=body,
        received_at=datetime(2026, 3, 1, tzinfo=timezone.utc),
        dispatch_attempts=0,
        dispatched_at=None,
    )


def test_asset_extra_keeps_a_payload_of_exactly_the_limit() -> None:
    body = json.dumps({"data": "é" * 10})
    extra = asset_extra(_inbox_event(body), payload_max_bytes=len(body.encode("utf-8")))
    assert extra["payload"] == {"data": "é" * 10}


def test_asset_extra_counts_the_limit_in_utf8_bytes() -> None:
    body = json.dumps({"data": "é" * 10}, ensure_ascii=False)
    extra = asset_extra(_inbox_event(body), payload_max_bytes=len(body))  # characters < bytes
    assert extra["payload"] is None
    assert extra["payload_in_store_only"] is True


def test_only_one_of_two_dispatchers_holds_the_lease(store: Store) -> None:
    first, second = Dispatcher(store), Dispatcher(store)
    assert first.holder != second.holder
    assert first._hold_lease()
    assert not second._hold_lease()
    assert first._hold_lease()
    assert LeaseRepository(store).holder(LEASE_NAME) == first.holder


def test_stopped_dispatcher_hands_the_lease_over(store: Store) -> None:
    first, second = Dispatcher(store), Dispatcher(store)
    assert first._hold_lease()
    first.stop()
    assert second._hold_lease()
    assert LeaseRepository(store).holder(LEASE_NAME) == second.holder


def test_a_failed_round_is_logged_without_the_rows_it_was_writing(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # An error from Airflow's database quotes the statement's parameters: the asset events'
    # extra, payloads included. The log names the error, not what it quotes.
    import sqlalchemy as sa

    payload = "PAYLOAD-ada@example.com"
    InboxRepository(store).record([_new_event(payload)])
    refused = sa.exc.IntegrityError(
        "INSERT INTO asset_event (extra) VALUES (?)", ({"payload": payload},), ValueError(payload)
    )
    dispatcher = Dispatcher(store, poll_seconds=0.05)
    failed = threading.Event()

    def write(events: Any, fence: Any = None) -> None:
        failed.set()
        raise refused

    monkeypatch.setattr(dispatcher, "_write_to_airflow", write)
    caplog.set_level(logging.INFO, logger="airhook")
    dispatcher.start()
    try:
        assert failed.wait(10)
        deadline = time.monotonic() + 10
        while "round failed" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        dispatcher.stop()
    assert "airhook dispatcher round failed (builtins.ValueError at " in caplog.text
    assert payload not in caplog.text


def test_a_commit_elsewhere_wakes_the_dispatcher_on_postgresql(postgres_url: str) -> None:
    from tests.conftest import create_postgres_database

    url = create_postgres_database(postgres_url)
    store, elsewhere = Store(url), Store(url)  # two pools: two processes, as PostgreSQL sees it
    dispatcher = Dispatcher(store, poll_seconds=600)
    try:
        upgrade(store)
        dispatcher.listen()
        assert dispatcher.listening.wait(30)
        dispatcher._wake.clear()
        InboxRepository(elsewhere).record([_new_event("e-1")])
        assert dispatcher._wake.wait(30)  # long before the 600 s poll
        dispatcher._wake.clear()
        InboxRepository(elsewhere).record([_new_event("e-1")])  # a duplicate: nothing new
        assert not dispatcher._wake.wait(2)
    finally:
        dispatcher.stop()
        store.dispose()
        elsewhere.dispose()


def test_only_postgresql_dispatchers_listen(store: Store) -> None:
    dispatcher = Dispatcher(store)
    dispatcher.listen()
    if store.is_sqlite:
        assert dispatcher._listener is None
    else:
        assert dispatcher.listening.wait(30)
    dispatcher.stop()


def _new_event(key: str) -> NewEvent:
    return NewEvent(
        id=new_event_id(),
        source="rkt",
        profile="rkt",
        event="lead.captured",
        kind="lead.captured",
        dedupe_key=key,
        body=json.dumps({"event": "lead.captured"}),
        received_at=datetime.now(timezone.utc),
    )


def _databases(database: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[str, str]:
    """(Airflow's metadata DB URL, the airhook store's URL), both on ``database``."""
    if database == "sqlite":
        return f"sqlite:///{tmp_path / 'airflow.db'}", f"sqlite:///{tmp_path / 'airhook.db'}"
    from tests.conftest import create_postgres_database

    base = request.getfixturevalue("postgres_url")
    return create_postgres_database(base), create_postgres_database(base)


def _run_scenario(tmp_path: Path, script_text: str, metadata_url: str, store_url: str) -> Any:
    """Run a scenario script in a fresh Airflow on ``metadata_url``; return its report."""
    dags = tmp_path / "dags"
    dags.mkdir()
    for name, text in DAGS.items():
        (dags / name).write_text(textwrap.dedent(text))
    script = tmp_path / "scenario.py"
    script.write_text(script_text)
    extra_env = {
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
    }
    result = run_in_fresh_airflow(tmp_path / "airflow", dags, [str(script), store_url], extra_env)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["import_errors"] == {}
    return report


def test_an_event_dispatched_while_the_scheduler_holds_the_queue_row_still_queues_its_dag(
    tmp_path: Path, postgres_url: str
) -> None:
    """On PostgreSQL the scheduler may hold (and then delete) the DAG's queue row while the
    dispatcher writes a newer event for its asset: the event must not be left without a row,
    or its DAG would not run until some later event arrived."""
    from tests.conftest import create_postgres_database

    report = _run_scenario(
        tmp_path,
        RACE_SCRIPT,
        create_postgres_database(postgres_url),
        create_postgres_database(postgres_url),
    )
    assert report["queued_before"] == report["locked_by_scheduler"] == 1
    assert report["dispatcher_waited_for_the_scheduler"]
    assert report["dispatch"] == {"handled": 1}
    assert report["event_dispatched"] == ["airhook://rkt", "airhook://rkt/lead.captured"]
    assert report["queue_rows_after"] == 1
    assert report["queue_covers_the_event"]


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_round_that_stalled_while_another_dispatcher_took_over_does_not_dispatch_again(
    tmp_path: Path, request: pytest.FixtureRequest, database: str
) -> None:
    report = _run_scenario(tmp_path, STALL_SCRIPT, *_databases(database, tmp_path, request))
    once = ["airhook://rkt", "airhook://rkt/lead.captured"]
    if database == "postgresql":
        assert report["frozen_holder"] == "55P03"  # lock_not_available: lock_timeout
        assert 0.9 <= report["frozen_waited"] < 10
        assert report["after_the_holder"] == 1
        assert report["dispatched_after"] == once
    for how in ("stops", "dies_before_marking"):
        seen = report[how]
        assert seen["other_took_the_lease"], how
        assert seen["after_the_other"] == once, how
        assert seen["stalled_round"] == {"handled": 1}, how
        assert seen["after_the_stalled_round"] == once, how
        assert seen["inbox"]["dispatched"], how


# The scheduler reads a DAG's queue rows, builds the run from the events up to the newest row's
# created_at as it read it, and deletes the rows by key. A round committed between the read and
# the delete leaves its events to no run (apache/airflow#70970): the queue keeper queues the DAG
# again for them, once, and a DAG paused at dispatch is not queued for its events, ever.
KEEPER_SCRIPT = (
    PRELUDE
    + r"""
from airflow import settings
from airflow.jobs.job import Job
from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
from airflow.models.asset import association_table
from airflow.models.dagrun import DagRun

DAG_ID = "rkt_leads"
LATER = datetime(2999, 1, 1, tzinfo=timezone.utc)  # every watch is due
runner = SchedulerJobRunner(job=Job(), num_runs=1)
dispatcher = Dispatcher(store)


def scheduler_pass(between=None):
    # The scheduler's own steps (_create_dagruns_for_dags). ``between`` runs where the race is:
    # after it read DAG_ID's queue rows, before its first write (the run).
    get_dag = runner._get_current_dag

    def get_dag_and_pause(dag_id, session):
        dag = get_dag(dag_id=dag_id, session=session)
        if dag_id == DAG_ID and between is not None:
            create = dag.create_dagrun

            def create_after_between(*args, **kwargs):
                between()
                return create(*args, **kwargs)

            dag.create_dagrun = create_after_between
        return dag

    with mock.patch.object(runner, "_get_current_dag", get_dag_and_pause):
        with create_session() as session:
            query, triggered = DagModel.dags_needing_dagruns(session)
            ready = [d for d in query.all() if d.dag_id in triggered]
            runner._create_dag_runs_asset_triggered(dag_models=ready, session=session)


def lose_queue_row():
    # What the race leaves, made directly: PostgreSQL's row locks keep the real scheduler from
    # it (the dispatcher waits for the scheduler's rows), so there the keeper is a safety net.
    dispatcher.dispatch_once()
    with create_session() as session:
        session.execute(
            sa.delete(AssetDagRunQueue).where(AssetDagRunQueue.target_dag_id == DAG_ID)
        )


def consumed_by(dag_id):
    # airhook event id -> how many runs of the DAG consumed its asset event
    with create_session() as session:
        rows = session.execute(
            sa.select(AssetEvent.extra)
            .join(association_table, association_table.c.event_id == AssetEvent.id)
            .join(DagRun, DagRun.id == association_table.c.dag_run_id)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(DagRun.dag_id == dag_id, AssetModel.name == "airhook://rkt/lead.captured")
        ).scalars()
        counts = {}
        for extra in rows:
            counts[extra["airhook_event_id"]] = counts.get(extra["airhook_event_id"], 0) + 1
        return counts


def queue_row():
    with create_session() as session:
        return session.scalar(
            sa.select(AssetDagRunQueue.created_at)
            .join(AssetModel, AssetModel.id == AssetDagRunQueue.asset_id)
            .where(
                AssetDagRunQueue.target_dag_id == DAG_ID,
                AssetModel.name == "airhook://rkt/lead.captured",
            )
        )


first = record("rkt", "lead.captured", "lead.captured")
dispatcher.dispatch_once()
second = record("rkt", "lead.captured", "lead.captured")
if settings.engine.dialect.name == "sqlite":
    scheduler_pass(between=dispatcher.dispatch_once)
else:
    scheduler_pass()
    lose_queue_row()
report["after_race"] = {"consumed": consumed_by(DAG_ID), "queued": queue_row() is not None}
report["first"], report["second"] = first, second
report["requeued"] = dispatcher.keeper.check(now=LATER)
report["queued_after_check"] = queue_row() is not None
scheduler_pass()
report["after_second_pass"] = consumed_by(DAG_ID)
report["requeued_again"] = dispatcher.keeper.check(now=LATER)
report["watches_left"] = [
    w.dag_id for w in dispatcher.keeper._watches.all() if w.dag_id == DAG_ID
]

# Paused when its event is dispatched: not queued, not watched, not queued after unpausing.
with create_session() as session:
    session.execute(sa.update(DagModel).where(DagModel.dag_id == DAG_ID).values(is_paused=True))
third = record("rkt", "lead.captured", "lead.captured")
dispatcher.dispatch_once()
with create_session() as session:
    session.execute(sa.update(DagModel).where(DagModel.dag_id == DAG_ID).values(is_paused=False))
report["third"] = third
report["requeued_for_paused"] = dispatcher.keeper.check(now=LATER)
report["queued_for_paused"] = queue_row() is not None
scheduler_pass()
report["after_paused"] = consumed_by(DAG_ID)
print(json.dumps(report))
"""
)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_events_no_run_consumed_queue_their_dag_again_once(
    tmp_path: Path, request: pytest.FixtureRequest, database: str
) -> None:
    report = _run_scenario(tmp_path, KEEPER_SCRIPT, *_databases(database, tmp_path, request))
    first, second, third = report["first"], report["second"], report["third"]
    # The race, as Airflow leaves it: the second event consumed by no run, no queue row left.
    assert report["after_race"] == {"consumed": {first: 1}, "queued": False}
    # The keeper queues the DAG again, and the next run consumes exactly the orphan.
    assert report["requeued"] == 1
    assert report["queued_after_check"]
    assert report["after_second_pass"] == {first: 1, second: 1}
    assert report["requeued_again"] == 0
    assert report["watches_left"] == []
    # A DAG paused at dispatch is never queued for that event.
    assert report["requeued_for_paused"] == 0
    assert not report["queued_for_paused"]
    assert third not in report["after_paused"]


def test_redispatch_sends_a_dispatched_event_to_its_assets_once_more(
    report: dict[str, Any],
) -> None:
    assert report["redispatch_count"] == 1
    assert report["redispatch_state"] == {"attempts": 0, "dispatched": False}
    seen = report["redispatch"]
    # lead.captured is listened to on two assets: the source's event (rkt_leads) and the whole
    # source (rkt_everything).
    assert seen["first"] == 2
    assert seen["after"] == 4
    assert seen["marks"] == [0, 0, 1, 1]
    assert seen["state"] == {"attempts": 2, "dispatched": True}  # the crashed round, then this
    assert (seen["redispatches"], seen["untouched"]) == (1, 0)
    assert sorted(asset for asset, _, _ in seen["detail"]) == sorted(
        ["airhook://rkt"] * 2 + ["airhook://rkt/lead.captured"] * 2
    )
    assert sorted(number for _, number, _ in seen["detail"]) == [0, 0, 1, 1]
    assert seen["second_pass"] == 0
    assert seen["after_second_pass"] == 4
