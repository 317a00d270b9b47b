"""A flapping outbound endpoint: the background sender of a running receiver finishes the job.

One HTTP server on 127.0.0.1 stands for seven subscriptions' endpoints (a path each). Every
message gets a scripted answer per request: 500 and 502, an answer later than the
subscription's timeout, a connection reset (over POST and over PUT), a slow answer in time,
429 and 503 with ``Retry-After`` (seconds or an HTTP date), and an endpoint that fails every
delivery until the subscription disables itself. Events are published as a task publishes
them (``publish_events`` in a process of its own, which makes the first attempts and ends);
then no task runs: the standalone receiver (``python -m airhook.receiver``, started once the
task has ended, its background sender polling every 0.2 s) must finish the job, on PostgreSQL
and on SQLite.

What must hold, from the store and from what the server saw:

- every delivery ends delivered or dead (the disabled endpoint's kept ones go out on enable);
- each message is answered 2xx at most once, and never sent after that;
- each message is sent exactly as often as its script and its subscription's retry schedule
  say, and the store logged one attempt per request;
- no request came sooner after a 429 or 503 than its ``Retry-After`` (measured from when the
  server answered, so the margin only makes the check stricter); a 502's ``Retry-After`` is
  ignored, as documented;
- every retry came after the publishing task had ended (the background sender made it);
- the endpoint that fails everything is disabled at ``disable_after_failures`` (3) with its
  other deliveries paused, not sent; enabling it sends them.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
import standardwebhooks
from cryptography.fernet import Fernet

from airhook.manage.container import Services
from airhook.store import Store
from airhook.store.migrate import upgrade
from airhook.store.tables import attempts, deliveries, subscriptions
from devstack import free_port
from tests.conftest import create_postgres_database
from tests.test_fanout import Received, Receiver

pytestmark = pytest.mark.timeout(240)

POLL_SECONDS = 0.2  # the background sender's poll
DISABLE_AFTER = 3
#: Generous: on an idle machine everything settles within about 10 s of publishing.
SETTLE_SECONDS = 90.0
LATE_SECONDS = 3.0  # an answer this late misses the ``timeouts`` subscription's 1.5 s
RETRY_AFTER_DATE = "date"  # a Retry-After given as an HTTP date, about 2 s ahead

# A reply to one request: ("status", code[, retry_after]), ("ok",), ("late",), ("slow",
# seconds, code), ("reset",).
Step = tuple[Any, ...]
OK: Step = ("ok",)
RESET: Step = ("reset",)
LATE: Step = ("late",)


def status(code: int, retry_after: int | str | None = None) -> Step:
    return ("status", code, retry_after)


@dataclass(frozen=True)
class Endpoint:
    """A subscription, its settings and the scripted answers to each of its messages."""

    name: str
    schedule: tuple[float, ...]
    cases: dict[str, tuple[Step, ...]]
    method: str = "POST"
    timeout: float = 2.0


FOUR = (0.0, 0.2, 0.2, 0.2)  # four attempts, at most 0.2 s apart (full jitter)

ENDPOINTS = (
    Endpoint(
        "errors",
        FOUR,
        {
            "e0": (status(500), status(502), OK),
            # A Retry-After on a 502 means nothing to a sender: the schedule decides.
            "e1": (status(502, 30), OK),
            "e2": (status(500), status(502), status(500), status(500)),  # dead
            "e3": (OK,),
        },
    ),
    Endpoint(
        "timeouts",
        FOUR,
        {
            "t0": (LATE, OK),
            "t1": (LATE, LATE, ("slow", 0.3, 200)),
            "t2": (LATE, LATE, LATE, LATE),  # dead
        },
        timeout=1.5,
    ),
    Endpoint(
        "resets",
        FOUR,
        {"r0": (RESET, OK), "r1": (RESET, RESET, RESET, RESET), "r2": (RESET, status(500), OK)},
    ),
    # PUT is idempotent: an HTTP client may resend it on a reset connection by itself.
    Endpoint("upserts", FOUR, {"u0": (RESET, OK), "u1": (RESET, RESET, OK)}, method="PUT"),
    Endpoint(
        "slow",
        FOUR,
        {
            "s0": (("slow", 0.5, 200),),
            "s1": (("slow", 0.3, 500), ("slow", 0.3, 200)),
            "s2": (("slow", 1.2, 200),),
        },
        timeout=3.0,
    ),
    Endpoint(
        "throttled",
        (0.0, 0.1, 0.1, 0.1),
        {
            "q0": (status(429, 2), OK),
            "q1": (status(429, 1), status(503, 2), OK),
            "q2": (status(429, RETRY_AFTER_DATE), OK),
            "q3": (status(429, 1), status(429, 1), status(429, 1), status(429, 1)),  # dead
            "q4": (status(429), OK),
        },
    ),
    # Fails every delivery: three dead letters disable it. b3 and b4 are told to come back in
    # 30 s, long after b0-b2 are dead: when the subscription is disabled they wait, paused.
    Endpoint(
        "broken",
        (0.0, 0.2),
        {
            "b0": (status(500), status(500)),
            "b1": (status(500), status(500)),
            "b2": (status(500), status(500)),
            "b3": (status(429, 30), status(500)),
            "b4": (status(429, 30), status(500)),
        },
    ),
)
BY_NAME = {endpoint.name: endpoint for endpoint in ENDPOINTS}
CASES = {case: endpoint for endpoint in ENDPOINTS for case in endpoint.cases}


def expected(endpoint: Endpoint, steps: tuple[Step, ...]) -> tuple[str, int]:
    """The final status and the number of requests a script and a schedule make."""
    for number, step in enumerate(steps[: len(endpoint.schedule)], start=1):
        if _answers_2xx(step):
            return "delivered", number
    return "dead", len(endpoint.schedule)


def _answers_2xx(step: Step) -> bool:
    return step == OK or (step[0] == "slow" and 200 <= step[2] < 300)


# --- the endpoint ------------------------------------------------------------------------------


@dataclass
class Seen:
    """One request as the flapping server saw and answered it."""

    case: str
    message_id: str
    number: int  # 1 for the message's first request, 2 for its second, …
    arrived: float  # time.monotonic() when it arrived (in this process)
    answered: float  # time.monotonic() when the answer was decided, just before it left
    step: Step
    signed: bool  # its Standard Webhooks signature verified with the subscription's secret
    wall: float  # time.time() when it arrived
    retry_at_wall: float | None = None  # a Retry-After date: the wall time it names


@dataclass
class Flapper:
    """Answers each message's requests by its script; records every request."""

    receiver: Receiver
    secrets: dict[str, str] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: endpoint name -> answer every request 2xx from now on (an endpoint fixed meanwhile).
    fixed: set[str] = field(default_factory=set)

    def serve(self, endpoint: Endpoint) -> str:
        self.receiver.on(f"/{endpoint.name}", lambda request: self._answer(endpoint, request))
        return self.receiver.url(f"/{endpoint.name}")

    def _answer(self, endpoint: Endpoint, request: Received) -> Any:
        case = str(json.loads(request.body)["case"])
        try:
            standardwebhooks.Webhook(self.secrets[endpoint.name]).verify(
                request.body, request.headers
            )
            signed = True
        except Exception:
            signed = False
        with self.lock:
            number = 1 + sum(1 for s in self.seen if s.message_id == request.webhook_id)
            steps = endpoint.cases[case]
            step = OK if endpoint.name in self.fixed else steps[min(number, len(steps)) - 1]
            if number > len(steps) and endpoint.name not in self.fixed:
                step = status(599)  # beyond the script: a request that should not have come
            seen = Seen(
                case, request.webhook_id, number, request.at, 0.0, step, signed, time.time()
            )
            reply = self._reply(step, seen)
            seen.answered = time.monotonic()
            self.seen.append(seen)
        return reply

    @staticmethod
    def _reply(step: Step, seen: Seen) -> Any:
        if step == OK:
            return (200, {}, b"thanks")
        if step == RESET:
            return "reset"
        if step == LATE:
            # Answered after the client gave up: never a 2xx, or "answered 2xx" would not mean
            # "the sender learnt it was delivered".
            return ("sleep", LATE_SECONDS, (504, {}, b"too late"))
        if step[0] == "slow":
            return ("sleep", step[1], (step[2], {}, b"slowly"))
        code, retry_after = step[1], step[2]
        headers: dict[str, str] = {}
        if retry_after == RETRY_AFTER_DATE:
            seen.retry_at_wall = math.ceil(time.time()) + 2.0
            headers["Retry-After"] = formatdate(seen.retry_at_wall, usegmt=True)
        elif retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return (code, headers, b"not now")

    def of(self, case: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.case == case]


# --- the processes -----------------------------------------------------------------------------


def environment(home: Path, url: str, key: str) -> dict[str, str]:
    """What the receiver and the publishing task run with: only these Airflow settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__FERNET_KEY=key,
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__AIRHOOK__DATABASE_URL=url,
        AIRFLOW__AIRHOOK__SENDER_POLL_SECONDS=str(POLL_SECONDS),
        AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS="127.0.0.1/32",
        AIRFLOW__AIRHOOK__DISABLE_AFTER_FAILURES=str(DISABLE_AFTER),
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class StandaloneReceiver:
    """``python -m airhook.receiver`` in a process group of its own; its output in a file."""

    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        args = [sys.executable, "-m", "airhook.receiver", "--port", str(self.port)]
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                args,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        health = f"http://127.0.0.1:{self.port}/airhook/receiver/health"
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"the receiver exited:\n{self.log()}"
            try:
                if requests.get(health, timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, f"no health answer in time:\n{self.log()}"
            time.sleep(0.2)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


#: The publishing task: what a ``@task`` calling ``publish_events`` runs (the key stands for
#: the task's identity), with no wait: its first attempts only, then it ends.
_PUBLISH = """
import json, os, sys
from airhook.operators.publish import publish_events

summary = publish_events(json.loads(sys.stdin.read()), key="flapping/run-1", wait=0)
print(json.dumps(summary))
"""


def publish(env: dict[str, str], log_path: Path) -> dict[str, Any]:
    events = [
        {"event": f"flap.{endpoint.name}", "payload": {"case": case}, "key": case}
        for endpoint in ENDPOINTS
        for case in endpoint.cases
    ]
    result = subprocess.run(
        [sys.executable, "-c", _PUBLISH],
        input=json.dumps(events),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    log_path.write_text(result.stdout + result.stderr)
    assert result.returncode == 0, result.stderr[-3000:]
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary


# --- reading the store -------------------------------------------------------------------------


def table(store: Store, which: sa.Table) -> list[dict[str, Any]]:
    with store.read() as connection:
        return [dict(row._mapping) for row in connection.execute(sa.select(which))]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = SETTLE_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout:g} s: {what}"
        time.sleep(0.2)


FINAL = ("delivered", "dead", "failed")


def settled(store: Store) -> bool:
    """Every delivery final, but the broken endpoint's, which are final or paused once it is
    disabled."""
    broken = {row["name"]: row for row in table(store, subscriptions)}["broken"]
    for row in table(store, deliveries):
        if row["status"] in FINAL:
            continue
        if row["subscription"] == "broken" and row["status"] == "paused" and not broken["active"]:
            continue
        return False
    return True


def all_final(store: Store) -> bool:
    return all(row["status"] in FINAL for row in table(store, deliveries))


# --- the suite ---------------------------------------------------------------------------------


@pytest.fixture(params=["postgresql", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'airhook.db'}"
    return create_postgres_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def flapper() -> Iterator[Flapper]:
    receiver = Receiver()
    yield Flapper(receiver)
    receiver.close()


def test_a_flapping_endpoint_ends_delivered_or_dead_by_the_background_sender(
    store_url: str, tmp_path: Path, flapper: Flapper
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    key = Fernet.generate_key().decode()
    store = Store(store_url)
    upgrade(store)
    services = Services(store, Fernet(key.encode()))
    for endpoint in ENDPOINTS:
        created = services.subscriptions().create(
            endpoint.name,
            flapper.serve(endpoint),
            events=(f"flap.{endpoint.name}",),
            allow_unknown_events=True,
            method=endpoint.method,
            timeout=endpoint.timeout,
            retry_schedule=list(endpoint.schedule),
        )
        assert created.secret is not None
        flapper.secrets[endpoint.name] = created.secret

    env = environment(home, store_url, key)
    # The task publishes and ends; only then does the receiver start, so that every request
    # after a message's first is provably the background sender's.
    summary = publish(env, home / "publisher.log")
    published = time.monotonic()
    assert summary["deliveries"] == len(CASES)
    receiver = StandaloneReceiver(env, home / "receiver.log")
    receiver.start()
    try:
        wait_until(lambda: settled(store), "every delivery settled")
        # The broken endpoint disabled itself; the rest of its deliveries wait. Fixed and
        # enabled, they go out (the background sender again) and nothing else changes.
        before_enable = {row["message_id"]: row for row in table(store, deliveries)}
        broken_row = {row["name"]: row for row in table(store, subscriptions)}["broken"]
        with flapper.lock:
            flapper.fixed.add("broken")
        # Through the repository: the service's enable also sends the kept deliveries at once,
        # from this process; here they are left due, for the background sender.
        services.engine.subscriptions.enable("broken")
        wait_until(lambda: all_final(store), "every delivery final after the enable")
    finally:
        receiver.stop()
    try:
        _check(store, flapper, summary, published, before_enable, broken_row)
    finally:
        store.dispose()


def _check(
    store: Store,
    flapper: Flapper,
    summary: dict[str, Any],
    published: float,
    before_enable: dict[str, dict[str, Any]],
    broken_row: dict[str, Any],
) -> None:
    rows = {row["message_id"]: row for row in table(store, deliveries)}
    logged: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in sorted(table(store, attempts), key=lambda r: (r["attempted_at"], r["id"])):
        logged[row["message_id"]].append(row)
    case_of = {row["message_id"]: json.loads(row["body"])["case"] for row in rows.values()}
    assert sorted(case_of.values()) == sorted(CASES), "one delivery per published event"

    with flapper.lock:
        seen = list(flapper.seen)
    assert seen, "the server saw nothing"
    assert all(s.signed for s in seen), "every request carried a valid signature"
    beyond = [(s.case, s.number) for s in seen if s.step == status(599)]
    assert not beyond, f"requests beyond the script: {beyond}"

    for mid, case in case_of.items():
        endpoint = CASES[case]
        requests_of = [s for s in seen if s.message_id == mid]
        numbers = [s.number for s in requests_of]
        assert numbers == list(range(1, len(numbers) + 1)), (case, numbers)
        twice = [s for s in requests_of if _answers_2xx(s.step)]
        # Answered 2xx at most once, and never sent after that.
        assert len(twice) <= 1, f"{case} answered 2xx {len(twice)} times"
        if twice:
            assert requests_of[-1] is twice[0], f"{case} sent again after a 2xx"
        assert len(logged[mid]) == len(requests_of), (
            f"{case}: the server saw {len(requests_of)} requests, the store logged "
            f"{len(logged[mid])} attempts"
        )
        for request, attempt in zip(requests_of, logged[mid], strict=True):
            assert _logged_as(attempt) == _expected_log(request.step, endpoint), (case, attempt)
        # Retries came from the background sender: the publishing task had ended.
        late = [s.number for s in requests_of[1:] if s.arrived < published]
        assert not late, f"{case}: retries {late} came before the publishing task ended"
        if endpoint.name == "broken":
            continue
        want_status, want_requests = expected(endpoint, endpoint.cases[case])
        assert (rows[mid]["status"], len(requests_of)) == (want_status, want_requests), case
        assert rows[mid]["attempts"] == want_requests, case
        assert bool(twice) == (want_status == "delivered"), case

    # The publishing task made each message's first attempt, and only that.
    assert (summary["delivered"], summary["pending"]) == (3, len(CASES) - 3), summary
    _check_retry_after(seen)
    _check_auto_disable(store, seen, rows, before_enable, broken_row, case_of)


def _logged_as(attempt: dict[str, Any]) -> tuple[str, int | None, str]:
    return attempt["outcome"], attempt["status_code"], (attempt["error"] or "")[:17]


def _expected_log(step: Step, endpoint: Endpoint) -> tuple[str, int | None, str]:
    """How the attempt log should show the answer the server gave (or did not give)."""
    if _answers_2xx(step):
        return "delivered", 200, ""
    if step == RESET:
        return "retry", None, "connection failed"
    if step == LATE:
        return "retry", None, f"no answer within {endpoint.timeout:g} s"[:17]
    code = step[2] if step[0] == "slow" else step[1]
    return "retry", code, f"HTTP {code}"


def _check_retry_after(seen: list[Seen]) -> None:
    """The next request of a message answered 429 or 503 with Retry-After came no sooner than
    the time asked for, counted from when the answer left (not when the request came)."""
    by_message: dict[str, list[Seen]] = defaultdict(list)
    for s in seen:
        by_message[s.message_id].append(s)
    checked = 0
    for requests_of in by_message.values():
        for previous, following in itertools.pairwise(requests_of):
            step = previous.step
            if step[0] != "status" or step[2] is None or previous.case.startswith("b"):
                continue
            if step[1] not in (429, 503):
                # Ignored on other statuses: e1's 502 asked for 30 s; its retry came at once.
                assert following.arrived - previous.answered < 15, previous.case
                continue
            checked += 1
            if step[2] == RETRY_AFTER_DATE:
                assert previous.retry_at_wall is not None
                assert following.wall >= previous.retry_at_wall, (
                    f"{previous.case}: retried {previous.retry_at_wall - following.wall:.3f} s "
                    "before the Retry-After date"
                )
            else:
                waited = following.arrived - previous.answered
                assert waited >= float(step[2]), (
                    f"{previous.case}: retried after {waited:.3f} s, Retry-After was {step[2]} s"
                )
    assert checked == 7  # q0, q1 (twice), q2, q3 (three times: its 4th attempt is the last)


def _check_auto_disable(
    store: Store,
    seen: list[Seen],
    rows: dict[str, dict[str, Any]],
    before_enable: dict[str, dict[str, Any]],
    broken_row: dict[str, Any],
    case_of: dict[str, str],
) -> None:
    """The broken endpoint: disabled at the third dead letter, the rest kept (paused), and sent
    once enabled."""
    assert broken_row["active"] is False or broken_row["active"] == 0
    assert broken_row["disabled_reason"] == f"{DISABLE_AFTER} consecutive failed deliveries"
    mids = {case: mid for mid, case in case_of.items() if case.startswith("b")}
    was = {case: before_enable[mid]["status"] for case, mid in mids.items()}
    # b0-b2 fail within a second; b3 and b4 were due again only 30 s after their 429.
    assert was == {"b0": "dead", "b1": "dead", "b2": "dead", "b3": "paused", "b4": "paused"}
    assert broken_row["consecutive_failures"] == DISABLE_AFTER
    # While it was disabled, nothing was sent to it: b3 and b4 saw their first request only,
    # then (enabled) one more, delivered.
    for case in ("b0", "b1", "b2"):
        assert [s.number for s in seen if s.case == case] == [1, 2]
        assert rows[mids[case]]["status"] == "dead"
    for case in ("b3", "b4"):
        requests_of = [s for s in seen if s.case == case]
        assert [s.step for s in requests_of] == [status(429, 30), OK], case
        assert rows[mids[case]]["status"] == "delivered"
    after = {row["name"]: row for row in table(store, subscriptions)}["broken"]
    assert bool(after["active"])
    assert after["disabled_reason"] is None
