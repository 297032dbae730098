"""What an administrator changes on the page, through the same validated paths as the CLI.

Settings go through portals/settings.py (`validate`, then `apply`: nothing is written unless
every value is valid); the mapping through portals/mapping.py (`check_extension`,
`check_user_id`, `parse_csv`, `replace`); the PBX key through portals/pbx_keys.py. The page adds
one check the CLI cannot make offline: an employee chosen here must be an active employee of
the portal (user.get), since a call mapped to anyone else would fail in Bitrix24.

Each function returns a result or raises `Refused` with the messages to show, by field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from b24app.db import get_db
from b24app.logs import get_logger
from b24app.models import Portal
from b24app.portals import lines, mapping, originate_secret, pbx_keys, store
from b24app.portals import settings as portal_settings
from b24app.portals.currencies import stored_currencies
from b24app.settings_page import messages
from b24app.settings_page.portal_data import Employee
from b24app.wiring import current_store

log = get_logger(__name__)

PAGE_SETTINGS = (
    "currency",
    "add_to_chat",
    "fallback_user_id",
    "timezone",
    "show_card",
    "originate_url",
)
TEST_NUMBER_CHARS = frozenset("0123456789+()-. ")
MAX_TEST_NUMBER = 32


@dataclass
class Refused(Exception):
    """Nothing was changed; `errors` says why, field by field (in the page's language)."""

    errors: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def one(cls, field_name: str, message: str) -> Refused:
        return cls([{"field": field_name, "message": message}])


def _portal(session: Session, member_id: str) -> Portal:
    portal = store.find_portal(session, member_id, for_update=True)
    if portal is None:
        raise Refused.one("portal", str(messages.NOT_INSTALLED))
    return portal


def change_settings(
    member_id: str, changes: Mapping[str, object], employees: Sequence[Employee] | None
) -> list[str]:
    """Validate every change (portals/settings.py), then write them all; the changed names."""
    raw = {name: _text(value) for name, value in changes.items()}
    unknown = [name for name in raw if name not in PAGE_SETTINGS]
    if unknown:
        raise Refused([{"field": n, "message": messages.setting_error(n, "", [])} for n in unknown])
    try:
        parsed = portal_settings.validate(current_store(), member_id, raw)
    except portal_settings.SettingError as error:
        raise Refused.one(
            error.field,
            messages.setting_error(
                error.field,
                raw.get(error.field, ""),
                _currencies(member_id) if error.field == "currency" else [],
                error.message,
            ),
        ) from None
    fallback = parsed.get("fallback_user_id")
    if fallback and employees is not None and fallback not in {e.id for e in employees}:
        raise Refused.one("fallback_user_id", messages.not_an_employee(fallback))
    with get_db().write() as session:
        portal_settings.apply(_portal(session, member_id), parsed)
    return sorted(parsed)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return "" if value is None else str(value)


def _currencies(member_id: str) -> list[str]:
    with get_db().read() as session:
        portal = store.find_portal(session, member_id)
        return stored_currencies(portal.settings) if portal and portal.settings else []


def _check_row(extension: object, user_id: object) -> tuple[str, int]:
    try:
        ext = mapping.check_extension(_text(extension))
    except mapping.MappingError as error:
        raise Refused.one("extension", messages.mapping_error(error)) from None
    try:
        uid = mapping.check_user_id(_text(user_id))
    except mapping.MappingError as error:
        raise Refused.one("user_id", messages.mapping_error(error)) from None
    return ext, uid


def _check_employees(
    rows: Mapping[str, int], employees: Sequence[Employee] | None, lines: Mapping[str, int]
) -> None:
    if employees is None:  # Bitrix24 could not be asked: the format checks must do
        return
    known = {e.id for e in employees}
    for extension, user_id in rows.items():
        if user_id not in known:
            field_name = "csv" if lines else "user_id"
            raise Refused.one(field_name, messages.not_an_employee(user_id, lines.get(extension)))


def save_mapping(
    member_id: str,
    extension: object,
    user_id: object,
    *,
    replaces: object = None,
    employees: Sequence[Employee] | None,
) -> dict[str, int]:
    """Map one extension (optionally renaming `replaces`); the whole mapping afterwards."""
    ext, uid = _check_row(extension, user_id)
    _check_employees({ext: uid}, employees, {})
    old = _text(replaces).strip() if replaces else None
    with get_db().write() as session:
        portal = _portal(session, member_id)
        rows = mapping.load(session, portal)
        if old and old != ext:
            if old not in rows:
                raise Refused.one("extension", messages.unknown_extension(old))
            if ext in rows:
                error = mapping.MappingError(None, "extension", f"{ext} appears twice")
                raise Refused.one("extension", messages.mapping_error(error))
            del rows[old]
        rows[ext] = uid
        mapping.replace(session, portal, rows)
    return rows


def remove_mapping(member_id: str, extension: object) -> dict[str, int]:
    ext = _text(extension).strip()
    with get_db().write() as session:
        portal = _portal(session, member_id)
        rows = mapping.load(session, portal)
        if ext not in rows:
            raise Refused.one("extension", messages.unknown_extension(ext))
        del rows[ext]
        mapping.replace(session, portal, rows)
    return rows


@dataclass(frozen=True)
class ImportCheck:
    """What importing a CSV would do: the mapping it makes, what changes against today's, and
    every line that stops it (in the page's language, with its line number)."""

    rows: dict[str, int]
    added: list[dict[str, object]]  # {"extension", "user_id"}
    changed: list[dict[str, object]]  # {"extension", "from", "to"}
    removed: list[dict[str, object]]  # {"extension", "user_id"}
    errors: list[str]

    def as_json(self) -> dict[str, object]:
        return {
            "count": len(self.rows),
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "errors": self.errors,
        }


def check_import(member_id: str, text: str, employees: Sequence[Employee] | None) -> ImportCheck:
    """Read a CSV as `import_csv` would (the CLI's format and rules), without saving: every bad
    line (portals/mapping.py `check_csv`; a user who is no active employee, when Bitrix24
    could be asked), and the rows added, changed and removed against the stored mapping."""
    if not text.strip():
        raise Refused.one("csv", messages.nothing_to_import())
    rows, problems = mapping.check_csv(text)
    errors = [messages.mapping_error(problem) for problem in problems]
    lines = _lines(text, rows)
    if employees is not None:
        known = {e.id for e in employees}
        errors += [
            messages.not_an_employee(uid, lines.get(ext)) for ext, uid in rows.items()
            if uid not in known
        ]  # fmt: skip
    with get_db().read() as session:
        portal = store.find_portal(session, member_id)
        now = mapping.load(session, portal) if portal else {}
    return ImportCheck(
        rows,
        added=[{"extension": e, "user_id": u} for e, u in sorted(rows.items()) if e not in now],
        changed=[
            {"extension": e, "from": now[e], "to": u}
            for e, u in sorted(rows.items())
            if e in now and now[e] != u
        ],
        removed=[{"extension": e, "user_id": u} for e, u in sorted(now.items()) if e not in rows],
        errors=errors,
    )


def import_csv(member_id: str, text: str, employees: Sequence[Employee] | None) -> dict[str, int]:
    """Replace the whole mapping with a CSV's (the CLI's format and rules), only if it is all
    valid; refused with every bad line (`check_import`)."""
    checked = check_import(member_id, text, employees)
    if checked.errors:
        raise Refused([{"field": "csv", "message": error} for error in checked.errors])
    with get_db().write() as session:
        mapping.replace(session, _portal(session, member_id), checked.rows)
    return checked.rows


def _lines(text: str, rows: Mapping[str, int]) -> dict[str, int]:
    """The line of each extension in the CSV, for "line N: not an employee"."""
    lines: dict[str, int] = {}
    for number, line in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        first = line.split(",", 1)[0].strip().strip('"')
        if first in rows and first not in lines:
            lines[first] = number
    return lines


def export_csv(member_id: str) -> str:
    with get_db().read() as session:
        portal = store.find_portal(session, member_id)
        rows = mapping.load(session, portal) if portal else {}
    return mapping.to_csv(rows.items())


@dataclass(frozen=True)
class FromProfiles:
    mapping: dict[str, int]
    added: list[str]
    changed: list[str]
    skipped: list[str]  # numbers found in more than one profile, or not valid extensions


def take_from_profiles(member_id: str, employees: Sequence[Employee]) -> FromProfiles:
    """Map each employee's own Bitrix24 inner number (UF_PHONE_INNER) to them. Other mapped
    extensions stay; a number that several profiles share is left for the admin to decide."""
    owners: dict[str, list[int]] = {}
    skipped: list[str] = []
    for employee in employees:
        if not employee.extension:
            continue
        try:
            ext = mapping.check_extension(employee.extension)
        except mapping.MappingError:
            skipped.append(employee.extension)
            continue
        owners.setdefault(ext, []).append(employee.id)
    found = {ext: ids[0] for ext, ids in owners.items() if len(ids) == 1}
    skipped += sorted(ext for ext, ids in owners.items() if len(ids) > 1)
    with get_db().write() as session:
        portal = _portal(session, member_id)
        rows = mapping.load(session, portal)
        added = sorted(ext for ext in found if ext not in rows)
        changed = sorted(ext for ext in found if ext in rows and rows[ext] != found[ext])
        rows.update(found)
        mapping.replace(session, portal, rows)
    return FromProfiles(rows, added, changed, skipped)


def reveal_key(member_id: str) -> str:
    with get_db().read() as session:
        portal = store.find_portal(session, member_id)
        if portal is None or portal.settings is None:
            raise Refused.one("portal", str(messages.NOT_INSTALLED))
        return pbx_keys.reveal(portal.settings, current_store().box)


def rotate_key(member_id: str) -> str:
    """A new PBX key; the old one stops working at commit."""
    with get_db().write() as session:
        return pbx_keys.rotate(_portal(session, member_id).settings, current_store().box)


def reveal_originate_secret(member_id: str) -> str:
    """The portal's originate secret (portals/originate_secret.py), made now if it has none
    yet (a portal installed before click-to-call existed)."""
    with get_db().write() as session:
        return originate_secret.reveal(_portal(session, member_id).settings, current_store().box)


def rotate_originate_secret(member_id: str) -> str:
    """A new originate secret; webhooks are signed with it from the commit on, so the PBX
    fails to verify them until it is given the new one."""
    with get_db().write() as session:
        return originate_secret.rotate(_portal(session, member_id).settings, current_store().box)


def check_test_number(value: object) -> str:
    """The phone number a test call carries: "" or at most 32 of digits, spaces and + ( ) - .
    (the PBX is not expected to dial it)."""
    number = _text(value).strip()
    if len(number) > MAX_TEST_NUMBER or not set(number) <= TEST_NUMBER_CHARS:
        raise Refused.one("test_phone_number", messages.test_number_error())
    return number


FIELD_OF_LINE = {"NUMBER": "line_number", "NAME": "line_name"}


def add_line(member_id: str, number: object, name: object) -> tuple[str, bool]:
    """Add an external line on the portal (portals/lines.py `add`: telephony.externalLine.add);
    (the number as added, False when Bitrix24 already had it). Refused for a bad number or
    name; BitrixError when Bitrix24 refuses otherwise or is not reached."""
    try:
        checked = lines.check_number(_text(number))
        added = lines.add(current_store(), member_id, checked, _text(name))
    except lines.LineError as error:
        field_name = FIELD_OF_LINE.get(error.field, "line_number")
        raise Refused.one(field_name, messages.line_error(error.field)) from None
    return checked, added
