"""Bulk import of identities from CSV or JSON lines: every row checked first, then all or nothing.

A file is read whole and every row validated as a new identity would be; all errors are
reported together with their line numbers, and nothing is imported unless there are none.
Rows are keyed by (cvr, external_id): re-importing the same file creates nothing new, and a
row that differs from the identity already registered under its key is an error, not a
silent update.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import re
from collections.abc import Callable, Iterable
from typing import Literal

from est_ca.errors import BadRequest
from est_ca.registration.identities import (
    Identity,
    IdentityType,
    check_cvr,
    check_email,
    check_external_id,
    normalise_name,
)
from est_ca.registration.organisations import Organisation, OrganisationStatus

COLUMNS = (
    "external_id",
    "type",
    "organisation_name",
    "cvr",
    "display_name",
    "given_name",
    "surname",
    "email",
)
# organisation_name may be left out: an identity takes its organisation's registered name (a
# name given must be that one).
REQUIRED = ("external_id", "type", "cvr")
MAX_ROWS = 100_000
Progress = Callable[[str, int, int], None]
ImportFormat = Literal["csv", "jsonl"]


@dataclasses.dataclass(frozen=True)
class RowError:
    line: int
    field: str | None
    detail: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", {self.field}" if self.field else "")
        return f"{where}: {self.detail}"


class ImportRejected(BadRequest):
    """The file has errors; nothing was imported. `errors` lists every one."""

    def __init__(self, errors: list[RowError]) -> None:
        shown = "; ".join(str(error) for error in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"{self.summary(errors)}, nothing was imported: {shown}{more}")
        self.errors = errors

    @staticmethod
    def summary(errors: list[RowError]) -> str:
        rows = len({error.line for error in errors})
        return f"{len(errors)} error(s) in {rows} row(s)"


@dataclasses.dataclass(frozen=True)
class ImportRow:
    line: int
    identity: Identity
    # The organisation name the row gave, if any (checked against the registered one).
    organisation_name: str | None = None

    @property
    def key(self) -> tuple[str, str]:
        assert self.identity.external_id is not None
        return (self.identity.cvr, self.identity.external_id)


def same_record(new: Identity, existing: Identity) -> bool:
    """Whether a row describes the identity already registered under its key."""
    fields = ("type", "display_name", "given_name", "surname", "email")
    return all(getattr(new, name) == getattr(existing, name) for name in fields)


_FIELD_CHECKS: dict[str, Callable[[str], object]] = {
    "cvr": check_cvr,
    "email": check_email,
    "external_id": check_external_id,
    **{
        name: (lambda value, name=name: normalise_name(value, name))  # type: ignore[misc]
        for name in ("organisation_name", "display_name", "given_name", "surname")
    },
}


def _row_errors(line: int, values: dict[str, object]) -> list[RowError]:
    """Every problem of one row, field by field, so one pass over a file finds them all."""
    errors = [
        RowError(line, name, f"unknown field {name!r}")
        for name in sorted(set(values) - set(COLUMNS))
    ]
    for column in COLUMNS:
        value = values.get(column)
        if value is not None and not isinstance(value, str):
            errors.append(RowError(line, column, f"{column} must be text"))
        elif not (value or "").strip():
            if column in REQUIRED:
                errors.append(RowError(line, column, f"{column} is required"))
        elif column == "type":
            if value not in {t.value for t in IdentityType}:
                allowed = ", ".join(t.value for t in IdentityType)
                errors.append(RowError(line, "type", f"type must be one of {allowed}"))
        else:
            try:
                _FIELD_CHECKS[column](str(value))
            except BadRequest as exc:
                errors.append(RowError(line, column, exc.detail))
    return errors


def _row_identity(line: int, values: dict[str, object], now: dt.datetime) -> ImportRow:
    errors = _row_errors(line, values)
    if errors:
        raise ImportRejected(errors)
    text = {
        column: (str(values[column]).strip() or None) if values.get(column) else None
        for column in COLUMNS
    }
    identity_type = IdentityType(text["type"] or "")
    identity = Identity.create(
        type=identity_type,
        organisation_name=text["organisation_name"] or text["cvr"] or "",
        cvr=text["cvr"] or "",
        created_at=now,
        display_name=text["display_name"],
        given_name=text["given_name"],
        surname=text["surname"],
        email=text["email"],
        external_id=text["external_id"],
    )
    return ImportRow(line=line, identity=identity, organisation_name=text["organisation_name"])


class ImportParser:
    """A file's rows, checked a chunk at a time: each `step` is blocking work a worker does,
    so a 100,000-row file never holds the event loop (or one worker) for long."""

    def __init__(
        self, numbered: Iterable[tuple[int, dict[str, object] | RowError]], now: dt.datetime
    ) -> None:
        self._numbered = iter(_limited(numbered))
        self._now = now
        self._rows: list[ImportRow] = []
        self._errors: list[RowError] = []
        self._seen: dict[tuple[str, str], int] = {}
        self.checked = 0

    def step(self, count: int) -> bool:
        """Check up to `count` more rows; True when the file is done."""
        for _ in range(count):
            try:
                line, values = next(self._numbered)
            except StopIteration:
                return True
            self.checked += 1
            self._check(line, values)
        return False

    def _check(self, line: int, values: dict[str, object] | RowError) -> None:
        if isinstance(values, RowError):
            self._errors.append(values)
            return
        try:
            row = _row_identity(line, values, self._now)
        except ImportRejected as rejected:
            self._errors.extend(rejected.errors)
            return
        except BadRequest as exc:  # what only the whole record shows (a user without email)
            self._errors.append(RowError(line, exc.field, exc.detail))
            return
        if row.key in self._seen:
            self._errors.append(
                RowError(line, "external_id", f"duplicates the row on line {self._seen[row.key]}")
            )
        else:
            self._seen[row.key] = line
            self._rows.append(row)

    def result(self) -> list[ImportRow]:
        """Every row, or every error: nothing is imported from a file with errors."""
        if self._errors:
            raise ImportRejected(self._errors)
        if not self._rows:
            raise BadRequest("the file holds no rows")
        return self._rows

    def parse_all(self, progress: Progress | None = None, total: int = 0) -> list[ImportRow]:
        """Everything at once (the CLI, tests): blocking."""
        while not self.step(500):
            if progress:
                progress("checking", self.checked, total)
        if progress:
            progress("checking", total, total)
        return self.result()


def parse_csv(text: str, now: dt.datetime, progress: Progress | None = None) -> list[ImportRow]:
    """CSV with a header line naming the columns (any order; unknown columns are an error)."""
    return csv_parser(text, now).parse_all(progress, text.count("\n") or 1)


def csv_parser(text: str, now: dt.datetime) -> ImportParser:
    """The rows of a CSV file, to be checked in steps; a bad header is refused at once."""
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = reader.fieldnames or []
    except csv.Error as exc:
        raise ImportRejected([RowError(1, None, f"not CSV: {exc}")]) from exc
    problems = [
        RowError(1, name, f"unknown column {name!r}") for name in header if name not in COLUMNS
    ]
    problems += [
        RowError(1, name, f"the column {name!r} is missing")
        for name in REQUIRED
        if name not in header
    ]
    if problems:
        raise ImportRejected(problems)

    def numbered() -> Iterable[tuple[int, dict[str, object] | RowError]]:
        while True:
            try:
                values = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield reader.line_num, RowError(reader.line_num, None, f"not CSV: {exc}")
                return
            if None in values:
                yield reader.line_num, RowError(reader.line_num, None, "more values than columns")
                continue
            yield reader.line_num, dict(values)

    return ImportParser(numbered(), now)


def parse_json_lines(
    text: str, now: dt.datetime, progress: Progress | None = None
) -> list[ImportRow]:
    """One JSON object per line; blank lines are skipped."""
    return json_lines_parser(text, now).parse_all(progress, text.count("\n") or 1)


def json_lines_parser(text: str, now: dt.datetime) -> ImportParser:
    """The rows of a JSON-lines file, to be checked in steps."""
    lines = text.splitlines()

    def numbered() -> Iterable[tuple[int, dict[str, object] | RowError]]:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                values = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, RowError(number, None, f"not JSON: {exc.msg}")
                continue
            except RecursionError:
                yield number, RowError(number, None, "nested too deeply to read")
                continue
            except ValueError:  # Python's int() refuses integers over 4300 digits
                yield number, RowError(number, None, "a number too long to read")
                continue
            if not isinstance(values, dict):
                yield number, RowError(number, None, "each line must be a JSON object")
                continue
            yield number, values

    return ImportParser(numbered(), now)


def _limited(
    rows: Iterable[tuple[int, dict[str, object] | RowError]],
) -> Iterable[tuple[int, dict[str, object] | RowError]]:
    for count, row in enumerate(rows, start=1):
        if count > MAX_ROWS:
            raise BadRequest(f"a file holds at most {MAX_ROWS} rows; split it")
        yield row


ORGANISATION_COLUMNS = ("cvr", "name", "email_domains", "status")


def parse_organisations(text: str, kind: ImportFormat, now: dt.datetime) -> list[Organisation]:
    """Organisations from CSV (a header naming the columns) or JSON lines: cvr, name,
    email_domains (separated by spaces, commas or semicolons; a JSON list too), status
    (active or disabled; default active). Every error of every row, or every row."""
    records: Iterable[tuple[int, dict[str, object] | RowError]]
    if kind == "csv":
        reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
        header = reader.fieldnames or []
        unknown = [
            RowError(1, n, f"unknown column {n!r}") for n in header if n not in ORGANISATION_COLUMNS
        ]
        if unknown:
            raise ImportRejected(unknown)
        records = ((reader.line_num, dict(values)) for values in reader)
    else:
        records = _json_objects(text)
    organisations: list[Organisation] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
    try:
        for line, values in _limited(records):
            if isinstance(values, RowError):
                errors.append(values)
                continue
            try:
                organisation = _organisation_of(values, now)
            except BadRequest as exc:
                errors.append(RowError(line, exc.field, exc.detail))
                continue
            if organisation.cvr in seen:
                errors.append(
                    RowError(line, "cvr", f"duplicates the row on line {seen[organisation.cvr]}")
                )
                continue
            seen[organisation.cvr] = line
            organisations.append(organisation)
    except (csv.Error, ValueError, RecursionError) as exc:
        raise ImportRejected([RowError(0, None, f"the file cannot be read: {exc}")]) from exc
    if errors:
        raise ImportRejected(errors)
    if not organisations:
        raise BadRequest("the file holds no rows")
    return organisations


def _json_objects(text: str) -> Iterable[tuple[int, dict[str, object] | RowError]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values = json.loads(line)
        except (ValueError, RecursionError) as exc:
            yield number, RowError(number, None, f"not JSON: {exc}")
            continue
        if not isinstance(values, dict):
            yield number, RowError(number, None, "each line must be a JSON object")
            continue
        yield number, values


def _organisation_of(values: dict[str, object], now: dt.datetime) -> Organisation:
    unknown = sorted(set(values) - set(ORGANISATION_COLUMNS))
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}", field=unknown[0])
    domains = values.get("email_domains") or ""
    if isinstance(domains, str):
        domains = [part for part in re.split(r"[\s,;]+", domains) if part]
    if not isinstance(domains, list) or not all(isinstance(d, str) for d in domains):
        raise BadRequest("email_domains is a list of domain names", field="email_domains")
    status = values.get("status") or "active"
    if status not in {s.value for s in OrganisationStatus}:
        raise BadRequest("status is active or disabled", field="status")
    for field in ("cvr", "name"):
        if not isinstance(values.get(field), str) or not str(values[field]).strip():
            raise BadRequest(f"{field} is required", field=field)
    return Organisation(
        cvr=str(values["cvr"]),
        name=str(values["name"]),
        email_domains=tuple(domains),
        status=OrganisationStatus(str(status)),
        created_at=now,
    )
