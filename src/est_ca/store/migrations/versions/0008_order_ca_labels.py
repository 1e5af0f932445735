"""orders name the CA label they are enrolled under (NULL: the default label)

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing orders keep NULL: they were placed for the one CA there was, the default.
    op.add_column("orders", sa.Column("ca_label", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE orders DROP COLUMN ca_label")
