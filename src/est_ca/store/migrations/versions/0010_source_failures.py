"""failed authentications by source address, counted by every instance of a cluster

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "source_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_source_failures")),
    )
    op.create_index("ix_source_failures_source_at", "source_failures", ["source", "at"])


def downgrade() -> None:
    op.drop_index("ix_source_failures_source_at", table_name="source_failures")
    op.drop_table("source_failures")
