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
from collections.abc import Callable, Iterable

from est_ca.errors import BadRequest
from est_ca.registration.identities import (
    Identity,
    IdentityType,
    check_cvr,
    check_email,
    check_external_id,
    normalise_name,
)

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
REQUIRED = ("external_id", "type", "organisation_name", "cvr")
MAX_ROWS = 100_000
Progress = Callable[[str, int, int], None]


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

    @property
    def key(self) -> tuple[str, str]:
        assert self.identity.external_id is not None
        return (self.identity.cvr, self.identity.external_id)


def same_record(new: Identity, existing: Identity) -> bool:
    """Whether a row describes the identity already registered under its key."""
    fields = ("type", "display_name", "organisation_name", "given_name", "surname", "email")
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
        organisation_name=text["organisation_name"] or "",
        cvr=text["cvr"] or "",
        created_at=now,
        display_name=text["display_name"],
        given_name=text["given_name"],
        surname=text["surname"],
        email=text["email"],
        external_id=text["external_id"],
    )
    return ImportRow(line=line, identity=identity)


def _validate(
    numbered: Iterable[tuple[int, dict[str, object] | RowError]],
    now: dt.datetime,
    progress: Progress | None,
    total: int,
) -> list[ImportRow]:
    rows: list[ImportRow] = []
    errors: list[RowError] = []
    seen: dict[tuple[str, str], int] = {}
    for count, (line, values) in enumerate(numbered, start=1):
        if isinstance(values, RowError):
            errors.append(values)
            continue
        try:
            row = _row_identity(line, values, now)
        except ImportRejected as rejected:
            errors.extend(rejected.errors)
            continue
        except BadRequest as exc:  # what only the whole record shows (a user without email)
            errors.append(RowError(line, exc.field, exc.detail))
            continue
        if row.key in seen:
            errors.append(
                RowError(line, "external_id", f"duplicates the row on line {seen[row.key]}")
            )
        else:
            seen[row.key] = line
            rows.append(row)
        if progress and count % 500 == 0:
            progress("checking", count, total)
    if progress:
        progress("checking", total, total)
    if errors:
        raise ImportRejected(errors)
    if not rows:
        raise BadRequest("the file holds no rows")
    return rows


def parse_csv(text: str, now: dt.datetime, progress: Progress | None = None) -> list[ImportRow]:
    """CSV with a header line naming the columns (any order; unknown columns are an error)."""
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
    lines = text.count("\n") or 1

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

    return _validate(_limited(numbered()), now, progress, lines)


def parse_json_lines(
    text: str, now: dt.datetime, progress: Progress | None = None
) -> list[ImportRow]:
    """One JSON object per line; blank lines are skipped."""
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

    return _validate(_limited(numbered()), now, progress, len(lines))


def _limited(
    rows: Iterable[tuple[int, dict[str, object] | RowError]],
) -> Iterable[tuple[int, dict[str, object] | RowError]]:
    for count, row in enumerate(rows, start=1):
        if count > MAX_ROWS:
            raise BadRequest(f"a file holds at most {MAX_ROWS} rows; split it")
        yield row
