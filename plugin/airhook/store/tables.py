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
    # Digest of the signature headers, to tell a replayed request from a re-signed retry.
    sa.Column("signature_digest", sa.String(64), nullable=True),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("dispatch_attempts", sa.Integer, nullable=False, default=0),
    sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
    sa.UniqueConstraint("source", "dedupe_key", name="uq_airhook_inbox_source_dedupe"),
    sa.Index("ix_airhook_inbox_dispatched_at", "dispatched_at"),
    sa.Index("ix_airhook_inbox_source_event", "source", "event", "seq"),
)

#: Named leases, so that one process among many does a singleton job (the dispatcher).
leases = sa.Table(
    "airhook_lease",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(200), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)
