"""audit seal: an HMAC per event, an anchor where sealing began, a sealed head

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN (no table rebuild): the append-only triggers on audit_events stay.
    op.add_column("audit_events", sa.Column("mac", sa.String(length=64), nullable=True))
    op.add_column("audit_chain", sa.Column("anchor_seq", sa.Integer(), nullable=True))
    op.add_column("audit_chain", sa.Column("anchor_mac", sa.String(length=64), nullable=True))
    op.add_column("audit_chain", sa.Column("mac", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_chain", schema=None) as batch_op:
        batch_op.drop_column("mac")
        batch_op.drop_column("anchor_mac")
        batch_op.drop_column("anchor_seq")
    # Not a batch operation: on SQLite that would rebuild the table without its triggers.
    op.execute("ALTER TABLE audit_events DROP COLUMN mac")
