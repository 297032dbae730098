"""Security review as tests (issue 6, part 5): the running app attacked the way an outsider
would, through its real doors (installer, events, OAuth callback, PBX API, settings page).

Helpers shared by the test modules: installed portals with their PBX keys, tokens as Bitrix24
hands them to a user who opens the app, and the checks every hostile answer must pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from b24app.db import get_db
from b24app.models import Portal
from b24app.portals import pbx_keys, store
from b24app.wiring import current_store
from devportal.state import DevPortal, DevState
from tests.conftest import TEST_CLIENT_ID, LiveApp

FINISH = "/pbx/v1/calls/finish"


@dataclass(frozen=True)
class Installed:
    """A portal with our app installed, and the PBX key the settings page would show."""

    portal: DevPortal
    key: str

    @property
    def member_id(self) -> str:
        return self.portal.member_id

    @property
    def application_token(self) -> str:
        return self.portal.installations[TEST_CLIENT_ID].application_token


def install(live: LiveApp, code: str) -> Installed:
    portal = live.install(code)
    return Installed(portal, pbx_key(live, portal.member_id))


def pbx_key(live: LiveApp, member_id: str) -> str:
    with live.app.app_context(), get_db().read() as session:
        row = store.find_portal(session, member_id)
        assert row is not None
        return pbx_keys.reveal(row.settings, current_store().box)


def stored(live: LiveApp, member_id: str) -> Portal | None:
    with live.app.app_context(), get_db().read() as session:
        return store.find_portal(session, member_id)


def stored_secrets(live: LiveApp, member_id: str) -> tuple[str | None, str | None, str | None]:
    """(access token, refresh token, application_token) as we keep them for the portal."""
    with live.app.app_context(), get_db().read() as session:
        row = store.find_portal(session, member_id)
        assert row is not None
        pair = current_store().read_tokens(row)
        return (
            pair.access_token if pair else None,
            pair.refresh_token if pair else None,
            current_store().application_token(row),
        )


def user_tokens(dev: DevState, portal: DevPortal, user_id: int) -> tuple[str, str]:
    """The AUTH_ID and REFRESH_ID Bitrix24 posts into the frame when `user_id` opens the app
    (settings/oauth/simple-way.md: issued for that user, whoever they are)."""
    access, refresh = dev.issue_tokens(portal, TEST_CLIENT_ID, user_id)
    return access.token, refresh.token


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def post_event(live: LiveApp, pairs: Any, **kwargs: Any) -> requests.Response:
    """An event body as a stranger would send it to our handler URL."""
    return requests.post(f"{live.url}/events", data=pairs, timeout=10, **kwargs)


def assert_no_crash(response: Any) -> None:
    """A hostile request gets an answer, never a 500 and never a traceback."""
    status = getattr(response, "status_code", None)
    body = response.text if hasattr(response, "text") else response.get_data(as_text=True)
    assert status is not None and status < 500, f"{status}: {body[:500]}"
    assert "Traceback" not in body and 'File "' not in body, body[:500]
