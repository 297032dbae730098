"""The one client for calling a portal: refresh, status changes, domain moves, rate limits.

Against the development portal, whose refresh tokens are single-use (settings/oauth/auto-renewal.md)
and whose errors follow _includes/system-errors.md and limits.md.
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest

from b24app.bitrix.errors import PortalUnavailable, RateLimited
from b24app.bitrix.throttle import STANDARD, Limits, spare_slot
from b24app.db import get_db
from b24app.models import PortalStatus, utcnow
from b24app.portals import store
from b24app.portals.throttle import Throttle
from b24app.wiring import current_store
from devportal import faults
from tests.conftest import LiveApp
from tests.front import Front


def refreshes(live: LiveApp) -> list[dict]:
    return [e for e in live.dev.journal if e.get("oauth") == "refresh_token"]


def portal_row(live: LiveApp, member_id: str):  # type: ignore[no-untyped-def]
    with live.app.app_context(), get_db().read() as session:
        return store.find_portal(session, member_id)


def test_a_call_returns_the_envelope(live_app: LiveApp):
    portal = live_app.install()
    with live_app.app.app_context():
        body = current_store().client(portal.member_id).call("user.admin")
    assert body["result"] is True
    assert "time" in body


def test_expired_token_is_refreshed_once_and_the_call_repeated(live_app: LiveApp):
    """auto-renewal.md: call → expired_token (401) → refresh → repeat the same call."""
    portal = live_app.install()
    faults.expire_tokens(live_app.dev, portal)
    with live_app.app.app_context():
        assert current_store().client(portal.member_id).result("user.admin") is True
        assert current_store().client(portal.member_id).result("user.admin") is True
    assert len(refreshes(live_app)) == 1
    assert [e["error"] for e in refreshes(live_app)] == [None]


def test_token_known_to_be_expired_is_refreshed_before_the_call(live_app: LiveApp):
    portal = live_app.install()
    live_app.dev.advance(3600)
    with live_app.app.app_context(), get_db().write() as session:  # and we know it
        store.find_portal(session, portal.member_id).access_expires_at = utcnow()
    asked_at_install = len(live_app.dev.entries(method="user.admin"))  # is the installer admin?
    with live_app.app.app_context():
        assert current_store().client(portal.member_id).result("user.admin") is True
    calls = live_app.dev.entries(method="user.admin")[asked_at_install:]
    assert [c["status"] for c in calls] == [200]  # no wasted 401 first
    assert len(refreshes(live_app)) == 1


def test_invalid_grant_moves_the_portal_to_needs_reauth_and_stops_calls(live_app: LiveApp):
    portal = live_app.install()
    for token in live_app.dev.refresh_tokens.values():
        token.used = True  # someone else used our refresh token: it is dead
    faults.expire_tokens(live_app.dev, portal)
    with live_app.app.app_context():
        with pytest.raises(PortalUnavailable) as raised:
            current_store().client(portal.member_id).call("user.admin")
        assert raised.value.portal_status == PortalStatus.NEEDS_REAUTH
        before = len(live_app.dev.journal)
        with pytest.raises(PortalUnavailable):
            current_store().client(portal.member_id).call("user.admin")
    assert len(live_app.dev.journal) == before  # no request was sent
    assert portal_row(live_app, portal.member_id).status == PortalStatus.NEEDS_REAUTH


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("PORTAL_DELETED", PortalStatus.PORTAL_DELETED),
        ("ACCESS_DENIED", PortalStatus.ACCESS_DENIED),
    ],
)
def test_portal_errors_give_the_documented_status(live_app: LiveApp, code, status):
    portal = live_app.install()
    faults.set_rest_error(live_app.dev, portal, code)
    with live_app.app.app_context(), pytest.raises(PortalUnavailable):
        current_store().client(portal.member_id).call("user.admin")
    row = portal_row(live_app, portal.member_id)
    assert row.status == status
    assert row.status_detail


def test_lapsed_payment_gives_payment_required(live_app: LiveApp):
    """error-codes.md: PAYMENT_REQUIRED — the paid period expired; no tokens until payment."""
    portal = live_app.install()
    faults.lapse_payment(live_app.dev, portal, live_app.dev.apps and "app.test.1")
    faults.expire_tokens(live_app.dev, portal)
    with live_app.app.app_context(), pytest.raises(PortalUnavailable):
        current_store().client(portal.member_id).call("user.admin")
    assert portal_row(live_app, portal.member_id).status == PortalStatus.PAYMENT_REQUIRED


def test_domain_change_is_followed_and_stored(live_app: LiveApp):
    """change-domen.md: the old address answers 302; the POST is re-sent to the new one."""
    portal = live_app.install()
    faults.change_address(live_app.dev, portal, "alpha-renamed")
    with live_app.app.app_context():
        assert current_store().client(portal.member_id).result("user.admin") is True
    row = portal_row(live_app, portal.member_id)
    assert row.client_endpoint == live_app.dev.client_endpoint(portal)
    assert "alpha-renamed" in row.client_endpoint


def test_invalid_token_is_refreshed_once_and_the_call_repeated(live_app: LiveApp):
    """`invalid_token` is not in the docs (bitrix24-api-digest.md §2.5: third-party code names
    it; "treat as auth failed"): should a portal answer it, renewing the token is the one thing
    that can help, so it is treated as expired_token. A front of the portal answers it to the
    first request only."""
    portal = live_app.install()
    real = urlsplit(live_app.dev.client_endpoint(portal))
    front = Front(f"{real.scheme}://{real.netloc}")
    front.mode = "invalid_token once"
    try:
        with live_app.app.app_context(), get_db().write() as session:
            row = store.find_portal(session, portal.member_id)
            row.client_endpoint = f"{front.url}{real.path}"
        with live_app.app.app_context():
            assert current_store().client(portal.member_id).result("user.admin") is True
    finally:
        front.close()
    assert front.asked == 2  # refused, then passed on
    assert [e["error"] for e in refreshes(live_app)] == [None]


def test_query_limit_exceeded_backs_off_and_succeeds(live_app: LiveApp):
    """limits.md: slow down and retry with growing delays."""
    portal = live_app.install()
    portal.bucket.rate, portal.bucket.burst, portal.bucket.level = 2.0, 3, 3.0
    asked_at_install = len(live_app.dev.entries(method="user.admin"))  # is the installer admin?
    with live_app.app.app_context():
        assert current_store().client(portal.member_id).result("user.admin") is True
    statuses = [e["status"] for e in live_app.dev.entries(method="user.admin")[asked_at_install:]]
    assert statuses[0] == 503 and statuses[-1] == 200


def test_operation_time_limit_says_when_to_retry(live_app: LiveApp):
    """limits.md: 429 OPERATION_TIME_LIMIT; wait until operating_reset_at."""
    portal = live_app.install()
    portal.operating.clear()  # the installer asked user.admin (is its user an admin?)
    portal.operating_limit = 0.0
    with live_app.app.app_context():
        client = current_store().client(portal.member_id)
        client.call("user.admin")  # spends some time: the budget is now exceeded
        with pytest.raises(RateLimited) as raised:
            client.call("user.admin")
    assert raised.value.code == "OPERATION_TIME_LIMIT"
    assert raised.value.retry_at > time.time() + 500


def test_batch_returns_each_commands_result_and_error(live_app: LiveApp):
    portal = live_app.install()
    with live_app.app.app_context():
        outcome = (
            current_store()
            .client(portal.member_id)
            .batch(
                {
                    "admin": ("user.admin", {}),
                    "me": ("user.get", {"FILTER": {"ID": "$result[profile][ID]"}}),
                    "profile": ("profile", {}),
                    "bad": ("no.such.method", {}),
                }
            )
        )
    assert outcome.result["admin"] is True
    assert outcome.errors["bad"].code == "ERROR_METHOD_NOT_FOUND"


def test_batch_references_earlier_results(live_app: LiveApp):
    portal = live_app.install()
    with live_app.app.app_context():
        outcome = (
            current_store()
            .client(portal.member_id)
            .batch(
                {
                    "profile": ("profile", {}),
                    "me": ("user.get", {"FILTER": {"ID": "$result[profile][ID]"}}),
                }
            )
        )
    assert not outcome.errors
    assert [u["ID"] for u in outcome.result["me"]] == ["1"]


def test_throttle_allows_the_burst_then_spaces_requests(live_app: LiveApp):
    portal = live_app.install()
    with live_app.app.app_context():
        row = portal_row(live_app, portal.member_id)
        throttle = Throttle(get_db())
        limits = Limits(rate=2.0, burst=5)
        now = time.time() + 1000  # after every slot the install itself booked
        waits = [throttle.reserve(row.id, limits, now=now) for _ in range(8)]
    assert waits[:5] == [0.0] * 5
    assert waits[5:] == pytest.approx([0.5, 1.0, 1.5])
    assert STANDARD.rate < 2 and STANDARD.burst < 50  # headroom below the portal's bucket


# --- questions someone waits on (PortalClient.ask): spare slots only --------------------------


def test_a_spare_slot_goes_now_and_leaves_the_rest_of_the_burst_free():
    limits = Limits(rate=2.0, burst=10)
    now = 1000.0
    assert spare_slot(0.0, 0.0, now, limits, keep_free=5) == now + 0.5  # empty bucket
    half_full = now + 4 * 0.5  # four requests in the bucket: one more leaves five free
    assert spare_slot(half_full, 0.0, now, limits, keep_free=5) == half_full + 0.5
    assert spare_slot(half_full + 0.5, 0.0, now, limits, keep_free=5) is None  # would leave 4
    assert spare_slot(0.0, now + 1, now, limits, keep_free=5) is None  # QUERY_LIMIT_EXCEEDED


def test_a_refused_spare_slot_books_nothing(live_app: LiveApp):
    """The worker's next slot is where it was: a question that found no room cost it nothing."""
    portal = live_app.install()
    with live_app.app.app_context():
        row = portal_row(live_app, portal.member_id)
        throttle = Throttle(get_db())
        limits = Limits(rate=2.0, burst=10)
        now = time.time() + 1000
        for _ in range(5):
            throttle.reserve(row.id, limits, now=now)
        assert not throttle.reserve_spare(row.id, limits, keep_free=5, now=now)
        booked = [throttle.reserve_spare(row.id, limits, keep_free=4, now=now) for _ in range(3)]
        waits = [throttle.reserve(row.id, limits, now=now) for _ in range(5)]
    assert booked == [True, False, False]  # only the sixth request fit beside four free
    assert waits == [0.0] * 4 + [pytest.approx(0.5)]  # the burst's last four, then spaced


def test_ask_sends_while_the_bucket_has_room(live_app: LiveApp):
    portal = live_app.install()
    with live_app.app.app_context():
        envelope = (
            current_store().client(portal.member_id).ask("user.admin", timeout=2, keep_free=0.5)
        )
    assert envelope["result"] is True


def test_ask_sends_nothing_when_the_delivery_needs_the_rest_of_the_bucket(live_app: LiveApp):
    portal = live_app.install()
    with live_app.app.app_context():
        row = portal_row(live_app, portal.member_id)
        throttle = Throttle(get_db())
        for _ in range(STANDARD.burst // 2):  # the worker's burst: half the bucket is taken
            throttle.reserve(row.id, STANDARD)
        before = len(live_app.dev.journal)
        with pytest.raises(RateLimited) as raised:
            current_store().client(portal.member_id).ask("user.admin", timeout=2, keep_free=0.5)
    assert raised.value.code == "NO_SLOT"
    assert len(live_app.dev.journal) == before


def test_ask_does_not_retry_query_limit_exceeded_and_blocks_the_schedule(live_app: LiveApp):
    portal = live_app.install()
    faults.set_rest_error(live_app.dev, portal, "QUERY_LIMIT_EXCEEDED")
    before = len(live_app.dev.entries(method="user.admin"))
    started = time.monotonic()
    with live_app.app.app_context():
        with pytest.raises(RateLimited) as raised:
            current_store().client(portal.member_id).ask("user.admin", timeout=2, keep_free=0.5)
        row = portal_row(live_app, portal.member_id)
        throttle = Throttle(get_db())
        wait = throttle.reserve(row.id, STANDARD)
    assert raised.value.code == "QUERY_LIMIT_EXCEEDED"
    assert time.monotonic() - started < 1.0
    assert len(live_app.dev.entries(method="user.admin")) == before + 1
    assert wait > 1.0  # the worker, too, waits as Bitrix24 asked
