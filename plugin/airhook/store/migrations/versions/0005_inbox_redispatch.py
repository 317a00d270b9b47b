"""Manage: how many times an event was sent to its assets again on request; the headers it
came with (without secrets); events are listed and counted by time, so the inbox is indexed by
``received_at``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("airhook_inbox") as table:
        table.add_column(sa.Column("redispatches", sa.Integer, nullable=False, server_default="0"))
        table.add_column(sa.Column("headers", sa.Text, nullable=True))
    op.create_index("ix_airhook_inbox_received_at", "airhook_inbox", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_airhook_inbox_received_at", "airhook_inbox")
    with op.batch_alter_table("airhook_inbox") as table:
        table.drop_column("headers")
        table.drop_column("redispatches")
