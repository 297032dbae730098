"""Uninstalling with "Clear application data" (issue 10, item 7).

api-reference/common/events/on-app-uninstall.md: ONAPPUNINSTALL carries `data[CLEAN]`, "the value
of the 'Clear application data' option set by the user during uninstallation", 1 or 0. With 1, a
confirmed uninstall erases everything b24app keeps for the portal; with 0 the data stays for a
reinstall (settings/app-uninstallation.md: "the application can be reinstalled on the same
Bitrix24 … once again gain access to the non-deleted data") and only the tokens go. End to end:
the development portal's admin uninstalls, Bitrix24's event reaches our handler.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select, update

from b24app.db import get_db
from b24app.models import (
    Call,
    CallState,
    ExtensionMapping,
    OAuthState,
    Portal,
    PortalSettings,
    PortalStatus,
    utcnow,
)
from b24app.portals import store
from devportal.state import DevPortal
from tests.conftest import TEST_CLIENT_ID, LiveApp
from tests.pbx import UNREGISTERED
from tests.security import FINISH, Installed, bearer, install, pbx_key, post_event, stored
from tests.security.test_forged_events import uninstall_event


def owned(live: LiveApp, member_id: str) -> dict[str, int]:
    """How many rows of each kind the portal owns (0 everywhere once it is erased)."""
    with live.app.app_context(), get_db().read() as session:
        row = store.find_portal(session, member_id)
        portal_id = row.id if row else -1

        def count(model: type, column: object) -> int:
            return session.scalar(select(func.count()).select_from(model).where(column)) or 0

        return {
            "portals": count(Portal, Portal.member_id == member_id),
            "settings": count(PortalSettings, PortalSettings.portal_id == portal_id),
            "mapping": count(ExtensionMapping, ExtensionMapping.portal_id == portal_id),
            "calls": count(Call, Call.portal_id == portal_id),
            "oauth_states": count(OAuthState, OAuthState.member_id == member_id),
        }


def with_data(live: LiveApp, installed: Installed) -> None:
    """A portal in use: a setting, a mapping, a pending re-authorisation, a delivered call and
    two waiting to be delivered (their phone numbers are what must not outlive the choice)."""
    for n in range(3):
        call = {**UNREGISTERED, "PBX_CALL_ID": f"clean-{n}"}
        answer = requests.post(
            live.url + FINISH, json=call, headers=bearer(installed.key), timeout=10
        )
        assert answer.status_code == 202, answer.text
    with live.app.app_context(), get_db().write() as session:
        row = store.find_portal(session, installed.member_id)
        assert row is not None
        row.settings.currency = "EUR"
        session.add(ExtensionMapping(portal_id=row.id, extension="201", user_id=2))
        session.add(
            OAuthState(
                state_hash=installed.member_id * 2,
                member_id=installed.member_id,
                expires_at=utcnow() + timedelta(minutes=10),
            )
        )
        session.execute(
            update(Call)
            .where(Call.idempotency_key == "clean-0", Call.portal_id == row.id)
            .values(state=CallState.DELIVERED, delivered_at=utcnow())
        )


def uninstall(live: LiveApp, portal: DevPortal, *, clean: bool) -> int | None:
    ((_, status),) = live.driver.uninstall(portal, TEST_CLIENT_ID, clean=clean)
    return status


@pytest.fixture
def alpha(live_app: LiveApp) -> Installed:
    installed = install(live_app, "alpha")
    with_data(live_app, installed)
    return installed


@pytest.fixture
def beta(live_app: LiveApp) -> Installed:
    installed = install(live_app, "beta")
    with_data(live_app, installed)
    return installed


def test_clear_application_data_erases_everything_of_that_portal_only(
    live_app: LiveApp, alpha: Installed, beta: Installed, capfd: pytest.CaptureFixture[str]
) -> None:
    beta_before = owned(live_app, beta.member_id)
    capfd.readouterr()

    assert uninstall(live_app, alpha.portal, clean=True) == 200

    assert owned(live_app, alpha.member_id) == {
        "portals": 0,
        "settings": 0,
        "mapping": 0,
        "calls": 0,
        "oauth_states": 0,
    }
    assert owned(live_app, beta.member_id) == beta_before
    assert stored(live_app, beta.member_id).status == PortalStatus.ACTIVE
    refused = requests.post(
        live_app.url + FINISH, json=UNREGISTERED, headers=bearer(alpha.key), timeout=10
    )
    assert refused.status_code == 401
    (line,) = [json.loads(x) for x in capfd.readouterr().err.splitlines() if "erased" in x]
    assert line["member_id"] == alpha.member_id
    assert line["erased_rows"]["calls"] == 3
    assert line["erased_rows"]["extension_mappings"] == 1
    assert line["erased_rows"]["portals"] == 1


def test_without_clear_the_data_stays_for_a_reinstall_and_only_tokens_go(
    live_app: LiveApp, alpha: Installed
) -> None:
    before = owned(live_app, alpha.member_id)

    assert uninstall(live_app, alpha.portal, clean=False) == 200

    assert owned(live_app, alpha.member_id) == before
    row = stored(live_app, alpha.member_id)
    assert row.status == PortalStatus.UNINSTALLED
    assert row.access_token_encrypted is None and row.refresh_token_encrypted is None
    assert row.application_token_encrypted is None


def test_a_reinstall_after_clearing_starts_afresh(live_app: LiveApp, alpha: Installed) -> None:
    uninstall(live_app, alpha.portal, clean=True)

    assert live_app.driver.open_installer(alpha.portal, TEST_CLIENT_ID).status_code == 200
    live_app.driver.finish_install(alpha.portal, TEST_CLIENT_ID)

    again = pbx_key(live_app, alpha.member_id)
    assert again != alpha.key
    assert owned(live_app, alpha.member_id) == {
        "portals": 1,
        "settings": 1,
        "mapping": 0,
        "calls": 0,
        "oauth_states": 0,
    }
    with live_app.app.app_context(), get_db().read() as session:
        assert store.find_portal(session, alpha.member_id).settings.currency is None


def test_a_forged_clean_uninstall_erases_nothing(live_app: LiveApp, alpha: Installed) -> None:
    """CLEAN=1 counts only in a confirmed uninstall: a user who saw the application_token cannot
    erase the portal's data while the app is installed."""
    before = owned(live_app, alpha.member_id)
    forged = uninstall_event(alpha.member_id, alpha.application_token)
    forged = [(k, "1" if k == "data[CLEAN]" else v) for k, v in forged]

    assert post_event(live_app, forged).status_code == 403

    assert owned(live_app, alpha.member_id) == before
    assert stored(live_app, alpha.member_id).status == PortalStatus.ACTIVE


@pytest.mark.parametrize("value", ["0", "", "yes", "true", "11", "1\x00"])
def test_only_clean_1_clears(live_app: LiveApp, alpha: Installed, value: str) -> None:
    """on-app-uninstall.md: CLEAN is 1 or 0; anything but 1 keeps the data (the safe reading)."""
    before = owned(live_app, alpha.member_id)
    live_app.dev.revoke_tokens(alpha.member_id, TEST_CLIENT_ID)  # the app really is gone
    event = uninstall_event(alpha.member_id, alpha.application_token)
    event = [(k, value if k == "data[CLEAN]" else v) for k, v in event]

    assert post_event(live_app, event).status_code == 200

    assert owned(live_app, alpha.member_id) == before
    assert stored(live_app, alpha.member_id).status == PortalStatus.UNINSTALLED


def test_the_development_portal_offers_clear_application_data(
    live_app: LiveApp, alpha: Installed
) -> None:
    """The admin's choice through the development portal's own API (`/_dev/`), as `make run`
    and the browser use it: a JSON boolean, anything else refused before anything happens."""
    url = f"{live_app.dev.base_url}/_dev/portals/alpha/uninstall"
    before = owned(live_app, alpha.member_id)

    wrong = requests.post(url, json={"client_id": TEST_CLIENT_ID, "clean": "0"}, timeout=10)
    assert wrong.status_code == 400 and "clean" in wrong.json()["error_description"]
    assert owned(live_app, alpha.member_id) == before
    assert TEST_CLIENT_ID in alpha.portal.installations

    done = requests.post(url, json={"client_id": TEST_CLIENT_ID, "clean": True}, timeout=30)

    assert done.json()["events"] == [{"url": f"{live_app.url}/events", "status": 200}]
    assert owned(live_app, alpha.member_id)["portals"] == 0


def test_an_erased_portal_leaves_no_trace_in_the_sqlite_files(
    live_app: LiveApp, alpha: Installed, beta: Installed
) -> None:
    """Found by trying it: right after a CLEAN=1 erase the SQLite -wal file still held the
    erased rows. The erase overwrites deleted rows (secure_delete) and checkpoints the -wal file
    away: the portal's member_id is nowhere in the database's files; the other portal's is."""
    database = str(live_app.app.config["DATABASE_URL"])
    if not database.startswith("sqlite:///"):
        pytest.skip("about SQLite's files")
    path = Path(database.removeprefix("sqlite:///"))

    def traces(member_id: str) -> int:
        files = [f for f in path.parent.glob(path.name + "*") if f.is_file()]
        return sum(f.read_bytes().count(member_id.encode()) for f in files)

    assert traces(alpha.member_id) > 0
    assert uninstall(live_app, alpha.portal, clean=True) == 200
    assert traces(alpha.member_id) == 0
    assert traces(beta.member_id) > 0
