"""A LINE_NUMBER first seen on a call is added to the portal (issue 13, item 5), in the batch
that registers the call: the PBX posts to the live app's PBX API, the real worker delivers, and
the development portal says which lines the app has and which commands it received. On SQLite
and PostgreSQL.

Pages: api-reference/telephony/telephony-external-line-add.md (NUMBER; ERROR_CORE "Line already
exists", "DB error"), -line-get.md (the app's own lines), telephony-external-call-register.md
(LINE_NUMBER), settings/how-to-call-rest-api/batch.md (commands in order; halt=0).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from b24app.db import get_db
from b24app.delivery.external_lines import RETRY_AFTER
from b24app.delivery.worker import Worker
from b24app.models import utcnow
from b24app.portals import lines
from devportal import methods as dev_methods
from devportal.errors import core_error
from devportal.methods import Call as DevCall
from devportal.methods.telephony import external_line_add, external_line_get
from devportal.state import DevPortal
from tests.conftest import TEST_CLIENT_ID, LiveApp
from tests.delivery.conftest import TEST_POLICY, commands, portal_id
from tests.delivery.test_whole_call import FINISH, START, Pbx, finished, pbx, steps

__all__ = ["pbx"]  # the fixture, used by name

LINE = str(START["LINE_NUMBER"])
LINE_ADD = "telephony.externalLine.add"


def the_apps_lines(pbx: Pbx) -> list[str]:
    """What telephony.externalLine.get answers the app now (the development portal's handler,
    with the app's token)."""
    rows = _as_app(pbx, "telephony.externalLine.get", external_line_get, {})
    return [row["NUMBER"] for row in rows]


def add_on_the_portal(pbx: Pbx, number: str) -> None:
    """The line is on the portal before b24app has seen it (added by an earlier installation,
    or by another b24app worker whose answer was lost)."""
    _as_app(pbx, LINE_ADD, external_line_add, {"NUMBER": number})


def _as_app(pbx: Pbx, name: str, handler: Any, params: dict[str, Any]) -> Any:
    dev = pbx.live.dev
    token = next(
        t for t in dev.access_tokens.values()
        if t.member_id == pbx.portal.member_id and t.client_id == TEST_CLIENT_ID
    )  # fmt: skip
    with dev.lock:
        return handler(DevCall(dev, pbx.portal, token, name), params)


def adds(pbx: Pbx) -> list[dict[str, Any]]:
    """The telephony.externalLine.add commands the portal received, in order."""
    return commands(pbx.live.dev, pbx.portal, LINE_ADD)


def known(live: LiveApp, portal: DevPortal) -> set[str]:
    """The line numbers b24app remembers the portal has (external_lines)."""
    with live.app.app_context(), get_db().read() as session:
        return lines.known(session, portal_id(live, portal))


def call(pbx: Pbx, n: int, line: str = LINE) -> tuple[str, str]:
    """A whole call on `line` (start and finish); returns its PBX_CALL_ID and b24app's id."""
    pbx_call_id = f"lines-{n}"
    public_id = pbx.send("start", **{**START, "PBX_CALL_ID": pbx_call_id, "LINE_NUMBER": line})
    pbx.send("finish", **{**FINISH, "PBX_CALL_ID": pbx_call_id})
    return pbx_call_id, public_id


def worker(live: LiveApp) -> Worker:
    """One worker process's worth of memory, run round by round (`worker --once`)."""
    return Worker(live.app, policy=TEST_POLICY)


def delivered_once(pbx: Pbx, ids: tuple[str, str]) -> None:
    """Registered once, carrying its line, and finished once; delivered as the PBX sees it."""
    pbx_call_id, public_id = ids
    registers = [s for s in steps(pbx, external=pbx_call_id) if s.method == "register"]
    assert len(registers) == 1 and len(finished(pbx.portal, pbx_call_id)) == 1
    assert registers[0].params["LINE_NUMBER"] == LINE
    assert pbx.call(public_id)["state"] == "delivered"


# --- tests ------------------------------------------------------------------------------------


def test_a_new_line_is_added_in_the_batch_that_registers_the_call(pbx: Pbx) -> None:
    batches_before = len(pbx.live.dev.entries(method="batch"))

    first = call(pbx, 1)
    worker(pbx.live).run(once=True)

    assert the_apps_lines(pbx) == [LINE]
    (add,) = adds(pbx)
    (register, finish) = steps(pbx, external=first[0])
    assert register.params["LINE_NUMBER"] == LINE and add["params"] == {"NUMBER": LINE}
    assert add["batch"] == register.batch == finish.batch  # no request of its own
    assert add["seq"] < min(
        e["seq"] for e in pbx.live.dev.entries(method="telephony.externalCall.register")
    )  # before the register it is for
    assert len(pbx.live.dev.entries(method="batch")) - batches_before == 1
    assert known(pbx.live, pbx.portal) == {LINE}
    delivered_once(pbx, first)


def test_a_second_call_on_the_same_line_adds_nothing(pbx: Pbx) -> None:
    same = worker(pbx.live)
    call(pbx, 1)
    same.run(once=True)
    assert len(adds(pbx)) == 1

    second = call(pbx, 2)
    same.run(once=True)  # the same worker: its memory
    third = call(pbx, 3)
    worker(pbx.live).run(once=True)  # another worker: external_lines

    assert len(adds(pbx)) == 1  # no second add
    delivered_once(pbx, second)
    delivered_once(pbx, third)


def test_a_line_already_on_the_portal_is_remembered_and_not_added_again(pbx: Pbx) -> None:
    add_on_the_portal(pbx, LINE)

    first = call(pbx, 1)
    worker(pbx.live).run(once=True)

    (add,) = adds(pbx)
    assert (add["status"], add["error"]) == (400, "ERROR_CORE")  # "Line already exists"
    delivered_once(pbx, first)
    assert known(pbx.live, pbx.portal) == {LINE}
    assert the_apps_lines(pbx) == [LINE]

    second = call(pbx, 2)
    worker(pbx.live).run(once=True)
    assert len(adds(pbx)) == 1
    delivered_once(pbx, second)


@pytest.fixture
def refusing_adds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The portal refuses every externalLine.add with the page's other error, ERROR_CORE
    "DB error" (a database error while adding the line)."""

    def refuse(_call: DevCall, _params: dict[str, Any]) -> Any:
        raise core_error("DB error")

    key = LINE_ADD.lower()
    monkeypatch.setitem(
        dev_methods.REGISTRY, key, replace(dev_methods.REGISTRY[key], handler=refuse)
    )


@pytest.mark.usefixtures("refusing_adds")
def test_a_refused_add_delivers_the_call_once_and_is_tried_again_only_after_a_while(
    pbx: Pbx,
) -> None:
    same = worker(pbx.live)
    first = call(pbx, 1)
    same.run(once=True)

    (add,) = adds(pbx)
    assert (add["status"], add["error"]) == (400, "ERROR_CORE")
    delivered_once(pbx, first)
    assert known(pbx.live, pbx.portal) == set()

    second = call(pbx, 2)
    same.run(once=True)
    assert len(adds(pbx)) == 1  # not in every batch
    delivered_once(pbx, second)

    later = RETRY_AFTER + timedelta(seconds=1)
    same.ctx.clock = lambda: utcnow() + later
    third = call(pbx, 3)
    same.run(once=True)
    assert len(adds(pbx)) == 2  # tried again after RETRY_AFTER
    delivered_once(pbx, third)
