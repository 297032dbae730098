"""Methods every app may call about itself and the user behind its token.

`app.info` (api-reference/common/system/app-info.md), `profile`
(api-reference/common/users/profile.md), `user.admin` (api-reference/common/users/user-admin.md)
and `user.current` (api-reference/user/user-current.md).

Also the shared view of a user: which fields a token may see depends on its user scope
(api-reference/user/user-scope.md, digest §6.1), so `user.current` and `user.get` both go
through `visible_user`.
"""

from __future__ import annotations

from typing import Any

from devportal.methods import Call, method
from devportal.state import ENTERPRISE_LIMITS, DevPortal, DevUser

USER_SCOPES = "user|user_brief|user_basic"

# api-reference/user/user-scope.md: the only fields the limited user scopes can read.
USER_BRIEF_FIELDS = frozenset(
    {
        "ID", "XML_ID", "ACTIVE", "NAME", "LAST_NAME", "SECOND_NAME", "TITLE", "IS_ONLINE",
        "TIME_ZONE", "PERSONAL_PHOTO", "TIMESTAMP_X", "DATE_REGISTER", "PERSONAL_PROFESSION",
        "PERSONAL_GENDER", "PERSONAL_BIRTHDAY", "PERSONAL_CITY", "PERSONAL_STATE",
        "PERSONAL_COUNTRY", "WORK_POSITION", "WORK_CITY", "WORK_STATE", "WORK_COUNTRY",
        "LAST_ACTIVITY_DATE", "UF_EMPLOYMENT_DATE", "UF_TIMEMAN", "UF_SKILLS", "UF_INTERESTS",
        "UF_DEPARTMENT", "UF_PHONE_INNER",
    }
)  # fmt: skip
USER_BASIC_FIELDS = USER_BRIEF_FIELDS | frozenset(
    {
        "EMAIL", "PERSONAL_PHONE", "WORK_PHONE", "WORK_COMPANY", "PERSONAL_FAX",
        "PERSONAL_MOBILE", "PERSONAL_PAGER", "PERSONAL_STREET", "PERSONAL_MAILBOX",
        "PERSONAL_ZIP", "PERSONAL_NOTES", "WORK_DEPARTMENT", "WORK_WWW", "WORK_FAX", "WORK_PAGER",
        "WORK_STREET", "WORK_MAILBOX", "WORK_ZIP", "WORK_PROFILE", "WORK_LOGO", "WORK_NOTES",
        "UF_DISTRICT", "UF_SKYPE", "UF_SKYPE_LINK", "UF_ZOOM", "UF_TWITTER", "UF_FACEBOOK",
        "UF_LINKEDIN", "UF_XING", "UF_WEB_SITES",
    }
)  # fmt: skip


def granted_scopes(scope: str) -> frozenset[str]:
    """A token's scope string ("crm,telephony,user_brief") as a set."""
    return frozenset(s.strip() for s in scope.replace(" ", ",").split(",") if s.strip())


def current_user(call: Call) -> DevUser | None:
    """The user whose token made the call (None if the portal no longer has them)."""
    return call.portal.users.get(call.user_id)


def is_admin(call: Call) -> bool:
    """Whether the token's user may manage application settings (user-admin.md)."""
    user = current_user(call)
    return bool(user and user.admin)


def user_record(user: DevUser) -> dict[str, Any]:
    """Every field the emulation knows of a user, as user.get spells them (user-get.md)."""
    return {
        **user.as_user_get(),
        "TIME_ZONE": user.time_zone,
        "PERSONAL_GENDER": "",
    }


def visible_fields(scope: str) -> frozenset[str] | None:
    """The user fields a token may read: None means all (full `user` scope, user-scope.md)."""
    scopes = granted_scopes(scope)
    if "user" in scopes:
        return None
    if "user_basic" in scopes:
        return USER_BASIC_FIELDS
    return USER_BRIEF_FIELDS


def visible_user(user: DevUser, scope: str) -> dict[str, Any]:
    """The user as a token with `scope` sees it: limited scopes lose the other fields."""
    allowed = visible_fields(scope)
    record = user_record(user)
    if allowed is None:
        return record
    return {key: value for key, value in record.items() if key in allowed}


# --- app.info -----------------------------------------------------------------------------------


@method("app.info")
def app_info(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """api-reference/common/system/app-info.md: the installation of the token's app."""
    installation = call.portal.installations[call.client_id]
    license_type, family = _license(call.portal)
    return {
        "ID": list(call.state.apps).index(call.client_id) + 1,  # the app's local id
        "CODE": call.client_id,
        "VERSION": installation.version,
        "STATUS": installation.status,
        "INSTALLED": installation.installed,
        "PAYMENT_EXPIRED": "Y" if installation.payment_expired else "N",
        "DAYS": None,  # the page's example for a free app; no paid period is emulated
        "LANGUAGE_ID": "en",
        "LICENSE": f"en_{license_type}",
        "LICENSE_TYPE": license_type,
        "LICENSE_FAMILY": family,
    }


def _license(portal: DevPortal) -> tuple[str, str]:
    """The plan, from the limits the portal was created with (limits.md: Enterprise is faster).

    The plan names are app-info.md's examples; which plan a standard-limit portal is on is our
    choice [INFERRED].
    """
    if portal.bucket.burst >= ENTERPRISE_LIMITS[1]:
        return "ent250", "ent"
    return "pro100", "pro"


# --- the current user -----------------------------------------------------------------------------


@method("profile")
def profile(call: Call, params: dict[str, Any]) -> dict[str, Any] | list[Any]:
    """api-reference/common/users/profile.md: basic data without any scope; empty if inactive.

    The page calls the inactive user's result an empty object; Bitrix24 is PHP, whose empty
    array travels as `[]`, so that is what we send [INFERRED] (a client must accept both).
    """
    user = current_user(call)
    if user is None or not user.active:
        return []
    return {
        "ID": str(user.id),
        "ADMIN": user.admin,
        "NAME": user.name,
        "LAST_NAME": user.last_name,
        "PERSONAL_GENDER": "",
        "TIME_ZONE": user.time_zone,
    }


@method("user.admin")
def user_admin(call: Call, params: dict[str, Any]) -> bool:
    """api-reference/common/users/user-admin.md: may the current user manage app settings."""
    return is_admin(call)


@method("user.current", scope=USER_SCOPES)
def user_current(call: Call, params: dict[str, Any]) -> dict[str, Any]:
    """api-reference/user/user-current.md: the token's user, fields depending on the scope."""
    user = current_user(call)
    return visible_user(user, call.token.scope) if user else {}
