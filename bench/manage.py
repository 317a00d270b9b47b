"""A page of deliveries from the management API, with 10,000 deliveries in the store (SQLite).

Run it with ``make bench-manage`` (or ``PYTHONPATH=. .venv/bin/python bench/manage.py``); it
takes about half a minute, most of it setting up Airflow.

What is measured, each the median of ``--runs`` interleaved runs (each case once per round, so
noise hits every case alike):

- ``baseline``: one ``SELECT`` of the same 50 rows (newest first) through the store's read engine,
  rows fetched and nothing else: the least any list of these deliveries can cost;
- ``service``: ``DeliveryService.list(limit=50)`` and its ``as_dict()``: the page, its total
  (``count(*)`` of the matching rows) and the JSON-ready views, as the API and the CLI get them;
- ``service, one subscription`` / ``dead only`` / ``offset 5,000``: the same with the filters the
  page offers and a deep page;
- ``API``: ``GET /airhook/manage/api/v1/deliveries?limit=50`` through Airflow's whole API server
  app in process (Starlette's TestClient: Airflow's middlewares, the bearer token checked by the
  auth manager, the route, JSON); no network.

The aim (a list of 10,000 deliveries answers in under 200 ms) is printed as information only.
Airflow runs in a temporary ``AIRFLOW_HOME`` of its own with SQLite; the airhook store is an
SQLite file beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

#: Deliveries in the store.
DELIVERIES = 10_000
#: Subscriptions they belong to.
SUBSCRIPTIONS = 4
#: The page size the page asks for.
PAGE = 50
#: The issue's aim for one page, in milliseconds.
AIM_MS = 200.0


def _setup_airflow(home: Path) -> None:
    """Configure a private Airflow (before it is imported) and migrate its metadata DB."""
    from cryptography.fernet import Fernet

    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({"viewer": secrets.token_hex(16)}))
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "viewer:viewer",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(64),
            "AIRFLOW__AIRHOOK__DATABASE_URL": f"sqlite:///{home / 'airhook.db'}",
            "AIRFLOW__AIRHOOK__DISPATCHER_ENABLED": "False",
        }
    )
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )


def _fill(services: object) -> list[str]:
    """Add the subscriptions and their deliveries; a sixth of them marked dead, as after an
    outage. Returns the subscription names."""

    from airhook.store.outbox import NewDelivery
    from airhook.store.tables import deliveries

    subscriptions = services.subscriptions()  # type: ignore[attr-defined]
    names = []
    for number in range(SUBSCRIPTIONS):
        created = subscriptions.create(
            f"bench-{number}", f"https://hooks{number}.example.com/in", events=["*"]
        )
        names.append(created.view.subscription.name)
    body = json.dumps({"event": "insight.summary", "data": {"summary": "x" * 900}})
    outbox = services.engine.outbox  # type: ignore[attr-defined]
    batch = []
    for number in range(DELIVERIES):
        batch.append(
            NewDelivery(
                message_id=f"msg_bench_{number:06d}",
                subscription=names[number % SUBSCRIPTIONS],
                event="insight.summary",
                body=body,
                platform="caleida",
            )
        )
        if len(batch) == 1000:
            outbox.add(batch)
            batch = []
    store = services.store  # type: ignore[attr-defined]
    with store.begin() as connection:  # setup only: some dead letters to filter on
        connection.execute(
            deliveries.update().where(deliveries.c.id % 6 == 0).values(status="dead", attempts=8)
        )
    return names


def _median_ms(cases: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    timings: dict[str, list[float]] = {name: [] for name in cases}
    for case in cases.values():  # warm: imports, caches, first queries
        case()
    for _ in range(runs):
        for name, case in cases.items():
            started = time.perf_counter()
            case()
            timings[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values) for name, values in timings.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=25, help="runs per case (default: 25)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="airhook-bench-manage-") as folder:
        home = Path(folder)
        _setup_airflow(home)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import sqlalchemy as sa
            from airflow.api_fastapi.app import create_app, get_auth_manager
            from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
            from starlette.testclient import TestClient

            from airhook.manage import Services
            from airhook.store.tables import deliveries

        app = create_app()
        with TestClient(app) as client:
            manage = next(r.app for r in app.routes if getattr(r, "path", "") == "/airhook/manage")
            services: Services = manage.state.services.get()
            names = _fill(services)
            listing = services.deliveries()
            store = services.store
            token = get_auth_manager().generate_jwt(
                SimpleAuthManagerUser(username="viewer", role="viewer")
            )
            headers = {"Authorization": f"Bearer {token}"}

            def baseline() -> object:
                query = sa.select(deliveries).order_by(deliveries.c.id.desc()).limit(PAGE)
                with store.read() as connection:
                    return connection.execute(query).all()

            def api() -> object:
                answer = client.get(
                    "/airhook/manage/api/v1/deliveries", params={"limit": PAGE}, headers=headers
                )
                assert answer.status_code == 200, answer.text
                assert answer.json()["total"] == DELIVERIES
                return answer

            cases: dict[str, Callable[[], object]] = {
                "baseline": baseline,
                "service": lambda: listing.list(limit=PAGE).as_dict(),
                "service, one subscription": lambda: listing.list(
                    subscription=names[1], limit=PAGE
                ).as_dict(),
                "service, dead only": lambda: listing.list(statuses=["dead"], limit=PAGE).as_dict(),
                "service, offset 5,000": lambda: listing.list(limit=PAGE, offset=5000).as_dict(),
                "API": api,
            }
            page = listing.list(limit=PAGE)
            assert page.total == DELIVERIES
            assert len(page.items) == PAGE
            medians = _median_ms(cases, args.runs)

    base = medians["baseline"]
    print(
        f"{DELIVERIES:,} deliveries, page of {PAGE}, median of {args.runs} runs; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    for name, value in medians.items():
        ratio = "" if name == "baseline" else f"  {value / base:6.1f}x baseline"
        print(f"  {name:<27} {value:8.2f} ms{ratio}")
    worst = max(v for k, v in medians.items() if k != "baseline")
    verdict = "met" if worst < AIM_MS else "NOT met"
    print(f"aim: a page in under {AIM_MS:.0f} ms: {verdict} (slowest case {worst:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
