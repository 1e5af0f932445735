"""organisations: one record per CVR; identities lose their free-text organisation name

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    organisations = op.create_table(
        "organisations",
        sa.Column("cvr", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("email_domains", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cvr", name=op.f("pk_organisations")),
    )
    op.bulk_insert(organisations, _organisations_of_existing_identities())
    # A plain DROP COLUMN (SQLite 3.35+ and PostgreSQL): rebuilding `identities` would trip
    # the foreign keys that orders, certificates and keys hold on it.
    op.execute("ALTER TABLE identities DROP COLUMN organisation_name")


def _organisations_of_existing_identities() -> list[dict[str, object]]:
    """One organisation per CVR: the name most of its identities carry (the others are
    reported), and the domains of their email addresses."""
    rows = op.get_bind().execute(
        sa.text("SELECT cvr, organisation_name, email FROM identities ORDER BY created_at")
    )
    names: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    domains: dict[str, set[str]] = collections.defaultdict(set)
    for cvr, name, email in rows:
        names[cvr][name] += 1
        if email:
            domains[cvr].add(email.rpartition("@")[2].lower())
    now = dt.datetime.now(dt.UTC)
    records = []
    for cvr, counted in sorted(names.items()):
        chosen = counted.most_common(1)[0][0]
        if len(counted) > 1:
            others = ", ".join(repr(name) for name in counted if name != chosen)
            print(
                f"warning: CVR {cvr}: identities named the organisation differently; "
                f"it is now {chosen!r} (also seen: {others}); renewals carry that name"
            )
        records.append(
            {
                "cvr": cvr,
                "name": chosen,
                "email_domains": ",".join(sorted(domains[cvr])),
                "status": "active",
                "created_at": now,
                "updated_at": now,
            }
        )
    return records


def downgrade() -> None:
    op.add_column(
        "identities",
        sa.Column("organisation_name", sa.String(length=200), nullable=False, server_default=""),
    )
    op.execute(
        "UPDATE identities SET organisation_name = "
        "(SELECT name FROM organisations WHERE organisations.cvr = identities.cvr)"
    )
    op.drop_table("organisations")
