"""An organisation's IdM: the administration right of system identities, and the tokens it
gets by logging in with a system certificate, linked to that certificate

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "administration_grants",
        sa.Column("identity_id", sa.Uuid(), nullable=False),
        sa.Column("scopes", sa.String(length=100), nullable=False),
        sa.Column("granted_by", sa.String(length=200), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["identity_id"],
            ["identities.id"],
            name=op.f("fk_administration_grants_identity_id_identities"),
        ),
        sa.PrimaryKeyConstraint("identity_id", name=op.f("pk_administration_grants")),
    )
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("certificate_issuer_key_id", sa.String(length=64), nullable=True)
        )
        batch_op.add_column(sa.Column("certificate_serial", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("identity_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("identity_id")
        batch_op.drop_column("certificate_serial")
        batch_op.drop_column("certificate_issuer_key_id")
    op.drop_table("administration_grants")
