"""From Bitrix24 to the PBX (issue 13): ONEXTERNALCALLSTART / ONEXTERNALCALLBACKSTART posted to
/events as Bitrix24 posts them, the worker (in the background, default settings) sending each to
the portal's originate webhook, signed the Standard Webhooks way; then the PBX reporting the
click-to-call with Bitrix24's CALL_ID. On SQLite and PostgreSQL.

Contract: PRODUCT.md "From Bitrix24 to the PBX"; pages: api-reference/telephony/events/
on-external-call-start.md, on-external-call-back-start.md, tutorials/telephony/index.md.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from b24app.db import get_db
from b24app.delivery.worker import Worker
from b24app.models import utcnow
from b24app.portals import mapping, store
from tests.conftest import TEST_CLIENT_ID, LiveApp
from tests.delivery.conftest import register_on_portal, run_worker
from tests.delivery.test_whole_call import Pbx, connect, steps
from tests.originate.conftest import (
    Receiver,
    application_token,
    originations,
    post_event,
    set_originate,
    wait_for,
)

CLICK = {
    "PHONE_NUMBER": "+494951234567",
    "PHONE_NUMBER_INTERNATIONAL": "+494951234567",
    "EXTENSION": "",
    "USER_ID": "2",  # Boris
    "CALL_LIST_ID": "0",
    "LINE_NUMBER": "7",
    "IS_MOBILE": "0",
    "CRM_ENTITY_TYPE": "CONTACT",
    "CRM_ENTITY_ID": "797",
}
CALLBACK = {  # a contact of the development portal's CRM (devportal/crm_data.py)
    "PHONE_NUMBER": "+1 906 219-50-47",
    "TEXT": "A callback has been ordered from the website",
    "VOICE": "ruinternalfemale",
    "CRM_ENTITY_TYPE": "CONTACT",
    "CRM_ENTITY_ID": "651",
    "LINE_NUMBER": "7",
}
SENT_WITHIN = 3.0  # seconds from the event to the PBX: the worker looks every 0.2 s


def click(pbx: Pbx) -> str:
    """A click in the CRM: Bitrix24 registers the call itself, then sends the event."""
    (call_id,) = register_on_portal(pbx.live.dev, pbx.portal, 1, USER_ID=2, TYPE=1, SHOW=0)
    answer = post_event(pbx.live, pbx.portal, "ONEXTERNALCALLSTART", {**CLICK, "CALL_ID": call_id})
    assert answer.status_code == 200, answer.text
    return call_id


@pytest.fixture
def pbx(live_app: LiveApp) -> Pbx:
    return connect(live_app)


def bound(pbx: Pbx) -> set[str]:
    """The events the app's handler is bound to on the development portal (event.bind)."""
    installation = pbx.portal.installations[TEST_CLIENT_ID]
    handler = f"{pbx.live.url}/events"
    return {str(e["event"]).upper() for e in installation.events if e.get("handler") == handler}


def test_the_app_binds_click_to_call_and_callback_at_install(pbx: Pbx) -> None:
    assert {"ONEXTERNALCALLSTART", "ONEXTERNALCALLBACKSTART"} <= bound(pbx)


def test_a_portal_installed_before_gets_them_bound_on_update(pbx: Pbx) -> None:
    installation = pbx.portal.installations[TEST_CLIENT_ID]
    installation.events = [
        e for e in installation.events if str(e["event"]).upper().startswith("ONAPP")
    ]
    assert "ONEXTERNALCALLSTART" not in bound(pbx)
    pbx.live.driver.update(pbx.portal, TEST_CLIENT_ID)
    assert {"ONEXTERNALCALLSTART", "ONEXTERNALCALLBACKSTART"} <= bound(pbx)


def test_a_click_becomes_one_signed_webhook_that_verifies(
    pbx: Pbx, receiver: Receiver, background_worker: Worker
) -> None:
    secret = set_originate(pbx.live, pbx.portal.member_id, receiver.url)
    call_id = click(pbx)

    wait_for(lambda: len(receiver.received) == 1, SENT_WITHIN)
    got = receiver.received[0]
    body = Webhook(secret).verify(got.body, got.headers)
    assert body == {
        "type": "call.start",
        "CALL_ID": call_id,
        "PHONE_NUMBER": "+494951234567",
        "PHONE_NUMBER_INTERNATIONAL": "+494951234567",
        "EXTENSION": None,
        "USER_ID": 2,
        "USER_PHONE_INNER": "101",  # Boris's profile (UF_PHONE_INNER)
        "LINE_NUMBER": "7",
        "CRM_ENTITY_TYPE": "CONTACT",
        "CRM_ENTITY_ID": 797,
        "CALL_LIST_ID": 0,
        "IS_MOBILE": 0,
    }
    assert got.headers["webhook-signature"].startswith("v1,")
    wait_for(lambda: originations(pbx.live)[0].state == "delivered", 2.0)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(got.body.replace(b"101", b"102"), got.headers)


def test_the_extension_comes_from_the_mapping_first(
    pbx: Pbx, receiver: Receiver, background_worker: Worker
) -> None:
    set_originate(pbx.live, pbx.portal.member_id, receiver.url)
    with pbx.live.app.app_context(), get_db().write() as session:
        row = store.find_portal(session, pbx.portal.member_id)
        assert row is not None
        mapping.replace(session, row, {"205": 2})
    click(pbx)
    wait_for(lambda: len(receiver.received) == 1, SENT_WITHIN)
    assert receiver.received[0].json()["USER_PHONE_INNER"] == "205"


def test_the_same_event_twice_is_one_webhook(
    pbx: Pbx, receiver: Receiver, background_worker: Worker
) -> None:
    set_originate(pbx.live, pbx.portal.member_id, receiver.url)
    (call_id,) = register_on_portal(pbx.live.dev, pbx.portal, 1, USER_ID=2, TYPE=1, SHOW=0)
    data = {**CLICK, "CALL_ID": call_id}
    first = post_event(pbx.live, pbx.portal, "ONEXTERNALCALLSTART", data)
    again = post_event(pbx.live, pbx.portal, "ONEXTERNALCALLSTART", data, ts="1773236999")
    assert (first.json()["status"], again.json()["status"]) == ("accepted", "duplicate")
    wait_for(lambda: len(receiver.received) == 1, SENT_WITHIN)
    wait_for(lambda: originations(pbx.live)[0].state == "delivered", 2.0)
    assert len(receiver.received) == 1 and len(originations(pbx.live)) == 1


@pytest.mark.parametrize("token", ["", "forged-application-token"])
def test_a_forged_event_sends_nothing(
    pbx: Pbx, receiver: Receiver, background_worker: Worker, token: str
) -> None:
    set_originate(pbx.live, pbx.portal.member_id, receiver.url)
    (call_id,) = register_on_portal(pbx.live.dev, pbx.portal, 1, USER_ID=2, TYPE=1, SHOW=0)
    data = {**CLICK, "CALL_ID": call_id}
    answer = post_event(pbx.live, pbx.portal, "ONEXTERNALCALLSTART", data, token=token)
    assert answer.status_code == 403
    assert originations(pbx.live) == []
    assert receiver.received == []


def test_an_event_for_another_portal_with_this_portals_token_is_refused(
    live_app: LiveApp, receiver: Receiver
) -> None:
    alpha, beta = connect(live_app, "alpha"), connect(live_app, "beta")
    forged = post_event(
        live_app,
        beta.portal,
        "ONEXTERNALCALLSTART",
        {**CLICK, "CALL_ID": "externalCall.x.1"},
        token=application_token(alpha.portal),
    )
    assert forged.status_code == 403
    assert originations(live_app) == []


def test_an_event_without_a_call_id_is_refused_naming_the_field(pbx: Pbx) -> None:
    answer = post_event(pbx.live, pbx.portal, "ONEXTERNALCALLSTART", CLICK)
    assert answer.status_code == 400
    assert answer.json()["field"] == "CALL_ID"
    assert originations(pbx.live) == []


def test_a_receiver_failing_twice_gets_it_on_a_retry_within_seconds(
    pbx: Pbx, receiver: Receiver, background_worker: Worker
) -> None:
    secret = set_originate(pbx.live, pbx.portal.member_id, receiver.url)
    receiver.answers = [(500, "busy", {}), (503, "still busy", {})]
    click(pbx)

    took = wait_for(lambda: len(receiver.received) == 3, 6.0)  # 1 s, then 2 s apart
    assert took < 6.0
    ids = {r.headers["webhook-id"] for r in receiver.received}
    assert len(ids) == 1  # one message, tried three times
    for got in receiver.received:
        Webhook(secret).verify(got.body, got.headers)
    wait_for(lambda: originations(pbx.live)[0].state == "delivered", 2.0)
    row = originations(pbx.live)[0]
    assert (row.attempts, row.response_status, row.error) == (3, 200, None)


def test_a_receiver_down_for_good_fails_with_the_reason(pbx: Pbx, receiver: Receiver) -> None:
    set_originate(pbx.live, pbx.portal.member_id, receiver.url)
    receiver.stop()  # nothing listens there any more
    click(pbx)
    Worker(pbx.live.app).run(once=True)
    row = originations(pbx.live)[0]
    assert (row.state, row.attempts) == ("queued", 1)
    assert row.error is not None and "could not reach the PBX" in row.error

    late = Worker(pbx.live.app)  # near the end of the minute an employee waits: the next try
    late.ctx.clock = lambda: utcnow() + timedelta(seconds=59)  # would come after it
    late.run(once=True)
    row = originations(pbx.live)[0]
    assert row.state == "failed"
    assert row.error is not None and "could not reach the PBX" in row.error
    assert "gave up after 2 attempts" in row.error


@pytest.mark.parametrize(
    ("status", "headers", "reason"),
    [
        (401, {}, "the PBX answered 401"),
        (302, {"Location": "http://127.0.0.1:1/elsewhere"}, "redirect"),
    ],
)
def test_a_refusal_or_a_redirect_fails_at_once_and_nothing_is_followed(
    pbx: Pbx, receiver: Receiver, status: int, headers: dict[str, str], reason: str
) -> None:
    set_originate(pbx.live, pbx.portal.member_id, receiver.url)
    receiver.answers = [(status, "no", headers)]
    click(pbx)
    Worker(pbx.live.app).run(once=True)
    row = originations(pbx.live)[0]
    assert row.state == "failed" and row.error is not None and reason in row.error
    assert [r.path for r in receiver.received] == ["/originate"]


def test_no_originate_url_fails_saying_so(pbx: Pbx) -> None:
    click(pbx)
    Worker(pbx.live.app).run(once=True)
    row = originations(pbx.live)[0]
    assert row.state == "failed" and row.error is not None and "no originate URL" in row.error


def test_then_the_pbx_reports_the_call_with_its_call_id_no_second_register(
    pbx: Pbx, receiver: Receiver, background_worker: Worker
) -> None:
    set_originate(pbx.live, pbx.portal.member_id, receiver.url)
    call_id = click(pbx)
    wait_for(lambda: len(receiver.received) == 1, SENT_WITHIN)
    webhook = receiver.received[0].json()

    pbx_call = "click-1"
    start = {
        "PBX_CALL_ID": pbx_call,
        "CALL_ID": webhook["CALL_ID"],
        "PHONE_NUMBER": webhook["PHONE_NUMBER"],
        "TYPE": 1,
        "USER_ID": webhook["USER_ID"],
    }
    pbx.send("start", **start)
    pbx.send("finish", PBX_CALL_ID=pbx_call, DURATION=30, STATUS_CODE="200")
    run_worker(pbx.live.app)

    found = steps(pbx, call_id=call_id, external=pbx_call)
    # no register; the show is b24app asking Bitrix24 to confirm the click (proof.py), for the
    # employee whose card is open already
    assert [(s.method, s.users) for s in found] == [("show", (2,)), ("finish", (2,))]
    assert [r["CALL_ID"] for r in pbx.portal.statistics] == [call_id]


def test_a_callback_becomes_one_signed_webhook_with_the_number_and_text(
    pbx: Pbx, receiver: Receiver, background_worker: Worker
) -> None:
    secret = set_originate(pbx.live, pbx.portal.member_id, receiver.url)
    first = post_event(pbx.live, pbx.portal, "ONEXTERNALCALLBACKSTART", CALLBACK)
    again = post_event(pbx.live, pbx.portal, "ONEXTERNALCALLBACKSTART", CALLBACK)
    assert (first.json()["status"], again.json()["status"]) == ("accepted", "duplicate")

    wait_for(lambda: len(receiver.received) == 1, SENT_WITHIN)
    body = Webhook(secret).verify(receiver.received[0].body, receiver.received[0].headers)
    assert body["type"] == "callback.start"
    assert (body["PHONE_NUMBER"], body["TEXT"], body["VOICE"]) == (
        CALLBACK["PHONE_NUMBER"],
        CALLBACK["TEXT"],
        CALLBACK["VOICE"],
    )
    assert body["CALL_ID"] is None and body["USER_ID"] is None
    wait_for(lambda: originations(pbx.live)[0].state == "delivered", 2.0)
    assert len(receiver.received) == 1


# --- nothing believed that Bitrix24 has not confirmed ------------------------------------------


def test_a_click_with_the_apps_token_but_a_call_id_bitrix24_never_made_rings_nothing(
    pbx: Pbx, receiver: Receiver
) -> None:
    """Every user who opens the app sees its application_token: a forged click with it and a
    made-up CALL_ID is stored, then refused once Bitrix24 says it knows no such call."""
    set_originate(pbx.live, pbx.portal.member_id, receiver.url)
    data = {**CLICK, "CALL_ID": "externalCall.0123456789abcdef0123456789abcdef.1773236989"}
    assert post_event(pbx.live, pbx.portal, "ONEXTERNALCALLSTART", data).status_code == 200
    Worker(pbx.live.app).run(once=True)
    row = originations(pbx.live)[0]
    assert (
        row.state == "failed"
        and row.error is not None
        and "does not know this CALL_ID" in row.error
    )
    assert receiver.received == []


def test_a_callback_for_a_number_not_in_the_crm_rings_nothing(pbx: Pbx, receiver: Receiver) -> None:
    set_originate(pbx.live, pbx.portal.member_id, receiver.url)
    forged = {**CALLBACK, "PHONE_NUMBER": "+882 1234 5678", "CRM_ENTITY_ID": "999"}
    assert post_event(pbx.live, pbx.portal, "ONEXTERNALCALLBACKSTART", forged).status_code == 200
    Worker(pbx.live.app).run(once=True)
    row = originations(pbx.live)[0]
    assert row.state == "failed" and row.error is not None and "not the CRM client" in row.error
    assert receiver.received == []


@pytest.mark.parametrize(
    ("field", "value"), [("USER_ID", "²"), ("CRM_ENTITY_ID", "12a"), ("PHONE_NUMBER", "   ")]
)
def test_a_field_that_is_not_what_bitrix24_sends_is_refused_naming_it(
    pbx: Pbx, field: str, value: str
) -> None:
    data = {**CLICK, "CALL_ID": "externalCall.1", field: value}
    answer = post_event(pbx.live, pbx.portal, "ONEXTERNALCALLSTART", data)
    assert answer.status_code == 400
    assert answer.json()["field"] == field
    assert originations(pbx.live) == []


def test_an_event_bitrix24_sent_too_long_ago_is_kept_failed_and_never_sent(
    pbx: Pbx, receiver: Receiver
) -> None:
    set_originate(pbx.live, pbx.portal.member_id, receiver.url)
    (call_id,) = register_on_portal(pbx.live.dev, pbx.portal, 1, USER_ID=2, TYPE=1, SHOW=0)
    two_minutes_ago = str(int(utcnow().timestamp()) - 120)
    data = {**CLICK, "CALL_ID": call_id}
    post_event(pbx.live, pbx.portal, "ONEXTERNALCALLSTART", data, ts=two_minutes_ago)
    Worker(pbx.live.app).run(once=True)
    row = originations(pbx.live)[0]
    assert row.state == "failed" and row.error is not None and "too long ago" in row.error
    assert receiver.received == []


def test_a_request_whose_minute_passed_while_no_worker_ran_is_failed_not_sent(
    pbx: Pbx, receiver: Receiver
) -> None:
    set_originate(pbx.live, pbx.portal.member_id, receiver.url)
    click(pbx)
    late = Worker(pbx.live.app)  # the workers come back after the minute an employee waits
    late.ctx.clock = lambda: utcnow() + timedelta(seconds=61)
    late.run(once=True)
    row = originations(pbx.live)[0]
    assert row.state == "failed" and row.error is not None and "not sent in time" in row.error
    assert receiver.received == []


def test_a_pbx_answering_a_byte_at_a_time_holds_one_attempt_at_most_eight_seconds(
    pbx: Pbx, receiver: Receiver
) -> None:
    set_originate(pbx.live, pbx.portal.member_id, receiver.url)
    receiver.drip = 2.0  # 200, then a byte every 2 s: requests' read timeout (5 s) never fires
    click(pbx)
    started = time.monotonic()
    Worker(pbx.live.app).run(once=True)
    took = time.monotonic() - started
    row = originations(pbx.live)[0]
    assert took < 12.0  # DEADLINE 8 s + Bitrix24's confirmation + the worker's own start
    assert (row.state, row.response_status, len(receiver.received)) == ("delivered", 200, 1)


def test_one_portals_hanging_pbx_does_not_hold_up_another_portals_click(
    live_app: LiveApp, receiver: Receiver, background_worker: Worker
) -> None:
    alpha, beta = connect(live_app, "alpha"), connect(live_app, "beta")
    hanging = Receiver(drip=2.0)
    hanging.start()
    try:
        set_originate(live_app, alpha.portal.member_id, hanging.url)
        set_originate(live_app, beta.portal.member_id, receiver.url)
        for _ in range(4):  # more clicks than the worker has sending threads
            click(alpha)
        wait_for(lambda: len(hanging.received) >= 1, SENT_WITHIN)
        click(beta)
        wait_for(lambda: len(receiver.received) == 1, SENT_WITHIN)
        assert len(hanging.received) <= 2  # at most PER_PORTAL of alpha's at once
    finally:
        hanging.stop()
