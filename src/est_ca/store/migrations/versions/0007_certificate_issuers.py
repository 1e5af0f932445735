"""certificates name their issuing CA; a serial is unique per issuer

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from alembic import op
from cryptography import x509

from est_ca.errors import ConfigurationError

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Where `Store.migrate` passes the issuing CA's key id (alembic's config.attributes), or the
# alembic command line's `-x issuer_key_id=<hex>` (env.py puts it there).
ISSUER_KEY_ID = "issuer_key_id"


def upgrade() -> None:
    config = op.get_context().config
    issuing = config.attributes.get(ISSUER_KEY_ID) if config is not None else None
    if not issuing:
        # Refuse before changing anything: not every database undoes DDL on rollback (SQLite
        # through the alembic command line does not), and a half-done 0007 would block a retry.
        _require_own_issuers()
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("issuer_key_id", sa.String(length=64), nullable=True))
    _backfill_issuers(issuing)
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.alter_column("issuer_key_id", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_constraint("pk_certificates", type_="primary")
        batch_op.create_primary_key("pk_certificates", ["issuer_key_id", "serial"])
        batch_op.create_index(batch_op.f("ix_certificates_serial"), ["serial"], unique=False)


def _issuers() -> Iterator[list[tuple[str, str | None]]]:
    """(serial, issuer key id from its DER's AuthorityKeyIdentifier, or None), a page at a
    time: certificates can be millions."""
    page = sa.text(
        "SELECT serial, der FROM certificates WHERE serial > :after ORDER BY serial LIMIT 1000"
    )
    after = ""
    while rows := op.get_bind().execute(page, {"after": after}).all():
        after = rows[-1].serial
        yield [
            (serial, _authority_key_id(der) if der is not None else None) for serial, der in rows
        ]


def _require_own_issuers() -> None:
    """Every row must name its issuer itself when the issuing CA's key id was not given."""
    unsigned = [serial for rows in _issuers() for serial, issuer in rows if issuer is None]
    if unsigned:
        raise ConfigurationError(
            f"{len(unsigned)} certificate record(s) have no signed certificate naming their "
            f"issuer (serial {unsigned[0]} among them): migrate with `est-ca db upgrade`, which "
            "knows the issuing CA, or pass its key id to alembic: -x issuer_key_id=<hex>"
        )


def _backfill_issuers(issuing: str | None) -> None:
    """Each certificate's issuer from its own DER (the AuthorityKeyIdentifier's keyIdentifier);
    reservations never signed (and anything without a readable AKI) were made by the CA that
    issues now, whose key id the caller passes."""
    bind = op.get_bind()
    set_issuer = sa.text("UPDATE certificates SET issuer_key_id = :issuer WHERE serial = :serial")
    for rows in _issuers():
        found = [{"issuer": issuer, "serial": serial} for serial, issuer in rows if issuer]
        if found:
            bind.execute(set_issuer, found)
    if issuing:
        bind.execute(
            sa.text("UPDATE certificates SET issuer_key_id = :issuer WHERE issuer_key_id IS NULL"),
            {"issuer": str(issuing)},
        )


def _authority_key_id(der: bytes) -> str | None:
    try:
        certificate = x509.load_der_x509_certificate(der)
        identifier = certificate.extensions.get_extension_for_class(
            x509.AuthorityKeyIdentifier
        ).value.key_identifier
    except (ValueError, x509.ExtensionNotFound):
        return None
    return identifier.hex() if identifier else None


def downgrade() -> None:
    with op.batch_alter_table("certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certificates_serial"))
        batch_op.drop_constraint("pk_certificates", type_="primary")
        batch_op.create_primary_key("pk_certificates", ["serial"])
        batch_op.drop_column("issuer_key_id")
