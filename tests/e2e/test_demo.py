"""``make demo`` keeps working, and keeps to what it says.

One demo serves the module, kept running for the UI as ``make demo`` keeps it, with one DAG more
than the examples (so that its table must be computed, not known); the last test stops it.

The demo's table puts each count beside the count it expects. These tests check that every line
says ``ok``, and then compute each count again themselves, from other sources than the demo used:
the event catalog (what was sent), Airflow's REST API (what each DAG consumed), the analytics
database, the stand-ins' record files (what arrived, and whether it verified), and airhook's
management API (the digest's deliveries). Nothing expected is written down here as a number.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import airflow
import psutil
import pytest
import requests
import sqlalchemy as sa

from airhook.core.asset_uris import uris_for
from airhook.core.catalog import load_catalog
from airhook.core.signing import get_scheme
from devstack import AirflowStack
from devstack.demo import UI_TOUR, asset_names

REPO = Path(__file__).resolve().parents[2]
UI_LABELS = Path(airflow.__file__).parent / "ui" / "dist" / "i18n" / "locales" / "en"
KEEPS_RUNNING = "Airflow keeps running for the UI"
CATALOG = load_catalog()
EXTRA_DAG = '''"""Not an example: the demo must list it because it ran, not because it knows it."""

from airflow.sdk import dag, task

import airhook


@dag(schedule=airhook.on("rkt", "lead.captured"), catchup=False, tags=["airhook-e2e"])
def demo_extra_leads():
    @task
    def noted(*, triggering_asset_events=None):
        return len(triggering_asset_events or {})

    noted()


demo_extra_leads()
'''
SENT = re.compile(r"^  (\d{3}) (\S+)\s+(\S+)\s+-> (\S+)\s+(\S+)$")


@dataclass(frozen=True)
class Line:
    """One line of the demo's table."""

    step: str
    what: str
    got: int
    expected: int
    check: str
    note: str


@dataclass
class Demo:
    process: subprocess.Popen[str]
    lines: list[str]
    home: Path
    dags: Path

    def table(self) -> list[Line]:
        """The table's lines, read by its columns (two spaces apart at least)."""
        start = next(i for i, line in enumerate(self.lines) if line.startswith("STEP "))
        found = []
        for line in self.lines[start + 1 :]:
            if not line.strip():
                break
            step, what, got, expected, check, note = re.split(r"\s{2,}", line, maxsplit=5)
            found.append(Line(step, what, int(got), int(expected), check, note))
        return found

    def row(self, step: str, what: str) -> Line:
        return next(line for line in self.table() if (line.step, line.what) == (step, what))

    def sent(self) -> list[tuple[int, str, str, str]]:
        """The events the demo sent: (status, source, event, airhook id)."""
        return [(int(m[1]), m[2], m[3], m[5]) for line in self.lines if (m := SENT.match(line))]

    def stack(self) -> AirflowStack:
        """The running demo's Airflow, to ask its API."""
        line = next(line for line in self.lines if line.startswith("Airflow UI: "))
        port = int(line.split()[2].rsplit(":", 1)[1])
        return AirflowStack(home=self.home, dags_folder=self.dags, port=port)

    def records(self, endpoint: str) -> list[dict[str, Any]]:
        """Every call a stand-in received, as it recorded it."""
        path = self.home / "standins" / f"{endpoint}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]

    def stand_in_url(self, name: str) -> str:
        line = next(line for line in self.lines if line.startswith("stand-ins on 127.0.0.1: "))
        return re.search(rf"{name} (http://127\.0\.0\.1:\d+)", line)[1]  # type: ignore[index]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    root = tmp_path_factory.mktemp("demo")
    dags = root / "dags"
    shutil.copytree(REPO / "dags", dags, ignore=shutil.ignore_patterns("__pycache__"))
    (dags / "demo_extra_leads.py").write_text(EXTRA_DAG)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devstack.demo",
            *("--home", str(root / "home"), "--dags", str(dags), "--port", "0"),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    running = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith(KEEPS_RUNNING):
                running.set()
        running.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        running.wait(540)
        if process.poll() is not None or not any(x.startswith(KEEPS_RUNNING) for x in lines):
            pytest.fail("the demo did not get to running for the UI:\n" + "\n".join(lines[-80:]))
        yield Demo(process=process, lines=lines, home=root / "home", dags=dags)
    finally:
        # Even when a test fails or the run is interrupted: SIGTERM is how the demo stops Airflow.
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(10)
        if process.stdout is not None:
            process.stdout.close()


# --- the UI tour ---------------------------------------------------------------------------------


def _labels(node: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], str]:
    if isinstance(node, dict):
        found: dict[tuple[str, ...], str] = {}
        for key, value in node.items():
            found.update(_labels(value, (*path, key)))
        return found
    return {path: node} if isinstance(node, str) else {}


def ui_labels() -> dict[tuple[str, ...], str]:
    """Airflow 3.3's English UI labels, by file and key."""
    found: dict[tuple[str, ...], str] = {}
    for page in UI_LABELS.glob("*.json"):
        found.update(_labels(json.loads(page.read_text()), (page.stem,)))
    return found


def external_views(stack: AirflowStack) -> list[dict[str, Any]]:
    """The plugins' menu entries, as the running Airflow reports them."""
    plugins = stack.api("GET", "/api/v2/plugins")["plugins"]
    return [view for plugin in plugins for view in plugin["external_views"]]


def test_the_ui_tour_names_only_menus_airflow_3_3_shows(demo: Demo) -> None:
    labels = ui_labels()
    every = set(labels.values())
    assert {"Dags", "Admin", "Browse"} <= every  # the installed UI's English labels were read
    # What the Browse and Admin menus hold in 3.3, and what the plugin adds to which menu.
    menus = {
        "Browse": {v for k, v in labels.items() if k[:2] == ("common", "browse")},
        "Admin": {v for k, v in labels.items() if k[:2] == ("common", "admin")},
    }
    for view in external_views(demo.stack()):
        menus[str(view["category"]).capitalize()].add(str(view["name"]))
    assert "Asset Events" not in menus["Browse"]  # 2.x's Browse -> Asset Events is gone
    assert "Webhooks" in menus["Admin"]
    for steps, _what in UI_TOUR:
        for before, step in zip(("", *steps), steps, strict=False):
            if before in menus:
                assert step in menus[before], (before, step)
            else:
                assert step.startswith("<") or step in every, step


def test_the_demo_prints_the_ui_tour_and_the_webhooks_page(demo: Demo) -> None:
    for steps, what in UI_TOUR:
        assert f"  {' -> '.join(steps)}: {what}" in demo.lines
    stack = demo.stack()
    assert f"Webhooks:   {stack.base_url}/plugin/airhook" in demo.lines
    (view,) = [view for view in external_views(stack) if view["name"] == "Webhooks"]
    assert view["url_route"] == "airhook"  # what /plugin/<url_route> shows
    page = requests.get(f"{stack.base_url}{view['href']}", timeout=10)
    assert page.status_code == 200
    assert "<html" in page.text.lower()


# --- the table -----------------------------------------------------------------------------------


def test_every_line_of_the_table_is_as_expected(demo: Demo) -> None:
    table = demo.table()
    assert {line.step for line in table} == {
        "events sent",
        "dag runs",
        "analytics",
        "crm",
        "chat",
        "subscriber",
    }
    wrong = [line for line in table if line.check != "ok" or line.got != line.expected]
    assert wrong == []
    assert demo.process.poll() is None


def test_every_sample_event_of_every_platform_was_accepted(demo: Demo) -> None:
    sent = demo.sent()
    for platform in ("caleida", "ccai", "eev", "rkt"):
        names = [event.name for event in CATALOG.events(platform)]
        mine = [(status, event) for status, source, event, _ in sent if source == platform]
        assert mine == [(202, name) for name in names]
        assert demo.row("events sent", platform).got == len(names)
    assert demo.row("events sent", "duplicates").got == 1
    assert any("(sent again: a duplicate)" in line and " 200 " in line for line in demo.lines)


def _scheduled_on(stack: AirflowStack, dag_id: str, token: str) -> set[str]:
    details = stack.api("GET", f"/api/v2/dags/{dag_id}/details", token=token)
    return asset_names(details["asset_expression"])


def _sent_matching(demo: Demo, assets: set[str]) -> set[str]:
    """The airhook ids of the accepted events dispatched to any of ``assets``."""
    return {
        event_id
        for status, source, event, event_id in demo.sent()
        if status == 202
        and set(uris_for(source, event, CATALOG.event(source, event).kind)) & assets
    }


def _consumed(stack: AirflowStack, dag_id: str, token: str) -> set[str]:
    found = set()
    for dag_run in stack.dag_runs(dag_id, token=token):
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{quote(dag_run['dag_run_id'], safe='')}"
            "/upstreamAssetEvents"
        )
        for event in stack.api("GET", path, token=token)["asset_events"]:
            found.add(event["extra"]["airhook_event_id"])
    return found


def test_the_dag_runs_consumed_exactly_the_events_sent_for_them(demo: Demo) -> None:
    stack = demo.stack()
    token = stack.token()
    runs = stack.dag_runs("~", token=token)
    ran = {dag_run["dag_id"] for dag_run in runs}
    rows = {line.what: line for line in demo.table() if line.step == "dag runs"}
    assert set(rows) == ran
    assert {"airhook_insight_export", "airhook_lead_sync", "demo_extra_leads"} <= ran
    assert {"airhook_escalation_alert", "airhook_insight_digest"} <= ran
    assert {dag_run["state"] for dag_run in runs} == {"success"}
    for dag_id, line in rows.items():
        assets = _scheduled_on(stack, dag_id, token)
        if not assets:  # the digest: by hand, and perhaps on its time table
            assert line.got == len([r for r in runs if r["dag_id"] == dag_id])
            continue
        consumed = _consumed(stack, dag_id, token)
        assert consumed == _sent_matching(demo, assets), dag_id
        assert line.got == len(consumed), dag_id


def test_the_analytics_table_holds_one_row_per_insight_event_sent(demo: Demo) -> None:
    stack = demo.stack()
    insights = _sent_matching(demo, _scheduled_on(stack, "airhook_insight_export", stack.token()))
    assert insights == {
        event_id
        for status, source, event, event_id in demo.sent()
        if status == 202 and CATALOG.event(source, event).kind.startswith("insight.")
    }
    engine = sa.create_engine(f"sqlite:///{demo.home / 'analytics.db'}")
    try:
        with engine.connect() as connection:
            ids = [row[0] for row in connection.execute(sa.text("SELECT event_id FROM insights"))]
    finally:
        engine.dispose()
    assert sorted(ids) == sorted(insights)  # each once, and the duplicate delivery added none
    assert demo.row("analytics", "insights rows").got == len(ids)


def _verified(demo: Demo, endpoint: str) -> list[dict[str, Any]]:
    records = demo.records(endpoint)
    assert [r["reason"] for r in records if not r["verified"]] == []
    return records


def test_the_crm_verified_an_upsert_per_lead_and_an_update_per_ended_session(
    demo: Demo,
) -> None:
    leads = [
        CATALOG.event(source, event).sample
        for status, source, event, _ in demo.sent()
        if status == 202 and CATALOG.event(source, event).kind == "lead.captured"
    ]
    ended = {
        (CATALOG.event(source, event).sample["data"]["sessionId"])
        for status, source, event, _ in demo.sent()
        if status == 202 and event == "session.resolved"
    }
    records = _verified(demo, "crm")
    upserts = [r for r in records if r["path"].endswith("/contacts/batch/upsert")]
    updates = [r for r in records if r["method"] == "PATCH"]
    assert len(upserts) == len(leads) > 0
    assert len(updates) == len([lead for lead in leads if lead["data"]["sessionId"] in ended])
    assert len(records) == len(upserts) + len(updates)
    emails = {json.loads(r["body"])["inputs"][0]["id"] for r in upserts}
    assert emails == {lead["data"]["email"] for lead in leads}
    for update in updates:
        assert json.loads(update["body"])["properties"]["hs_lead_status"] == "CONNECTED"
        assert update["path"].split("?")[0].rsplit("/", 1)[1] in emails
    assert all(r["headers"]["authorization"].startswith("Bearer pat-") for r in records)
    assert demo.row("crm", "upserts + updates").got == len(records)


def test_the_chat_got_one_verified_message_per_escalation(demo: Demo) -> None:
    stack = demo.stack()
    escalations = _sent_matching(
        demo, _scheduled_on(stack, "airhook_escalation_alert", stack.token())
    )
    records = _verified(demo, "chat")
    assert len(records) == len(escalations) > 0
    texts = [json.loads(r["body"])["text"] for r in records]
    assert all("escalation" in text for text in texts)
    assert len({r["headers"]["idempotency-key"] for r in records}) == len(records)
    assert demo.row("chat", "messages").got == len(records)


def test_the_subscriber_got_the_digest_of_the_summaries_in_the_table(demo: Demo) -> None:
    records = _verified(demo, "subscriber")
    assert len(records) == 1
    digest = json.loads(records[0]["body"])
    engine = sa.create_engine(f"sqlite:///{demo.home / 'analytics.db'}")
    try:
        with engine.connect() as connection:
            summaries = connection.execute(
                sa.text("SELECT event_id FROM insights WHERE kind = 'insight.summary'")
            ).all()
    finally:
        engine.dispose()
    assert digest["type"] == "insight.digest"
    assert sorted(s["event_id"] for s in digest["summaries"]) == sorted(r[0] for r in summaries)
    stack = demo.stack()
    page = stack.api("GET", "/airhook/manage/api/v1/deliveries?subscription=digest")
    assert [item["status"] for item in page["items"]] == ["delivered"]
    assert demo.row("subscriber", "digests").got == len(records)


def test_the_stand_ins_refuse_what_does_not_verify(demo: Demo) -> None:
    """Run after the counting tests: the calls made here are recorded too."""
    body = json.dumps({"inputs": [{"idProperty": "email", "id": "x@example.com"}]}).encode()
    forged = get_scheme("standard").sign(body, ["whsec_" + "Zm9yZ2Vk" * 4], now=time.time())
    crm = requests.post(
        demo.stand_in_url("CRM") + "/crm/v3/objects/contacts/batch/upsert",
        data=body,
        headers={"Authorization": "Bearer pat-forged", **forged},
        timeout=10,
    )
    chat = requests.post(demo.stand_in_url("chat") + "/services/x", data=b"{}", timeout=10)
    subscriber = requests.post(
        demo.stand_in_url("subscriber") + "/hooks/airhook-digest",
        data=body,
        headers=forged,
        timeout=10,
    )
    assert (crm.status_code, chat.status_code, subscriber.status_code) == (401, 404, 401)
    for endpoint in ("crm", "chat", "subscriber"):
        assert demo.records(endpoint)[-1]["verified"] is False


# --- the processes -------------------------------------------------------------------------------


def test_nothing_of_the_demo_listens_beyond_127_0_0_1(demo: Demo) -> None:
    processes = [psutil.Process(demo.process.pid)]
    processes += processes[0].children(recursive=True)
    listening = []
    for process in processes:
        try:
            connections = process.net_connections(kind="inet")
        except psutil.NoSuchProcess:  # a task runner that just ended
            continue
        listening += [
            (process.pid, " ".join(process.cmdline()[:4]), c.laddr)
            for c in connections
            if c.status == psutil.CONN_LISTEN
        ]
    ports = {laddr.port for _pid, _cmd, laddr in listening}
    assert demo.stack().port in ports
    for name in ("CRM", "chat", "subscriber"):  # the stand-ins, in the demo's own process
        assert int(demo.stand_in_url(name).rsplit(":", 1)[1]) in ports
    assert [entry for entry in listening if entry[2].ip != "127.0.0.1"] == []


def test_task_logs_are_read_without_the_log_servers(demo: Demo) -> None:
    stack = demo.stack()
    token = stack.token()
    dag_run = stack.dag_runs("airhook_insight_export", token=token)[0]
    base = f"/api/v2/dags/airhook_insight_export/dagRuns/{dag_run['dag_run_id']}/taskInstances"
    task = stack.api("GET", base, token=token)["task_instances"][0]
    log = stack.api("GET", f"{base}/{task['task_id']}/logs/{task['try_number']}", token=token)
    events = [entry["event"] for entry in log["content"]]
    # The log opens with where it was read from: only the log folder the task runner wrote.
    end = events.index("::endgroup::")
    assert events[0] == "::group::Log message source details"
    assert all(source.startswith(str(demo.home / "logs")) for source in events[1:end])
    assert end > 1
    assert any(entry.get("task_id") == task["task_id"] for entry in log["content"][end:])


def test_sigterm_stops_the_demo_and_every_process_of_its_airflow(demo: Demo) -> None:
    started = psutil.Process(demo.process.pid).children(recursive=True)
    assert started
    demo.process.send_signal(signal.SIGTERM)
    assert demo.process.wait(120) == 0
    _gone, alive = psutil.wait_procs(started, timeout=30)
    assert alive == []
    assert demo.stand_in_url("CRM")  # and the stand-ins stopped with it:
    with pytest.raises(requests.ConnectionError):
        requests.get(demo.stand_in_url("CRM"), timeout=5)
