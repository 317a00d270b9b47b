"""The airhook store on SQLite and PostgreSQL: sources, the inbox, leases and migrations."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from cryptography.fernet import Fernet, InvalidToken

from airhook.core.access import BasicCredentials
from airhook.core.errors import SetupError
from airhook.core.ids import new_event_id
from airhook.core.secrets import Secret, SecretPair
from airhook.core.source import Source
from airhook.store import Store
from airhook.store.inbox import InboxRepository, NewEvent
from airhook.store.leases import LeaseRepository
from airhook.store.migrate import (
    VERSION_TABLE,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from airhook.store.sources import SourceExistsError, SourceNotFoundError, SourceRepository
from airhook.store.tables import metadata
from tests.conftest import create_postgres_database

PRIMARY = "whsec_primary-very-secret-value"
SECONDARY = "whsec_secondary-very-secret-value"
BEARER = "bearer-very-secret-token"
PASSWORD = "basic-very-secret-password"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def _source(name: str = "caleida-main", **changes: object) -> Source:
    source = Source(
        name=name,
        profile="caleida",
        scheme="token",
        secrets=SecretPair(Secret(PRIMARY), Secret(SECONDARY)),
        bearer_tokens=(Secret(BEARER),),
        basic_credentials=(BasicCredentials("ops", Secret(PASSWORD)),),
        allow_ips=("10.0.0.0/8",),
        chatbot_ids=("bot-1",),
        events=("insight.*", "chat"),
        max_body_bytes=4096,
    )
    return replace(source, **changes)


def _event(
    dedupe_key: str,
    *,
    source: str = "caleida-main",
    event: str = "insight.summary",
    body: str | None = None,
    received_at: datetime = T0,
) -> NewEvent:
    return NewEvent(
        id=new_event_id(),
        source=source,
        profile="caleida",
        event=event,
        kind="insight.summary",
        dedupe_key=dedupe_key,
        body=body or json.dumps({"event": event, "key": dedupe_key}),
        received_at=received_at,
    )


@pytest.fixture
def sources(store: Store, cipher: Fernet) -> SourceRepository:
    return SourceRepository(store, cipher)


@pytest.fixture
def inbox(store: Store) -> InboxRepository:
    return InboxRepository(store)


@pytest.fixture
def leases(store: Store) -> LeaseRepository:
    return LeaseRepository(store)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database (no airhook tables yet)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return create_postgres_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def empty_store(empty_url: str) -> Iterator[Store]:
    created = Store(empty_url)
    yield created
    created.dispose()


def _run_together(script: str, args: list[list[str]], rounds: int = 1) -> list[list[str]]:
    """Run ``script`` in one process per ``args``; release them together ``rounds`` times.

    Each process prints ``ready`` when it is about to do the contended step and waits for a line
    on stdin; once all are ready they get their line at the same moment. Returns each process's
    other output lines.
    """
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for argv in args
    ]
    outputs: list[list[str]] = [[] for _ in processes]
    try:
        for _ in range(rounds):
            for index, process in enumerate(processes):
                assert process.stdout is not None
                line = process.stdout.readline().strip()
                while line != "ready":
                    if not line and process.poll() is not None:
                        raise AssertionError(process.stderr.read() if process.stderr else "")
                    outputs[index].append(line)
                    line = process.stdout.readline().strip()
            for process in processes:
                assert process.stdin is not None
                process.stdin.write("go\n")
                process.stdin.flush()
        for index, process in enumerate(processes):
            out, err = process.communicate(timeout=120)
            assert process.returncode == 0, err
            outputs[index].extend(line for line in out.splitlines() if line)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    return outputs


# --- sources ---------------------------------------------------------------------------------


def test_created_source_reads_back_with_every_setting(sources: SourceRepository) -> None:
    created = sources.create(_source())
    assert created == sources.get("caleida-main")
    assert created.profile == "caleida"
    assert created.scheme == "token"
    assert created.secrets == SecretPair(Secret(PRIMARY), Secret(SECONDARY))
    assert created.bearer_tokens == (Secret(BEARER),)
    assert created.basic_credentials == (BasicCredentials("ops", Secret(PASSWORD)),)
    assert created.allow_ips == ("10.0.0.0/8",)
    assert created.chatbot_ids == ("bot-1",)
    assert created.events == ("insight.*", "chat")
    assert created.max_body_bytes == 4096
    assert created.active is True
    assert created.created_at is not None
    assert created.created_at.tzinfo is not None


def test_create_with_a_taken_name_raises_source_exists(sources: SourceRepository) -> None:
    sources.create(_source())
    with pytest.raises(SourceExistsError, match="caleida-main"):
        sources.create(_source(profile="rkt", scheme="rkt"))
    assert sources.get("caleida-main").profile == "caleida"


def test_get_of_an_unknown_source_raises_not_found(sources: SourceRepository) -> None:
    with pytest.raises(SourceNotFoundError, match="nope"):
        sources.get("nope")


def test_save_replaces_settings_and_keeps_created_at(sources: SourceRepository) -> None:
    created = sources.create(_source())
    saved = sources.save(
        replace(
            created,
            secrets=SecretPair(Secret(SECONDARY)),
            events=("insight.summary",),
            active=False,
            bearer_tokens=(),
        )
    )
    assert saved == sources.get("caleida-main")
    assert saved.secrets == SecretPair(Secret(SECONDARY))
    assert saved.events == ("insight.summary",)
    assert saved.active is False
    assert saved.bearer_tokens == ()
    assert saved.created_at == created.created_at
    assert saved.updated_at is not None
    assert created.updated_at is not None
    assert saved.updated_at >= created.updated_at


def test_save_of_an_unknown_source_raises_not_found(sources: SourceRepository) -> None:
    with pytest.raises(SourceNotFoundError):
        sources.save(_source())


def test_delete_removes_the_source(sources: SourceRepository) -> None:
    sources.create(_source())
    sources.delete("caleida-main")
    with pytest.raises(SourceNotFoundError):
        sources.get("caleida-main")
    with pytest.raises(SourceNotFoundError):
        sources.delete("caleida-main")


def test_all_lists_sources_by_name(sources: SourceRepository) -> None:
    for name in ("zeta", "alpha", "mid"):
        sources.create(_source(name))
    assert [s.name for s in sources.all()] == ["alpha", "mid", "zeta"]
    assert list(sources.iter_names()) == ["alpha", "mid", "zeta"]


def test_version_changes_on_create_save_and_delete(sources: SourceRepository) -> None:
    empty = sources.version()
    assert empty == (0, None)
    sources.create(_source())
    created = sources.version()
    assert created[0] == 1
    assert created[1] is not None
    sources.save(replace(sources.get("caleida-main"), active=False))
    saved = sources.version()
    assert saved[0] == 1
    assert saved[1] is not None
    assert saved[1] > created[1]
    sources.delete("caleida-main")
    assert sources.version() == (0, None)


def test_credentials_are_encrypted_at_rest(store: Store, sources: SourceRepository) -> None:
    sources.create(_source())
    with store.read() as connection:
        raw = connection.execute(sa.text("SELECT * FROM airhook_source")).mappings().one()
    stored = json.dumps({k: str(v) for k, v in raw.items()})
    for secret in (PRIMARY, SECONDARY, BEARER, PASSWORD, "very-secret"):
        assert secret not in stored
    with pytest.raises(InvalidToken):
        Fernet(Fernet.generate_key()).decrypt(raw["credentials"].encode("ascii"))


def test_reading_with_the_wrong_key_fails(store: Store, sources: SourceRepository) -> None:
    sources.create(_source())
    with pytest.raises(InvalidToken):
        SourceRepository(store, Fernet(Fernet.generate_key())).get("caleida-main")


# --- inbox: recording ------------------------------------------------------------------------


def test_record_of_a_new_event_is_created(inbox: InboxRepository) -> None:
    event = _event("d-1")
    [outcome] = inbox.record([event])
    assert (outcome.status, outcome.id) == ("created", event.id)
    stored = inbox.get(event.id)
    assert stored is not None
    assert stored.source == "caleida-main"
    assert stored.payload() == {"event": "insight.summary", "key": "d-1"}
    assert stored.received_at == T0
    assert stored.dispatch_attempts == 0
    assert stored.dispatched_at is None


def test_record_of_the_same_dedupe_key_is_a_duplicate_of_the_first(
    inbox: InboxRepository,
) -> None:
    first = _event("d-1")
    inbox.record([first])
    [outcome] = inbox.record([_event("d-1")])
    assert (outcome.status, outcome.id) == ("duplicate", first.id)
    assert inbox.count() == 1


def test_duplicates_within_one_batch_are_recorded_once(inbox: InboxRepository) -> None:
    first, retry, again, other = _event("d-1"), _event("d-1"), _event("d-1"), _event("d-2")
    outcomes = inbox.record([first, retry, again, other])
    assert [(o.status, o.id) for o in outcomes] == [
        ("created", first.id),
        ("duplicate", first.id),
        ("duplicate", first.id),
        ("created", other.id),
    ]
    assert inbox.count() == 2


def test_batch_mixing_new_and_earlier_events(inbox: InboxRepository) -> None:
    earlier = _event("d-1")
    inbox.record([earlier])
    fresh, again = _event("d-2"), _event("d-1")
    outcomes = inbox.record([fresh, again])
    assert [(o.status, o.id) for o in outcomes] == [
        ("created", fresh.id),
        ("duplicate", earlier.id),
    ]


def test_the_inbox_refuses_a_driver_its_insert_is_not_written_for(tmp_path: Path) -> None:
    # The insert is written for the DB-API driver (sqlite3, psycopg2) and has no SQLAlchemy Core
    # twin: another parameter style fails when the repository is built, not at the first event.
    store = Store(f"sqlite:///{tmp_path / 'airhook.db'}")
    store.write_engine.dialect.paramstyle = "named"
    try:
        with pytest.raises(SetupError, match=r"^the inbox .*: pysqlite uses named$") as refused:
            InboxRepository(store)
        assert refused.value.setting == "[airhook] database_url"
    finally:
        store.dispose()


def test_same_dedupe_key_in_two_sources_is_two_events(inbox: InboxRepository) -> None:
    one, two = _event("d-1", source="one"), _event("d-1", source="two")
    outcomes = inbox.record([one, two])
    assert [(o.status, o.id) for o in outcomes] == [("created", one.id), ("created", two.id)]
    assert inbox.count("one") == 1
    assert inbox.count("two") == 1


def test_record_of_nothing_returns_nothing(inbox: InboxRepository) -> None:
    assert inbox.record([]) == []


_RACE_SCRIPT = """
import json, sys
from datetime import datetime, timezone
from airhook.core.ids import new_event_id
from airhook.store import Store
from airhook.store.inbox import InboxRepository, NewEvent

inbox = InboxRepository(Store(sys.argv[1]))
inbox.count()  # connect now, so that the race is on the insert
for n in range(int(sys.argv[2])):
    event = NewEvent(
        id=new_event_id(), source="race", profile="hmac", event="ping", kind=None,
        dedupe_key=f"delivery-{n}", body="{}",
        received_at=datetime.now(timezone.utc),
    )
    print("ready", flush=True)
    sys.stdin.readline()
    [outcome] = inbox.record([event])
    print(json.dumps([n, outcome.status, outcome.id, event.id]), flush=True)
"""


def test_two_processes_recording_one_delivery_record_it_once(
    store: Store, inbox: InboxRepository
) -> None:
    rounds = 5
    outputs = _run_together(_RACE_SCRIPT, [[store.url, str(rounds)]] * 2, rounds=rounds)
    results = [[json.loads(line) for line in lines] for lines in outputs]
    for n in range(rounds):
        (_, status_a, id_a, own_a), (_, status_b, id_b, own_b) = results[0][n], results[1][n]
        assert sorted([status_a, status_b]) == ["created", "duplicate"]
        assert id_a == id_b
        assert id_a in (own_a, own_b)
    assert inbox.count("race") == rounds


# --- inbox: dispatch state and reading -------------------------------------------------------


def test_undispatched_returns_oldest_first_up_to_limit(inbox: InboxRepository) -> None:
    events = [_event(f"d-{n}") for n in range(3)]
    inbox.record(events)
    assert [e.id for e in inbox.undispatched(2)] == [events[0].id, events[1].id]
    assert [e.id for e in inbox.undispatched(10)] == [e.id for e in events]


def test_begin_dispatch_counts_an_attempt(inbox: InboxRepository) -> None:
    event = _event("d-1")
    inbox.record([event])
    inbox.begin_dispatch([event.id])
    inbox.begin_dispatch([event.id])
    stored = inbox.get(event.id)
    assert stored is not None
    assert stored.dispatch_attempts == 2
    assert stored.dispatched_at is None


def test_mark_dispatched_removes_events_from_undispatched(inbox: InboxRepository) -> None:
    done, waiting = _event("d-1"), _event("d-2")
    inbox.record([done, waiting])
    inbox.mark_dispatched([done.id], T0)
    assert [e.id for e in inbox.undispatched(10)] == [waiting.id]
    stored = inbox.get(done.id)
    assert stored is not None
    assert stored.dispatched_at == T0
    assert inbox.count(dispatched=True) == 1
    assert inbox.count(dispatched=False) == 1


def test_mark_dispatched_keeps_the_first_time(inbox: InboxRepository) -> None:
    event = _event("d-1")
    inbox.record([event])
    inbox.mark_dispatched([event.id], T0)
    inbox.mark_dispatched([event.id], T0 + timedelta(hours=1))
    stored = inbox.get(event.id)
    assert stored is not None
    assert stored.dispatched_at == T0


def test_list_pages_newest_first_with_the_total(inbox: InboxRepository) -> None:
    events = [_event(f"l-{n}", received_at=T0 + timedelta(minutes=n)) for n in range(5)]
    inbox.record(events)
    page, total = inbox.list(limit=2, offset=1)
    assert total == 5
    assert [e.id for e in page] == [events[3].id, events[2].id]
    assert inbox.list(limit=2, offset=4) == ([inbox.get(events[0].id)], 5)
    assert inbox.list(limit=2, offset=5) == ([], 5)


def test_list_filters_combine(inbox: InboxRepository) -> None:
    summary = _event("f-1", event="insight.summary", received_at=T0)
    topic = _event("f-2", event="insight.topic", received_at=T0 + timedelta(hours=1))
    other = _event("f-3", source="rkt-main", event="lead.captured", received_at=T0)
    odd = _event("f-4", event="insight_x%", received_at=T0)  # LIKE's own characters, literally
    inbox.record([summary, topic, other, odd])
    inbox.mark_dispatched([summary.id], T0)

    def ids(**filters: Any) -> list[str]:
        page, total = inbox.list(**filters)
        assert total == len(page)
        return sorted(e.id for e in page)

    assert ids(source="caleida-main") == sorted([summary.id, topic.id, odd.id])
    assert ids(event_pattern="insight.*") == sorted([summary.id, topic.id])
    assert ids(event_pattern="insight_x%") == [odd.id]
    assert ids(event_pattern="insight?x*") == []
    assert ids(event_pattern="*") == sorted(e.id for e in (summary, topic, other, odd))
    assert ids(kind="insight.summary", source="rkt-main") == [other.id]
    assert ids(since=T0 + timedelta(minutes=30)) == [topic.id]
    assert ids(until=T0 + timedelta(minutes=30), source="caleida-main") == sorted(
        [summary.id, odd.id]
    )
    assert ids(dispatched=True) == [summary.id]
    assert summary.id not in ids(dispatched=False)


def test_redispatch_makes_dispatched_events_go_again(inbox: InboxRepository) -> None:
    done, waiting = _event("r-1"), _event("r-2")
    inbox.record([done, waiting])
    inbox.begin_dispatch([done.id, waiting.id])
    inbox.mark_dispatched([done.id], T0)
    # Only the dispatched one goes again; repeats and unknown ids in one request count once.
    assert inbox.redispatch([done.id, done.id, waiting.id, "evt_unknown"]) == 1
    again = inbox.get(done.id)
    assert again is not None
    assert (again.dispatched_at, again.dispatch_attempts, again.redispatches) == (None, 0, 1)
    assert [e.id for e in inbox.undispatched(10)] == [done.id, waiting.id]
    assert inbox.get(waiting.id).redispatches == 0  # type: ignore[union-attr]
    assert inbox.redispatch([done.id]) == 0  # not dispatched again yet: nothing to do


def test_received_per_bucket_counts_by_hour(inbox: InboxRepository) -> None:
    hour = datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
    times = [hour, hour + timedelta(minutes=59), hour + timedelta(hours=1, minutes=5)]
    inbox.record([_event(f"b-{n}", received_at=t) for n, t in enumerate(times)])
    inbox.record([_event("b-old", received_at=hour - timedelta(days=1))])
    assert inbox.received_per_bucket(hour, 3600) == {hour: 2, hour + timedelta(hours=1): 1}


def test_get_of_an_unknown_id_is_none(inbox: InboxRepository) -> None:
    assert inbox.get("evt_missing") is None


def test_find_returns_one_sources_events_after_a_sequence(inbox: InboxRepository) -> None:
    mine = [_event(f"d-{n}") for n in range(3)]
    inbox.record([mine[0], _event("d-0", source="other"), mine[1], mine[2]])
    found = inbox.find("caleida-main")
    assert [e.id for e in found] == [e.id for e in mine]
    after_first = inbox.find("caleida-main", after_seq=found[0].seq)
    assert [e.id for e in after_first] == [mine[1].id, mine[2].id]
    assert [e.id for e in inbox.find("caleida-main", limit=1)] == [mine[0].id]


def test_find_received_after_includes_that_instant(inbox: InboxRepository) -> None:
    early = _event("d-1", received_at=T0 - timedelta(seconds=1))
    exact = _event("d-2", received_at=T0)
    late = _event("d-3", received_at=T0 + timedelta(minutes=5))
    inbox.record([early, exact, late])
    found = inbox.find("caleida-main", received_after=T0)
    assert [e.id for e in found] == [exact.id, late.id]


def test_find_received_after_in_another_time_zone_is_the_same_instant(
    inbox: InboxRepository,
) -> None:
    early = _event("d-1", received_at=T0 - timedelta(minutes=30))
    late = _event("d-2", received_at=T0 + timedelta(minutes=30))
    inbox.record([early, late])
    paris = timezone(timedelta(hours=2))
    found = inbox.find("caleida-main", received_after=T0.astimezone(paris))
    assert [e.id for e in found] == [late.id]


# --- leases ----------------------------------------------------------------------------------


def test_lease_has_one_holder_at_a_time(leases: LeaseRepository) -> None:
    assert leases.acquire("job", "a", ttl=60)
    assert not leases.acquire("job", "b", ttl=60)
    assert leases.holder("job") == "a"


def test_lease_holder_is_reported_while_valid(leases: LeaseRepository) -> None:
    assert leases.acquire("job", "a", ttl=30)
    assert leases.holder("job") == "a"
    assert leases.holder("other") is None


def test_expired_lease_is_taken_over(leases: LeaseRepository) -> None:
    assert leases.acquire("job", "a", ttl=10, now=T0)
    assert not leases.acquire("job", "b", ttl=10, now=T0 + timedelta(seconds=9))
    assert leases.acquire("job", "b", ttl=10, now=T0 + timedelta(seconds=11))
    assert not leases.acquire("job", "a", ttl=10, now=T0 + timedelta(seconds=12))


def test_holder_renews_its_lease(leases: LeaseRepository) -> None:
    assert leases.acquire("job", "a", ttl=10, now=T0)
    assert leases.acquire("job", "a", ttl=10, now=T0 + timedelta(seconds=8))
    # Without the renewal the lease would have expired at T0 + 10 s.
    assert not leases.acquire("job", "b", ttl=10, now=T0 + timedelta(seconds=15))


def test_expired_lease_has_no_holder(leases: LeaseRepository) -> None:
    assert leases.acquire("job", "a", ttl=10, now=datetime.now(timezone.utc) - timedelta(hours=1))
    assert leases.holder("job") is None


def test_released_lease_is_free_for_another(leases: LeaseRepository) -> None:
    assert leases.acquire("job", "a", ttl=60)
    leases.release("job", "b")  # not b's: nothing happens
    assert leases.holder("job") == "a"
    leases.release("job", "a")
    assert leases.holder("job") is None
    assert leases.acquire("job", "b", ttl=60)


def test_on_postgresql_the_lease_follows_the_databases_clock(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A host whose clock runs 20 s ahead must not see a just-renewed 15 s lease as expired.
    import airhook.store.leases as leases_module

    leases = LeaseRepository(store)
    assert leases.acquire("job", "a", ttl=15)
    ahead = datetime.now(timezone.utc) + timedelta(seconds=20)
    monkeypatch.setattr(leases_module, "utc_now", lambda: ahead)
    taken = leases.acquire("job", "b", ttl=15)
    # SQLite is one machine, one clock: there the skewed process's own clock decides.
    assert taken is store.is_sqlite


def test_leases_of_different_names_are_independent(leases: LeaseRepository) -> None:
    assert leases.acquire("one", "a", ttl=60)
    assert leases.acquire("two", "b", ttl=60)


# --- migrations ------------------------------------------------------------------------------


def test_upgrade_brings_an_empty_database_to_head(empty_store: Store) -> None:
    assert current_revision(empty_store) is None
    upgrade(empty_store)
    assert current_revision(empty_store) == head_revision()


def test_upgrade_twice_is_a_no_op(store: Store, inbox: InboxRepository) -> None:
    event = _event("d-1")
    inbox.record([event])
    upgrade(store)
    assert current_revision(store) == head_revision()
    assert inbox.get(event.id) is not None


def test_migrated_schema_matches_the_tables(store: Store) -> None:
    with store.write_engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "version_table": VERSION_TABLE,
                "compare_type": True,
                "compare_server_default": True,
            },
        )
        assert compare_metadata(context, metadata) == []


def test_downgrade_to_base_then_upgrade(store: Store, inbox: InboxRepository) -> None:
    downgrade(store, "base")
    assert current_revision(store) is None
    with store.read() as connection:
        names = set(sa.inspect(connection).get_table_names())
    assert not names & set(metadata.tables)
    upgrade(store)
    assert current_revision(store) == head_revision()
    [outcome] = inbox.record([_event("d-1")])
    assert outcome.status == "created"


_MIGRATE_SCRIPT = """
import sys
from airhook.store import Store
from airhook.store.migrate import upgrade

store = Store(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
upgrade(store)
"""


def test_concurrent_upgrades_from_two_processes(empty_store: Store) -> None:
    _run_together(_MIGRATE_SCRIPT, [[empty_store.url]] * 2)
    assert current_revision(empty_store) == head_revision()
    [outcome] = InboxRepository(empty_store).record([_event("d-1")])
    assert outcome.status == "created"


def test_received_at_in_another_time_zone_reads_back_as_the_same_instant(
    inbox: InboxRepository,
) -> None:
    event = _event("d-1", received_at=T0.astimezone(timezone(timedelta(hours=-5))))
    inbox.record([event])
    stored = inbox.get(event.id)
    assert stored is not None
    assert stored.received_at == T0
    assert stored.received_at.utcoffset() == timedelta(0)


def test_lease_times_in_another_time_zone_are_the_same_instant(leases: LeaseRepository) -> None:
    tokyo = timezone(timedelta(hours=9))
    assert leases.acquire("job", "a", ttl=10, now=T0)
    # T0 + 5 s, written in Tokyo time: still a's (its wall-clock reading is 9 hours later).
    assert not leases.acquire("job", "b", ttl=10, now=(T0 + timedelta(seconds=5)).astimezone(tokyo))


def test_events_become_visible_in_sequence_order_on_postgresql(postgres_url: str) -> None:
    """A reader paging by ``seq`` (the sensor's trigger) must never see a later ``seq`` first.

    A trigger on the table holds one insert for a second after its ``seq`` is drawn; another
    insert made meanwhile must not become visible before it, or a reader that moved its cursor
    past the second would never see the first.
    """
    store = Store(create_postgres_database(postgres_url))
    try:
        upgrade(store)
        with store.begin() as connection:
            connection.exec_driver_sql(
                "CREATE FUNCTION slow_insert() RETURNS trigger AS $$ BEGIN "
                "IF NEW.dedupe_key = 'slow' THEN PERFORM pg_sleep(1); END IF; RETURN NEW; "
                "END $$ LANGUAGE plpgsql"
            )
            connection.exec_driver_sql(
                "CREATE TRIGGER slow_insert BEFORE INSERT ON airhook_inbox "
                "FOR EACH ROW EXECUTE FUNCTION slow_insert()"
            )
        inbox = InboxRepository(store)
        slow, fast = _event("slow"), _event("fast")
        with ThreadPoolExecutor(max_workers=1) as pool:
            slow_done = pool.submit(inbox.record, [slow])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # until the slow insert holds its seq
                with store.read() as connection:
                    waiting = connection.scalar(
                        sa.text(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE wait_event = 'PgSleep' AND datname = current_database()"
                        )
                    )
                if waiting:
                    break
                time.sleep(0.02)
            assert waiting, "the slow insert did not start"
            inbox.record([fast])
            visible = [e.id for e in inbox.find("caleida-main")]
            slow_done.result(timeout=30)
        assert visible == [slow.id, fast.id]
    finally:
        store.dispose()


def test_concurrent_creates_of_one_name_make_one_source(
    store: Store, sources: SourceRepository
) -> None:
    attempts = 8
    barrier = threading.Barrier(attempts)

    def create(n: int) -> str:
        barrier.wait()
        try:
            sources.create(_source(chatbot_ids=(f"bot-{n}",)))
        except SourceExistsError:
            return "exists"
        return "created"

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        outcomes = list(pool.map(create, range(attempts)))
    assert sorted(outcomes) == ["created"] + ["exists"] * (attempts - 1)
    assert len(sources.all()) == 1


# --- SQLite: a writer waits for the write lock by polling ------------------------------------


@contextlib.contextmanager
def _write_lock_held(store: Store, path: Path, seconds: float) -> Iterator[None]:
    """Migrate ``store``, then hold SQLite's write lock on ``path`` from another connection for
    ``seconds`` while the block runs (the block starts once the lock is held)."""
    import sqlite3

    upgrade(store)
    held = threading.Event()

    def hold() -> None:
        connection = sqlite3.connect(path, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE")
            held.set()
            time.sleep(seconds)
            connection.execute("COMMIT")
        finally:
            connection.close()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert held.wait(10)
    try:
        yield
    finally:
        holder.join(10)
        store.dispose()


def test_a_sqlite_writer_waits_for_the_write_lock_and_then_writes(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'locked.db'}")
    with _write_lock_held(store, tmp_path / "locked.db", 0.3):
        started = time.monotonic()
        outcome = InboxRepository(store).record([_event("k-1")])
        waited = time.monotonic() - started
    assert [o.status for o in outcome] == ["created"]
    assert waited >= 0.25  # it did wait for the other writer, and did not fail


def test_a_sqlite_writer_gives_up_after_the_busy_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from airhook.store import engine as engine_module

    monkeypatch.setattr(engine_module, "_SQLITE_BUSY_MS", 200)
    store = Store(f"sqlite:///{tmp_path / 'locked.db'}")
    with _write_lock_held(store, tmp_path / "locked.db", 2.0):
        with pytest.raises(sa.exc.OperationalError) as caught:
            InboxRepository(store).record([_event("k-1")])
        assert isinstance(caught.value.orig, sqlite3.OperationalError)
        assert "locked" in str(caught.value.orig)
    store = Store(f"sqlite:///{tmp_path / 'locked.db'}")
    assert InboxRepository(store).count(dispatched=False) == 0
    store.dispose()


def test_busy_is_told_by_the_error_code_or_else_by_the_message() -> None:
    import sqlite3

    from airhook.store.engine import _is_busy

    # Raised by hand these carry no sqlite_errorcode, as every error does on Python 3.10.
    assert _is_busy(sqlite3.OperationalError("database is locked"))
    assert _is_busy(sqlite3.OperationalError("database table is locked"))
    assert not _is_busy(sqlite3.OperationalError("disk I/O error"))
    assert not _is_busy(sqlite3.OperationalError("attempt to write a readonly database"))
    coded = sqlite3.OperationalError("anything")
    coded.sqlite_errorcode = 5 | (1 << 8)  # SQLITE_BUSY_RECOVERY: an extended busy code
    assert _is_busy(coded)
    coded.sqlite_errorcode = 10  # SQLITE_IOERR
    assert not _is_busy(coded)
