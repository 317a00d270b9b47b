"""airhook.core.signing: every scheme, cross-checked independently, malformed input, rotation."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import time
from datetime import datetime, timezone

import pytest
import standardwebhooks
import svix.webhooks
from hypothesis import given, settings
from hypothesis import strategies as st

from airhook.core.errors import SignatureError
from airhook.core.secrets import Secret, SecretPair, generate_secret
from airhook.core.signing import (
    DEFAULT_TOLERANCE_SECONDS,
    CcaiScheme,
    HmacScheme,
    RktScheme,
    StandardScheme,
    TokenScheme,
    get_scheme,
)

NOW = 1_774_539_000  # 2026-03-26T15:30:00Z
BODY = b'{"event":"lead.captured","data":{"email":"john@example.com"}}'


# --- standard: cross-checked with standardwebhooks and svix, both ways ------------------------


@pytest.fixture
def whsec() -> str:
    return generate_secret().reveal()


def test_standardwebhooks_signature_verifies(whsec: str) -> None:
    sender = standardwebhooks.Webhook(whsec)
    now = time.time()
    signature = sender.sign("msg_1", datetime.fromtimestamp(now, tz=timezone.utc), BODY.decode())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(now)),
        "webhook-signature": signature,
    }
    verified = StandardScheme().verify(headers, BODY, [whsec], now=now)
    assert verified.message_id == "msg_1"
    assert verified.timestamp == int(now)
    assert verified.secret_index == 0


def test_svix_signature_verifies(whsec: str) -> None:
    now = time.time()
    signature = svix.webhooks.Webhook(whsec).sign(
        "msg_2", datetime.fromtimestamp(now, tz=timezone.utc), BODY.decode()
    )
    headers = {"svix-id": "x", "webhook-id": "msg_2", "webhook-timestamp": str(int(now))}
    headers["webhook-signature"] = signature
    assert StandardScheme().verify(headers, BODY, [whsec], now=now).message_id == "msg_2"


def test_airhook_signature_verifies_with_standardwebhooks(whsec: str) -> None:
    headers = StandardScheme().sign(BODY, [whsec], now=time.time(), message_id="msg_3")
    assert standardwebhooks.Webhook(whsec).verify(BODY, headers) == {
        "event": "lead.captured",
        "data": {"email": "john@example.com"},
    }


def test_airhook_signature_verifies_with_svix(whsec: str) -> None:
    headers = StandardScheme().sign(BODY, [whsec], now=time.time(), message_id="msg_4")
    svix_headers = {
        "svix-id": headers["webhook-id"],
        "svix-timestamp": headers["webhook-timestamp"],
        "svix-signature": headers["webhook-signature"],
    }
    svix.webhooks.Webhook(whsec).verify(BODY, svix_headers)  # raises unless it verifies
    with pytest.raises(svix.webhooks.WebhookVerificationError):
        svix.webhooks.Webhook(generate_secret().reveal()).verify(BODY, svix_headers)


def test_airhook_signature_with_two_secrets_verifies_with_either_in_standardwebhooks() -> None:
    pair = SecretPair.generate().with_new_secondary()
    headers = StandardScheme().sign(BODY, pair.secrets, now=time.time(), message_id="msg_5")
    assert len(headers["webhook-signature"].split()) == 2
    for secret in pair.secrets:
        standardwebhooks.Webhook(secret.reveal()).verify(BODY, headers)


def test_standard_known_answer() -> None:
    # Computed independently of airhook: HMAC-SHA256 over "id.timestamp.body" keyed by the
    # base64-decoded part after whsec_.
    key = bytes(range(32))
    secret = "whsec_" + base64.b64encode(key).decode()
    expected = base64.b64encode(
        hmac.new(key, b"msg_kat." + str(NOW).encode() + b"." + BODY, hashlib.sha256).digest()
    ).decode()
    headers = StandardScheme().sign(BODY, [secret], now=NOW, message_id="msg_kat")
    assert headers == {
        "webhook-id": "msg_kat",
        "webhook-timestamp": str(NOW),
        "webhook-signature": "v1," + expected,
    }


def test_standard_secondary_secret_verifies_and_is_reported() -> None:
    pair = SecretPair.generate().with_new_secondary()
    assert pair.secondary is not None
    headers = StandardScheme().sign(BODY, [pair.secondary], now=NOW)
    verified = StandardScheme().verify(headers, BODY, pair.secrets, now=NOW)
    assert verified.secret_index == 1


def test_standard_wrong_secret_fails(whsec: str) -> None:
    headers = StandardScheme().sign(BODY, [generate_secret()], now=NOW)
    with pytest.raises(SignatureError) as info:
        StandardScheme().verify(headers, BODY, [whsec], now=NOW)
    assert info.value.reason == "no_matching_signature"


def test_standard_tampered_body_fails(whsec: str) -> None:
    headers = StandardScheme().sign(BODY, [whsec], now=NOW)
    with pytest.raises(SignatureError):
        StandardScheme().verify(headers, BODY + b" ", [whsec], now=NOW)


def test_standard_old_timestamp_fails(whsec: str) -> None:
    headers = StandardScheme().sign(BODY, [whsec], now=NOW - DEFAULT_TOLERANCE_SECONDS - 1)
    with pytest.raises(SignatureError) as info:
        StandardScheme().verify(headers, BODY, [whsec], now=NOW)
    assert info.value.reason == "timestamp_too_old"


def test_standard_future_timestamp_fails(whsec: str) -> None:
    headers = StandardScheme().sign(BODY, [whsec], now=NOW + DEFAULT_TOLERANCE_SECONDS + 1)
    with pytest.raises(SignatureError) as info:
        StandardScheme().verify(headers, BODY, [whsec], now=NOW)
    assert info.value.reason == "timestamp_in_future"


def test_standard_timestamp_at_the_tolerance_edge_passes(whsec: str) -> None:
    for skew in (-DEFAULT_TOLERANCE_SECONDS, DEFAULT_TOLERANCE_SECONDS):
        headers = StandardScheme().sign(BODY, [whsec], now=NOW + skew)
        StandardScheme().verify(headers, BODY, [whsec], now=NOW)


def test_standard_tolerance_is_configurable(whsec: str) -> None:
    headers = StandardScheme().sign(BODY, [whsec], now=NOW - 20)
    StandardScheme(tolerance=30).verify(headers, BODY, [whsec], now=NOW)
    with pytest.raises(SignatureError):
        StandardScheme(tolerance=10).verify(headers, BODY, [whsec], now=NOW)


def test_standard_header_names_are_case_insensitive(whsec: str) -> None:
    headers = StandardScheme().sign(BODY, [whsec], now=NOW)
    shouted = {name.upper(): value for name, value in headers.items()}
    StandardScheme().verify(shouted, BODY, [whsec], now=NOW)


def test_standard_ignores_other_signature_versions(whsec: str) -> None:
    headers = StandardScheme().sign(BODY, [whsec], now=NOW)
    headers["webhook-signature"] = "v1a,AAAA " + headers["webhook-signature"]
    StandardScheme().verify(headers, BODY, [whsec], now=NOW)


# --- rkt ----------------------------------------------------------------------------------------


def test_rkt_known_answer() -> None:
    # Hex HMAC-SHA256 of the raw body keyed by the secret string as shown (whsec_ included),
    # as RKT's Node sample computes it.
    secret = "whsec_rkt-test-secret"
    body = b'{"event":"lead.captured"}'
    expected = "efd3fd4244ce13d75449bec8b3a603874a3ce91f3d3c29b15b13d8f4919c3914"
    assert hmac.new(secret.encode(), body, hashlib.sha256).hexdigest() == expected
    assert RktScheme().sign(body, [secret], now=NOW) == {"X-RKT-Signature": expected}
    assert (
        RktScheme().verify({"X-RKT-Signature": expected}, body, [secret], now=NOW).scheme == "rkt"
    )


def test_rkt_uppercase_hex_verifies() -> None:
    headers = RktScheme().sign(BODY, ["s3cret"], now=NOW)
    upper = {"x-rkt-signature": headers["X-RKT-Signature"].upper()}
    RktScheme().verify(upper, BODY, ["s3cret"], now=NOW)


def test_rkt_secondary_secret_verifies() -> None:
    headers = RktScheme().sign(BODY, ["new"], now=NOW)
    assert RktScheme().verify(headers, BODY, ["old", "new"], now=NOW).secret_index == 1


def test_rkt_wrong_secret_fails() -> None:
    headers = RktScheme().sign(BODY, ["right"], now=NOW)
    with pytest.raises(SignatureError) as info:
        RktScheme().verify(headers, BODY, ["wrong"], now=NOW)
    assert info.value.reason == "no_matching_signature"


# --- ccai ---------------------------------------------------------------------------------------


CCAI_BODY = b'{"event_type":"chat.created"}'
CCAI_PRIMARY = "biAezvzNghZlor4qsv2g3nyjQixEh724/7z+lYHf4hY="
CCAI_SECONDARY = "+PmbiFR4MEbC6i2o8HAqM0TDBGsPyTqqX6np4XDXd10="


def test_ccai_known_answer() -> None:
    # Base64 HMAC-SHA256 over the timestamp header's value followed by the raw body.
    for secret, expected in (("ccai-primary", CCAI_PRIMARY), ("ccai-secondary", CCAI_SECONDARY)):
        digest = hmac.new(secret.encode(), str(NOW).encode() + CCAI_BODY, hashlib.sha256).digest()
        assert base64.b64encode(digest).decode() == expected
    headers = CcaiScheme().sign(CCAI_BODY, ["ccai-primary", "ccai-secondary"], now=NOW)
    assert headers == {
        "X-Signature-Timestamp": str(NOW),
        "X-Signature": f"primary={CCAI_PRIMARY} secondary={CCAI_SECONDARY}",
    }


def test_ccai_only_primary_when_no_secondary() -> None:
    headers = CcaiScheme().sign(CCAI_BODY, ["ccai-primary"], now=NOW)
    assert headers["X-Signature"] == f"primary={CCAI_PRIMARY}"
    CcaiScheme().verify(headers, CCAI_BODY, ["ccai-primary"], now=NOW)


def test_ccai_receiver_with_either_secret_verifies() -> None:
    headers = {
        "X-Signature-Timestamp": str(NOW),
        "X-Signature": f"primary={CCAI_PRIMARY} secondary={CCAI_SECONDARY}",
    }
    assert CcaiScheme().verify(headers, CCAI_BODY, ["ccai-secondary"], now=NOW).secret_index == 0
    assert CcaiScheme().verify(headers, CCAI_BODY, ["x", "ccai-primary"], now=NOW).secret_index == 1


def test_ccai_stale_timestamp_fails() -> None:
    headers = CcaiScheme().sign(CCAI_BODY, ["ccai-primary"], now=NOW - 301)
    with pytest.raises(SignatureError) as info:
        CcaiScheme().verify(headers, CCAI_BODY, ["ccai-primary"], now=NOW)
    assert info.value.reason == "timestamp_too_old"


def test_ccai_timestamp_is_part_of_the_signature() -> None:
    headers = CcaiScheme().sign(CCAI_BODY, ["ccai-primary"], now=NOW)
    headers["X-Signature-Timestamp"] = str(NOW + 1)
    with pytest.raises(SignatureError) as info:
        CcaiScheme().verify(headers, CCAI_BODY, ["ccai-primary"], now=NOW)
    assert info.value.reason == "no_matching_signature"


def test_ccai_refuses_more_than_two_secrets_when_signing() -> None:
    with pytest.raises(ValueError, match="at most one secondary"):
        CcaiScheme().sign(CCAI_BODY, ["a", "b", "c"], now=NOW)


# --- token --------------------------------------------------------------------------------------


def test_token_right_secret_verifies() -> None:
    headers = TokenScheme().sign(BODY, [Secret("caleida-secret")], now=NOW)
    assert headers == {"x-webhook-secret": "caleida-secret"}
    TokenScheme().verify(headers, BODY, ["other", "caleida-secret"], now=NOW)


def test_token_header_name_is_configurable() -> None:
    scheme = TokenScheme(header="X-Caleida-Token")
    scheme.verify({"x-caleida-token": "t0k"}, BODY, ["t0k"], now=NOW)
    with pytest.raises(SignatureError) as info:
        scheme.verify({"x-webhook-secret": "t0k"}, BODY, ["t0k"], now=NOW)
    assert info.value.reason == "missing_header"


def test_token_prefix_of_secret_fails() -> None:
    with pytest.raises(SignatureError):
        TokenScheme().verify({"x-webhook-secret": "caleida"}, BODY, ["caleida-secret"], now=NOW)


# --- hmac (generic) -----------------------------------------------------------------------------


def test_hmac_github_known_answer() -> None:
    # GitHub's published example for X-Hub-Signature-256.
    scheme = HmacScheme(header="X-Hub-Signature-256", prefix="sha256=")
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    secret = "It's a Secret to Everybody"
    assert scheme.sign(b"Hello, World!", [secret], now=NOW) == {"X-Hub-Signature-256": expected}
    scheme.verify({"x-hub-signature-256": expected}, b"Hello, World!", [secret], now=NOW)


def test_hmac_slack_style_layout_with_timestamp() -> None:
    scheme = HmacScheme(
        header="X-Slack-Signature",
        prefix="v0=",
        timestamp_header="X-Slack-Request-Timestamp",
        content="v0:{timestamp}:{body}",
    )
    headers = scheme.sign(BODY, ["slack"], now=NOW)
    expected = hmac.new(b"slack", f"v0:{NOW}:".encode() + BODY, hashlib.sha256).hexdigest()
    assert headers == {"X-Slack-Request-Timestamp": str(NOW), "X-Slack-Signature": "v0=" + expected}
    assert scheme.verify(headers, BODY, ["slack"], now=NOW).timestamp == NOW
    with pytest.raises(SignatureError) as info:
        scheme.verify(headers, BODY, ["slack"], now=NOW + 301)
    assert info.value.reason == "timestamp_too_old"


def test_hmac_base64_encoding() -> None:
    scheme = HmacScheme(header="X-Eev-Signature", encoding="base64")
    headers = scheme.sign(BODY, ["eev"], now=NOW)
    expected = base64.b64encode(hmac.new(b"eev", BODY, hashlib.sha256).digest()).decode()
    assert headers == {"X-Eev-Signature": expected}
    scheme.verify(headers, BODY, ["eev"], now=NOW)


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"encoding": "md5"}, "encoding"),
        ({"content": "{timestamp}"}, "exactly once"),
        ({"content": "{body}{body}"}, "exactly once"),
        ({"content": "{timestamp}.{body}"}, "timestamp_header"),
        ({"timestamp_header": "X-Ts"}, "timestamp_header"),
    ],
)
def test_hmac_rejects_inconsistent_configuration(options: dict[str, str], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        HmacScheme(**options)  # type: ignore[arg-type]


# --- malformed input: always SignatureError, never another exception ----------------------------

SCHEMES = {
    "standard": StandardScheme(),
    "rkt": RktScheme(),
    "ccai": CcaiScheme(),
    "token": TokenScheme(),
    "hmac": HmacScheme(timestamp_header="x-timestamp", content="{timestamp}.{body}"),
}
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def _valid_headers(name: str) -> dict[str, str]:
    return {k.lower(): v for k, v in SCHEMES[name].sign(BODY, [SECRET], now=NOW).items()}


MALFORMED: list[tuple[str, str, str | None]] = [
    # (scheme, header, value); None removes the header
    ("standard", "webhook-signature", "v1"),
    ("standard", "webhook-signature", "v1,"),
    ("standard", "webhook-signature", "v1,a,b"),
    ("standard", "webhook-signature", "v1,!!!notbase64"),
    ("standard", "webhook-signature", "v1,AAAA"),
    ("standard", "webhook-signature", ","),
    ("standard", "webhook-signature", "   "),
    ("standard", "webhook-signature", "v1,é"),
    ("standard", "webhook-signature", "v1," + "A" * 10_000),
    ("standard", "webhook-signature", None),
    ("standard", "webhook-id", None),
    ("standard", "webhook-timestamp", None),
    ("standard", "webhook-timestamp", "abc"),
    ("standard", "webhook-timestamp", "-1"),
    ("standard", "webhook-timestamp", "1e9"),
    ("standard", "webhook-timestamp", "1774539000.5"),
    ("standard", "webhook-timestamp", "9" * 40),
    ("standard", "webhook-timestamp", "١٧٧٤٥٣٩٠٠٠"),
    ("rkt", "x-rkt-signature", None),
    ("rkt", "x-rkt-signature", ""),
    ("rkt", "x-rkt-signature", "zz" * 32),
    ("rkt", "x-rkt-signature", "ab" * 31),
    ("rkt", "x-rkt-signature", "sha256=" + "ab" * 32),
    ("rkt", "x-rkt-signature", "ab" * 32 + "é"),
    ("ccai", "x-signature", None),
    ("ccai", "x-signature", "primary"),
    ("ccai", "x-signature", "primary="),
    ("ccai", "x-signature", "primary=%%%"),
    ("ccai", "x-signature", "tertiary=" + CCAI_PRIMARY),
    ("ccai", "x-signature-timestamp", None),
    ("ccai", "x-signature-timestamp", "2026-03-26T15:30:00Z"),
    ("token", "x-webhook-secret", None),
    ("token", "x-webhook-secret", "ü"),
    ("token", "x-webhook-secret", "x" * 5000),
    ("hmac", "x-signature", None),
    ("hmac", "x-signature", "nothex"),
    ("hmac", "x-timestamp", None),
    ("hmac", "x-timestamp", "soon"),
]


@pytest.mark.parametrize(("scheme", "header", "value"), MALFORMED)
def test_malformed_header_raises_signature_error(
    scheme: str, header: str, value: str | None
) -> None:
    headers = _valid_headers(scheme)
    if value is None:
        headers.pop(header)
    else:
        headers[header] = value
    with pytest.raises(SignatureError) as info:
        SCHEMES[scheme].verify(headers, BODY, [SECRET], now=NOW)
    assert info.value.reason in {
        "missing_header",
        "malformed_header",
        "no_matching_signature",
    }
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_valid_headers_verify(scheme: str) -> None:
    SCHEMES[scheme].verify(_valid_headers(scheme), BODY, [SECRET], now=NOW)


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_no_secret_configured_raises_signature_error(scheme: str) -> None:
    with pytest.raises(SignatureError) as info:
        SCHEMES[scheme].verify(_valid_headers(scheme), BODY, [], now=NOW)
    assert info.value.reason == "no_secret"


@pytest.mark.parametrize("scheme", sorted(SCHEMES))
def test_non_text_header_value_raises_signature_error(scheme: str) -> None:
    headers: dict[str, object] = dict(_valid_headers(scheme))
    for name in headers:
        headers[name] = b"\x00\xff"
    with pytest.raises(SignatureError):
        SCHEMES[scheme].verify(headers, BODY, [SECRET], now=NOW)  # type: ignore[arg-type]


# --- properties ---------------------------------------------------------------------------------

secret_text = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40
)


@settings(max_examples=60, deadline=None)
@given(
    body=st.binary(max_size=2048),
    scheme=st.sampled_from(sorted(SCHEMES)),
    right=secret_text,
    wrong=secret_text,
    skew=st.integers(min_value=-2000, max_value=2000),
)
def test_any_body_verifies_only_with_the_right_secret_and_time(
    body: bytes, scheme: str, right: str, wrong: str, skew: int
) -> None:
    verifier = SCHEMES[scheme]
    right_key = "whsec_" + base64.b64encode(right.encode()).decode()
    wrong_key = "whsec_" + base64.b64encode(wrong.encode()).decode()
    headers = verifier.sign(body, [right_key], now=NOW + skew)
    timed = scheme in {"standard", "ccai", "hmac"}
    in_time = abs(skew) <= DEFAULT_TOLERANCE_SECONDS
    if in_time or not timed:
        assert verifier.verify(headers, body, [right_key], now=NOW).secret_index == 0
    else:
        with pytest.raises(SignatureError):
            verifier.verify(headers, body, [right_key], now=NOW)
    if wrong != right:
        with pytest.raises(SignatureError):
            verifier.verify(headers, body, [wrong_key], now=NOW)
    if scheme != "token":  # a token does not cover the body
        with pytest.raises(SignatureError):
            verifier.verify(headers, body + b"x", [right_key], now=NOW)


@settings(max_examples=200, deadline=None)
@given(
    scheme=st.sampled_from(sorted(SCHEMES)),
    name=st.sampled_from(
        [
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "x-rkt-signature",
            "x-signature",
            "x-signature-timestamp",
            "x-webhook-secret",
            "x-timestamp",
        ]
    ),
    value=st.text(max_size=300),
)
def test_arbitrary_header_text_never_escapes_as_another_exception(
    scheme: str, name: str, value: str
) -> None:
    headers = _valid_headers(scheme)
    headers[name] = value
    with contextlib.suppress(SignatureError):
        SCHEMES[scheme].verify(headers, BODY, [SECRET], now=NOW)


# --- scheme registry ----------------------------------------------------------------------------


def test_get_scheme_builds_configured_schemes() -> None:
    scheme = get_scheme("hmac", header="X-Sig", prefix="sha256=")
    assert isinstance(scheme, HmacScheme)
    assert scheme.prefix == "sha256="
    assert isinstance(get_scheme("standard"), StandardScheme)


def test_get_scheme_unknown_name_fails() -> None:
    with pytest.raises(ValueError, match="unknown signing scheme"):
        get_scheme("md5")
