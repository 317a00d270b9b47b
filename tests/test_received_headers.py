"""What of a delivery's headers is kept with its recorded event (airhook.core.received_headers)."""

from __future__ import annotations

from airhook.core.received_headers import MAX_HEADERS, MAX_VALUE_CHARS, kept_headers


def test_credentials_signatures_and_the_sources_signing_header_are_dropped() -> None:
    sent = [
        ("Content-Type", "application/json"),
        ("User-Agent", "RKT-Webhooks/2.1"),
        ("X-RKT-Delivery", "dlv_1"),
        ("webhook-id", "msg_1"),
        ("webhook-timestamp", "1700000000"),
        ("Authorization", "Bearer tok_secret"),
        ("Cookie", "s=1"),
        ("X-RKT-Signature", "abc"),
        ("webhook-signature", "v1,abc"),
        ("X-Webhook-Secret", "shh"),
        ("X-Api-Key", "k"),
        ("X-Auth-User", "u"),
        ("X-Session", "s"),
        ("X-Sig", "renamed hmac header"),
    ]
    assert kept_headers(sent, signing_headers=("x-SIG",)) == {
        "content-type": "application/json",
        "user-agent": "RKT-Webhooks/2.1",
        "x-rkt-delivery": "dlv_1",
        "webhook-id": "msg_1",
        "webhook-timestamp": "1700000000",
    }


def test_values_are_cut_and_the_count_bounded() -> None:
    many = [(f"x-h{n}", "v" * 1000) for n in range(MAX_HEADERS + 10)]
    kept = kept_headers(many)
    assert len(kept) == MAX_HEADERS
    assert {len(v) for v in kept.values()} == {MAX_VALUE_CHARS}
