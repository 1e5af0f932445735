"""OCSP for the whole cluster: responder keys in the database (wrapped, or named on the
token) and pre-produced responses every instance serves

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ocsp_responders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("wrapped_key", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("key_label", sa.String(length=200), nullable=True))
    op.create_table(
        "ocsp_responses",
        sa.Column("issuer_key_id", sa.String(length=64), nullable=False),
        sa.Column("serial", sa.String(length=40), nullable=False),
        sa.Column("hash_name", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=100), nullable=False),
        sa.Column("der", sa.LargeBinary(), nullable=False),
        sa.Column("this_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_update", sa.DateTime(timezone=True), nullable=False),
        sa.Column("refresh_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "issuer_key_id", "serial", "hash_name", name=op.f("pk_ocsp_responses")
        ),
    )
    op.create_index(
        op.f("ix_ocsp_responses_next_update"), "ocsp_responses", ["next_update"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_ocsp_responses_next_update"), table_name="ocsp_responses")
    op.drop_table("ocsp_responses")
    with op.batch_alter_table("ocsp_responders", schema=None) as batch_op:
        batch_op.drop_column("key_label")
        batch_op.drop_column("wrapped_key")
