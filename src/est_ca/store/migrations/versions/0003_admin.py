"""administration: external ids, API tokens, a hash-chained append-only audit trail

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from est_ca.audit import GENESIS_HASH, Actor, AuditEvent, Outcome, chain_hash

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_APPEND_ONLY = "audit events are append-only"


def upgrade() -> None:
    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("external_id", sa.String(length=200), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_identities_cvr_external_id"), ["cvr", "external_id"]
        )

    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.String(length=100), nullable=False),
        sa.Column("cvr", sa.String(length=8), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_tokens")),
        sa.UniqueConstraint("name", name=op.f("uq_api_tokens_name")),
    )
    chain = op.create_table(
        "audit_chain",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain")),
    )

    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
    seq, head = _chain_existing_events()
    op.bulk_insert(chain, [{"id": 1, "seq": seq, "hash": head}])
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.alter_column("seq", existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column("prev_hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.alter_column("hash", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(batch_op.f("uq_audit_events_seq"), ["seq"])
    _forbid_changes_to_audit_events()


def _chain_existing_events() -> tuple[int, str]:
    """Chain the events written before the chain existed, in the order they were written."""
    connection = op.get_bind()
    events = sa.table(
        "audit_events",
        *(sa.column(name) for name in ("id", "at", "action", "outcome", "actor", "source")),
        *(sa.column(name) for name in ("request_id", "identity_id", "order_reference")),
        *(sa.column(name) for name in ("serial", "reason", "details", "seq")),
        sa.column("prev_hash"),
        sa.column("hash"),
    )
    rows = connection.execute(sa.select(events).order_by(events.c.id)).fetchall()
    head, seq = GENESIS_HASH, 0
    for row in rows:
        seq += 1
        at = row.at if isinstance(row.at, dt.datetime) else dt.datetime.fromisoformat(row.at)
        kind, _, name = row.actor.partition(":")
        event = AuditEvent.as_stored(
            action=row.action,
            outcome=Outcome(row.outcome),
            actor=Actor(kind, name, row.source),
            at=at if at.tzinfo else at.replace(tzinfo=dt.UTC),
            identity_id=row.identity_id,
            order_reference=row.order_reference,
            serial=row.serial,
            reason=row.reason,
            request_id=row.request_id,
            details=json.loads(row.details),
        )
        digest = chain_hash(head, seq, event)
        connection.execute(
            sa.update(events)
            .where(events.c.id == row.id)
            .values(seq=seq, prev_hash=head, hash=digest)
        )
        head = digest
    return seq, head


def _forbid_changes_to_audit_events() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER audit_events_no_{event.lower()} BEFORE {event} ON audit_events "
                f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
            )
    else:
        op.execute(
            "CREATE FUNCTION audit_events_append_only() RETURNS trigger AS $$ BEGIN "
            f"RAISE EXCEPTION '{_APPEND_ONLY}'; END; $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS audit_events_no_delete")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_append_only()")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_audit_events_seq"), type_="unique")
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("seq")
    op.drop_table("audit_chain")
    op.drop_table("api_tokens")
    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_identities_cvr_external_id"), type_="unique")
        batch_op.drop_column("external_id")
