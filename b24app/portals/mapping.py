"""The PBX extension → Bitrix24 user mapping of a portal, and its CSV form.

CSV has the header `extension,user_id`. An import replaces the whole mapping, and only if every
row is valid: errors name the line and the column.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from b24app.models import ExtensionMapping, Portal

HEADER = ["extension", "user_id"]
EXTENSION = re.compile(r"^[0-9A-Za-z*#+._-]{1,32}$")
MAX_USER_ID = 2**31 - 1  # user ids are stored in 32-bit INTEGER columns


@dataclass
class MappingError(Exception):
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.field}: {self.message}"


def check_extension(value: str, line: int | None = None) -> str:
    value = value.strip()
    if not EXTENSION.match(value):
        raise MappingError(line, "extension", "1–32 characters: digits, letters, * # + . _ -")
    return value


def check_user_id(value: str, line: int | None = None) -> int:
    """A positive id that fits the column. ASCII only: `"²".isdigit()` is true, but `int()` of
    it fails, and a number past MAX_USER_ID fails on PostgreSQL only, at commit."""
    value = value.strip()
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_USER_ID:
        raise MappingError(line, "user_id", "must be a Bitrix24 user id (a positive integer)")
    return int(value)


def parse_csv(text: str) -> dict[str, int]:
    """Validate a whole CSV; return {extension: user_id} or raise the first MappingError."""
    rows, errors = check_csv(text)
    if errors:
        raise errors[0]
    return rows


def check_csv(text: str) -> tuple[dict[str, int], list[MappingError]]:
    """Read a whole CSV: ({extension: user_id} of its valid lines, every line's error in line
    order). A wrong header is the one error: without it no line can be read."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(reader, None)
    if [h.strip().lower() for h in header or []] != HEADER:
        return {}, [MappingError(1, "header", "the first line must be exactly: extension,user_id")]
    mapping: dict[str, int] = {}
    errors: list[MappingError] = []
    for line, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        try:
            extension, user_id = _row(row, line, mapping)
        except MappingError as error:
            errors.append(error)
            continue
        mapping[extension] = user_id
    return mapping, errors


def _row(row: list[str], line: int, seen: dict[str, int]) -> tuple[str, int]:
    if len(row) != 2:
        raise MappingError(line, "row", "needs exactly two columns: extension,user_id")
    extension = check_extension(row[0], line)
    if extension in seen:
        raise MappingError(line, "extension", f"{extension} appears twice")
    return extension, check_user_id(row[1], line)


def to_csv(mapping: Iterable[tuple[str, int]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(sorted(mapping))
    return out.getvalue()


def load(session: Session, portal: Portal) -> dict[str, int]:
    rows = session.execute(
        select(ExtensionMapping.extension, ExtensionMapping.user_id).where(
            ExtensionMapping.portal_id == portal.id
        )
    )
    return {extension: user_id for extension, user_id in rows}


def extension_of(session: Session, portal_id: int, user_id: int) -> str | None:
    """The PBX extension the mapping gives `user_id` on the portal (the lowest, if several map
    to the same employee), else None."""
    return session.scalar(
        select(ExtensionMapping.extension)
        .where(ExtensionMapping.portal_id == portal_id, ExtensionMapping.user_id == user_id)
        .order_by(ExtensionMapping.extension)
        .limit(1)
    )


def replace(session: Session, portal: Portal, mapping: dict[str, int]) -> None:
    session.execute(delete(ExtensionMapping).where(ExtensionMapping.portal_id == portal.id))
    session.add_all(
        ExtensionMapping(portal_id=portal.id, extension=ext, user_id=uid)
        for ext, uid in mapping.items()
    )
