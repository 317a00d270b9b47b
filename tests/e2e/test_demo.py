"""``make demo`` keeps working, and keeps to what it says.

One demo serves the module, kept running for the UI as ``make demo`` keeps it, with one DAG more
than the examples (so that its summary table must be computed); the last test stops it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import airflow
import psutil
import pytest

from devstack import AirflowStack
from devstack.demo import UI_TOUR

REPO = Path(__file__).resolve().parents[2]
UI_LABELS = Path(airflow.__file__).parent / "ui" / "dist" / "i18n" / "locales" / "en"
KEEPS_RUNNING = "Airflow keeps running for the UI"
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


@dataclass
class Demo:
    process: subprocess.Popen[str]
    lines: list[str]
    home: Path
    dags: Path

    def table(self) -> dict[str, tuple[int, list[str]]]:
        """The summary table: runs and their states, by DAG."""
        start = next(i for i, line in enumerate(self.lines) if line.startswith("DAG "))
        rows: dict[str, tuple[int, list[str]]] = {}
        for line in self.lines[start + 1 :]:
            if not line.strip():
                break
            dag_id, count, states = [*line.split(None, 2), ""][:3]
            rows[dag_id] = (int(count), states.split(", ") if states else [])
        return rows

    def stack(self) -> AirflowStack:
        """The running demo's Airflow, to ask its API."""
        line = next(line for line in self.lines if line.startswith("Airflow UI: "))
        port = int(line.split()[2].rsplit(":", 1)[1])
        return AirflowStack(home=self.home, dags_folder=self.dags, port=port)


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


def _labels(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set().union(*(_labels(value) for value in node.values()))
    return {node} if isinstance(node, str) else set()


def test_the_ui_tour_names_only_labels_airflow_3_3_shows() -> None:
    labels = set().union(*(_labels(json.loads(p.read_text())) for p in UI_LABELS.glob("*.json")))
    assert "Dags" in labels  # the installed UI's English labels were read
    for steps, _what in UI_TOUR:
        for step in steps:
            assert step.startswith("<") or step in labels, step


def test_the_demo_prints_the_ui_tour_and_no_browse_menu_for_asset_events(demo: Demo) -> None:
    for steps, what in UI_TOUR:
        assert f"  {' -> '.join(steps)}: {what}" in demo.lines
    assert not any("Browse" in line for line in demo.lines)


def test_every_sample_event_is_accepted(demo: Demo) -> None:
    sent = [line for line in demo.lines if line.startswith("  202 ")]
    assert len(sent) == 39  # every platform event of the catalog, each recorded


def test_the_table_lists_every_dag_that_ran_and_each_run_succeeded(demo: Demo) -> None:
    stack = demo.stack()
    ran = {dag_run["dag_id"] for dag_run in stack.dag_runs("~")}
    table = demo.table()
    assert set(table) == ran
    assert {"airhook_export_insights", "demo_extra_leads", "airhook_rkt_leads"} <= ran
    assert "airhook_send_insights" not in table  # started by hand only
    for dag_id, (count, states) in table.items():
        assert count == len(states) > 0, dag_id
        assert set(states) == {"success"}, dag_id


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
    assert demo.stack().port in {laddr.port for _pid, _cmd, laddr in listening}
    assert [entry for entry in listening if entry[2].ip != "127.0.0.1"] == []


def test_task_logs_are_read_without_the_log_servers(demo: Demo) -> None:
    stack = demo.stack()
    token = stack.token()
    dag_run = stack.dag_runs("airhook_rkt_leads", token=token)[0]
    base = f"/api/v2/dags/airhook_rkt_leads/dagRuns/{dag_run['dag_run_id']}/taskInstances"
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
