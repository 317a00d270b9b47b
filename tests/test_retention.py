"""Retention against a real store (SQLite, PostgreSQL): what goes, what stays, in what batches.

Exactly the dispatched events and the delivered deliveries past their cut-off go (with their
attempts); undispatched events, re-dispatched ones, pending, sending and paused deliveries and
dead letters stay, the dead letters until purged on purpose. Each write transaction deletes at
most a batch. A dry run deletes nothing and counts what the run then removes. The background
pruner prunes with nobody acting, one process at a time, and stops promptly; the receiver's
writer keeps recording while tens of thousands of rows are pruned. ``airhook prune`` runs through
its real entry point, and the pruned rows reach Airflow's metrics as StatsD packets.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from airhook.core.errors import ConfigurationError
from airhook.manage import Services
from airhook.pruner import LEASE_NAME, BackgroundPruner, start_configured_pruner
from airhook.receiver.writer import GroupCommitWriter
from airhook.retention import Cutoffs, Pruned, Retention, count, prune
from airhook.store import Store
from airhook.store.inbox import InboxRepository, NewEvent
from airhook.store.leases import LeaseRepository
from airhook.store.migrate import upgrade
from airhook.store.retention import DEAD_LETTERS, SETTLED, Removed, RetentionRepository
from airhook.store.tables import attempts, deliveries, inbox
from airhook.store.times import utc_now
from tests.statsd import statsd_lines
from tests.test_cli import Call, Cli

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
BODY = json.dumps({"event": "lead.captured", "data": {"email": "a@example.com", "note": "x" * 300}})


def ago(days: float, now: datetime = NOW) -> datetime:
    return now - timedelta(days=days)


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# --- seeding -------------------------------------------------------------------------------------


def add_events(
    store: Store,
    ids: list[str],
    *,
    received: datetime,
    dispatched: datetime | None,
    source: str = "rkt",
) -> None:
    """Record ``ids`` as received at ``received``, dispatched at ``dispatched`` (None: not)."""
    repository = InboxRepository(store)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        repository.record(
            [
                NewEvent(i, source, "rkt", "lead.captured", None, f"key-{i}", BODY, received)
                for i in chunk
            ]
        )
        if dispatched is not None:
            repository.mark_dispatched(chunk, dispatched)


def add_delivery(
    store: Store, message_id: str, status: str, finished: datetime | None, logged: int = 2
) -> None:
    """A delivery as the outbox leaves it in ``status``, with ``logged`` attempt rows."""
    created = (finished or NOW) - timedelta(minutes=5)
    with store.begin() as connection:
        connection.execute(
            deliveries.insert().values(
                message_id=message_id,
                subscription="crm",
                event="insight.summary",
                body="{}",
                status=status,
                attempts=logged,
                next_attempt_at=None if finished else created,
                created_at=created,
                updated_at=finished or created,
                finished_at=finished,
            )
        )
        for n in range(logged):
            connection.execute(
                attempts.insert().values(
                    message_id=message_id,
                    subscription="crm",
                    attempted_at=created + timedelta(seconds=n),
                    outcome="retry" if n < logged - 1 else "delivered",
                    status_code=500 if n < logged - 1 else 200,
                )
            )


def event_ids(store: Store) -> set[str]:
    with store.read() as connection:
        return set(connection.scalars(sa.select(inbox.c.id)))


def delivery_ids(store: Store) -> set[str]:
    with store.read() as connection:
        return set(connection.scalars(sa.select(deliveries.c.message_id)))


def logged_ids(store: Store) -> Counter[str]:
    with store.read() as connection:
        return Counter(connection.scalars(sa.select(attempts.c.message_id)))


def seed_mix(store: Store) -> None:
    """Of every kind, some past the 30-day cut-off at NOW and some not."""
    add_events(store, ["evt_old_1", "evt_old_2"], received=ago(40), dispatched=ago(40))
    add_events(store, ["evt_young"], received=ago(5), dispatched=ago(5))
    add_events(store, ["evt_waiting"], received=ago(40), dispatched=None)
    # Re-dispatched two days ago: counted from its latest dispatch.
    add_events(store, ["evt_again"], received=ago(40), dispatched=ago(40))
    InboxRepository(store).redispatch(["evt_again"])
    InboxRepository(store).mark_dispatched(["evt_again"], ago(2))
    add_delivery(store, "msg_delivered_old", "delivered", ago(31))
    add_delivery(store, "msg_delivered_old_2", "delivered", ago(45), logged=1)
    add_delivery(store, "msg_delivered_young", "delivered", ago(29))
    add_delivery(store, "msg_pending", "pending", None)
    add_delivery(store, "msg_sending", "sending", None)
    add_delivery(store, "msg_paused", "paused", None)
    add_delivery(store, "msg_dead_old", "dead", ago(60), logged=3)
    add_delivery(store, "msg_failed_old", "failed", ago(60), logged=1)
    add_delivery(store, "msg_dead_young", "dead", ago(3))


KEPT_EVENTS = {"evt_young", "evt_waiting", "evt_again"}
KEPT_DELIVERIES = {
    "msg_delivered_young",
    "msg_pending",
    "msg_sending",
    "msg_paused",
    "msg_dead_old",
    "msg_failed_old",
    "msg_dead_young",
}


# --- what goes -----------------------------------------------------------------------------------


def test_exactly_the_old_dispatched_events_and_delivered_deliveries_go(store: Store) -> None:
    seed_mix(store)
    pruned = prune(RetentionRepository(store), Retention(30, 30).cutoffs(NOW), batch_size=1000)
    assert (pruned.events, pruned.deliveries, pruned.dead_letters) == (2, 2, 0)
    assert pruned.attempts == 3
    assert event_ids(store) == KEPT_EVENTS
    assert delivery_ids(store) == KEPT_DELIVERIES
    # The attempts of what went went with it; every other delivery keeps its whole log.
    assert set(logged_ids(store)) == KEPT_DELIVERIES
    assert logged_ids(store)["msg_dead_old"] == 3


def test_dead_letters_go_only_when_purged_on_purpose_with_their_own_age(store: Store) -> None:
    seed_mix(store)
    repository = RetentionRepository(store)
    prune(repository, Retention(30, 30).cutoffs(NOW), batch_size=1000)
    assert {"msg_dead_old", "msg_failed_old"} <= delivery_ids(store)
    pruned = prune(repository, Retention(None, None, 30).cutoffs(NOW), batch_size=1000)
    assert (pruned.events, pruned.deliveries, pruned.dead_letters) == (0, 0, 2)
    assert pruned.attempts == 4
    assert delivery_ids(store) == KEPT_DELIVERIES - {"msg_dead_old", "msg_failed_old"}
    assert "msg_dead_young" in logged_ids(store)


def test_kept_for_ever_prunes_nothing_of_that_kind(store: Store) -> None:
    seed_mix(store)
    pruned = prune(RetentionRepository(store), Retention(None, 30).cutoffs(NOW), batch_size=10)
    assert (pruned.events, pruned.deliveries) == (0, 2)
    assert len(event_ids(store)) == 5


def test_an_event_waiting_for_dispatch_never_goes_however_old(store: Store) -> None:
    add_events(store, ["evt_stuck"], received=ago(3000), dispatched=None)
    pruned = prune(RetentionRepository(store), Retention(0, 0).cutoffs(NOW), batch_size=10)
    assert pruned.events == 0
    assert event_ids(store) == {"evt_stuck"}


def test_a_replayed_dead_letter_is_pending_again_and_stays(store: Store) -> None:
    from airhook.store.outbox import OutboxRepository

    add_delivery(store, "msg_replayed", "dead", ago(90))
    OutboxRepository(store).replay(message_id="msg_replayed", now=NOW)
    pruned = prune(RetentionRepository(store), Retention(0, 0, 0).cutoffs(NOW), batch_size=10)
    assert pruned.dead_letters == 0
    assert delivery_ids(store) == {"msg_replayed"}


# --- batches -------------------------------------------------------------------------------------


class Transactions:
    """The rows each committed write transaction deleted, per table (the driver's own row
    counts, read at the commit: a ``DELETE … RETURNING`` counts its rows as they are fetched)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.done: list[Counter[str]] = []
        self._current: list[tuple[str, Any]] = []
        sa.event.listen(engine, "after_cursor_execute", self._executed)
        sa.event.listen(engine, "commit", self._committed)

    def _executed(self, _conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        words = statement.split()
        if words[:2] == ["DELETE", "FROM"]:
            self._current.append((words[2], cursor))

    def _committed(self, _conn: Any) -> None:
        if self._current:
            counted: Counter[str] = Counter()
            for table, cursor in self._current:
                counted[table] += cursor.rowcount
            self.done.append(counted)
            self._current = []


def test_each_transaction_deletes_at_most_a_batch(store: Store) -> None:
    add_events(store, [f"evt_{n}" for n in range(23)], received=ago(40), dispatched=ago(40))
    for n in range(17):
        add_delivery(store, f"msg_{n}", "delivered", ago(40), logged=2)
    seen = Transactions(store.write_engine)
    pruned = prune(RetentionRepository(store), Retention(30, 30).cutoffs(NOW), batch_size=5)
    assert (pruned.events, pruned.deliveries, pruned.attempts) == (23, 17, 34)
    events = [t["airhook_inbox"] for t in seen.done if "airhook_inbox" in t]
    assert events == [5, 5, 5, 5, 3]
    sent = [
        (t["airhook_delivery"], t["airhook_delivery_attempt"])
        for t in seen.done
        if "airhook_delivery" in t
    ]
    assert sent == [(5, 10), (5, 10), (5, 10), (2, 4)]
    # Events and deliveries never share a transaction.
    assert len(seen.done) == 9


def test_the_loop_pauses_between_batches_and_stops_when_told(store: Store) -> None:
    add_events(store, [f"evt_{n}" for n in range(10)], received=ago(40), dispatched=ago(40))
    pauses: list[float] = []

    def between(pause: float) -> bool:
        pauses.append(pause)
        return len(pauses) < 2

    pruned = prune(
        RetentionRepository(store), Retention(30, 30).cutoffs(NOW), batch_size=3, between=between
    )
    assert pruned == Pruned(events=6, complete=False)
    assert len(pauses) == 2
    assert all(pause >= 0.01 for pause in pauses)
    assert len(event_ids(store)) == 4


# --- dry run and the service ---------------------------------------------------------------------


def test_a_dry_run_deletes_nothing_and_counts_what_the_run_removes(
    store: Store, cipher: Fernet
) -> None:
    seed_mix(store)
    service = Services(store, cipher).retention()
    options: dict[str, Any] = {"dead_letters": True, "dead_letters_older_than_days": 45}
    planned = service.prune(dry_run=True, now=NOW, **options)
    assert event_ids(store) == KEPT_EVENTS | {"evt_old_1", "evt_old_2"}
    assert len(delivery_ids(store)) == 9
    done = service.prune(now=NOW, **options)
    assert planned == {**done, "dry_run": True}
    assert planned["events"] == {
        "older_than_days": 30,
        "cutoff": ago(30).isoformat(),
        "count": 2,
    }
    assert planned["deliveries"]["count"] == 2
    assert planned["deliveries"]["statuses"] == list(SETTLED)
    assert planned["dead_letters"] == {
        "older_than_days": 45,
        "cutoff": ago(45).isoformat(),
        "count": 2,
        "statuses": list(DEAD_LETTERS),
    }
    assert planned["attempts"] == 3 + 4
    assert service.prune(dry_run=True, now=NOW, **options)["events"]["count"] == 0


def test_the_repository_counts_as_it_prunes(store: Store) -> None:
    seed_mix(store)
    repository = RetentionRepository(store)
    assert repository.count_deliveries(ago(30), SETTLED) == Removed(2, 3)
    # First added, first gone.
    assert repository.prune_deliveries(ago(30), SETTLED, 1) == Removed(1, 2)
    assert "msg_delivered_old" not in delivery_ids(store)
    assert count(repository, Cutoffs(ago(30), ago(30))) == Pruned(
        events=2, deliveries=1, attempts=1
    )


def test_the_service_takes_the_configured_retention_and_overrides(
    store: Store, cipher: Fernet, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_mix(store)
    service = Services(store, cipher).retention()
    monkeypatch.setenv("AIRFLOW__AIRHOOK__RETENTION_EVENTS_DAYS", "0")
    monkeypatch.setenv("AIRFLOW__AIRHOOK__RETENTION_DELIVERIES_DAYS", "50")
    monkeypatch.setenv("AIRFLOW__AIRHOOK__PRUNE_BATCH_SIZE", "7")
    planned = service.prune(dry_run=True, now=NOW)
    assert planned["batch_size"] == 7
    assert planned["events"] == {"older_than_days": None, "cutoff": None, "count": 0}
    assert planned["deliveries"]["older_than_days"] == 50
    assert planned["deliveries"]["count"] == 0
    assert planned["dead_letters"]["cutoff"] is None
    overridden = service.prune(
        dry_run=True, now=NOW, events_older_than_days=0, deliveries_older_than_days=30
    )
    # 0 given here is "every dispatched event": the waiting one still stays.
    assert overridden["events"]["count"] == 4
    assert overridden["deliveries"]["count"] == 2


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"events_older_than_days": -1}, "events_older_than_days"),
        ({"deliveries_older_than_days": 1.5}, "deliveries_older_than_days"),
        ({"deliveries_older_than_days": True}, "deliveries_older_than_days"),
        ({"dead_letters_older_than_days": 3}, "dead_letters"),
        (
            {"dead_letters": True, "dead_letters_older_than_days": 10**6},
            "dead_letters_older_than_days",
        ),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_options_name_their_field_and_delete_nothing(
    store: Store, cipher: Fernet, options: dict[str, Any], field: str
) -> None:
    seed_mix(store)
    with pytest.raises(ConfigurationError) as raised:
        Services(store, cipher).retention().prune(now=NOW, **options)
    assert raised.value.field == field
    assert len(event_ids(store)) == 5


# --- the background pruner -----------------------------------------------------------------------


def test_the_background_pruner_prunes_with_nobody_acting(store: Store) -> None:
    now = utc_now()
    add_events(
        store, [f"evt_{n}" for n in range(30)], received=ago(40, now), dispatched=ago(40, now)
    )
    add_events(store, ["evt_young"], received=now, dispatched=now)
    add_delivery(store, "msg_old", "delivered", ago(40, now))
    add_delivery(store, "msg_dead", "dead", ago(40, now))
    pruner = BackgroundPruner(store, Retention(30, 30), interval_seconds=0.05, batch_size=7)
    pruner.start()
    try:
        wait_for(lambda: event_ids(store) == {"evt_young"} and "msg_old" not in delivery_ids(store))
    finally:
        pruner.stop()
    assert delivery_ids(store) == {"msg_dead"}
    assert LeaseRepository(store).holder(LEASE_NAME) is None  # given up after each round


def test_only_the_lease_holder_prunes(store: Store) -> None:
    now = utc_now()
    add_events(store, ["evt_old"], received=ago(40, now), dispatched=ago(40, now))
    leases = LeaseRepository(store)
    assert leases.acquire(LEASE_NAME, "another-replica", 60)
    pruner = BackgroundPruner(store, Retention(30, 30), batch_size=10)
    assert pruner.run_once() is None
    assert event_ids(store) == {"evt_old"}
    leases.release(LEASE_NAME, "another-replica")
    ran = pruner.run_once()
    assert ran is not None
    assert ran.events == 1


def test_several_pruners_at_once_remove_each_row_once(store: Store) -> None:
    now = utc_now()
    add_events(
        store, [f"evt_{n}" for n in range(300)], received=ago(40, now), dispatched=ago(40, now)
    )
    retention = Retention(30, 30)
    results: list[Pruned | None] = []
    lock = threading.Lock()

    def run(pruner: BackgroundPruner) -> None:
        for _ in range(5):
            result = pruner.run_once()
            with lock:
                results.append(result)

    pruners = [BackgroundPruner(store, retention, batch_size=20) for _ in range(3)]
    threads = [threading.Thread(target=run, args=(p,)) for p in pruners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert event_ids(store) == set()
    assert sum(r.events for r in results if r is not None) == 300


def test_stop_ends_a_round_between_batches(store: Store) -> None:
    now = utc_now()
    add_events(
        store, [f"evt_{n}" for n in range(500)], received=ago(40, now), dispatched=ago(40, now)
    )
    pruner = BackgroundPruner(store, Retention(30, 30), interval_seconds=0.05, batch_size=1)
    pruner.start()
    wait_for(lambda: len(event_ids(store)) < 500)
    pruner.stop()
    assert pruner._thread is not None
    assert not pruner._thread.is_alive()
    assert 0 < len(event_ids(store)) < 500  # it stopped mid-round, between two batches
    assert LeaseRepository(store).holder(LEASE_NAME) is None


def test_a_failed_round_is_logged_and_the_next_one_runs(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    now = utc_now()
    add_events(store, ["evt_old"], received=ago(40, now), dispatched=ago(40, now))
    pruner = BackgroundPruner(store, Retention(30, 30), interval_seconds=0.05)
    real = pruner._repository.prune_events
    calls: list[int] = []

    def flaky(before: datetime, limit: int) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the store went away")
        return real(before, limit)

    pruner._repository.prune_events = flaky  # type: ignore[method-assign]
    pruner.start()
    try:
        wait_for(lambda: event_ids(store) == set())
    finally:
        pruner.stop()
    assert "airhook pruner round failed (builtins.RuntimeError" in caplog.text


def test_no_pruner_when_the_interval_is_0_or_everything_is_kept(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__AIRHOOK__PRUNE_INTERVAL_SECONDS", "0")
    assert start_configured_pruner(store) is None
    monkeypatch.setenv("AIRFLOW__AIRHOOK__PRUNE_INTERVAL_SECONDS", "60")
    monkeypatch.setenv("AIRFLOW__AIRHOOK__RETENTION_EVENTS_DAYS", "0")
    monkeypatch.setenv("AIRFLOW__AIRHOOK__RETENTION_DELIVERIES_DAYS", "0")
    assert start_configured_pruner(store) is None
    monkeypatch.setenv("AIRFLOW__AIRHOOK__RETENTION_DELIVERIES_DAYS", "-1")
    assert start_configured_pruner(store) is None  # logged, never raised


def test_the_receiver_runtime_starts_and_stops_the_pruner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airhook.receiver.app import ReceiverRuntime

    monkeypatch.setenv("AIRFLOW__AIRHOOK__DATABASE_URL", f"sqlite:///{tmp_path / 'a.db'}")
    monkeypatch.setenv("AIRFLOW__AIRHOOK__DISPATCHER_ENABLED", "False")
    monkeypatch.setenv("AIRFLOW__AIRHOOK__SENDER_POLL_SECONDS", "0")
    monkeypatch.setenv("AIRFLOW__AIRHOOK__PRUNE_INTERVAL_SECONDS", "0.05")
    key = Fernet(Fernet.generate_key())
    monkeypatch.setattr("airhook.crypto.airflow_cipher", lambda: key)
    runtime = ReceiverRuntime.start()
    try:
        pruner = runtime.pruner
        assert isinstance(pruner, BackgroundPruner)
        thread = pruner._thread
        assert thread is not None
        assert thread.is_alive()
    finally:
        runtime.stop()
    assert not thread.is_alive()


# --- the receiver during a large prune -----------------------------------------------------------

OLD_ROWS = 30_000


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(f"sqlite:///{tmp_path / 'airhook.db'}")
    upgrade(opened)
    yield opened
    opened.dispose()


def test_the_receiver_keeps_recording_while_a_large_prune_runs(sqlite_store: Store) -> None:
    store = sqlite_store
    now = utc_now()
    add_events(
        store,
        [f"evt_old_{n}" for n in range(OLD_ROWS)],
        received=ago(60, now),
        dispatched=ago(60, now),
        source="old",
    )
    writer = GroupCommitWriter(InboxRepository(store))
    writer.start()
    outcome: list[Pruned] = []
    pruning = threading.Thread(
        target=lambda: outcome.append(
            prune(RetentionRepository(store), Retention(30, 30).cutoffs(now), batch_size=1000)
        )
    )
    recorded: list[str] = []
    during = 0

    async def record_while_pruning() -> None:
        nonlocal during
        serial = 0
        pruning.start()
        while pruning.is_alive():
            batch = []
            for _ in range(16):  # as many requests at once, group-committed together
                serial += 1
                batch.append(
                    NewEvent(
                        f"evt_new_{serial}",
                        "live",
                        "rkt",
                        "lead.captured",
                        None,
                        f"new-{serial}",
                        BODY,
                        utc_now(),
                    )
                )
            results = await asyncio.gather(*(writer.record(event) for event in batch))
            assert [r.status for r in results] == ["created"] * len(batch)
            recorded.extend(r.id for r in results)
            if pruning.is_alive():
                during += len(results)

    try:
        asyncio.run(record_while_pruning())
        pruning.join()
    finally:
        writer.stop()
    [pruned] = outcome
    assert pruned.events == OLD_ROWS
    assert during > 0  # recorded while the prune was still running
    repository = InboxRepository(store)
    assert repository.count("old") == 0
    assert repository.count("live") == len(recorded)
    assert event_ids(store) == set(recorded)


# --- the command ---------------------------------------------------------------------------------


def test_airhook_prune_through_its_entry_point(tmp_path: Path) -> None:
    cli = Cli(tmp_path, Fernet.generate_key().decode(), f"sqlite:///{tmp_path / 'airhook.db'}")
    store = Store(cli.url)
    upgrade(store)
    now = utc_now()
    add_events(store, ["evt_a", "evt_b"], received=ago(400, now), dispatched=ago(400, now))
    add_events(store, ["evt_waiting"], received=ago(400, now), dispatched=None)
    add_delivery(store, "msg_done", "delivered", ago(400, now))
    add_delivery(store, "msg_dead", "dead", ago(400, now), logged=3)
    store.dispose()
    calls = {
        "plan": Call(("prune", "--dry-run", "--json")),
        "plan-table": Call(("prune", "--dry-run")),
        "run": Call(("prune", "--batch-size", "1", "--json")),
        "after": Call(("prune", "--dry-run", "--json")),
        "lonely-age": Call(("prune", "--dead-letters-older-than-days", "3")),
        "bad-days": Call(("prune", "--events-older-than-days", "-2")),
        "dead-plan": Call(("prune", "--dead-letters", "--dry-run")),
        "dead": Call(("prune", "--dead-letters", "--dead-letters-older-than-days", "90", "--json")),
    }
    results = cli.run_many(calls)
    for name in ("plan", "plan-table", "run", "after", "dead-plan", "dead"):
        assert results[name].returncode == 0, (name, results[name].stderr)
    plan = json.loads(results["plan"].stdout)
    run = json.loads(results["run"].stdout)
    counts = [(d["events"]["count"], d["deliveries"]["count"], d["attempts"]) for d in (plan, run)]
    assert counts == [(2, 1, 2), (2, 1, 2)]
    assert plan["dry_run"] is True
    assert run["dry_run"] is False
    assert plan["events"]["older_than_days"] == 30  # the configured default
    assert plan["dead_letters"]["cutoff"] is None
    table = results["plan-table"].stdout
    assert table.splitlines()[0].split() == [
        "KIND",
        "OLDER",
        "THAN",
        "CUT-OFF",
        "(UTC)",
        "WOULD",
        "GO",
    ]
    assert "dead letters  kept until replayed" in table
    assert "dry run: nothing was deleted" in table
    after = json.loads(results["after"].stdout)
    assert (after["events"]["count"], after["deliveries"]["count"]) == (0, 0)
    assert results["lonely-age"].returncode == 2
    assert "goes with --dead-letters" in results["lonely-age"].stderr
    assert results["bad-days"].returncode == 2
    assert "dead letters  30 days" in results["dead-plan"].stdout
    dead = json.loads(results["dead"].stdout)
    assert (dead["dead_letters"]["count"], dead["attempts"]) == (1, 3)
    reopened = Store(cli.url)
    try:
        assert event_ids(reopened) == {"evt_waiting"}
        assert delivery_ids(reopened) == set()
    finally:
        reopened.dispose()


# --- metrics -------------------------------------------------------------------------------------

_SNIPPET = """
import os, sys
sys.path.insert(0, os.environ["REPO"])
from airhook import metrics
from airhook.retention import Retention, prune
from airhook.store import Store
from airhook.store.migrate import upgrade
from airhook.store.retention import RetentionRepository
from airhook.store.times import utc_now
from tests.test_retention import add_delivery, add_events, ago

metrics.start()
store = Store(os.environ["AIRFLOW__AIRHOOK__DATABASE_URL"])
upgrade(store)
now = utc_now()
add_events(store, ["evt_1", "evt_2", "evt_3"], received=ago(40, now), dispatched=ago(40, now))
add_delivery(store, "msg_1", "delivered", ago(40, now))
add_delivery(store, "msg_2", "delivered", ago(40, now))
pruned = prune(RetentionRepository(store), Retention(30, 30).cutoffs(now), batch_size=2)
assert (pruned.events, pruned.deliveries) == (3, 2), pruned
"""


def test_pruned_rows_are_statsd_metrics(tmp_path: Path) -> None:
    received = statsd_lines(
        _SNIPPET, tmp_path, {"REPO": str(Path(__file__).resolve().parent.parent)}
    )

    def total(name: str) -> int:
        prefix = f"airflow.{name}:"
        return sum(
            int(line[len(prefix) :].split("|")[0])
            for line in received
            if line.startswith(prefix) and line.endswith("|c")
        )

    assert total("airhook.prune.events") == 3, received
    assert total("airhook.prune.deliveries") == 2, received
