"""Delivery when the portal's access token cannot be had: the OAuth server failing a refresh,
and a portal refusing the token it was just given. Neither is a trouble of the calls, and none
of their requests ran: the calls spend no attempts, are not looked up, and go within seconds of
the trouble ending.

Pages: settings/oauth/index.md (the refresh), _includes/system-errors.md (expired_token,
NO_AUTH_FOUND); `invalid_token` is not in the docs (reference/bitrix24-api-digest.md §2.5: treat
it as "auth failed").
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from b24app.db import get_db
from b24app.delivery import portal_health
from b24app.delivery.batching import STATISTICS
from b24app.delivery.portal_health import PROBE_CAP, TOKENS_REFUSED_FOR
from b24app.delivery.retry import PORTAL_PAUSED
from b24app.models import CallState, PortalStatus, utcnow
from b24app.portals import store
from devportal import faults
from devportal.state import DevPortal
from tests.conftest import LiveApp
from tests.delivery.conftest import calls, commands, paused, portal_id, queue, run_worker
from tests.delivery.conftest import unregistered_requests as new_calls
from tests.front import Front, oauth_in_front
from tests.settings_page.conftest import open_page


@pytest.fixture
def oauth_front(live_app: LiveApp) -> Iterator[Front]:
    with oauth_in_front(live_app) as front:
        yield front


@pytest.mark.parametrize("failure", ["html503", "html200"])
def test_an_oauth_server_failing_the_refresh_pauses_the_portal_until_it_renews_the_token(
    live_app: LiveApp, oauth_front: Front, failure: str
) -> None:
    """Our request never reached the portal (its token had to be renewed first, or it refused
    the expired one): the calls are not looked up, spend no attempts, and the admin reads that
    the OAuth server failed. The portal is paused and probed, and the first probe after the
    OAuth server is back renews the token and sends the calls."""
    portal = live_app.install("alpha")
    ids = queue(live_app, portal, new_calls(3))
    faults.expire_tokens(live_app.dev, portal)
    oauth_front.mode = failure

    assert run_worker(live_app.app) == Counter(retrying=3)
    for row in calls(live_app, ids):
        assert row.state == CallState.QUEUED and row.attempts == 0
        assert row.error_code == PORTAL_PAUSED
        assert "OAuth server" in (row.error or "") and "portal" in (row.error or "")
    assert paused(live_app, portal) is not None

    oauth_front.mode = "pass"
    back = time.monotonic()
    assert run_worker(live_app.app, ahead=PROBE_CAP) == Counter(delivered=3)
    assert time.monotonic() - back < 5  # beside the probe interval, at most PROBE_CAP
    assert paused(live_app, portal) is None
    assert commands(live_app.dev, portal, STATISTICS) == []  # nothing to look up
    assert len(portal.statistics) == 3


def test_a_portal_refusing_even_a_renewed_token_is_paused_until_it_takes_one_again(
    live_app: LiveApp,
) -> None:
    """NO_AUTH_FOUND right after a refresh: the portal takes no token of ours now, and every
    request to it would meet the same. Its calls did not run and are not at fault, so they
    spend no attempts (they used to back off for up to 15 minutes each): the portal is paused,
    and they go at the first probe the portal answers."""
    portal = live_app.install("alpha")
    ids = queue(live_app, portal, new_calls(3))
    faults.set_rest_error(live_app.dev, portal, "NO_AUTH_FOUND")

    assert run_worker(live_app.app) == Counter(retrying=3)
    for row in calls(live_app, ids):
        assert row.state == CallState.QUEUED and row.attempts == 0
        assert row.error_code == PORTAL_PAUSED
    assert paused(live_app, portal) is not None

    faults.clear(live_app.dev, portal)
    back = time.monotonic()
    assert run_worker(live_app.app, ahead=PROBE_CAP) == Counter(delivered=3)
    assert time.monotonic() - back < 5
    assert commands(live_app.dev, portal, STATISTICS) == []
    assert len(portal.statistics) == 3


def test_a_portal_refusing_renewed_tokens_for_ten_minutes_asks_its_admin_to_reauthorise(
    live_app: LiveApp,
) -> None:
    """Each probe of such a portal renews the token once more (one refresh a probe, no more);
    after TOKENS_REFUSED_FOR the portal needs its admin: it is no longer probed, its calls wait
    without failing, and the admin opening the app sends them."""
    portal = live_app.install("alpha")
    ids = queue(live_app, portal, new_calls(3))
    faults.set_rest_error(live_app.dev, portal, "NO_AUTH_FOUND")
    assert run_worker(live_app.app) == Counter(retrying=3)

    assert run_worker(live_app.app, ahead=60) == Counter()  # a probe, refused
    assert paused(live_app, portal) is not None and status(live_app, portal) == "active"
    assert run_worker(live_app.app, ahead=TOKENS_REFUSED_FOR + 1) == Counter()
    assert paused(live_app, portal) is None
    assert status(live_app, portal) == PortalStatus.NEEDS_REAUTH
    assert len(refreshes(live_app)) == 3  # the batch's, then one for each probe
    assert run_worker(live_app.app, ahead=TOKENS_REFUSED_FOR + 60) == Counter()  # not probed
    assert len(refreshes(live_app)) == 3
    for row in calls(live_app, ids):
        assert row.state == CallState.QUEUED and row.attempts == 0

    faults.clear(live_app.dev, portal)
    open_page(live_app, portal, user_id=1)  # the portal's admin opens the application
    assert run_worker(live_app.app) == Counter(delivered=3)


def refreshes(live: LiveApp) -> list[dict[str, Any]]:
    return [entry for entry in live.dev.journal if entry.get("oauth") == "refresh_token"]


def status(live: LiveApp, portal: DevPortal) -> str:
    with live.app.app_context(), get_db().read() as session:
        row = store.find_portal(session, portal.member_id)
        assert row is not None
        return row.status


def test_the_ten_minutes_count_from_the_first_token_refusal_not_from_the_pause(
    live_app: LiveApp,
) -> None:
    """A portal paused for another reason (here OVERLOAD_LIMIT, 20 minutes ago) whose probes
    then meet a token refusal gets its own ten minutes before its admin is asked."""
    portal = live_app.install("alpha")
    queue(live_app, portal, new_calls(1))
    with live_app.app.app_context():
        long_ago = utcnow() - timedelta(minutes=20)
        portal_health.pause(
            get_db(), portal_id(live_app, portal), code="OVERLOAD_LIMIT", reason="x", now=long_ago
        )
    faults.set_rest_error(live_app.dev, portal, "NO_AUTH_FOUND")

    assert run_worker(live_app.app) == Counter()  # a probe, refused
    assert paused(live_app, portal) is not None and status(live_app, portal) == "active"
    assert run_worker(live_app.app, ahead=TOKENS_REFUSED_FOR + 1) == Counter()
    assert status(live_app, portal) == PortalStatus.NEEDS_REAUTH
