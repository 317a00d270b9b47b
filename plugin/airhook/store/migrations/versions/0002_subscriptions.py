"""Subscriptions, deliveries (the outbox) and delivery attempts.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "airhook_subscription",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("origin", sa.String(300), nullable=False),
        sa.Column("events", sa.JSON, nullable=False),
        sa.Column("chatbot_ids", sa.JSON, nullable=False),
        sa.Column("scheme", sa.String(16), nullable=True),
        sa.Column("scheme_options", sa.JSON, nullable=False),
        sa.Column("credentials", sa.Text, nullable=False),
        sa.Column("header_names", sa.JSON, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("timeout_seconds", sa.Float, nullable=True),
        sa.Column("body_template", sa.Text, nullable=True),
        sa.Column("retry_schedule", sa.JSON, nullable=False),
        sa.Column("consecutive_failures", sa.Integer, nullable=False),
        sa.Column("disabled_reason", sa.String(500), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "airhook_delivery",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(40), nullable=False, unique=True),
        sa.Column("subscription", sa.String(100), nullable=False),
        sa.Column("event", sa.String(200), nullable=False),
        sa.Column("platform", sa.String(32), nullable=True),
        sa.Column("publication", sa.String(40), nullable=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer, nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    # Due deliveries: WHERE status IN ('pending', 'sending') AND next_attempt_at <= now.
    op.create_index("ix_airhook_delivery_due", "airhook_delivery", ["status", "next_attempt_at"])
    # A subscription's deliveries in a time window (replay, listing).
    op.create_index(
        "ix_airhook_delivery_subscription_created",
        "airhook_delivery",
        ["subscription", "created_at"],
    )
    # A subscription's dead letters, its pending deliveries to pause or resume.
    op.create_index(
        "ix_airhook_delivery_subscription_status", "airhook_delivery", ["subscription", "status"]
    )
    op.create_index("ix_airhook_delivery_publication", "airhook_delivery", ["publication"])
    op.create_table(
        "airhook_delivery_attempt",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(40), nullable=False),
        sa.Column("subscription", sa.String(100), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("response_excerpt", sa.String(512), nullable=True),
    )
    op.create_index(
        "ix_airhook_delivery_attempt_message",
        "airhook_delivery_attempt",
        ["message_id", "attempted_at"],
    )
    op.create_index(
        "ix_airhook_delivery_attempt_subscription",
        "airhook_delivery_attempt",
        ["subscription", "attempted_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_airhook_delivery_attempt_subscription", table_name="airhook_delivery_attempt")
    op.drop_index("ix_airhook_delivery_attempt_message", table_name="airhook_delivery_attempt")
    op.drop_table("airhook_delivery_attempt")
    op.drop_index("ix_airhook_delivery_publication", table_name="airhook_delivery")
    op.drop_index("ix_airhook_delivery_subscription_status", table_name="airhook_delivery")
    op.drop_index("ix_airhook_delivery_subscription_created", table_name="airhook_delivery")
    op.drop_index("ix_airhook_delivery_due", table_name="airhook_delivery")
    op.drop_table("airhook_delivery")
    op.drop_table("airhook_subscription")
