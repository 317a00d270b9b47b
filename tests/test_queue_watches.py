"""The queue keeper's watches in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from airhook.store import Store
from airhook.store.migrate import upgrade
from airhook.store.queue_watches import QueueWatch, QueueWatchRepository

T0 = datetime(2026, 12, 2, 12, 0, 0, 123456, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def watches(store: Store) -> QueueWatchRepository:
    upgrade(store)
    return QueueWatchRepository(store)


def test_widen_adds_one_watch_per_asset_and_dag(watches: QueueWatchRepository) -> None:
    watches.widen([QueueWatch(1, "a", at(0), at(1)), QueueWatch(2, "a", at(0), at(1))])
    assert watches.all() == [QueueWatch(1, "a", at(0), at(1)), QueueWatch(2, "a", at(0), at(1))]


def test_widen_keeps_the_earliest_start_and_the_latest_end(
    watches: QueueWatchRepository,
) -> None:
    watches.widen([QueueWatch(1, "a", at(5), at(6))])
    watches.widen([QueueWatch(1, "a", at(7), at(9))])
    watches.widen([QueueWatch(1, "a", at(3), at(4))])
    assert watches.all() == [QueueWatch(1, "a", at(3), at(9))]


def test_widen_merges_one_pair_given_twice_in_one_call(watches: QueueWatchRepository) -> None:
    watches.widen([QueueWatch(1, "a", at(5), at(6)), QueueWatch(1, "a", at(2), at(3))])
    assert watches.all() == [QueueWatch(1, "a", at(2), at(6))]


def test_due_are_the_quiet_ones_and_the_long_open_ones(watches: QueueWatchRepository) -> None:
    watches.widen(
        [
            QueueWatch(1, "quiet", at(0), at(10)),
            QueueWatch(2, "busy", at(50), at(100)),
            QueueWatch(3, "long-open", at(1), at(100)),
        ]
    )
    due = watches.due(quiet_since=at(20), open_since=at(5))
    assert [w.dag_id for w in due] == ["quiet", "long-open"]


def test_forget_removes_the_watch_as_read(watches: QueueWatchRepository) -> None:
    watches.widen([QueueWatch(1, "a", at(0), at(1))])
    [watch] = watches.all()
    assert watches.forget(watch)
    assert watches.all() == []


def test_forget_keeps_a_watch_a_round_widened_after_it_was_read(
    watches: QueueWatchRepository,
) -> None:
    watches.widen([QueueWatch(1, "a", at(0), at(1))])
    [read] = watches.all()
    watches.widen([QueueWatch(1, "a", at(2), at(3))])
    assert not watches.forget(read)
    assert watches.all() == [QueueWatch(1, "a", at(0), at(3))]


def test_narrow_moves_the_start_unless_it_changed(watches: QueueWatchRepository) -> None:
    watches.widen([QueueWatch(1, "a", at(5), at(9))])
    [read] = watches.all()
    watches.narrow(read, at(7))
    assert watches.all() == [QueueWatch(1, "a", at(7), at(9))]
    watches.narrow(read, at(8))  # read before the first narrowing: its start is stale
    assert watches.all() == [QueueWatch(1, "a", at(7), at(9))]
