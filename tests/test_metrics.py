"""airhook's metrics: declared once, documented, sent through Airflow's public API.

``tests/e2e/test_metrics.py`` checks that every declared name arrives from a real API server;
here: the declarations and ``docs/metrics.md`` agree, every call in the package names a declared
metric, an undeclared name is refused, and :func:`airhook.metrics.start` sets Airflow's metrics
up in a process nothing else did (StatsD packets from a fresh subprocess).
"""

from __future__ import annotations

import ast
import importlib
import logging
import re
from pathlib import Path

import pytest

from airhook import metrics
from tests.statsd import statsd_lines

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "plugin" / "airhook"
DOC = REPO / "docs" / "metrics.md"


def _documented() -> dict[str, str]:
    """Name -> kind of each row of the table in docs/metrics.md."""
    rows = re.findall(r"^\| `([^`]+)` \| (\w+) \|", DOC.read_text(), flags=re.MULTILINE)
    return dict(rows)


def test_every_declared_metric_is_documented_with_its_kind_and_nothing_else() -> None:
    declared = {metric.name: metric.kind for metric in metrics.METRICS}
    assert _documented() == declared


def _calls() -> list[tuple[Path, int, str]]:
    """(file, line, name or f-string prefix) of every airhook.metrics call in the package."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "metrics"
                and node.func.attr in ("incr", "gauge", "timing")
            ):
                continue
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append((path, node.lineno, first.value))
            elif isinstance(first, ast.JoinedStr) and isinstance(first.values[0], ast.Constant):
                found.append((path, node.lineno, str(first.values[0].value)))
            elif isinstance(first, ast.Name):  # a module constant: resolved below
                found.append((path, node.lineno, "$" + first.id))
            else:
                found.append((path, node.lineno, "?"))
    return found


def test_every_metric_sent_in_the_package_is_declared() -> None:
    declared = [metric.name.split("{", 1)[0] for metric in metrics.METRICS]
    calls = _calls()
    assert len(calls) >= 10, calls  # the scan finds the calls it is meant to check
    for path, line, name in calls:
        if name.startswith("$"):  # a module constant: its value
            module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
            name = getattr(importlib.import_module(module), name[1:])
        assert any(name == d or (d.endswith(".") and name.startswith(d)) for d in declared), (
            f"{path.relative_to(REPO)}:{line} sends {name!r}, not declared in airhook.metrics"
        )


def test_an_undeclared_name_is_logged_and_not_sent(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.ERROR, logger="airhook.metrics")
    sent: list[str] = []

    class Backend:  # the public stats module's edge: what would have been sent
        @staticmethod
        def incr(name: str, **_: object) -> None:
            sent.append(name)

        gauge = incr

    with pytest.MonkeyPatch.context() as patch:
        import airflow.sdk.observability.stats as stats

        patch.setattr(stats, "incr", Backend.incr)
        patch.setattr(stats, "gauge", Backend.gauge)
        metrics.incr("airhook.something_new")
        metrics.gauge("airhook.receiver", 1)  # a template's stem alone is not a name
        metrics.incr("airhook.receiver.accepted")

    assert sent == ["airhook.receiver.accepted"]
    # Wherever logging goes here (Airflow's structlog setup writes to standard output).
    logged = caplog.text + capsys.readouterr().out
    assert "'airhook.something_new' is not declared" in logged
    assert "'airhook.receiver' is not declared" in logged


_SNIPPET = """
from airhook import metrics
from airhook.receiver.metrics import ReceiverMetrics

metrics.start()
ReceiverMetrics().count("rkt", "accepted")
ReceiverMetrics().count("rkt", "backpressure", rejected=True)
metrics.gauge("airhook.inbox.backlog", 7)
metrics.timing("airhook.delivery.attempt_seconds", 0.25)
"""


def test_start_sends_counters_gauges_and_timers_to_statsd(tmp_path: Path) -> None:
    received = statsd_lines(_SNIPPET, tmp_path)
    for line in (
        "airflow.airhook.receiver.received:1|c",
        "airflow.airhook.receiver.accepted:1|c",
        "airflow.airhook.receiver.backpressure:1|c",
        "airflow.airhook.receiver.rejected:1|c",
        "airflow.airhook.inbox.backlog:7|g",
    ):
        assert line in received, (line, received)
    [timer] = [line for line in received if line.startswith("airflow.airhook.delivery.attempt")]
    value, kind = timer.split(":", 1)[1].split("|")
    assert (float(value), kind) == (250.0, "ms")  # seconds given, milliseconds sent


_HOOK_SNIPPET = """
import json, os, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

answers = [500, 200]

class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(answers.pop(0))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
os.environ["AIRFLOW_CONN_METRICS_HOOK"] = json.dumps(
    {"conn_type": "airhook_webhook", "host": f"http://127.0.0.1:{server.server_port}/hook"}
)

from airflow.sdk.observability import stats
from airflow.sdk.observability.metrics import stats_utils

# What the task runner does in a worker before a task runs.
stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)

from airhook.hooks.webhook import WebhookHook

hook = WebhookHook("metrics_hook")
first = hook.attempt("POST", None, {}, b"{}", message_id="msg_metrics_hook")
second = hook.attempt("POST", None, {}, b"{}", message_id="msg_metrics_hook", attempts_made=1)
assert (first.outcome.value, second.outcome.value) == ("retry", "delivered")
server.shutdown()
"""


def test_webhook_hook_calls_count_their_outcome_and_time_in_a_task(tmp_path: Path) -> None:
    received = statsd_lines(
        _HOOK_SNIPPET,
        tmp_path,
        {"AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS": "127.0.0.1/32"},
    )
    assert "airflow.airhook.webhook.retry:1|c" in received, received
    assert "airflow.airhook.webhook.delivered:1|c" in received, received
    timers = [line for line in received if line.startswith("airflow.airhook.webhook.attempt")]
    assert len(timers) == 2, received
    assert all(line.endswith("|ms") for line in timers)
