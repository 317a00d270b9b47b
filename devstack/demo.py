"""``make demo``: a real Airflow on 127.0.0.1 with the example DAGs, fed by every platform.

Starts api-server, scheduler, dag-processor and triggerer (SQLite, in ``.demo/`` by default),
creates one source per platform, sends every platform's sample events signed the platform's way,
shows the DAG runs they started, and keeps Airflow running for the UI until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from airhook.core.catalog import load_catalog
from airhook.core.signing import get_scheme
from devstack import AirflowStack, free_port

# Demo secrets: printed on purpose, like the values a platform shows once when you set it up.
SECRETS = {
    "caleida": "demo-caleida-token",
    "ccai": "demo-ccai-primary",
    "eev": "demo-eev-secret",
    "rkt": "whsec_demo-rkt-secret",
}
EEV_OPTIONS = {
    "header": "X-Eev-Signature",
    "timestamp_header": "X-Eev-Timestamp",
    "content": "{timestamp}.{body}",
}
# The DAG the demo starts itself; the others are started by the events it sends.
TRIGGERED_DAG = "airhook_wait_for_summary"
CHAT_ID = "cht_8f2c1a"
FINISHED = ("success", "failed")
# Where to look in Airflow 3.3's UI: the labels to click, "<...>" standing for a choice of yours
# (tests/e2e/test_demo.py checks every other step against the installed UI's English labels).
UI_TOUR = (
    (("Dags", "<a Dag tagged airhook>", "Runs"), "the runs in the table above"),
    (("Dags", "<a Dag>", "Runs", "<a run>", "Asset Events"), "the events that started that run"),
    (
        ("Assets", "<airhook://rkt/lead.captured, ...>", "Asset Events"),
        "each event's extra JSON holds the payload",
    ),
)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def create_sources(stack: AirflowStack) -> None:
    """One source per platform, each with the platform's signing scheme."""
    for name, secret in SECRETS.items():
        options = [a for k, v in EEV_OPTIONS.items() for a in ("--option", f"{k}={v}")]
        stack.airhook(
            "sources",
            "create",
            name,
            "--profile",
            name,
            "--secret-file",
            "-",
            *(options if name == "eev" else []),
            stdin=secret + "\n",
        )


def send(stack: AirflowStack, source: str, payload: dict[str, Any]) -> tuple[int, str]:
    """Send one event to a source, signed the way that platform signs."""
    body = json.dumps(payload).encode()
    scheme_name = {"caleida": "token", "ccai": "ccai", "eev": "hmac", "rkt": "rkt"}[source]
    scheme = get_scheme(scheme_name, **(EEV_OPTIONS if source == "eev" else {}))
    headers = {
        "Content-Type": "application/json",
        **scheme.sign(body, [SECRETS[source]], now=time.time()),
    }
    request = urllib.request.Request(  # noqa: S310
        f"{stack.base_url}/airhook/webhooks/{source}", data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.loads(response.read()).get("id", "")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def asset_scheduled(stack: AirflowStack, dag_ids: list[str], token: str) -> set[str]:
    """The DAGs scheduled on assets: every sample event goes out, so each of them must run."""
    return {
        dag_id
        for dag_id in dag_ids
        if stack.api("GET", f"/api/v2/dags/{dag_id}/details", token=token)["asset_expression"]
    }


def runs_by_dag(stack: AirflowStack, token: str) -> dict[str, list[str]]:
    """The states of every DAG run there is, by DAG."""
    runs: dict[str, list[str]] = {}
    for dag_run in stack.dag_runs("~", token=token):
        runs.setdefault(dag_run["dag_id"], []).append(dag_run["state"])
    return runs


def wait_for_runs(
    stack: AirflowStack, expected: set[str], token: str, *, timeout: float
) -> dict[str, list[str]]:
    """Wait until each expected DAG has run and every run has finished; return the runs.

    Finished twice in a row with no new run in between: an event's run can be created a moment
    after the runs before it ended.
    """
    deadline = time.monotonic() + timeout
    settled_count = -1
    while True:
        runs = runs_by_dag(stack, token)
        count = sum(len(states) for states in runs.values())
        finished = expected <= runs.keys() and all(
            state in FINISHED for states in runs.values() for state in states
        )
        if (finished and count == settled_count) or time.monotonic() > deadline:
            return runs
        settled_count = count if finished else -1
        time.sleep(2)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run(home: Path, dags: Path, port: int, *, keep_running: bool) -> int:
    """Run the demo; return an exit code."""
    if home.exists():
        shutil.rmtree(home)
    if port == 0 or not _port_free(port):
        port = free_port()
    stack = AirflowStack(home=home, dags_folder=dags.resolve(), port=port)
    print(f"airhook demo: Airflow home {home}, DAGs from {dags}")
    stack.migrate()
    create_sources(stack)
    dag_ids = stack.local_dag_ids()
    # SIGTERM and SIGHUP end the demo as Ctrl-C does: through the finally that stops Airflow.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    print("starting api-server, scheduler, dag-processor and triggerer on 127.0.0.1 ...")
    try:
        stack.start()
        stack.wait_for_dags(dag_ids)
        token = stack.token()
        expected = {TRIGGERED_DAG} | asset_scheduled(stack, dag_ids, token)
        stack.api(
            "POST",
            f"/api/v2/dags/{TRIGGERED_DAG}/dagRuns",
            {"logical_date": None, "conf": {"chat_id": CHAT_ID}},
            token=token,
        )
        catalog = load_catalog()
        print("\nsending every platform's sample events, signed the platform's way:")
        failures = 0
        for source in SECRETS:
            for event in catalog.events(source):
                status, detail = send(stack, source, dict(event.sample))
                failures += status != 202
                print(f"  {status} {source:8} {event.name:24} -> {event.kind:26} {detail}")
        print("\nwaiting for the DAG runs they start ...")
        runs = wait_for_runs(stack, expected, token, timeout=180)
        width = max(len(dag) for dag in [*runs, *expected, "DAG"]) + 2
        print(f"\n{'DAG':{width}} {'runs':>4}  states")
        for dag in sorted(runs.keys() | expected):
            states = runs.get(dag, [])
            failures += "failed" in states or not states
            print(f"{dag:{width}} {len(states):>4}  {', '.join(states) or 'no run'}")
        print(
            f"\nAirflow UI: {stack.base_url}  (user admin, password {stack.admin_password})"
            + "".join(f"\n  {' -> '.join(steps)}: {what}" for steps, what in UI_TOUR)
            + f"\nreceiver:   {stack.base_url}/airhook/webhooks/<source>"
            f"  (sources: {', '.join(SECRETS)})"
            f"\nlogs:       {home / 'logs'}"
        )
        if keep_running:
            print("\nAirflow keeps running for the UI; Ctrl-C stops it.", flush=True)
            while True:
                time.sleep(3600)
        return 1 if failures else 0
    except KeyboardInterrupt:
        return 0
    finally:
        print("stopping Airflow ...")
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the demo."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--home", type=Path, default=Path(".demo"), help="Airflow home (wiped)")
    parser.add_argument("--dags", type=Path, default=Path("dags"), help="the example DAGs")
    parser.add_argument("--port", type=int, default=8080, help="API server port (another if busy)")
    parser.add_argument("--exit", action="store_true", help="stop after showing the runs")
    args = parser.parse_args(argv)
    return run(args.home.resolve(), args.dags, args.port, keep_running=not args.exit)


if __name__ == "__main__":
    raise SystemExit(main())
