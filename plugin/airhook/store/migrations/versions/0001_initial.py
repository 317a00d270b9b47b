"""Sources, inbox and leases.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "airhook_source",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("profile", sa.String(32), nullable=False),
        sa.Column("scheme", sa.String(16), nullable=True),
        sa.Column("scheme_options", sa.JSON, nullable=False),
        sa.Column("credentials", sa.Text, nullable=False),
        sa.Column("allow_ips", sa.JSON, nullable=False),
        sa.Column("chatbot_ids", sa.JSON, nullable=False),
        sa.Column("events", sa.JSON, nullable=False),
        sa.Column("max_body_bytes", sa.Integer, nullable=True),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "airhook_inbox",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("source", sa.String(100), nullable=False),
        sa.Column("profile", sa.String(32), nullable=False),
        sa.Column("event", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(64), nullable=True),
        sa.Column("dedupe_key", sa.String(200), nullable=False),
        sa.Column("signature_digest", sa.String(64), nullable=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dispatch_attempts", sa.Integer, nullable=False),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("source", "dedupe_key", name="uq_airhook_inbox_source_dedupe"),
    )
    op.create_index("ix_airhook_inbox_dispatched_at", "airhook_inbox", ["dispatched_at"])
    op.create_index("ix_airhook_inbox_source_event", "airhook_inbox", ["source", "event", "seq"])
    op.create_table(
        "airhook_lease",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("airhook_lease")
    op.drop_index("ix_airhook_inbox_source_event", table_name="airhook_inbox")
    op.drop_index("ix_airhook_inbox_dispatched_at", table_name="airhook_inbox")
    op.drop_table("airhook_inbox")
    op.drop_table("airhook_source")
