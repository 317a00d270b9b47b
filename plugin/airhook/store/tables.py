"""The airhook store's tables, as SQLAlchemy Core (the hot paths insert in batches, no ORM).

Alembic migrations in ``airhook/store/migrations`` create exactly these; a test compares them.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

#: Inbound sources: one per platform account (or per webhook URL) that delivers to airhook.
sources = sa.Table(
    "airhook_source",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("profile", sa.String(32), nullable=False),
    sa.Column("scheme", sa.String(16), nullable=True),  # None: authenticate by auth only
    sa.Column("scheme_options", sa.JSON, nullable=False),
    # Fernet token (Airflow's key) of a JSON object: signing secrets, bearer tokens, basic creds.
    sa.Column("credentials", sa.Text, nullable=False),
    sa.Column("allow_ips", sa.JSON, nullable=False),
    sa.Column("chatbot_ids", sa.JSON, nullable=False),
    sa.Column("events", sa.JSON, nullable=False),
    sa.Column("max_body_bytes", sa.Integer, nullable=True),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

#: Every accepted delivery, recorded before it is acknowledged.
inbox = sa.Table(
    "airhook_inbox",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(40), nullable=False, unique=True),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("profile", sa.String(32), nullable=False),
    sa.Column("event", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(64), nullable=True),
    # The platform's delivery id, else "sha256:<digest of the body>": duplicates collide here.
    sa.Column("dedupe_key", sa.String(200), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("dispatch_attempts", sa.Integer, nullable=False, default=0),
    sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
    # Times the event was sent to its assets again on request (0: dispatched once, as received).
    sa.Column("redispatches", sa.Integer, nullable=False, server_default="0"),
    # JSON object: the headers it came with, without credentials or signatures (received_headers).
    sa.Column("headers", sa.Text, nullable=True),
    sa.UniqueConstraint("source", "dedupe_key", name="uq_airhook_inbox_source_dedupe"),
    sa.Index("ix_airhook_inbox_dispatched_at", "dispatched_at"),
    sa.Index("ix_airhook_inbox_source_event", "source", "event", "seq"),
    sa.Index("ix_airhook_inbox_received_at", "received_at"),
)

#: Named leases, so that one process among many does a singleton job (the dispatcher).
leases = sa.Table(
    "airhook_lease",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

#: Which DAGs Airflow queued for the asset events of a dispatch round, until their runs consumed
#: them: what the dispatcher's queue keeper checks (see ``airhook.requeue``). One row per
#: (asset, DAG), widened by each round; ``since``/``until`` are asset event timestamps.
queue_watches = sa.Table(
    "airhook_queue_watch",
    metadata,
    sa.Column("asset_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("dag_id", sa.String(250), primary_key=True),
    sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    sa.Column("until", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_airhook_queue_watch_until", "until"),
)

#: Outbound subscriptions: endpoints that published events are delivered to.
subscriptions = sa.Table(
    "airhook_subscription",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    # scheme://host[:port] only: the full URL can itself be a credential (Slack, Zapier), so it
    # lives in the encrypted credentials; this is what listings and logs show.
    sa.Column("origin", sa.String(300), nullable=False),
    sa.Column("events", sa.JSON, nullable=False),
    sa.Column("chatbot_ids", sa.JSON, nullable=False),
    sa.Column("scheme", sa.String(16), nullable=True),  # None: unsigned
    sa.Column("scheme_options", sa.JSON, nullable=False),
    # Fernet token (Airflow's key) of a JSON object: URL, signing secrets, extra headers.
    sa.Column("credentials", sa.Text, nullable=False),
    sa.Column("header_names", sa.JSON, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("timeout_seconds", sa.Float, nullable=True),
    sa.Column("body_template", sa.Text, nullable=True),
    sa.Column("retry_schedule", sa.JSON, nullable=False),
    sa.Column("consecutive_failures", sa.Integer, nullable=False, default=0),
    sa.Column("disabled_reason", sa.String(500), nullable=True),
    sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

#: One row per (subscription, event): the outbox. ``message_id`` is the stable webhook-id.
deliveries = sa.Table(
    "airhook_delivery",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String(40), nullable=False, unique=True),
    sa.Column("subscription", sa.String(100), nullable=False),
    sa.Column("event", sa.String(200), nullable=False),
    sa.Column("platform", sa.String(32), nullable=True),
    # What published it (a hash of DAG, run, task and map index): the operator waits on these.
    sa.Column("publication", sa.String(40), nullable=True),
    sa.Column("body", sa.Text, nullable=False),  # the exact bytes sent, rendered once
    # pending | sending | delivered | failed | dead | paused
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),  # in the current round
    # pending: when the next attempt is due; sending: when the sender's claim lapses.
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    # sending: which claim (one per claiming call); only its holder may settle or release it.
    sa.Column("claim_token", sa.String(32), nullable=True),
    sa.Column("last_status_code", sa.Integer, nullable=True),
    sa.Column("last_error", sa.String(500), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_airhook_delivery_due", "status", "next_attempt_at"),
    sa.Index("ix_airhook_delivery_subscription_created", "subscription", "created_at"),
    sa.Index("ix_airhook_delivery_subscription_status", "subscription", "status"),
    sa.Index("ix_airhook_delivery_publication", "publication"),
)

#: Every attempt of every delivery: the delivery log. Never a request secret or signature.
attempts = sa.Table(
    "airhook_delivery_attempt",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String(40), nullable=False),
    sa.Column("subscription", sa.String(100), nullable=False),
    sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),  # None: no response
    # delivered | retry | failed | gone | refused
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=True),
    sa.Column("error", sa.String(500), nullable=True),
    sa.Column("response_excerpt", sa.String(512), nullable=True),
    sa.Index("ix_airhook_delivery_attempt_message", "message_id", "attempted_at"),
    sa.Index("ix_airhook_delivery_attempt_subscription", "subscription", "attempted_at"),
)
