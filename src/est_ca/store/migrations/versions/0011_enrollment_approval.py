"""manual approval: orders.require_approval and the enrollment requests waiting for it

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "orders",
        sa.Column("require_approval", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.create_table(
        "enrollment_requests",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("identity_id", sa.Uuid(), nullable=False),
        sa.Column("csr_der", sa.LargeBinary(), nullable=False),
        sa.Column("csr_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["identities.id"],
            name=op.f("fk_enrollment_requests_identity_id_identities"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_enrollment_requests_order_id_orders")
        ),
        sa.PrimaryKeyConstraint("order_id", name=op.f("pk_enrollment_requests")),
    )
    op.create_index(
        "ix_enrollment_requests_status_created_at",
        "enrollment_requests",
        ["status", "created_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_enrollment_requests_status_created_at", table_name="enrollment_requests")
    op.drop_table("enrollment_requests")
    op.execute("ALTER TABLE orders DROP COLUMN require_approval")
