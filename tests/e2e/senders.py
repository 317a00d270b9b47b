"""Platform senders written independently of airhook's signing code (hand-made HMACs).

What a platform would send: each function returns (headers, body) for a payload, signed the
platform's way, so the tests check airhook against the platforms' rules, not against itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

RKT_SECRET = "whsec_rkt-e2e-secret"
CCAI_PRIMARY = "ccai-e2e-primary"
CCAI_SECONDARY = "ccai-e2e-secondary"
CALEIDA_TOKEN = "caleida-e2e-token"
EEV_SECRET = "eev-e2e-secret"
EEV_OPTIONS = [
    "header=X-Eev-Signature",
    "timestamp_header=X-Eev-Timestamp",
    "content={timestamp}.{body}",
]


def body_of(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


def rkt(payload: Any, secret: str = RKT_SECRET) -> tuple[dict[str, str], bytes]:
    body = body_of(payload)
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-RKT-Signature": signature}, body


def ccai(
    payload: Any,
    *,
    now: float | None = None,
    secrets: tuple[str, ...] = (CCAI_PRIMARY, CCAI_SECONDARY),
) -> tuple[dict[str, str], bytes]:
    body = body_of(payload)
    timestamp = str(int(time.time() if now is None else now))
    parts = []
    for label, secret in zip(("primary", "secondary"), secrets, strict=False):
        digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
        parts.append(f"{label}={base64.b64encode(digest).decode()}")
    return {
        "Content-Type": "application/json",
        "X-Signature-Timestamp": timestamp,
        "X-Signature": " ".join(parts),
    }, body


def caleida(payload: Any, token: str = CALEIDA_TOKEN) -> tuple[dict[str, str], bytes]:
    return {"Content-Type": "application/json", "X-Webhook-Secret": token}, body_of(payload)


def eev(payload: Any, *, now: float | None = None) -> tuple[dict[str, str], bytes]:
    body = body_of(payload)
    timestamp = str(int(time.time() if now is None else now))
    digest = hmac.new(EEV_SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return {
        "Content-Type": "application/json",
        "X-Eev-Timestamp": timestamp,
        "X-Eev-Signature": digest.hexdigest(),
    }, body
