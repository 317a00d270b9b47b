"""The one outbound stack: publish events to every matching subscription and deliver them.

One publication's path::

    events ─▶ validate (catalog, when a platform is named) ─▶ match active/disabled
           ─▶ render each body once (subscription's template, else the payload)
           ─▶ outbox rows, one per (subscription, event), keyed by a stable message id, the new
              ones added already claimed (committed before any request leaves)
           ─▶ sign ─▶ HTTP (one aiohttp session per call, ≤64 in flight, ≤32 per subscription)
           ─▶ attempt logged ─▶ delivered │ retry at the next scheduled time │ failed │ dead

The new deliveries go out from memory; retries, replays and deliveries an earlier call left due
are claimed from the outbox (:meth:`DeliveryEngine.deliver`, :meth:`DeliveryEngine.run_due`).
Per delivery the engine does only what differs per request (the ``webhook-id``, the signature,
the call, the outcome): a subscription's headers, signing scheme, timeout, destination verdict
and values to hide are worked out once per round, and outcomes are written in batches (up to
1,000 rows or every 0.5 s) while the requests go on.

Why the message id is ``message_id(subscription, event key)``: the same events published again
(a task retry, a re-run of the same DAG run) compute the same ids, the outbox already has them,
and nothing is sent twice. A receiver sees the id as ``webhook-id`` on every attempt.

Delivery is at least once: a sender that crashes after a request left but before its outcome was
recorded leaves the delivery claimed; once the claim lapses (:data:`CLAIM_SECONDS`) it goes out
again, with the same ``webhook-id``, so a receiver can tell.

The modules, one job each::

    events     Event, Summary, PublishResult: what callers hand in and get back
    planning   validate, match, render: the outbox rows a publication adds
    targets    a subscription as a round sends to it; the destination policy's verdict
    http       the aiohttp session with its SSRF-checking resolver; one signed request
    rounds     one round of claimed deliveries: lanes, attempts, settling, claim renewal
    recorder   the round's outcomes written in batches
    engine     DeliveryEngine, the façade: publish, deliver, run_due, replay, send_test, summary
"""

from __future__ import annotations

from airhook.delivery.engine import DEFAULT_CONCURRENCY, DeliveryEngine
from airhook.delivery.events import Event, PublishResult, Summary
from airhook.delivery.http import EXCERPT_CHARS
from airhook.delivery.rounds import CLAIM_SECONDS

__all__ = [
    "CLAIM_SECONDS",
    "DEFAULT_CONCURRENCY",
    "EXCERPT_CHARS",
    "DeliveryEngine",
    "Event",
    "PublishResult",
    "Summary",
]
