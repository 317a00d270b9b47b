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


def test_identity_tokens_a_proxy_adds_and_signatures_by_other_names_are_dropped() -> None:
    # A receiver behind Cloudflare Access, Google IAP or an AWS ALB gets the caller's signed
    # identity token from the proxy: a credential for every app behind the same proxy.
    sent = [
        ("X-Request-Id", "req_1"),
        ("Cf-Access-Jwt-Assertion", "eyJhbGciOiJSUzI1NiJ9.cf.sig"),
        ("X-Goog-Iap-Jwt-Assertion", "eyJhbGciOiJFUzI1NiJ9.iap.sig"),
        ("X-Amzn-Oidc-Data", "eyJ0eXAiOiJKV1QifQ.alb.sig"),
        ("DPoP", "eyJ0eXAiOiJkcG9wK2p3dCJ9.proof.sig"),
        ("X-Shopify-Hmac-Sha256", "bXkgc2lnbmF0dXJl"),
        ("X-Webhook-Sig", "sha256=abc"),
        ("X-Client-Credentials", "id:secret"),
        ("X-Passcode", "1234"),
    ]
    assert kept_headers(sent) == {"x-request-id": "req_1"}
