"""The outbox: one delivery per (subscription, event), every attempt, and the failure counts.

A delivery's life::

    pending ──claim──▶ sending ──▶ delivered
       ▲                  │  ├───▶ failed     (4xx, 410, destination refused: no retry)
       │   retry later    │  └───▶ dead       (the last attempt failed: dead letter)
       └──────────────────┘
    paused: its subscription is disabled; enabling it (or a replay) makes it pending again

``message_id`` (the ``webhook-id``) is unique, so adding the same delivery twice (a task retry
publishing the same events) adds it once. ``sending`` is a claim: ``next_attempt_at`` then holds
the time the claim lapses, after which another sender may take the delivery over (the first one
crashed). Claims are taken with one ``UPDATE … RETURNING``, so two senders never both get a row.
A publishing sender adds its new deliveries already claimed (:meth:`OutboxRepository.add_claimed`,
``sending`` in the insert's own transaction) and sends them from memory: the row is durable
before the request leaves, and a crash leaves a claim that lapses like any other.

:class:`OutboxRepository` is the public face; each job is a module of its own:

- :mod:`.records`: what the outbox stores and hands back (no SQL);
- :mod:`.adding`: the insert of every publish, claimed in its own transaction;
- :mod:`.claims`: claiming, renewing and releasing deliveries;
- :mod:`.settling`: attempts logged, deliveries settled, failures counted, in one transaction;
- :mod:`.queries`: reading deliveries, attempts and counts;
- :mod:`.replay`: a fresh round of attempts;
- :mod:`.pausing`: a subscription's state carried over to its deliveries.
"""

from __future__ import annotations

from airhook.store.outbox.pausing import pause_pending, pause_stranded, resume_paused
from airhook.store.outbox.records import (
    FINAL_FAILURES,
    STATUSES,
    Added,
    AttemptRecord,
    Claimed,
    Delivery,
    DeliveryNotFoundError,
    NewDelivery,
    Recorded,
    Settled,
)
from airhook.store.outbox.repository import OutboxRepository

__all__ = [
    "FINAL_FAILURES",
    "STATUSES",
    "Added",
    "AttemptRecord",
    "Claimed",
    "Delivery",
    "DeliveryNotFoundError",
    "NewDelivery",
    "OutboxRepository",
    "Recorded",
    "Settled",
    "pause_pending",
    "pause_stranded",
    "resume_paused",
]
