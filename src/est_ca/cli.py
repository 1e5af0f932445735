"""The `est-ca` command: run the service and administer identities, orders and certificates.

Administrative commands open the same domain services the server uses (on the same database),
so they run beside a running service. Only `serve` and `init` may create a CA; every other
command refuses a directory without one and says where it looked. Output is a table (or, for
one record, `field: value` lines) for people, or JSON with --json: an array for a listing, an
object for one record.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime as dt
import getpass
import importlib.metadata
import io
import json
import os
import shlex
import sys
import uuid
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TextIO

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from est_ca import logs
from est_ca.admin.access import Scope
from est_ca.admin.idm import grantable_scopes
from est_ca.admin.views import (
    audit_view,
    certificate_view,
    identity_view,
    order_view,
    organisation_view,
    placed_order_view,
    request_view,
    token_view,
)
from est_ca.audit import Actor
from est_ca.bootstrap import shown_database_url
from est_ca.ca.authority import key_identifier
from est_ca.ca.certificates import CertificateStatus, KeyId, Serial
from est_ca.ca.hierarchy import key_type_of
from est_ca.ca.pkcs11_signer import TOKEN_KEY_TYPES, generate_token_key, read_pin
from est_ca.config import DEMO_KEY_TYPES, Settings, load_settings
from est_ca.errors import (
    BadRequest,
    ConfigurationError,
    EstCaError,
    ListenerUnavailable,
    NoCertificateAuthority,
)
from est_ca.private_files import open_private
from est_ca.registration import importing
from est_ca.registration.approvals import RequestStatus
from est_ca.registration.identities import IdentityStatus, IdentityType
from est_ca.registration.orders import OrderState
from est_ca.registration.organisations import OrganisationStatus
from est_ca.revocation.reasons import RevocationReason
from est_ca.rollover import SuppliedCa
from est_ca.service import Service

Command = Callable[[Service, argparse.Namespace], Coroutine[Any, Any, int]]


def _admin_actor() -> Actor:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor("admin", user, "cli")


def _print_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        print("(none)")
        return
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(str(item) for item in value)
    return str(value)


def _emit(args: argparse.Namespace, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    """A listing: a table, or a JSON array."""
    if args.json:
        _print_json(rows)
    else:
        _print_table(rows, columns)


def _emit_record(args: argparse.Namespace, row: dict[str, Any]) -> None:
    """One record: `field: value` lines, one per field (long values stay readable), or a JSON
    object."""
    if args.json:
        _print_json(row)
        return
    width = max(len(field) for field in row)
    for field, value in row.items():
        print(f"{field + ':':<{width + 1}} {_cell(value)}".rstrip())


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False, default=str)
    print()


# -- commands ---------------------------------------------------------------------------------


ORGANISATION_COLUMNS = ("cvr", "name", "email_domains", "status")


def _domains(text: str | None) -> list[str] | None:
    return None if text is None else [d for d in text.replace(";", ",").split(",") if d.strip()]


async def organisation_create(service: Service, args: argparse.Namespace) -> int:
    organisation = await service.registry.create_organisation(
        _admin_actor(),
        cvr=args.cvr,
        name=args.name,
        email_domains=_domains(args.email_domains) or [],
    )
    _emit_record(args, organisation_view(organisation))
    return 0


async def organisation_update(service: Service, args: argparse.Namespace) -> int:
    organisation = await service.registry.update_organisation(
        _admin_actor(),
        args.cvr,
        name=args.name,
        email_domains=_domains(args.email_domains),
        status=OrganisationStatus(args.status) if args.status else None,
    )
    _emit_record(args, organisation_view(organisation))
    return 0


async def organisation_list(service: Service, args: argparse.Namespace) -> int:
    organisations = await service.registry.list_organisations(
        status=OrganisationStatus(args.status) if args.status else None,
        limit=args.limit,
        offset=args.offset,
    )
    _emit(args, [organisation_view(o) for o in organisations], ORGANISATION_COLUMNS)
    return 0


async def organisation_show(service: Service, args: argparse.Namespace) -> int:
    organisation = await service.registry.get_organisation(args.cvr)
    _emit_record(args, organisation_view(organisation))
    return 0


async def organisation_import(service: Service, args: argparse.Namespace) -> int:
    text, kind = await _import_file(args)
    try:
        organisations = service.registry.parse_organisations(text, kind)
        created, existing = await service.registry.import_organisations(
            _admin_actor(), organisations
        )
    except importing.ImportRejected as rejected:
        return _rejected(rejected)
    print(f"imported {len(created)} organisations ({len(existing)} already present)")
    return 0


async def _import_file(args: argparse.Namespace) -> tuple[str, importing.ImportFormat]:
    """The text of `args.file` and its format (`--format`, or the file's suffix)."""
    path = Path(args.file)
    try:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadRequest(f"cannot read {path} as UTF-8 text: {exc}") from exc
    named = args.format or path.suffix.lstrip(".")
    return text, "jsonl" if named in ("jsonl", "ndjson", "json") else "csv"


def _rejected(rejected: importing.ImportRejected) -> int:
    print(f"est-ca: {rejected.summary(rejected.errors)}; nothing was imported:", file=sys.stderr)
    for error in rejected.errors:
        print(f"  {error}", file=sys.stderr)
    return 1


async def identity_create(service: Service, args: argparse.Namespace) -> int:
    identity = await service.registry.create_identity(
        _admin_actor(),
        type=IdentityType(args.type),
        organisation_name=args.organisation,
        cvr=args.cvr,
        display_name=args.display_name,
        given_name=args.given_name,
        surname=args.surname,
        email=args.email,
    )
    _emit_record(args, identity_view(identity))
    return 0


async def identity_list(service: Service, args: argparse.Namespace) -> int:
    identities = await service.registry.list_identities(
        type=IdentityType(args.type) if args.type else None,
        cvr=args.cvr,
        status=IdentityStatus(args.status) if args.status else None,
        limit=args.limit,
        offset=args.offset,
    )
    _emit(
        args,
        [identity_view(i) for i in identities],
        ("id", "type", "display_name", "organisation_name", "cvr", "status"),
    )
    return 0


async def identity_show(service: Service, args: argparse.Namespace) -> int:
    identity = await service.registry.get_identity(_uuid(args.identity_id))
    _emit_record(args, identity_view(identity))
    return 0


async def identity_grant_administration(service: Service, args: argparse.Namespace) -> int:
    grant = await service.idm.grant_by(
        _admin_actor(),
        _uuid(args.identity_id),
        grantable_scopes(part.strip() for part in args.scopes.split(",") if part.strip()),
    )
    scopes = ",".join(sorted(grant.scopes))
    if args.json:
        _emit_record(
            args,
            {
                "identity_id": str(grant.identity_id),
                "scopes": sorted(grant.scopes),
                "granted_by": grant.granted_by,
                "granted_at": grant.granted_at.isoformat(),
            },
        )
    else:
        print(f"identity {grant.identity_id} may administer its organisation ({scopes})")
    return 0


async def identity_withdraw_administration(service: Service, args: argparse.Namespace) -> int:
    await service.idm.withdraw_by(_admin_actor(), _uuid(args.identity_id))
    print(f"identity {args.identity_id} no longer administers its organisation")
    return 0


async def identity_disable(service: Service, args: argparse.Namespace) -> int:
    identity, revoked = await service.revocations.revoke_identity(
        _admin_actor(), _uuid(args.identity_id), RevocationReason.parse(args.reason)
    )
    if args.json:
        _emit_record(args, identity_view(identity) | {"revoked": [r.serial.hex for r in revoked]})
    else:
        print(f"identity {identity.id} disabled; {len(revoked)} certificate(s) revoked")
        for record in revoked:
            print(f"  revoked {record.serial.hex}")
    return 0


def _issuer(args: argparse.Namespace) -> KeyId | None:
    return KeyId.parse(args.issuer) if args.issuer else None


async def certificate_revoke(service: Service, args: argparse.Namespace) -> int:
    serial = Serial.from_hex(args.serial)
    invalidity = None
    if args.invalidity_date:
        try:
            invalidity = dt.datetime.fromisoformat(args.invalidity_date)
        except ValueError as exc:
            raise BadRequest(
                "--invalidity-date is an ISO 8601 time, e.g. 2026-11-01T12:00Z"
            ) from exc
        if invalidity.tzinfo is None:
            raise BadRequest("--invalidity-date needs a time zone, e.g. 2026-11-01T12:00Z")
        invalidity = invalidity.astimezone(dt.UTC).replace(microsecond=0)
    record = await service.revocations.revoke_certificate(
        _admin_actor(),
        serial,
        RevocationReason.parse(args.reason),
        invalidity,
        issuer=_issuer(args),
    )
    _emit_record(args, certificate_view(record))
    return 0


class _ProgressBar:
    """A one-line progress bar on a terminal's stderr; silent when stderr is not a terminal."""

    def __init__(self) -> None:
        self._shown = sys.stderr.isatty()

    def __call__(self, phase: str, done: int, total: int) -> None:
        if not self._shown or total <= 0:
            return
        width = 30
        filled = width * done // total
        bar = "#" * filled + "-" * (width - filled)
        end = "\n" if done >= total else ""
        sys.stderr.write(f"\r{phase:<15} [{bar}] {100 * done // total:3d}% ({done}/{total}){end}")
        sys.stderr.flush()


async def identity_import(service: Service, args: argparse.Namespace) -> int:
    if args.place_orders and not args.codes_out:
        raise BadRequest("--place-orders needs --codes-out FILE: the one-time codes go there")
    text, kind = await _import_file(args)
    progress = _ProgressBar()
    parse = importing.parse_json_lines if kind == "jsonl" else importing.parse_csv
    try:
        rows = parse(text, service.clock.now(), progress)
        codes_file = _open_private(Path(args.codes_out)) if args.codes_out else None
        result = await service.registry.import_identities(
            _admin_actor(), rows, place_orders=args.place_orders, progress=progress
        )
    except importing.ImportRejected as rejected:
        return _rejected(rejected)
    if codes_file is not None:
        with codes_file:
            writer = csv.writer(codes_file)
            writer.writerow(
                ["external_id", "identity_id", "order_reference", "one_time_code", "expires_at"]
            )
            by_id = {identity.id: identity for identity in result.created}
            for placed in result.orders:
                row = [
                    by_id[placed.order.identity_id].external_id or "",
                    str(placed.order.identity_id),
                    placed.order.reference,
                    placed.one_time_code,
                    placed.order.expires_at.isoformat(),
                ]
                writer.writerow([spreadsheet_safe(cell) for cell in row])
    print(
        f"imported {len(result.created)} identities ({len(result.existing)} already present), "
        f"placed {len(result.orders)} orders"
        + (f"; one-time codes in {args.codes_out} (mode 0600)" if result.orders else "")
    )
    return 0


# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets
# (OWASP, "CSV Injection"): an imported external_id "=HYPERLINK(...)" would run when the
# administrator opens the codes file.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: str) -> str:
    """`cell` as a spreadsheet shows it as text: a leading single quote before a formula."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def _open_private(path: Path) -> TextIO:
    """A new file only its owner can read; never an existing one (codes must not leak)."""
    try:
        binary = open_private(path)
    except FileExistsError as exc:
        raise BadRequest(f"{path} exists; the codes file must be new") from exc
    return io.TextIOWrapper(binary, encoding="utf-8", newline="")


async def token_create(service: Service, args: argparse.Namespace) -> int:
    token, secret = await service.tokens.create(
        _admin_actor(),
        name=args.name,
        scopes=Scope.parse_many(args.scopes),
        cvr=args.cvr,
        valid_days=args.valid_days,
    )
    if args.json:
        _emit_record(args, token_view(token) | {"token": secret})
    else:
        print(
            f"token {token.name} ({','.join(sorted(token.scopes))}, "
            f"CVR {token.cvr or 'all'}, until {token.expires_at.isoformat()}):"
        )
        print(f"  {secret}")
        print("  shown only now; give it as 'Authorization: Bearer <token>'")
    return 0


async def token_list(service: Service, args: argparse.Namespace) -> int:
    tokens = await service.tokens.list(expired_idm=args.all)
    _emit(
        args,
        [token_view(t) for t in tokens],
        ("name", "scopes", "cvr", "expires_at", "revoked_at", "last_used_at"),
    )
    return 0


async def token_revoke(service: Service, args: argparse.Namespace) -> int:
    token = await service.tokens.revoke(_admin_actor(), args.name)
    _emit_record(args, token_view(token))
    return 0


async def audit_verify(service: Service, args: argparse.Namespace) -> int:
    report = await service.audit.verify()
    if report.intact:
        print(f"audit chain intact and sealed: {report.checked} events")
        return 0
    where = f"at event {report.seq}" if report.seq is not None else "as a whole"
    print(
        f"est-ca: audit chain broken {where}: {report.problem} "
        f"({report.checked} events before it verify)",
        file=sys.stderr,
    )
    return 1


async def audit_export(service: Service, args: argparse.Namespace) -> int:
    async for row in service.audit.chain(after=args.after):
        line = audit_view(row.seq, row.event) | {"prev_hash": row.prev_hash, "hash": row.hash}
        sys.stdout.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
    return 0


async def order_create(service: Service, args: argparse.Namespace) -> int:
    placed = await service.registry.place_order(
        _admin_actor(),
        _uuid(args.identity_id),
        profile=args.profile,
        validity_days=args.valid_days,
        ca_label=args.ca_label,
        require_approval=args.require_approval,
    )
    row = placed_order_view(placed, service.registry.order_state(placed.order))
    if args.json:
        _emit_record(args, row)
    else:
        print(f"order reference: {placed.order.reference}")
        print(f"one-time code:   {placed.one_time_code}   (shown only now)")
        print(f"profile:         {placed.order.profile}")
        print(f"CA label:        {placed.order.ca_label}")
        print(f"expires:         {placed.order.expires_at.isoformat()}")
        if placed.order.require_approval:
            print("approval:        required (est-ca request approve REFERENCE after enrolling)")
    return 0


async def order_list(service: Service, args: argparse.Namespace) -> int:
    orders = await service.registry.list_orders(
        identity_id=_uuid(args.identity) if args.identity else None,
        state=OrderState(args.status) if args.status else None,
        limit=args.limit,
        offset=args.offset,
    )
    _emit(
        args,
        [order_view(o, service.registry.order_state(o)) for o in orders],
        ("reference", "identity_id", "profile", "state", "expires_at", "certificate_serial"),
    )
    return 0


async def order_show(service: Service, args: argparse.Namespace) -> int:
    order = await service.registry.get_order(args.reference)
    _emit_record(args, order_view(order, service.registry.order_state(order)))
    return 0


async def order_cancel(service: Service, args: argparse.Namespace) -> int:
    order = await service.registry.cancel_order(_admin_actor(), args.reference)
    _emit_record(args, order_view(order, service.registry.order_state(order)))
    return 0


async def order_unlock(service: Service, args: argparse.Namespace) -> int:
    order = await service.registry.unlock_order(_admin_actor(), args.reference)
    _emit_record(args, order_view(order, service.registry.order_state(order)))
    return 0


async def certificate_list(service: Service, args: argparse.Namespace) -> int:
    records = await service.registry.list_certificates(
        identity_id=_uuid(args.identity) if args.identity else None,
        status=CertificateStatus(args.status) if args.status else None,
        expiring_within=args.expiring_within,
        limit=args.limit,
        offset=args.offset,
    )
    _emit(
        args,
        [certificate_view(r) for r in records],
        ("serial", "profile", "status", "not_after", "subject"),
    )
    return 0


async def request_list(service: Service, args: argparse.Namespace) -> int:
    found = await service.registry.list_requests(
        status=RequestStatus(args.status) if args.status else None,
        limit=args.limit,
        offset=args.offset,
    )
    _emit(
        args,
        [request_view(r) for r in found],
        ("order_reference", "identity_id", "status", "created_at", "csr_subject"),
    )
    return 0


async def request_show(service: Service, args: argparse.Namespace) -> int:
    _emit_record(args, request_view(await service.registry.get_request(args.reference)))
    return 0


async def request_approve(service: Service, args: argparse.Namespace) -> int:
    found = await service.registry.approve_request(_admin_actor(), args.reference)
    _emit_record(args, request_view(found))
    return 0


async def request_reject(service: Service, args: argparse.Namespace) -> int:
    found = await service.registry.reject_request(_admin_actor(), args.reference, args.reason)
    _emit_record(args, request_view(found))
    return 0


def _within(text: str) -> dt.timedelta:
    """A renewal window as an operator writes it: 30d, 12h (a bare number is days)."""
    value = text.strip().lower()
    unit = value[-1:] if value[-1:] in ("d", "h") else "d"
    number = value[:-1] if value[-1:] in ("d", "h") else value
    if not number.isdigit() or not 1 <= int(number) <= (3650 if unit == "d" else 87600):
        raise argparse.ArgumentTypeError(f"{text!r}: give days or hours, e.g. 30d or 12h")
    return dt.timedelta(days=int(number)) if unit == "d" else dt.timedelta(hours=int(number))


async def certificate_show(service: Service, args: argparse.Namespace) -> int:
    serial = Serial.from_hex(args.serial)
    record = await service.registry.get_certificate(serial, issuer=_issuer(args))
    if args.pem:
        if record.der is None:
            print(f"certificate {serial} was never issued ({record.status.value})", file=sys.stderr)
            return 1
        certificate = x509.load_der_x509_certificate(record.der)
        sys.stdout.write(certificate.public_bytes(serialization.Encoding.PEM).decode("ascii"))
        return 0
    _emit_record(args, certificate_view(record))
    return 0


async def audit_list(service: Service, args: argparse.Namespace) -> int:
    events = await service.audit.events(action=args.action, limit=args.limit, offset=args.offset)
    _emit(
        args,
        [audit_view(None, e) for e in events],
        ("at", "action", "outcome", "actor", "order_reference", "serial", "reason"),
    )
    return 0


async def db_upgrade(service: Service, args: argparse.Namespace) -> int:
    print(f"database schema at revision {await service.upgrade_database()}")
    return 0


async def ca_rollover(service: Service, args: argparse.Namespace) -> int:
    given = [args.certificate, args.chain, args.key]
    if any(given) and not all(given):
        print("est-ca: give --certificate, --chain and --key together", file=sys.stderr)
        return 2
    supplied = (
        SuppliedCa(
            certificate=Path(args.certificate),
            chain=Path(args.chain),
            key=Path(args.key),
            passphrase_file=Path(args.passphrase_file) if args.passphrase_file else None,
        )
        if args.certificate
        else None
    )
    done = await service.roll_over(_admin_actor(), label=args.label, supplied=supplied)
    row = {
        "label": done.label,
        "new": done.new.name,
        "new_subject": done.certificate.subject.rfc4514_string(),
        "new_key_id": key_identifier(done.certificate).hex(),
        "retired": done.retired.name,
    }
    if args.json:
        _emit_record(args, row)
        return 0
    print(
        f"label {done.label!r}: {done.new.name} ({row['new_subject']}, key id {row['new_key_id']})"
    )
    print("  enrolls and renews from the next start of each instance (restart est-ca serve);")
    print(f"  {done.retired.name} is retired: its CRL and OCSP stay published, its certificates")
    print("  still authenticate and renew (to the new CA). Remove it when the last has expired.")
    return 0


async def init(service: Service, args: argparse.Namespace) -> int:
    if args.ca_key and not service.files.demo_created:
        existing = key_type_of(service.ca_certificates()[0])
        if existing != args.ca_key:
            print(
                f"est-ca: the CA in {service.settings.data_dir.resolve()} exists already, with "
                f"a {existing} key; --ca-key chooses the key of a new CA only",
                file=sys.stderr,
            )
            return 2
    print(f"est-ca: the CA in {service.settings.data_dir.resolve()} is ready")
    await status(service, args)
    return 0


async def status(service: Service, args: argparse.Namespace) -> int:
    settings = service.settings
    certificates = service.ca_certificates()
    service_settings = settings.service
    listeners = {
        "EST (HTTPS)": (service_settings.host, service_settings.port, "/.well-known/est/"),
        "CRL and OCSP (HTTP)": (service_settings.host, service_settings.http_port, "/"),
        "admin API (HTTPS)": (service_settings.host, settings.admin.port, "/admin/v1/"),
    }
    report: dict[str, Any] = {
        "data_dir": str(settings.data_dir.resolve()),
        "database": shown_database_url(settings),
        "schema_revision": await service.schema_revision(),
        "certificate_authorities": [
            {
                "subject": certificate.subject.rfc4514_string(),
                "key_id": key_identifier(certificate).hex(),
                "not_after": certificate.not_valid_after_utc.isoformat(),
            }
            for certificate in certificates
        ],
        "authorities": await service.authority_overview(),
        "publication_base_url": service.publication.base_url,
        "unpublished_ca_urls": [url for _, urls in service.unpublished_ca_urls() for url in urls],
        "listeners": [
            {
                "name": name,
                "url": f"{'http' if 'HTTP)' in name else 'https'}://{_shown_host(host)}:{port}{path}",
                "answering": await _answering(host, port),
            }
            for name, (host, port, path) in listeners.items()
        ],
        "counts": await service.registry.count_records(),
    }
    if args.json:
        _print_json(report)
        return 0
    print(f"data dir:       {report['data_dir']}")
    print(f"database:       {report['database']} (schema {report['schema_revision']})")
    for certificate in report["certificate_authorities"]:
        print(f"CA:             {certificate['subject']}")
        print(f"                key id {certificate['key_id']}, until {certificate['not_after']}")
    for authority in report["authorities"]:
        role = " (default)" if authority["default"] else ""
        last = f", last expires {authority['last_expiry']}" if authority["last_expiry"] else ""
        print(
            f"authority:      {authority['name']}, label {authority['label']}: "
            f"{authority['state']}{role}; {authority['live_certificates']} live "
            f"certificates{last}"
        )
    print(f"publication:    {report['publication_base_url']}")
    for url in report["unpublished_ca_urls"]:
        print(f"  warning: a CA certificate names {url}, which this base URL does not serve")
    for listener in report["listeners"]:
        state = "answering" if listener["answering"] else "not answering"
        print(f"{listener['name'] + ':':<24}{listener['url']} ({state})")
    for kind, by_status in report["counts"].items():
        shown = ", ".join(f"{number} {name}" for name, number in sorted(by_status.items()))
        print(f"{kind + ':':<15} {shown or 'none'}")
    return 0


def _shown_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _answering(host: str, port: int) -> bool:
    """Whether something accepts connections on the port (a listening est-ca, usually)."""
    # A wildcard listener is reached on loopback.
    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(target, port), timeout=1)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError as exc:
        raise BadRequest(f"{text!r} is not an identity id (a UUID)") from exc


# -- parser -----------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """No abbreviated options: `--org` must not quietly mean `--organisation` (subcommand
    parsers are made of the same class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


IDENTITY_FIELDS = """fields each type needs:
  user          --given-name, --surname and --email (in one of the organisation's
                email domains); --display-name defaults to "given-name surname"
  organisation  --display-name (the organisation certificate's CN)
  system        --display-name (the system's name, the certificate's CN)
every type needs --cvr of a registered organisation (`est-ca organisation create`)"""


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="est-ca",
        description="An EST certificate authority for pre-ordered identities.",
        epilog="The CA is found in --data-dir, else EST_CA_DATA_DIR, else the --config file's "
        "data_dir, else ./est-ca-data. Only `serve` and `init` create one.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument(
        "--config", type=Path, help="operator configuration file (TOML; or EST_CA_CONFIG)"
    )
    parser.add_argument(
        "--data-dir", help="data directory (or EST_CA_DATA_DIR; default: ./est-ca-data)"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="say which data dir and database are used"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init_parser = commands.add_parser(
        "init", help="create a CA in the data directory (a demo CA unless one is configured)"
    )
    init_parser.set_defaults(run=init, creates=True, migrates=True, json=False)
    init_parser.add_argument(
        "--ca-key",
        choices=DEMO_KEY_TYPES,
        help="the generated issuing CA's key (default rsa3072, as OCES3; setting ca.demo_key_type)",
    )
    status_command = commands.add_parser(
        "status", help="data dir, database, CA certificates, listeners and counts"
    )
    status_command.add_argument("--json", action="store_true", help="JSON for scripts")
    status_command.set_defaults(run=status)

    serve = commands.add_parser("serve", help="run the service (HTTPS EST + plain HTTP)")
    serve.add_argument("--host", help="address to listen on")
    serve.add_argument("--port", type=int, help="HTTPS (EST) port")
    serve.add_argument("--http-port", type=int, help="plain HTTP port (CRL, OCSP)")
    serve.add_argument("--admin-port", type=int, help="HTTPS port of the admin API")
    serve.add_argument("--no-demo", action="store_true", help="do not place a demo order")
    serve.add_argument(
        "--workers", type=int, help="worker processes serving the listeners (default 1)"
    )

    def listing(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--limit", type=int, default=100)
        sub.add_argument("--offset", type=int, default=0)

    def output(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--json", action="store_true", help="JSON for scripts")

    def issuer_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--issuer",
            metavar="KEY_ID",
            help="the issuing CA's key id (hex, as `est-ca status` shows it); needed only "
            "when several CAs issued the serial",
        )

    organisation = commands.add_parser(
        "organisation", help="organisations (one per CVR: name, email domains, status)"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    ocreate_org = organisation.add_parser("create", help="register an organisation")
    ocreate_org.add_argument("--cvr", required=True, help="its CVR (8 digits)")
    ocreate_org.add_argument("--name", required=True, help="the name its certificates carry")
    ocreate_org.add_argument(
        "--email-domains", help="domains its identities' email addresses may use, a,b"
    )
    output(ocreate_org)
    ocreate_org.set_defaults(run=organisation_create)
    oupdate = organisation.add_parser("update", help="change an organisation")
    oupdate.add_argument("cvr")
    oupdate.add_argument("--name")
    oupdate.add_argument("--email-domains", help="the new list, a,b (empty: none)")
    oupdate.add_argument("--status", choices=[s.value for s in OrganisationStatus])
    output(oupdate)
    oupdate.set_defaults(run=organisation_update)
    olist_org = organisation.add_parser("list", help="list organisations")
    olist_org.add_argument("--status", choices=[s.value for s in OrganisationStatus])
    listing(olist_org)
    output(olist_org)
    olist_org.set_defaults(run=organisation_list)
    oshow = organisation.add_parser("show", help="show one organisation")
    oshow.add_argument("cvr")
    output(oshow)
    oshow.set_defaults(run=organisation_show)
    oimport = organisation.add_parser(
        "import", help="import organisations from CSV or JSON lines (all rows or none)"
    )
    oimport.add_argument("file", help=f"columns: {', '.join(ORGANISATION_COLUMNS)}")
    oimport.add_argument("--format", choices=["csv", "jsonl"], help="default: by file suffix")
    oimport.set_defaults(run=organisation_import)

    identity = commands.add_parser("identity", help="identities").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    create = identity.add_parser(
        "create",
        help="register an identity",
        epilog=IDENTITY_FIELDS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    create.add_argument("--type", required=True, choices=[t.value for t in IdentityType])
    create.add_argument("--cvr", required=True, help="its organisation's CVR (registered)")
    create.add_argument(
        "--organisation", help="organisation name; if given, must be the registered one"
    )
    create.add_argument(
        "--display-name",
        help="the CN; required for organisation and system, defaults to the full name for users",
    )
    create.add_argument("--given-name", help="users: required")
    create.add_argument("--surname", help="users: required")
    create.add_argument("--email", help="users: required, in an organisation email domain")
    output(create)
    create.set_defaults(run=identity_create)
    ilist = identity.add_parser("list", help="list identities")
    ilist.add_argument("--type", choices=[t.value for t in IdentityType])
    ilist.add_argument("--cvr")
    ilist.add_argument("--status", choices=[s.value for s in IdentityStatus])
    listing(ilist)
    output(ilist)
    ilist.set_defaults(run=identity_list)
    idisable = identity.add_parser(
        "disable", help="disable an identity: cancel its orders, revoke its certificates"
    )
    idisable.add_argument("identity_id")
    idisable.add_argument(
        "--reason",
        default=RevocationReason.CESSATION_OF_OPERATION.value,
        choices=[r.value for r in RevocationReason],
    )
    output(idisable)
    idisable.set_defaults(run=identity_disable)
    iimport = identity.add_parser(
        "import", help="import identities from CSV or JSON lines (all rows or none)"
    )
    iimport.add_argument("file", help=f"columns: {', '.join(importing.COLUMNS)}")
    iimport.add_argument("--format", choices=["csv", "jsonl"], help="default: by file suffix")
    iimport.add_argument(
        "--place-orders", action="store_true", help="order a certificate for each new identity"
    )
    iimport.add_argument("--codes-out", help="new file (mode 0600) for the one-time codes")
    iimport.set_defaults(run=identity_import)
    igrant = identity.add_parser(
        "grant-administration",
        help="let a system identity (an organisation's IdM) administer its organisation",
    )
    igrant.add_argument("identity_id")
    igrant.add_argument("--scopes", required=True, help="comma-separated: read, order, revoke")
    output(igrant)
    igrant.set_defaults(run=identity_grant_administration)
    iwithdraw = identity.add_parser(
        "withdraw-administration", help="end a system identity's administration right at once"
    )
    iwithdraw.add_argument("identity_id")
    iwithdraw.set_defaults(run=identity_withdraw_administration)
    ishow = identity.add_parser("show", help="show one identity")
    ishow.add_argument("identity_id")
    output(ishow)
    ishow.set_defaults(run=identity_show)

    order = commands.add_parser("order", help="orders").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    ocreate = order.add_parser("create", help="order a certificate for an identity")
    ocreate.add_argument("identity_id")
    ocreate.add_argument("--profile", help="certificate profile (default: the identity's type)")
    ocreate.add_argument("--valid-days", type=int, help="days the order can be used")
    ocreate.add_argument(
        "--ca-label",
        help="the CA label it is enrolled under, /.well-known/est/<label>/ (default: the "
        "default CA's)",
    )
    ocreate.add_argument(
        "--require-approval",
        action="store_true",
        help="enrollment stores the CSR and answers 202 until `est-ca request approve`",
    )
    output(ocreate)
    ocreate.set_defaults(run=order_create)
    olist = order.add_parser("list", help="list orders")
    olist.add_argument("--identity", help="only this identity's orders")
    olist.add_argument(
        "--status",
        choices=[s.value for s in OrderState],
        help="only orders in this state (the STATE column)",
    )
    listing(olist)
    output(olist)
    olist.set_defaults(run=order_list)
    for name, handler, text in (
        ("show", order_show, "show one order"),
        ("cancel", order_cancel, "cancel a pending order"),
        ("unlock", order_unlock, "unlock an order locked by wrong one-time codes"),
    ):
        sub = order.add_parser(name, help=text)
        sub.add_argument("reference")
        output(sub)
        sub.set_defaults(run=handler)

    request = commands.add_parser(
        "request", help="enrollment requests awaiting approval (orders placed with approval)"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    rlist = request.add_parser("list", help="list enrollment requests, oldest first")
    rlist.add_argument("--status", choices=[s.value for s in RequestStatus])
    listing(rlist)
    output(rlist)
    rlist.set_defaults(run=request_list)
    for name, handler, text in (
        ("show", request_show, "show the request of an order, with its CSR"),
        ("approve", request_approve, "approve: the client's retry with the same CSR is issued"),
    ):
        sub = request.add_parser(name, help=text)
        sub.add_argument("reference", help="the order's reference")
        output(sub)
        sub.set_defaults(run=handler)
    rreject = request.add_parser("reject", help="reject: the retry is refused, the order cancelled")
    rreject.add_argument("reference", help="the order's reference")
    rreject.add_argument("--reason", help="told to the client on its next retry")
    output(rreject)
    rreject.set_defaults(run=request_reject)

    certificate = commands.add_parser("certificate", help="certificates").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    clist = certificate.add_parser("list", help="list certificates")
    clist.add_argument("--identity", help="only this identity's certificates")
    clist.add_argument("--status", choices=[s.value for s in CertificateStatus])
    clist.add_argument(
        "--expiring-within",
        type=_within,
        metavar="DURATION",
        help="only certificates still valid that expire within this (30d, 12h): renewals due; "
        "issued ones unless --status says otherwise",
    )
    listing(clist)
    output(clist)
    clist.set_defaults(run=certificate_list)
    crevoke = certificate.add_parser("revoke", help="revoke a certificate (final)")
    crevoke.add_argument("serial", help="serial number in hex")
    crevoke.add_argument(
        "--reason",
        default=RevocationReason.UNSPECIFIED.value,
        choices=[r.value for r in RevocationReason],
        help="RFC 5280 reason; unspecified puts no reason code on the CRL",
    )
    crevoke.add_argument("--invalidity-date", help="when the key is known or suspected compromised")
    issuer_option(crevoke)
    output(crevoke)
    crevoke.set_defaults(run=certificate_revoke)
    cshow = certificate.add_parser("show", help="show one certificate")
    cshow.add_argument("serial", help="serial number in hex")
    cshow.add_argument("--pem", action="store_true", help="print the certificate as PEM")
    issuer_option(cshow)
    output(cshow)
    cshow.set_defaults(run=certificate_show)

    audit = commands.add_parser("audit", help="the audit trail").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    alist = audit.add_parser("list", help="list audit events, oldest first")
    alist.add_argument("--action", help="only events of this action, e.g. certificate.issued")
    listing(alist)
    output(alist)
    alist.set_defaults(run=audit_list)

    averify = audit.add_parser("verify", help="check the hash chain of the audit trail")
    averify.set_defaults(run=audit_verify, reads_audit_only=True)
    aexport = audit.add_parser("export", help="the audit trail as JSON lines, with its hashes")
    aexport.add_argument("--after", type=int, default=0, help="only events after this seq")
    aexport.set_defaults(run=audit_export, reads_audit_only=True)

    token = commands.add_parser("token", help="admin API tokens").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    tcreate = token.add_parser("create", help="create a token (shown once)")
    tcreate.add_argument("name")
    tcreate.add_argument(
        "--scopes", required=True, help="comma-separated: read, order, revoke, admin"
    )
    tcreate.add_argument("--cvr", help="confine the token to this organisation's identities")
    tcreate.add_argument("--valid-days", type=int, default=90)
    output(tcreate)
    tcreate.set_defaults(run=token_create)
    tlist = token.add_parser("list", help="list tokens")
    tlist.add_argument("--all", action="store_true", help="also IdM login tokens that have expired")
    output(tlist)
    tlist.set_defaults(run=token_list)
    trevoke = token.add_parser("revoke", help="revoke a token")
    trevoke.add_argument("name")
    output(trevoke)
    trevoke.set_defaults(run=token_revoke)

    ca = commands.add_parser("ca", help="certificate authorities").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    rollover = ca.add_parser(
        "rollover",
        help="bring a new issuing CA into service under a label; the current one is retired",
    )
    rollover.add_argument("--label", help="the CA label (default: the default CA's)")
    rollover.add_argument(
        "--certificate",
        help="the new CA's certificate (PEM), signed by your root; without it the service "
        "makes the new CA with the root key it holds (the demo hierarchy)",
    )
    rollover.add_argument("--chain", help="its chain up to the root (PEM)")
    rollover.add_argument("--key", help="its encrypted key (PEM)")
    rollover.add_argument("--passphrase-file", help="the file holding the key's passphrase")
    output(rollover)
    rollover.set_defaults(run=ca_rollover)

    key = commands.add_parser("key", help="CA keys").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    kgenerate = key.add_parser(
        "generate",
        help="generate a CA key on a PKCS#11 token (sensitive, never extractable); prints its "
        "public key and the [[authorities]] key reference",
    )
    kgenerate.add_argument("--kind", choices=["pkcs11"], required=True)
    kgenerate.add_argument("--module", required=True, help="the PKCS#11 module (shared library)")
    kgenerate.add_argument("--token", required=True, help="the token's label")
    kgenerate.add_argument("--label", required=True, help="the new key's label")
    kgenerate.add_argument("--type", choices=TOKEN_KEY_TYPES, default="rsa3072", dest="key_type")
    pin = kgenerate.add_mutually_exclusive_group(required=True)
    pin.add_argument("--pin-file", help="the file holding the token's user PIN")
    pin.add_argument("--pin-env", help="the environment variable holding the user PIN")
    kgenerate.set_defaults(run=key_generate)

    db = commands.add_parser("db", help="database").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    db.add_parser("upgrade", help="migrate the schema to the newest revision").set_defaults(
        run=db_upgrade, migrates=True
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    if args.command == "init" and args.ca_key:
        overrides["ca"] = {"demo_key_type": args.ca_key}
    if args.command == "serve":
        service: dict[str, Any] = {}
        if args.host:
            service["host"] = args.host
        if args.port is not None:
            service["port"] = args.port
        if args.http_port is not None:
            service["http_port"] = args.http_port
        if args.no_demo:
            service["demo"] = False
        if args.workers is not None:
            service["workers"] = args.workers
        if service:
            overrides["service"] = service
        if args.admin_port is not None:
            overrides["admin"] = {"port": args.admin_port}
    config = args.config
    if config is None and os.environ.get("EST_CA_CONFIG"):
        config = Path(os.environ["EST_CA_CONFIG"])
    return load_settings(config, os.environ, overrides)


async def _run_admin(settings: Settings, command: Command, args: argparse.Namespace) -> int:
    service = await Service.open(
        settings,
        with_ca=getattr(args, "creates", False),
        create=getattr(args, "creates", False),
        check_audit_seal=not getattr(args, "reads_audit_only", False),
        migrate=getattr(args, "migrates", False),
    )
    try:
        return await command(service, args)
    finally:
        await service.close()


def _version() -> str:
    try:
        return importlib.metadata.version("est-ca")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def _config_file(args: argparse.Namespace) -> Path | None:
    if args.config is not None:
        return Path(args.config)
    if os.environ.get("EST_CA_CONFIG"):
        return Path(os.environ["EST_CA_CONFIG"])
    return None


def command_line(args: argparse.Namespace, settings: Settings) -> str:
    """How to run this est-ca on this CA from any directory: the absolute path of the command
    it was started as, with the options that found the CA (for the commands it prints)."""
    program = Path(sys.argv[0])
    if program.name == "est-ca":
        words = [str(program.absolute())]
    else:
        words = [sys.executable, "-m", "est_ca"]
    config = _config_file(args)
    if config is not None:
        words += ["--config", str(config.absolute())]
    words += ["--data-dir", str(settings.data_dir.resolve())]
    return shlex.join(words)


def _where_it_looked(args: argparse.Namespace) -> str:
    if args.data_dir:
        return "named by --data-dir"
    if os.environ.get("EST_CA_DATA_DIR"):
        return "named by EST_CA_DATA_DIR"
    config = _config_file(args)
    if config is not None:
        return f"from the configuration {config}"
    return "the default, ./est-ca-data under the current directory"


def _no_ca(args: argparse.Namespace, error: NoCertificateAuthority) -> int:
    print(
        f"est-ca: no CA in {error.data_dir} ({_where_it_looked(args)}): {error.missing}.\n"
        "  Point to yours with --data-dir DIR, EST_CA_DATA_DIR=DIR or --config FILE; "
        "`est-ca init` creates a new CA there.",
        file=sys.stderr,
    )
    return 2


def _say_where(settings: Settings) -> None:
    print(
        f"est-ca: data dir {settings.data_dir.resolve()}, database {shown_database_url(settings)}",
        file=sys.stderr,
    )


def key_generate(args: argparse.Namespace) -> int:
    """A key made on the token, never leaving it: the PIN from a file or the environment (a
    command-line PIN would show in every process listing)."""
    pin = read_pin(pin_file=args.pin_file, pin_env=args.pin_env, environ=os.environ)
    public_key = generate_token_key(
        module=args.module, token=args.token, label=args.label, pin=pin, key_type=args.key_type
    )
    where = f'pin_file = "{args.pin_file}"' if args.pin_file else f'pin_env = "{args.pin_env}"'
    print(
        public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode(),
        end="",
    )
    key_id = x509.SubjectKeyIdentifier.from_public_key(public_key).digest.hex()
    print(f"subjectKeyIdentifier: {key_id}")
    print(
        "in [[authorities]]: key = { "
        f'kind = "pkcs11", module = "{args.module}", token = "{args.token}", '
        f'label = "{args.label}", {where} }}'
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "key":  # the token alone: no settings, no CA, no database
            return int(args.run(args))
        settings = _settings(args)
        if args.verbose:
            _say_where(settings)
        if args.command == "serve":
            from est_ca import server  # aiohttp and the web layer: only `serve` needs them

            return server.run(settings, command_line(args, settings))
        logs.configure(settings.logging.format, "warning")
        return asyncio.run(_run_admin(settings, args.run, args))
    except NoCertificateAuthority as exc:
        return _no_ca(args, exc)
    except ListenerUnavailable as exc:
        print(f"est-ca: {exc}", file=sys.stderr)
        return 2
    except ConfigurationError as exc:
        print(f"est-ca: configuration: {exc}", file=sys.stderr)
        return 2
    except EstCaError as exc:
        print(f"est-ca: {exc.detail}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`est-ca order list --json | head`): not an error of ours.
        # Python would report it again when flushing stdout at exit; point stdout nowhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
