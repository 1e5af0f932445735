"""the service's own TLS certificates, recorded before the listener uses them

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "service_certificates",
        sa.Column("serial", sa.String(length=40), nullable=False),
        sa.Column("issuer_key_id", sa.String(length=64), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_service_certificates")),
    )
    with op.batch_alter_table("service_certificates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_service_certificates_issuer_key_id"), ["issuer_key_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("service_certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_service_certificates_issuer_key_id"))
    op.drop_table("service_certificates")
