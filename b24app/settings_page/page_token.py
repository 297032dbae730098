"""The page token: who is looking at the settings page, carried without cookies.

Bitrix24 opens the page in an iframe from another site, and today's browsers give such frames no
third-party cookies. So the page, once its POST /app entry is verified, carries a short-lived token
signed with SECRET_KEY (itsdangerous) in every request it makes (`X-Page-Token`). The token is also
the page's protection against cross-site forgery: another site can neither read it nor send the
custom header without it.

What it holds is what the entry proved: the portal (`member_id`), the user, whether that user is
an administrator (asked of Bitrix24 with the user's own token), and the page's language. It is
never stored; it expires after `LIFETIME`, and the page asks the user to reopen the app then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

SALT = "b24app.settings-page.v1"
LIFETIME = 3600  # seconds: the life of the AUTH_ID it was made from (settings/oauth/index.md)
HEADER = "X-Page-Token"


@dataclass(frozen=True)
class Viewer:
    """Who the page is for, as verified at the entry."""

    member_id: str
    user_id: int
    is_admin: bool
    lang: str


class TokenRefused(Exception):
    """Why a page token was not accepted: `reason` is missing, expired or invalid."""

    def __init__(self, reason: str, lang: str = "en") -> None:
        super().__init__(reason)
        self.reason = reason
        self.lang = lang


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=SALT)


def issue(secret_key: str, viewer: Viewer) -> str:
    payload = {"m": viewer.member_id, "u": viewer.user_id, "a": viewer.is_admin, "l": viewer.lang}
    return _serializer(secret_key).dumps(payload)


def load(secret_key: str, token: str | None, *, max_age: int = LIFETIME) -> Viewer:
    """The viewer a token names, or TokenRefused (missing, expired, forged or tampered)."""
    if not token:
        raise TokenRefused("missing")
    serializer = _serializer(secret_key)
    try:
        payload = serializer.loads(token, max_age=max_age)
    except SignatureExpired as expired:
        raise TokenRefused("expired", _lang_of(serializer, expired.payload)) from None
    except BadSignature:
        raise TokenRefused("invalid") from None
    try:
        return Viewer(
            member_id=str(payload["m"]),
            user_id=int(payload["u"]),
            is_admin=bool(payload["a"]),
            lang=str(payload["l"]),
        )
    except (KeyError, TypeError, ValueError):
        raise TokenRefused("invalid") from None


def _lang_of(serializer: URLSafeTimedSerializer, raw: Any) -> str:
    """The language of an expired (but genuine: its signature was checked) token, to say
    "expired" in the page's own language."""
    try:
        payload = serializer.load_payload(raw)
    except BadSignature:
        return "en"
    lang = payload.get("l") if isinstance(payload, dict) else None
    return lang if lang in ("ru", "en") else "en"
