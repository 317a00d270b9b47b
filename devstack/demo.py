"""``make demo``: a real Airflow on 127.0.0.1 running the example pipelines, end to end.

Starts three stand-in endpoints on 127.0.0.1 (a CRM, a chat channel, a subscriber:
``devstack/standins.py``, each verifying every call's signature with code that is not
airhook's), points the connections ``airhook_crm`` and ``airhook_chat`` and the subscription
``digest`` at them, starts Airflow (api-server, scheduler, dag-processor, triggerer; SQLite, in
``.demo/`` by default) with the DAGs of ``dags/``, creates one source per platform and sends every
platform's sample events signed the platform's way (one of them twice), waits for the DAG runs
they start, then starts the daily insight digest by hand through Airflow's REST API. It ends with
one table: events sent per platform → DAG runs (the events each consumed) → rows in the analytics
table → calls received and verified at each endpoint, each count beside what the events sent
make it expected to be; then where to look in the UI, and keeps Airflow running until Ctrl-C
(``--exit``: stop after the table, exit status 1 if a count is not as expected).

What the pipelines do and need is ``dags/README.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from airhook.core.asset_uris import uris_for
from airhook.core.catalog import load_catalog
from airhook.core.signing import get_scheme
from devstack import AirflowStack, free_port
from devstack.standins import Endpoints, StandIn

REPO = Path(__file__).resolve().parents[1]
# Demo secrets: printed on purpose, like the values a platform shows once when you set it up.
SECRETS = {
    "caleida": "demo-caleida-token",
    "ccai": "demo-ccai-primary",
    "eev": "demo-eev-secret",
    "rkt": "whsec_demo-rkt-secret",
}
SCHEMES = {"caleida": "token", "ccai": "ccai", "eev": "hmac", "rkt": "rkt"}
EEV_OPTIONS = {
    "header": "X-Eev-Signature",
    "timestamp_header": "X-Eev-Timestamp",
    "content": "{timestamp}.{body}",
}
# The pipelines (dags/README.md), and what each count of the table is compared with.
INSIGHT_DAG = "airhook_insight_export"
LEAD_DAG = "airhook_lead_sync"
ESCALATION_DAG = "airhook_escalation_alert"
DIGEST_DAG = "airhook_insight_digest"
DIGEST_EVENT = "insight.digest"
#: The event that ends a lead's chat session, on the lead's own source (the lead sync's update).
SESSION_END = "session.resolved"
#: Sent a second time: the receiver answers 200 with the first id, and nothing runs twice.
DUPLICATE = ("caleida", "insight.summary")
FINISHED = ("success", "failed")
#: Where to look in Airflow 3.3's UI: the labels to click, "<...>" standing for a choice of yours.
#: tests/e2e/test_demo.py checks every other step against the installed UI's English labels and
#: the plugin's own menu entry.
UI_TOUR = (
    (
        ("Admin", "Webhooks"),
        "airhook's page: the sources, the digest subscription and its delivery, every recorded"
        " event with the DAG runs it started",
    ),
    (("Dags", "<airhook_lead_sync>", "Runs", "<a run>", "Asset Events"), "the leads it ran for"),
    (
        ("Dags", "<airhook_lead_sync>", "Runs", "<a run>", "Task Instances"),
        "upsert_contact, wait_for_session_end (deferred to the triggerer), update_contact",
    ),
    (
        ("Assets", "<airhook-kind://insight.summary, ...>", "Asset Events"),
        "each event's extra JSON holds the payload",
    ),
    (("Browse", "XComs"), "what each task returned, the CRM's and the chat's answers included"),
)


@dataclass(frozen=True)
class Sent:
    """One event sent to the receiver, and its answer."""

    source: str
    event: str
    kind: str | None
    payload: Mapping[str, Any]
    status: int
    detail: str  # the airhook event id, or the error

    @property
    def accepted(self) -> bool:
        return self.status == 202

    @property
    def assets(self) -> set[str]:
        """The assets the event is dispatched to (airhook.core.asset_uris)."""
        return set(uris_for(self.source, self.event, self.kind))


@dataclass(frozen=True)
class Row:
    """One line of the table: a count beside the count expected."""

    step: str
    what: str
    got: int
    expected: int
    note: str = ""
    extra_ok: bool = True  # what else the line checks (every run succeeded, nothing unverified)

    @property
    def ok(self) -> bool:
        return self.got == self.expected and self.extra_ok


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


# --- setting up ----------------------------------------------------------------------------------


def airhook_setup(endpoints: Endpoints) -> dict[str, Any]:
    """What the demo creates in airhook's store: one source per platform, the subscription.

    The same as these commands (docs/cli.md), done in one process through the management service
    layer that the CLI uses (five CLI processes took 20 s of the demo on a busy machine)::

        airhook sources create caleida --profile caleida --secret-file -    # and ccai, eev, rkt
        airhook subscriptions create digest --url http://127.0.0.1:PORT/hooks/airhook-digest \\
            --events insight.digest --allow-unknown-events --retry-schedule 0,2,10 \\
            --secret-file - --secondary-secret-file digest-secondary.txt
    """
    primary, secondary = endpoints.subscriber_secrets
    return {
        "sources": [
            {
                "name": name,
                "profile": name,
                "secret": secret,
                "scheme_options": EEV_OPTIONS if name == "eev" else None,
            }
            for name, secret in SECRETS.items()
        ],
        "subscriptions": [
            {
                "name": "digest",
                "url": endpoints.subscriber_url,
                "events": [DIGEST_EVENT],
                "allow_unknown_events": True,
                "retry_schedule": [0, 2, 10],
                "secret": primary,
                "secondary_secret": secondary,
            }
        ],
    }


def apply_airhook_setup() -> None:
    """Read :func:`airhook_setup`'s JSON on standard input and create it (run in the stack's
    environment: ``python -c 'from devstack.demo import apply_airhook_setup; ...'``)."""
    from airhook.manage.container import Services

    setup = json.load(sys.stdin)
    services = Services.from_config()  # migrates the store first
    for source in setup["sources"]:
        services.sources().create(**source)
    for subscription in setup["subscriptions"]:
        services.subscriptions().create(**subscription)


def configure_airhook(stack: AirflowStack, endpoints: Endpoints) -> None:
    """Create airhook's store, the sources and the subscription, in one process."""
    result = subprocess.run(
        [sys.executable, "-c", "from devstack.demo import apply_airhook_setup as a; a()"],
        input=json.dumps(airhook_setup(endpoints)),
        env={**stack.env(), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"setting airhook up failed:\n{result.stdout}\n{result.stderr}")


def analytics_url(home: Path) -> str:
    """The analytics database: an SQLite file in the demo's home."""
    return f"sqlite:///{home / 'analytics.db'}"


def stack_env(home: Path, endpoints: Endpoints) -> dict[str, str]:
    """The connections and the one setting the pipelines need here (dags/README.md)."""
    analytics = {"conn_type": "generic", "extra": {"sqlalchemy_url": analytics_url(home)}}
    return {
        # The stand-ins listen on loopback, which outbound calls may not reach by default.
        "AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS": "127.0.0.1/32",
        "AIRFLOW_CONN_AIRHOOK_ANALYTICS": json.dumps(analytics),
        **endpoints.connections(),
    }


# --- sending -------------------------------------------------------------------------------------


def send(stack: AirflowStack, source: str, payload: Mapping[str, Any]) -> tuple[int, str]:
    """Send one event to a source, signed the way that platform signs."""
    body = json.dumps(payload).encode()
    scheme = get_scheme(SCHEMES[source], **(EEV_OPTIONS if source == "eev" else {}))
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


def send_samples(stack: AirflowStack) -> tuple[list[Sent], list[Sent]]:
    """Every platform's sample events, then one of them again; return (sent, re-sent)."""
    catalog = load_catalog()
    sent: list[Sent] = []
    print("\nsending every platform's sample events, signed the platform's way:")
    for source in SECRETS:
        for event in catalog.events(source):
            status, detail = send(stack, source, event.sample)
            sent.append(Sent(source, event.name, event.kind, event.sample, status, detail))
            print(f"  {status} {source:8} {event.name:24} -> {event.kind:26} {detail}")
    source, name = DUPLICATE
    event = catalog.event(source, name)
    status, detail = send(stack, source, event.sample)
    again = [Sent(source, name, event.kind, event.sample, status, detail)]
    print(f"  {status} {source:8} {name:24} (sent again: a duplicate)   {detail}")
    return sent, again


# --- waiting -------------------------------------------------------------------------------------


def asset_names(expression: Any) -> set[str]:
    """Every asset name in a DAG's ``asset_expression`` (airhook's are ``any`` of assets)."""
    if isinstance(expression, dict):
        found = {expression["name"]} if isinstance(expression.get("name"), str) else set()
        return found.union(*(asset_names(value) for value in expression.values()))
    if isinstance(expression, list):
        return set().union(*(asset_names(value) for value in expression))
    return set()


def schedules(stack: AirflowStack, dag_ids: Iterable[str], token: str) -> dict[str, set[str]]:
    """The assets each DAG is scheduled on (none: a time table, or by hand only)."""
    return {
        dag_id: asset_names(
            stack.api("GET", f"/api/v2/dags/{dag_id}/details", token=token)["asset_expression"]
        )
        for dag_id in dag_ids
    }


def runs_by_dag(stack: AirflowStack, token: str) -> dict[str, list[dict[str, Any]]]:
    """Every DAG run there is, by DAG."""
    runs: dict[str, list[dict[str, Any]]] = {}
    for dag_run in stack.dag_runs("~", token=token):
        runs.setdefault(dag_run["dag_id"], []).append(dag_run)
    return runs


def wait_for_runs(
    stack: AirflowStack, expected: set[str], token: str, *, timeout: float
) -> dict[str, list[dict[str, Any]]]:
    """Wait until each expected DAG has run and every run has finished; return the runs.

    Finished twice in a row with no new run in between: an event's run can be created a moment
    after the runs before it ended.
    """
    deadline = time.monotonic() + timeout
    settled_count = -1
    while True:
        runs = runs_by_dag(stack, token)
        count = sum(len(dag_runs) for dag_runs in runs.values())
        finished = expected <= runs.keys() and all(
            run["state"] in FINISHED for dag_runs in runs.values() for run in dag_runs
        )
        if (finished and count == settled_count) or time.monotonic() > deadline:
            return runs
        settled_count = count if finished else -1
        time.sleep(2)


def wait_for_insights(stack: AirflowStack, rows: int, token: str, *, timeout: float) -> None:
    """Wait until the export's runs have finished and the table holds ``rows`` rows (the digest
    starts then, while the other pipelines may still run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = stack.dag_runs(INSIGHT_DAG, token=token)
        finished = bool(runs) and all(run["state"] in FINISHED for run in runs)
        if finished and analytics_rows(stack.home)[0] >= rows:
            return
        time.sleep(1)


def trigger(stack: AirflowStack, dag_id: str, token: str) -> str:
    """Start a DAG run by hand through the REST API; return its run id."""
    dag_run = stack.api(
        "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None}, token=token
    )
    return str(dag_run["dag_run_id"])


def wait_for_run(
    stack: AirflowStack, dag_id: str, run_id: str, token: str, *, timeout: float
) -> str:
    """Wait until one DAG run finished; return its state."""
    deadline = time.monotonic() + timeout
    while True:
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}"
        state = str(stack.api("GET", path, token=token)["state"])
        if state in FINISHED or time.monotonic() > deadline:
            return state
        time.sleep(1)


# --- counting ------------------------------------------------------------------------------------


def consumed_events(stack: AirflowStack, dag_runs: list[dict[str, Any]], token: str) -> set[str]:
    """The airhook event ids of every asset event these runs consumed."""
    ids: set[str] = set()
    for dag_run in dag_runs:
        path = (
            f"/api/v2/dags/{dag_run['dag_id']}/dagRuns/"
            f"{quote(dag_run['dag_run_id'], safe='')}/upstreamAssetEvents"
        )
        for asset_event in stack.api("GET", path, token=token)["asset_events"]:
            event_id = (asset_event.get("extra") or {}).get("airhook_event_id")
            if event_id:
                ids.add(event_id)
    return ids


def analytics_rows(home: Path) -> tuple[int, int, int]:
    """Rows of the table ``insights``: (all, distinct event ids, of kind insight.summary)."""
    engine = sa.create_engine(analytics_url(home))
    try:
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table("insights"):
                return 0, 0, 0
            row = connection.execute(
                sa.text(
                    "SELECT count(*), count(DISTINCT event_id),"
                    " sum(CASE WHEN kind = 'insight.summary' THEN 1 ELSE 0 END) FROM insights"
                )
            ).one()
    finally:
        engine.dispose()
    return int(row[0]), int(row[1]), int(row[2] or 0)


def digest_deliveries(stack: AirflowStack, token: str) -> list[dict[str, Any]]:
    """The subscription ``digest``'s deliveries, from airhook's management REST API."""
    page = stack.api("GET", "/airhook/manage/api/v1/deliveries?subscription=digest", token=token)
    return list(page["items"])


def _runs(count: int) -> str:
    return f"{count} run" + ("" if count == 1 else "s")


def endpoint_row(stand_in: StandIn, what: str, expected: int, note: str) -> Row:
    received, verified = stand_in.received(), len(stand_in.verified())
    return Row(
        stand_in.name,
        what,
        verified,
        expected,
        f"{received} received, {received - verified} refused; {note}",
        extra_ok=received == verified,
    )


def build_table(
    stack: AirflowStack,
    endpoints: Endpoints,
    sent: list[Sent],
    again: list[Sent],
    runs: dict[str, list[dict[str, Any]]],
    scheduled_on: Mapping[str, set[str]],
    digest_runs: int,
    token: str,
) -> list[Row]:
    """The table: each count beside what the events sent make it expected to be."""
    rows: list[Row] = []
    for source in SECRETS:
        mine = [s for s in sent if s.source == source]
        rows.append(
            Row(
                "events sent",
                source,
                sum(s.accepted for s in mine),
                len(mine),
                f"accepted (202) of sent, signed {SCHEMES[source]}",
            )
        )
    first_ids = {s.detail for s in sent}
    rows.append(
        Row(
            "events sent",
            "duplicates",
            sum(s.status == 200 and s.detail in first_ids for s in again),
            len(again),
            "answered 200 with the first delivery's id",
        )
    )
    accepted = [s for s in sent if s.accepted]

    def matching(dag_id: str) -> list[Sent]:
        return [s for s in accepted if s.assets & scheduled_on.get(dag_id, set())]

    expected_to_run = {dag_id for dag_id in scheduled_on if matching(dag_id)}
    for dag_id in sorted(runs.keys() | expected_to_run):
        dag_runs = runs.get(dag_id, [])
        states = [run["state"] for run in dag_runs]
        all_success = bool(states) and set(states) == {"success"}
        summary = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states))) or "none"
        if scheduled_on.get(dag_id):
            rows.append(
                Row(
                    "dag runs",
                    dag_id,
                    len(consumed_events(stack, dag_runs, token)),
                    len(matching(dag_id)),
                    f"events consumed of the matching sent; {_runs(len(dag_runs))}: {summary}",
                    extra_ok=all_success,
                )
            )
        else:
            rows.append(
                Row(
                    "dag runs",
                    dag_id,
                    states.count("success"),
                    len(dag_runs),
                    f"runs succeeded (not on events: by hand or on a time table): {summary}",
                    extra_ok=all_success,
                )
            )
    rows_all, rows_distinct, summaries = analytics_rows(stack.home)
    insights = matching(INSIGHT_DAG)
    rows.append(
        Row(
            "analytics",
            "insights rows",
            rows_all,
            len(insights),
            f"one per insight event sent ({rows_distinct} distinct event ids);"
            f" {analytics_url(stack.home)}",
            extra_ok=rows_all == rows_distinct,
        )
    )
    leads = matching(LEAD_DAG)
    ended = {
        (s.source, s.payload["data"].get("sessionId")) for s in accepted if s.event == SESSION_END
    }
    updates = [s for s in leads if (s.source, s.payload["data"].get("sessionId")) in ended]
    contacts = endpoints.crm.contacts
    assert contacts is not None
    rows.append(
        endpoint_row(
            endpoints.crm,
            "upserts + updates",
            len(leads) + len(updates),
            f"{len(leads)} leads sent, {len(updates)} of their sessions ended;"
            f" contacts: {contacts.created} created, {contacts.updated} updated",
        )
    )
    escalations = matching(ESCALATION_DAG)
    rows.append(
        endpoint_row(
            endpoints.chat,
            "messages",
            len(escalations),
            f"one per escalation sent ({', '.join(f'{s.source} {s.event}' for s in escalations)})",
        )
    )
    deliveries = digest_deliveries(stack, token)
    delivered = sum(d.get("status") == "delivered" for d in deliveries)
    # One digest per run started by hand (its window holds the summaries just received); the
    # scheduled run of the day before, if any, had none to publish.
    rows.append(
        endpoint_row(
            endpoints.subscriber,
            "digests",
            digest_runs if summaries else 0,
            f"one per digest run started by hand; {summaries} summaries in the table;"
            f" outbox: {delivered} delivered of {len(deliveries)}",
        )
    )
    return rows


def print_table(rows: list[Row]) -> None:
    """One table, the columns two spaces apart at least (tests/e2e/test_demo.py reads it)."""
    header = ("STEP", "WHAT", "GOT", "EXPECTED", "CHECK", "HOW IT IS COUNTED")
    cells = [
        (r.step, r.what, str(r.got), str(r.expected), "ok" if r.ok else "WRONG", r.note)
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(5)]

    def line(values: tuple[str, ...]) -> str:
        step, what, got, expected, check, note = values
        return (
            f"{step:{widths[0]}}  {what:{widths[1]}}  {got:>{widths[2]}}  "
            f"{expected:>{widths[3]}}  {check:{widths[4]}}  {note}"
        )

    print("\n" + line(header))
    for values in cells:
        print(line(values))
    print()


# --- the demo ------------------------------------------------------------------------------------


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class Clock:
    """Prints a step with the seconds since the demo started."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f} s] {message}", flush=True)


def run(home: Path, dags: Path, port: int, *, keep_running: bool) -> int:
    """Run the demo; return an exit code."""
    clock = Clock()
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    if port == 0 or not _port_free(port):
        port = free_port()
    endpoints = Endpoints.start(home / "standins")
    stack = AirflowStack(
        home=home, dags_folder=dags.resolve(), port=port, extra_env=stack_env(home, endpoints)
    )
    print(f"airhook demo: Airflow home {home}, DAGs from {dags}")
    print(
        f"stand-ins on 127.0.0.1: CRM {endpoints.crm.base_url}, chat {endpoints.chat.base_url},"
        f" subscriber {endpoints.subscriber.base_url}"
    )
    # SIGTERM and SIGHUP end the demo as Ctrl-C does: through the finally that stops Airflow.
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    try:
        stack.env()  # its first call writes the stack's Fernet key: once, before the threads
        with ThreadPoolExecutor(2) as pool:
            migrated = pool.submit(stack.airflow, "db", "migrate")
            configured = pool.submit(configure_airhook, stack, endpoints)
            migrated.result()
            configured.result()
        clock(
            f"Airflow's metadata DB and airhook's store created; sources {', '.join(SECRETS)};"
            " subscription digest"
        )
        clock("starting api-server, scheduler, dag-processor and triggerer on 127.0.0.1 ...")
        with ThreadPoolExecutor(1) as pool:
            listing = pool.submit(stack.local_dag_ids)  # parsed meanwhile, to know what to wait for
            # The scheduler only once the API server answers: it would otherwise start the
            # digest's scheduled run at once, whose task fails to reach the execution API.
            stack.start(["api-server", "dag-processor", "triggerer"])
            stack.start_component("scheduler")
            dag_ids = listing.result()
        stack.wait_for_dags(dag_ids)
        clock(f"Airflow is up, {len(dag_ids)} DAGs parsed")
        token = stack.token()
        scheduled_on = schedules(stack, dag_ids, token)
        sent, again = send_samples(stack)
        accepted = [s for s in sent if s.accepted]
        expected = {
            dag_id
            for dag_id, assets in scheduled_on.items()
            if any(s.assets & assets for s in accepted)
        }
        clock(f"waiting for the DAG runs they start ({', '.join(sorted(expected))}) ...")
        insights = sum(bool(s.assets & scheduled_on.get(INSIGHT_DAG, set())) for s in accepted)
        wait_for_insights(stack, insights, token, timeout=240)
        clock(
            f"{insights} insights in the table; starting {DIGEST_DAG} by hand"
            f" (POST /api/v2/dags/{DIGEST_DAG}/dagRuns) ..."
        )
        digest_run = trigger(stack, DIGEST_DAG, token)
        wait_for_run(stack, DIGEST_DAG, digest_run, token, timeout=240)
        runs = wait_for_runs(stack, expected | {DIGEST_DAG}, token, timeout=240)
        clock("every run finished; counting")
        rows = build_table(stack, endpoints, sent, again, runs, scheduled_on, 1, token)
        print_table(rows)
        print(
            f"Airflow UI: {stack.base_url}  (user admin, password {stack.admin_password})"
            + "".join(f"\n  {' -> '.join(steps)}: {what}" for steps, what in UI_TOUR)
            + f"\nWebhooks:   {stack.base_url}/plugin/airhook"
            + f"\nreceiver:   {stack.base_url}/airhook/webhooks/<source>"
            f"  (sources: {', '.join(SECRETS)})"
            f"\nstand-ins:  every call they received, verified or not: {home / 'standins'}/*.jsonl"
            f"\nlogs:       {home / 'logs'}"
        )
        failures = sum(not row.ok for row in rows)
        clock(f"the table is complete: {len(rows) - failures} of {len(rows)} counts as expected")
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
        endpoints.stop()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the demo."""
    parser = argparse.ArgumentParser(
        prog="python -m devstack.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--home", type=Path, default=Path(".demo"), help="Airflow home (wiped)")
    parser.add_argument("--dags", type=Path, default=Path("dags"), help="the example DAGs")
    parser.add_argument("--port", type=int, default=8080, help="API server port (another if busy)")
    parser.add_argument("--exit", action="store_true", help="stop after the table")
    args = parser.parse_args(argv)
    return run(args.home.resolve(), args.dags, args.port, keep_running=not args.exit)


if __name__ == "__main__":
    raise SystemExit(main())
