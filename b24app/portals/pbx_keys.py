"""PBX keys: long random bearer keys, one portal each, stored encrypted and found by hash."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, joinedload

from b24app.crypto import SecretBox
from b24app.models import Portal, PortalSettings, utcnow

PREFIX = "b24pbx_"


def generate() -> str:
    """256 bits of randomness; the prefix makes a leaked key recognisable to secret scanners."""
    return PREFIX + secrets.token_urlsafe(32)


def find_settings_by_key(session: Session, box: SecretBox, presented: str) -> PortalSettings | None:
    """The settings row (with its portal, in one query) whose PBX key is `presented`, or None.

    The lookup compares keyed digests in the database (an index hit, so its timing says nothing
    about how close a guess was), then compares the decrypted key in constant time.
    """
    if not presented.startswith(PREFIX) or len(presented) > 200:
        return None
    row = session.scalars(
        select(PortalSettings)
        .options(joinedload(PortalSettings.portal))
        .where(PortalSettings.pbx_key_hash.in_(box.lookup_hashes(presented)))
    ).one_or_none()
    if row is None:
        return None
    if not secrets.compare_digest(box.decrypt(row.pbx_key_encrypted), presented):
        return None
    return row


@dataclass(frozen=True)
class KeyOwner:
    """What the PBX intake needs of the portal a key belongs to (read in one query)."""

    portal_id: int
    member_id: str
    status: str
    currencies: tuple[str, ...]
    fallback_user_id: int | None
    timezone: str = "UTC"  # IANA: the intake reads a CALL_START_DATE without an offset in it


_OWNER = (
    select(
        Portal.id,
        Portal.member_id,
        Portal.status,
        PortalSettings.currencies,
        PortalSettings.fallback_user_id,
        PortalSettings.timezone,
        PortalSettings.pbx_key_encrypted,
    )
    .join(Portal, Portal.id == PortalSettings.portal_id)
    .where(PortalSettings.pbx_key_hash.in_(bindparam("hashes", expanding=True)))
)  # built once: compiled once per database, not per request


def find_owner(session: Session, box: SecretBox, presented: str) -> KeyOwner | None:
    """The portal whose PBX key is `presented`, or None; as `find_settings_by_key` (keyed digests
    compared in the database, then the decrypted key in constant time), but only the columns the
    intake needs, without ORM objects. InvalidToken when the row was stored under an encryption
    key no longer configured."""
    if not presented.startswith(PREFIX) or len(presented) > 200:
        return None
    row = session.execute(_OWNER, {"hashes": box.lookup_hashes(presented)}).one_or_none()
    if row is None:
        return None
    if not secrets.compare_digest(box.decrypt(row.pbx_key_encrypted), presented):
        return None
    return KeyOwner(
        portal_id=row.id,
        member_id=row.member_id,
        status=row.status,
        currencies=tuple(row.currencies or ()),
        fallback_user_id=row.fallback_user_id,
        timezone=row.timezone or "UTC",
    )


def rotate(settings: PortalSettings, box: SecretBox) -> str:
    """Give the portal a new key; the old one stops working at commit."""
    key = generate()
    settings.pbx_key_encrypted = box.encrypt(key)
    settings.pbx_key_hash = box.lookup_hash(key)
    settings.pbx_key_rotated_at = utcnow()
    return key


def reveal(settings: PortalSettings, box: SecretBox) -> str:
    return box.decrypt(settings.pbx_key_encrypted)
