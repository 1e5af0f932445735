"""revocation state and OCSP responders

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 17:02:02.274068
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "ocsp_responders",
        sa.Column("serial", sa.String(length=40), nullable=False),
        sa.Column("issuer_key_id", sa.String(length=64), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_ocsp_responders")),
    )
    with op.batch_alter_table("ocsp_responders", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ocsp_responders_issuer_key_id"), ["issuer_key_id"], unique=False
        )

    op.create_table(
        "revocation_state",
        sa.Column("issuer_key_id", sa.String(length=64), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("last_crl_number", sa.Integer(), nullable=False),
        sa.Column("crl_number", sa.Integer(), nullable=True),
        sa.Column("crl_revision", sa.Integer(), nullable=True),
        sa.Column("crl_this_update", sa.DateTime(timezone=True), nullable=True),
        sa.Column("crl_next_update", sa.DateTime(timezone=True), nullable=True),
        sa.Column("crl_der", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("issuer_key_id", name=op.f("pk_revocation_state")),
    )


def downgrade() -> None:

    op.drop_table("revocation_state")
    with op.batch_alter_table("ocsp_responders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ocsp_responders_issuer_key_id"))

    op.drop_table("ocsp_responders")
