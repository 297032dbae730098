"""Every row of retry.ENDINGS: how a request to Bitrix24 can end, and what that means for the
calls it carried. Transport endings are made with real sockets (a closed port, a server that
hangs up after reading the request, one that never answers); answers with the client against a
tiny HTTP server that answers what the row needs."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import requests

from b24app.bitrix.errors import (
    BitrixError,
    Ending,
    TransportError,
    UnreadableAnswer,
    transport_error,
)
from b24app.delivery import retry
from b24app.delivery.retry import ENDINGS, OUTCOME_UNKNOWN, PORTAL_PAUSED
from tests.drills.processes import free_port


@pytest.fixture
def server() -> Iterator[tuple[socket.socket, list[str]]]:
    """A listening socket whose behaviour each test sets by what it does with `accepted`."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield listener, []
    listener.close()


def _serve_once(listener: socket.socket, behaviour: str) -> threading.Thread:
    def run() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)  # the whole request has arrived
        if behaviour == "hang up":
            conn.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            conn.close()  # RST: the connection is cut after the request went out
        elif behaviour == "silent":
            threading.Event().wait(1.0)
            conn.close()
        else:
            conn.sendall(behaviour.encode())
            conn.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _post(url: str, timeout: float = 5.0) -> requests.Response | TransportError:
    try:
        return requests.post(url, json={"cmd": {}}, timeout=timeout)
    except requests.RequestException as exc:
        return transport_error(exc, "batch", timeout)


def test_a_connection_that_never_opened_is_not_sent() -> None:
    ending = _post(f"http://127.0.0.1:{free_port()}/rest/batch.json")
    assert isinstance(ending, TransportError) and ending.ending is Ending.NOT_SENT
    verdict = retry.for_exception(ending)
    assert (verdict.kind, verdict.unknown, verdict.pause) == ("wait", False, True)
    assert verdict.code == PORTAL_PAUSED and not verdict.counts


def test_a_name_that_does_not_resolve_is_not_sent() -> None:
    ending = _post("http://no-such-portal.invalid/rest/batch.json")
    assert isinstance(ending, TransportError) and ending.ending is Ending.NOT_SENT


def test_a_connection_cut_after_the_request_went_out_may_have_run(server) -> None:  # type: ignore[no-untyped-def]
    listener, _ = server
    _serve_once(listener, "hang up")
    ending = _post(f"http://127.0.0.1:{listener.getsockname()[1]}/rest/batch.json")
    assert isinstance(ending, TransportError) and ending.ending is Ending.CUT_OFF
    verdict = retry.for_exception(ending)
    assert (verdict.unknown, verdict.pause) == (True, True) and not verdict.counts


def test_a_request_without_an_answer_in_time_may_have_run(server) -> None:  # type: ignore[no-untyped-def]
    listener, _ = server
    _serve_once(listener, "silent")
    ending = _post(f"http://127.0.0.1:{listener.getsockname()[1]}/rest/batch.json", timeout=0.3)
    assert isinstance(ending, TransportError) and ending.ending is Ending.TIMED_OUT
    verdict = retry.for_exception(ending)
    assert (verdict.unknown, verdict.pause) == (True, True)


@pytest.mark.parametrize(
    ("error", "may_have_run", "portal_wide", "kind"),
    [
        # REFUSED, documented as refused before running: a plain retry
        (BitrixError("QUERY_LIMIT_EXCEEDED", "Too many requests", 503), False, False, "retry"),
        (BitrixError("OVERLOAD_LIMIT", "REST API is blocked", 503), False, True, "wait"),
        (BitrixError("ERROR_BATCH_LENGTH_EXCEEDED", "", 400), False, False, "retry"),
        (BitrixError("UNSAFE_ADDRESS", "resolves privately"), False, True, "wait"),
        # REFUSED with an error that may come after some commands ran: look up first
        (BitrixError("INTERNAL_SERVER_ERROR", "Internal server error", 500), True, False, "retry"),
        (BitrixError("ERROR_UNEXPECTED_ANSWER", "", 500), True, False, "retry"),
        (BitrixError("SOMETHING_NEW", "", 400), True, False, "retry"),
        # UNREADABLE: an HTML 200 or cut JSON (the batch may have run), an HTML 5xx page
        (UnreadableAnswer(200, "HTTP 200 without a Bitrix24 answer"), True, False, "retry"),
        (UnreadableAnswer(404, "HTTP 404 without a Bitrix24 answer"), True, False, "retry"),
        (UnreadableAnswer(500, "HTTP 500 without a Bitrix24 answer"), True, True, "wait"),
        (UnreadableAnswer(503, "HTTP 503 without a Bitrix24 answer"), True, True, "wait"),
    ],
)
def test_each_answer_that_is_not_a_result_has_one_meaning(
    error: BitrixError, may_have_run: bool, portal_wide: bool, kind: str
) -> None:
    row = retry.meaning(error)
    assert (row.may_have_run, row.portal_wide) == (may_have_run, portal_wide)
    verdict = retry.for_request_error(error)
    assert (verdict.kind, verdict.unknown, verdict.pause) == (kind, may_have_run, portal_wide)
    if may_have_run and not portal_wide:
        assert verdict.code == OUTCOME_UNKNOWN


def test_every_ending_has_a_row_and_a_test() -> None:
    """The table covers every Ending; ANSWERED is judged command by command (for_command)."""
    assert set(ENDINGS) == set(Ending)
    assert ENDINGS[Ending.ANSWERED] == retry.Meaning(False, False, "Bitrix24 answered")
    assert ENDINGS[Ending.NOT_SENT].may_have_run is False
    assert all(ENDINGS[e].may_have_run for e in (Ending.CUT_OFF, Ending.TIMED_OUT))


@pytest.mark.parametrize(
    ("code", "text", "after_unknown", "expected"),
    [
        ("ERROR_CORE", "Call is not found", False, ("fail", "CALL_NOT_FOUND", False)),
        ("ERROR_CORE", "Call is not found", True, ("retry", OUTCOME_UNKNOWN, True)),
        ("ERROR_CORE", "Unexpected database error", False, ("retry", "ERROR_CORE", False)),
        (
            "ERROR_CORE",
            "User is not found or is not active",
            False,
            ("fail", "USER_NOT_FOUND", False),
        ),
        ("QUERY_LIMIT_EXCEEDED", "", False, ("retry", "QUERY_LIMIT_EXCEEDED", False)),
        ("SOMETHING_NEW", "", False, ("retry", OUTCOME_UNKNOWN, True)),
    ],
)
def test_a_readable_answer_is_judged_command_by_command(
    code: str, text: str, after_unknown: bool, expected: tuple[str, str, bool]
) -> None:
    verdict = retry.for_command(BitrixError(code, text), after_unknown=after_unknown)
    assert (verdict.kind, verdict.code, verdict.unknown) == expected
