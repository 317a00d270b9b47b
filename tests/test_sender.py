"""The background sender against a real store (SQLite, PostgreSQL) and real HTTP on 127.0.0.1.

Deliveries left due go out by themselves once a sender runs, with no task and no CLI; two
senders at once send each delivery once; ``stop()`` returns promptly; a failed round does not
end the thread; the lag and the count reach Airflow's metrics as StatsD packets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from airhook.delivery.sender import BackgroundSender, start_configured_sender
from airhook.store import Store
from airhook.store.migrate import upgrade
from airhook.store.outbox import NewDelivery, OutboxRepository
from airhook.store.subscriptions import SubscriptionRepository
from tests.statsd import statsd_lines
from tests.test_fanout import (
    Receiver,
    always,
    events,
    fail_first,
    make_engine,
    status_of,
    subscription,
)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def add_due(store: Store, name: str, count: int, *, ago: float = 30.0) -> list[str]:
    """Add ``count`` deliveries to ``name`` that fell due ``ago`` seconds ago."""
    ids = [f"msg_due_{name}_{n}" for n in range(count)]
    OutboxRepository(store).add(
        [NewDelivery(mid, name, "insight.summary", "{}") for mid in ids],
        now=datetime.now(timezone.utc) - timedelta(seconds=ago),
    )
    return ids


def test_a_retry_left_due_goes_out_by_itself(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    receiver.on("/hook", fail_first(1))
    SubscriptionRepository(store, cipher).create(subscription("a", receiver.url()))
    result = make_engine(store, cipher).publish(events(1))
    assert result.summary.pending == 1  # the first attempt failed; the retry waits for someone
    sender = BackgroundSender(make_engine(store, cipher), poll_seconds=0.05)
    sender.start()
    try:
        wait_for(lambda: status_of(store) == {"a": "delivered"})
    finally:
        sender.stop()
    assert list(receiver.ids().values()) == [2]


def test_a_lapsed_claim_is_taken_over(store: Store, cipher: Fernet, receiver: Receiver) -> None:
    SubscriptionRepository(store, cipher).create(subscription("a", receiver.url()))
    [mid] = add_due(store, "a", 1)
    # A sender claimed it and died: the claim lapses, and the background sender takes over.
    outbox = OutboxRepository(store)
    [claimed] = outbox.claim(
        now=datetime.now(timezone.utc) - timedelta(seconds=20), lease_seconds=5
    )
    assert claimed.message_id == mid
    assert BackgroundSender(make_engine(store, cipher)).run_once() == 1
    assert status_of(store) == {"a": "delivered"}
    assert receiver.ids() == {mid: 1}


def test_two_senders_at_once_send_each_delivery_once(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    receiver.on("/hook", lambda _r: ("sleep", 0.01, (200, {}, b"ok")))
    SubscriptionRepository(store, cipher).create(subscription("a", receiver.url()))
    ids = add_due(store, "a", 60)
    senders = [
        BackgroundSender(make_engine(store, cipher), poll_seconds=0.02, batch_size=7)
        for _ in range(2)
    ]
    for sender in senders:
        sender.start()
    try:
        wait_for(lambda: status_of(store) == {"a": ",".join(["delivered"] * 60)})
    finally:
        for sender in senders:
            sender.stop()
    assert receiver.ids() == dict.fromkeys(ids, 1)


def test_a_round_is_bounded_by_the_batch(store: Store, cipher: Fernet, receiver: Receiver) -> None:
    SubscriptionRepository(store, cipher).create(subscription("a", receiver.url()))
    add_due(store, "a", 5)
    sender = BackgroundSender(make_engine(store, cipher), batch_size=2)
    assert [sender.run_once() for _ in range(4)] == [2, 2, 1, 0]
    assert len(receiver.requests) == 5


def test_stop_returns_promptly(store: Store, cipher: Fernet, receiver: Receiver) -> None:
    SubscriptionRepository(store, cipher).create(subscription("a", receiver.url()))
    sender = BackgroundSender(make_engine(store, cipher), poll_seconds=3600)
    sender.start()
    add_due(store, "a", 1)  # after the first round: it waits for the next poll, an hour away
    time.sleep(0.2)
    started = time.monotonic()
    sender.stop()
    assert time.monotonic() - started < 2.0
    assert sender._thread is not None
    assert not sender._thread.is_alive()


def test_a_failed_round_is_logged_and_the_next_one_runs(
    store: Store, cipher: Fernet, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    SubscriptionRepository(store, cipher).create(subscription("a", receiver.url()))
    add_due(store, "a", 1)
    engine = make_engine(store, cipher)
    real = engine.outbox.oldest_due
    calls: list[int] = []

    def flaky(now: datetime) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the store went away")
        return real(now)

    engine.outbox.oldest_due = flaky  # type: ignore[method-assign]
    sender = BackgroundSender(engine, poll_seconds=0.05)
    sender.start()
    try:
        wait_for(lambda: status_of(store) == {"a": "delivered"})
    finally:
        sender.stop()
    assert "airhook sender round failed (builtins.RuntimeError" in caplog.text


def test_the_sender_stops_at_the_end_of_the_retry_schedule(
    store: Store, cipher: Fernet, receiver: Receiver
) -> None:
    receiver.on("/hook", always(500))
    SubscriptionRepository(store, cipher).create(subscription("a", receiver.url()))
    add_due(store, "a", 1)
    sender = BackgroundSender(make_engine(store, cipher), poll_seconds=0.02)
    sender.start()
    try:
        wait_for(lambda: status_of(store) == {"a": "dead"})
    finally:
        sender.stop()
    assert len(receiver.requests) == 3  # the schedule's three attempts, no more


def test_sender_poll_seconds_zero_starts_none(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__AIRHOOK__SENDER_POLL_SECONDS", "0")
    assert start_configured_sender(store) is None


_SNIPPET = """
import os, sys
from cryptography.fernet import Fernet
from airhook.airflow_internals import initialize_metrics
from airhook.store import Store
from airhook.store.migrate import upgrade
from airhook.delivery.sender import BackgroundSender
sys.path.insert(0, os.environ["REPO"])
from tests.test_fanout import make_engine, subscription
from tests.test_sender import add_due
from airhook.store.subscriptions import SubscriptionRepository

initialize_metrics()
store = Store(os.environ["AIRFLOW__AIRHOOK__DATABASE_URL"])
upgrade(store)
cipher = Fernet(Fernet.generate_key())
SubscriptionRepository(store, cipher).create(subscription("a", os.environ["HOOK_URL"]))
add_due(store, "a", 1, ago=30)
sender = BackgroundSender(make_engine(store, cipher))
assert sender.run_once() == 1
assert sender.run_once() == 0
"""


def test_lag_and_sent_are_statsd_metrics(tmp_path: Path, receiver: Receiver) -> None:
    received = statsd_lines(
        _SNIPPET,
        tmp_path,
        {"HOOK_URL": receiver.url(), "REPO": str(Path(__file__).resolve().parent.parent)},
    )
    lags = [
        float(line.split(":", 1)[1].split("|")[0])
        for line in received
        if line.startswith("airflow.airhook.sender.lag_seconds:") and line.endswith("|g")
    ]
    # The first round saw a delivery 30 s late; the second, nothing due.
    assert len(lags) == 2, received
    assert lags[0] >= 29
    assert lags[1] == 0
    assert "airflow.airhook.sender.sent:1|c" in received, received
    assert len(receiver.requests) == 1


def test_the_receiver_runtime_starts_and_stops_the_sender(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airhook.receiver.app import ReceiverRuntime

    monkeypatch.setenv("AIRFLOW__AIRHOOK__DATABASE_URL", f"sqlite:///{tmp_path / 'a.db'}")
    monkeypatch.setenv("AIRFLOW__AIRHOOK__DISPATCHER_ENABLED", "False")
    monkeypatch.setenv("AIRFLOW__AIRHOOK__SENDER_POLL_SECONDS", "0.05")
    # Airflow's Fernet is cached per process: stand one in rather than set [core] fernet_key.
    key = Fernet(Fernet.generate_key())
    monkeypatch.setattr("airhook.crypto.airflow_cipher", lambda: key)
    runtime = ReceiverRuntime.start()
    try:
        assert isinstance(runtime.sender, BackgroundSender)
        thread = runtime.sender._thread
        assert thread is not None
        assert thread.is_alive()
    finally:
        runtime.stop()
    assert not thread.is_alive()


def test_the_configured_sender_sends_at_most_sender_batch_size_a_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    monkeypatch.setenv("AIRFLOW__AIRHOOK__SENDER_POLL_SECONDS", "3600")  # rounds by hand here
    monkeypatch.setenv("AIRFLOW__AIRHOOK__SENDER_BATCH_SIZE", "2")
    monkeypatch.setenv("AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS", "127.0.0.1/32")
    key = Fernet(Fernet.generate_key())
    monkeypatch.setattr("airhook.crypto.airflow_cipher", lambda: key)
    store = Store(f"sqlite:///{tmp_path / 'batch.db'}")
    upgrade(store)
    SubscriptionRepository(store, key).create(subscription("a", receiver.url()))
    add_due(store, "a", 5)
    sender = start_configured_sender(store)
    assert sender is not None
    try:
        rounds = [sender.run_once() for _ in range(4)]
    finally:
        sender.stop()

    # The thread's own first round (at start) takes its share too; no round takes more than 2.
    assert max(rounds) == 2, rounds
    assert rounds[-1] == 0, rounds
    assert sorted(receiver.ids().values()) == [1] * 5
