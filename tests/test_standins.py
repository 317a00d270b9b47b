"""The demo's stand-in endpoints (devstack/standins.py) and the connections that point at them.

The senders are airhook's own (``WebhookHook`` through the ``AIRFLOW_CONN_…`` variables the demo
sets, and the subscription's signing scheme); the stand-ins check with code that is not airhook's.
Each must accept what airhook signs and refuse a wrong secret, a changed body, a missing token, a
wrong URL path and a malformed body, recording every call either way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from airhook.core.signing import get_scheme
from airhook.hooks.webhook import WebhookHook
from devstack.standins import CRM_UPSERT_PATH, Endpoints

LEAD = {
    "inputs": [
        {
            "idProperty": "email",
            "id": "john@example.com",
            "properties": {"email": "john@example.com"},
        }
    ]
}


@pytest.fixture
def endpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Endpoints]:
    started = Endpoints.start(tmp_path)
    for name, value in started.connections().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS", "127.0.0.1/32")
    yield started
    started.stop()


def _records(endpoints: Endpoints, name: str) -> list[dict[str, object]]:
    folder = endpoints.crm.folder
    assert folder is not None
    lines = (folder / f"{name}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_the_crm_verifies_the_connections_signature_and_token(endpoints: Endpoints) -> None:
    with WebhookHook("airhook_crm") as hook:
        created = hook.send("POST", CRM_UPSERT_PATH, {}, json.dumps(LEAD).encode(), message_id="m1")
        again = hook.send("POST", CRM_UPSERT_PATH, {}, json.dumps(LEAD).encode(), message_id="m2")
        contact_id = created.json["results"][0]["id"]
        update = {"properties": {"hs_lead_status": "CONNECTED"}}
        patched = hook.send(
            "PATCH",
            f"/crm/v3/objects/contacts/{contact_id}",
            {},
            json.dumps(update).encode(),
            message_id="m3",
        )
        by_email = hook.send(
            "PATCH",
            "/crm/v3/objects/contacts/john@example.com?idProperty=email",
            {},
            json.dumps({"properties": {"chat_session_id": "rkt_abc123"}}).encode(),
            message_id="m4",
        )
        unknown = hook.send(
            "PATCH",
            "/crm/v3/objects/contacts/nobody%40example.com?idProperty=email",
            {},
            json.dumps(update).encode(),
            message_id="m5",
        )
    assert (created.status_code, again.status_code, patched.status_code) == (200, 200, 200)
    assert (by_email.status_code, unknown.status_code) == (200, 404)
    assert by_email.json["id"] == contact_id
    assert created.json["results"][0]["new"] is True
    assert again.json["results"][0]["new"] is False
    assert patched.json["properties"]["hs_lead_status"] == "CONNECTED"
    assert len(endpoints.crm.verified()) == 4
    assert endpoints.crm.received() == 5
    assert endpoints.crm.contacts is not None
    assert (endpoints.crm.contacts.created, endpoints.crm.contacts.updated) == (1, 3)
    assert [r["reason"] for r in _records(endpoints, "crm")] == ["", "", "", "", "no such contact"]


def test_the_crm_refuses_a_wrong_secret_a_changed_body_and_no_token(
    endpoints: Endpoints,
) -> None:
    body = json.dumps(LEAD).encode()
    url = endpoints.crm.base_url + CRM_UPSERT_PATH
    auth = {"Authorization": f"Bearer {endpoints.crm_token}"}
    wrong = get_scheme("standard").sign(body, ["whsec_" + "A" * 32], now=time.time())
    right = get_scheme("standard").sign(body, [endpoints.crm_secret], now=time.time())
    answers = [
        requests.post(url, data=body, headers={**auth, **wrong}, timeout=5),
        requests.post(url, data=body + b" ", headers={**auth, **right}, timeout=5),
        requests.post(url, data=body, headers=right, timeout=5),
        requests.post(url, data=b"{}", headers={**auth, **_signed(endpoints, b"{}")}, timeout=5),
    ]
    assert [a.status_code for a in answers] == [401, 401, 401, 400]
    assert endpoints.crm.verified() == []
    assert endpoints.crm.received() == 4
    reasons = [r["reason"] for r in _records(endpoints, "crm")]
    assert reasons[2] == "bearer token missing or wrong"
    assert reasons[3] == "a batch upsert needs inputs"


def _signed(endpoints: Endpoints, body: bytes) -> dict[str, str]:
    return get_scheme("standard").sign(body, [endpoints.crm_secret], now=time.time())


def test_the_chat_channel_verifies_slacks_layout_at_its_secret_path(endpoints: Endpoints) -> None:
    message = json.dumps({"text": "CCAI chat 48213 escalated"}).encode()
    with WebhookHook("airhook_chat") as hook:
        sent = hook.send("POST", None, {}, message, message_id="m1")
        empty = hook.send("POST", None, {}, b'{"blocks": []}', message_id="m2")
    assert (sent.status_code, empty.status_code) == (200, 400)
    headers = get_scheme("hmac", header="X-Slack-Signature", prefix="v0=").sign(
        message, [endpoints.chat_secret], now=time.time()
    )
    no_timestamp = requests.post(
        endpoints.chat.base_url + "/services/T0DEMO/B0DEMO/demo0chat0webhook0path",
        data=message,
        headers=headers,
        timeout=5,
    )
    wrong_path = requests.post(endpoints.chat.base_url + "/services/x", data=message, timeout=5)
    assert (no_timestamp.status_code, wrong_path.status_code) == (401, 404)
    assert [call.body for call in endpoints.chat.verified()] == [message.decode()]
    assert endpoints.chat.received() == 4


def test_the_subscriber_verifies_either_of_its_secrets(endpoints: Endpoints) -> None:
    body = b'{"event": "insight.digest"}'
    standard = get_scheme("standard")
    answers = [
        requests.post(
            endpoints.subscriber_url,
            data=body,
            headers=standard.sign(body, [secret], now=time.time(), message_id="msg_1"),
            timeout=5,
        ).status_code
        for secret in (*endpoints.subscriber_secrets, endpoints.crm_secret)
    ]
    assert answers == [200, 200, 401]
    assert len(endpoints.subscriber.verified()) == 2
