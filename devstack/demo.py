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
import sys
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
DAGS = [
    "airhook_caleida_insights",
    "airhook_ccai_handoffs",
    "airhook_conversation_started",
    "airhook_eev_tickets",
    "airhook_rkt_leads",
    "airhook_wait_for_summary",
]


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
    print("starting api-server, scheduler, dag-processor and triggerer on 127.0.0.1 ...")
    stack.start()
    try:
        stack.wait_for_dags(DAGS)
        token = stack.token()
        chat_id = "cht_8f2c1a"
        stack.api(
            "POST",
            "/api/v2/dags/airhook_wait_for_summary/dagRuns",
            {"logical_date": None, "conf": {"chat_id": chat_id}},
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
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            runs = {dag: stack.dag_runs(dag, token=token) for dag in DAGS}
            if all(
                runs[d] and all(r["state"] in ("success", "failed") for r in runs[d]) for d in DAGS
            ):
                break
            time.sleep(2)
        print(f"\n{'DAG':32} {'runs':>4}  states")
        for dag in DAGS:
            states = [r["state"] for r in stack.dag_runs(dag, token=token)]
            failures += "failed" in states or not states
            print(f"{dag:32} {len(states):>4}  {', '.join(states)}")
        print(
            f"\nAirflow UI: {stack.base_url}  (user admin, password {stack.admin_password})"
            f"\n  DAGs tagged 'airhook', Assets -> airhook://..., Browse -> Asset Events"
            f"\nreceiver:   {stack.base_url}/airhook/webhooks/<source>"
            f"  (sources: {', '.join(SECRETS)})"
            f"\nlogs:       {home / 'logs'}"
        )
        if keep_running:
            print("\nAirflow keeps running for the UI; Ctrl-C stops it.")
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
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
