"""End to end through a real Airflow: deliveries in, asset events and DAG runs out.

One Airflow (SQLite) serves the whole module; the kill -9 test runs last because it restarts
the API server.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import requests

from airhook.core.catalog import load_catalog
from devstack import AirflowStack
from tests.e2e import senders
from tests.e2e.conftest import (
    asset_events,
    inbox_count,
    post,
    successful_runs,
    unique,
    wait_for,
    xcom,
)

CATALOG = load_catalog()


def sample(platform: str, event: str) -> dict[str, Any]:
    return dict(CATALOG.event(platform, event).sample)


def _ids_in_runs(stack: AirflowStack, dag_id: str, task_id: str, token: str) -> list[Any]:
    values = []
    for run in successful_runs(stack, dag_id, token):
        values.extend(xcom(stack, dag_id, run["dag_run_id"], task_id, token))
    return values


def test_each_platform_starts_its_dag_with_the_payload(stack: AirflowStack) -> None:
    token = stack.token()
    insight = unique(unique(sample("caleida", "insight.summary"), "data", "insight_id"), "id")
    lead = unique(sample("rkt", "lead.captured"), "data", "leadId")
    ticket = unique(sample("eev", "ticket.created"), "id")
    escalation = unique(sample("ccai", "chat.escalated"), "event_id")
    answers = {
        "caleida": post(stack, "caleida", *senders.caleida(insight)),
        "rkt": post(stack, "rkt", *senders.rkt(lead)),
        "eev": post(stack, "eev", *senders.eev(ticket)),
        "ccai": post(stack, "ccai", *senders.ccai(escalation)),
    }
    for source, answer in answers.items():
        assert answer.status_code == 202, (source, answer.text)
    ids = {source: answer.json()["id"] for source, answer in answers.items()}

    exported = wait_for(
        lambda: [
            row
            for row in _ids_in_runs(stack, "e2e_caleida_insights", "export_insights", token)
            if row["airhook_event_id"] == ids["caleida"]
        ]
    )
    assert exported[0]["insight_id"] == insight["data"]["insight_id"]
    leads = wait_for(
        lambda: [
            row
            for row in _ids_in_runs(stack, "e2e_rkt_leads", "upsert_leads", token)
            if row["leadId"] == lead["data"]["leadId"]
        ]
    )
    assert leads[0]["email"] == lead["data"]["email"]
    assert leads[0]["chatbot"] == lead["chatbotId"]
    wait_for(
        lambda: (
            f"ticket.created {ticket['data']['ticket_id']}"
            in _ids_in_runs(stack, "e2e_eev_tickets", "load_ticket_changes", token)
        )
    )
    wait_for(
        lambda: (
            escalation["data"]["chat_id"]
            in _ids_in_runs(stack, "e2e_ccai_handoffs", "alert", token)
        )
    )


def test_canonical_kind_runs_one_dag_for_every_platform(stack: AirflowStack) -> None:
    token = stack.token()
    deliveries = {
        "caleida": senders.caleida(unique(sample("caleida", "chat"), "id")),
        "ccai": senders.ccai(unique(sample("ccai", "chat.created"), "event_id")),
        "eev": senders.eev(unique(sample("eev", "conversation.created"), "id")),
        "rkt": senders.rkt(unique(sample("rkt", "session.created"), "data", "sessionId")),
    }
    ids = {}
    for source, (headers, body) in deliveries.items():
        answer = post(stack, source, headers, body)
        assert answer.status_code == 202, answer.text
        ids[source] = answer.json()["id"]
    expected = {
        f"{source}:{sample_event}:{ids[source]}"
        for source, sample_event in (
            ("caleida", "chat"),
            ("ccai", "chat.created"),
            ("eev", "conversation.created"),
            ("rkt", "session.created"),
        )
    }
    wait_for(
        lambda: (
            expected
            <= set(_ids_in_runs(stack, "e2e_conversation_started", "record_conversation", token))
        )
    )


def test_rejections_get_their_status_and_leave_no_record(stack: AirflowStack) -> None:
    before = inbox_count(stack)
    lead = unique(sample("rkt", "lead.captured"), "data", "leadId")
    headers, body = senders.rkt(lead)

    wrong = post(stack, "rkt", *senders.rkt(lead, secret="whsec_wrong"))
    assert (wrong.status_code, wrong.json()["error"]) == (401, "no_matching_signature")

    stale = post(
        stack, "ccai", *senders.ccai(sample("ccai", "chat.created"), now=time.time() - 3600)
    )
    assert (stale.status_code, stale.json()["error"]) == (401, "timestamp_too_old")

    oversize = unique(sample("rkt", "message.received"), "data", "messageId")
    oversize["data"]["content"] = "x" * (1024 * 1024)
    too_large = post(stack, "rkt", *senders.rkt(oversize))
    assert too_large.status_code == 413

    not_json_headers, _ = senders.rkt({})
    import hashlib
    import hmac

    garbage = b"{not json"
    not_json_headers["X-RKT-Signature"] = hmac.new(
        senders.RKT_SECRET.encode(), garbage, hashlib.sha256
    ).hexdigest()
    bad_json = post(stack, "rkt", not_json_headers, garbage)
    assert (bad_json.status_code, bad_json.json()["error"]) == (400, "not_json")

    invalid = unique(sample("rkt", "lead.captured"), "data", "leadId")
    invalid["data"]["email"] = "not-an-email"
    schema = post(stack, "rkt", *senders.rkt(invalid))
    assert schema.status_code == 422
    assert schema.json()["path"] == "$.data.email"

    assert inbox_count(stack) == before
    # ...and a good one still goes through.
    assert post(stack, "rkt", headers, body).status_code == 202


def test_plugin_routes_other_than_the_webhook_need_an_airflow_login(stack: AirflowStack) -> None:
    # Airflow mounts plugin apps without its authentication: the receiver checks it itself.
    base = f"{stack.base_url}/airhook"
    anonymous = requests.get(f"{base}/receiver/stats", timeout=30)
    bad_token = requests.get(
        f"{base}/receiver/stats", headers={"Authorization": "Bearer not-a-jwt"}, timeout=30
    )
    logged_in = requests.get(
        f"{base}/receiver/stats", headers={"Authorization": f"Bearer {stack.token()}"}, timeout=30
    )
    # No credentials: 401; a token Airflow cannot decode: 403 (Airflow's own answers).
    assert (anonymous.status_code, bad_token.status_code) == (401, 403)
    assert logged_in.status_code == 200, logged_in.text
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert requests.get(base + path, timeout=30).status_code == 404, path


def test_the_same_signed_request_and_a_retry_are_duplicates(stack: AirflowStack) -> None:
    created = unique(sample("ccai", "chat.created"), "event_id")
    headers, body = senders.ccai(created)
    first = post(stack, "ccai", headers, body)
    assert first.status_code == 202
    count = inbox_count(stack)
    again = post(stack, "ccai", headers, body)
    assert again.status_code == 200
    assert again.json() == {"id": first.json()["id"], "duplicate": True}
    time.sleep(1.1)  # a retry is signed anew, with a later timestamp
    retry = post(stack, "ccai", *senders.ccai(created))
    assert retry.status_code == 200
    assert retry.json() == {"id": first.json()["id"], "duplicate": True}
    stale = post(stack, "ccai", *senders.ccai(created, now=time.time() - 400))
    assert (stale.status_code, stale.json()["error"]) == (401, "timestamp_too_old")
    assert inbox_count(stack) == count


def test_duplicate_delivery_runs_nothing_twice(stack: AirflowStack) -> None:
    token = stack.token()
    lead = unique(sample("rkt", "lead.captured"), "data", "leadId")
    headers, body = senders.rkt(lead)
    answers = [post(stack, "rkt", headers, body) for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 200, 200]
    event_id = answers[0].json()["id"]
    assert {a.json()["id"] for a in answers} == {event_id}
    wait_for(
        lambda: any(
            row["leadId"] == lead["data"]["leadId"]
            for row in _ids_in_runs(stack, "e2e_rkt_leads", "upsert_leads", token)
        )
    )
    time.sleep(3)  # room for a second (wrong) run to show up
    runs_with_lead = [
        row
        for row in _ids_in_runs(stack, "e2e_rkt_leads", "upsert_leads", token)
        if row["leadId"] == lead["data"]["leadId"]
    ]
    assert len(runs_with_lead) == 1
    mine = [e for e in asset_events(stack, token) if e["extra"].get("airhook_event_id") == event_id]
    # One event on each asset some DAG listens to: rkt/lead.captured (e2e_rkt_leads).
    assert len(mine) == 1


def _trigger(stack: AirflowStack, dag_id: str, conf: dict[str, Any], token: str) -> str:
    run = stack.api(
        "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf}, token=token
    )
    return str(run["dag_run_id"])


def _task_state(
    stack: AirflowStack, dag_id: str, run_id: str, task_id: str, token: str
) -> str | None:
    from urllib.parse import quote

    ti = stack.api(
        "GET",
        f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}",
        token=token,
    )
    return ti["state"]


def test_sensor_completes_on_the_matching_event(stack: AirflowStack) -> None:
    token = stack.token()
    chat_id = f"cht_{time.time_ns()}"
    run_id = _trigger(stack, "e2e_wait_for_summary", {"chat_id": chat_id}, token)
    wait_for(
        lambda: (
            _task_state(stack, "e2e_wait_for_summary", run_id, "wait_for_summary", token)
            == "deferred"
        )
    )
    other = unique(sample("caleida", "insight.summary"), "id")
    other["data"]["chat_id"] = "cht_someone_else"
    assert post(stack, "caleida", *senders.caleida(other)).status_code == 202
    time.sleep(3)
    assert (
        _task_state(stack, "e2e_wait_for_summary", run_id, "wait_for_summary", token) == "deferred"
    )
    mine = unique(sample("caleida", "insight.summary"), "id")
    mine["data"]["chat_id"] = chat_id
    mine["data"]["summary"] = f"summary for {chat_id}"
    assert post(stack, "caleida", *senders.caleida(mine)).status_code == 202
    wait_for(lambda: _task_state(stack, "e2e_wait_for_summary", run_id, "show", token) == "success")
    assert xcom(stack, "e2e_wait_for_summary", run_id, "show", token) == f"summary for {chat_id}"


def test_sensor_times_out_or_skips_without_a_match(stack: AirflowStack) -> None:
    token = stack.token()
    failed = _trigger(stack, "e2e_sensor_timeout", {}, token)
    skipped = _trigger(stack, "e2e_sensor_soft_fail", {}, token)
    wait_for(lambda: _task_state(stack, "e2e_sensor_timeout", failed, "wait", token) == "failed")
    wait_for(
        lambda: _task_state(stack, "e2e_sensor_soft_fail", skipped, "wait", token) == "skipped"
    )


def test_kill_9_of_the_api_server_under_load_loses_no_acknowledged_event(
    stack: AirflowStack,
) -> None:
    acknowledged: list[str] = []
    stop = threading.Event()
    lock = threading.Lock()

    def send() -> None:
        session = requests.Session()
        while not stop.is_set():
            lead = unique(sample("rkt", "lead.captured"), "data", "leadId")
            headers, body = senders.rkt(lead)
            try:
                answer = session.post(
                    f"{stack.base_url}/airhook/webhooks/rkt", data=body, headers=headers, timeout=5
                )
            except requests.RequestException:
                time.sleep(0.05)
                continue
            if answer.status_code == 202:
                with lock:
                    acknowledged.append(answer.json()["id"])

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(acknowledged) >= 50, timeout=60, interval=0.05)
        stack.kill_component("api-server")
        with lock:
            acked_before_kill = list(acknowledged)
        time.sleep(1)
        stack.start_component("api-server")
        stack.wait_healthy()
        wait_for(lambda: len(acknowledged) >= len(acked_before_kill) + 20, timeout=60, interval=0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    token = stack.token()
    expected = set(acknowledged)
    assert len(expected) == len(acknowledged)

    def dispatched() -> bool:
        found = {e["extra"].get("airhook_event_id") for e in asset_events(stack, token)}
        return expected <= found

    wait_for(dispatched, timeout=120, interval=2)
    counts: dict[str, int] = {}
    for event in asset_events(stack, token):
        event_id = event["extra"].get("airhook_event_id")
        if event_id in expected:
            counts[event_id] = counts.get(event_id, 0) + 1
    assert set(counts.values()) == {1}, "an acknowledged event reached Airflow more than once"
