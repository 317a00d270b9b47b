"""The queue keeper's watches (which DAGs Airflow queued for dispatched events); the inbox's
signature digest goes (a duplicate is a duplicate, the same signed bytes included).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "airhook_queue_watch",
        sa.Column("asset_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("dag_id", sa.String(250), primary_key=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_airhook_queue_watch_until", "airhook_queue_watch", ["until"])
    with op.batch_alter_table("airhook_inbox") as table:
        table.drop_column("signature_digest")


def downgrade() -> None:
    with op.batch_alter_table("airhook_inbox") as table:
        table.add_column(sa.Column("signature_digest", sa.String(64), nullable=True))
    op.drop_index("ix_airhook_queue_watch_until", "airhook_queue_watch")
    op.drop_table("airhook_queue_watch")
