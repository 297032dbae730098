"""Secrets stay out of logs and error pages, and secrets are compared in constant time.

The flows a portal lives through (install, settings page, calls, a token refresh, a
re-authorisation, an uninstall) run with everything the process writes captured; no token, key
or secret of the run may appear in it. Error answers (404, 405, 413, 415, 422, 500, problem+json
and HTML alike) never repeat the Authorization header or a token sent to them.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any

import pytest
import requests
from itsdangerous.encoding import base64_decode

from b24app.delivery.worker import Worker
from b24app.pbx import intake
from b24app.settings_page import page_token
from devportal import faults
from tests.conftest import TEST_CLIENT_ID, TEST_CLIENT_SECRET, LiveApp
from tests.security import FINISH, Installed, bearer, install, pbx_key
from tests.settings_page.conftest import entry_request, open_page, post_entry

CALL: dict[str, Any] = {
    "PBX_CALL_ID": "1709884800.42",
    "PHONE_NUMBER": "+15551234567",
    "TYPE": 2,
    "CALL_START_DATE": "2026-03-07T10:20:30+03:00",
    "USER_ID": 1,
    "DURATION": 42,
}


def every_secret(live: LiveApp, extra: set[str]) -> set[str]:
    """What the run handed out or holds: tokens, codes, application tokens, client secret,
    PBX keys, encryption keys, SECRET_KEY, page tokens."""
    dev = live.dev
    found = set(dev.access_tokens) | set(dev.refresh_tokens) | set(dev.auth_codes)
    found |= {i.application_token for p in dev.portals.values() for i in p.installations.values()}
    settings = live.app.config["SETTINGS"]
    found |= {TEST_CLIENT_SECRET, live.app.config["SECRET_KEY"], *settings.fernet_keys}
    return {s for s in found | extra if s and len(s) >= 12}


def leaked(text: str, secrets_: set[str]) -> list[str]:
    """Where each secret found in `text` was: the text just before it (not the secret)."""
    return sorted(
        f"…{text[max(text.index(s) - 120, 0) : text.index(s)]}" for s in secrets_ if s in text
    )


def own_logs(caplog: pytest.LogCaptureFixture) -> str:
    """Records of the standard logging module, without the development server's access log
    (werkzeug prints query strings, the OAuth callback's `code` among them; production runs
    gunicorn, whose access log prints the path only: gunicorn_conf.py)."""
    return "\n".join(
        f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records if r.name != "werkzeug"
    )


def test_a_portals_whole_life_writes_no_secret(
    live_app: LiveApp, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO)  # B24APP_LOG_LEVEL's default
    handed_out: set[str] = set()
    alpha = install(live_app, "alpha")
    handed_out.add(alpha.key)

    page = open_page(live_app, alpha.portal)  # the settings page: token, key shown, rotated
    handed_out.add(page.token)
    assert page.post("/pbx-key/reveal").json()["key"] == alpha.key
    rotated = page.post("/pbx-key/rotate", {"confirm": True}).json()["key"]
    handed_out.add(rotated)

    for n in range(3):  # calls, one of them refused, one repeated
        body = {**CALL, "PBX_CALL_ID": f"call-{n % 2}"}
        assert requests.post(live_app.url + FINISH, json=body, headers=bearer(rotated), timeout=10)
    requests.post(live_app.url + FINISH, json={"CALL_ID": ""}, headers=bearer(rotated), timeout=10)
    requests.post(live_app.url + FINISH, json=CALL, headers=bearer(alpha.key), timeout=10)
    Worker(live_app.app).run(once=True)

    faults.expire_tokens(live_app.dev, alpha.portal)  # the next call refreshes
    body = {**CALL, "PBX_CALL_ID": "x"}
    requests.post(live_app.url + FINISH, json=body, headers=bearer(rotated), timeout=10)
    Worker(live_app.app).run(once=True)

    session = requests.Session()  # re-authorisation: code flow through the portal
    assert session.get(f"{live_app.url}/oauth/start", params={"member_id": alpha.member_id}).ok

    live_app.driver.update(alpha.portal, TEST_CLIENT_ID)
    issued = every_secret(live_app, handed_out)  # the uninstall revokes (forgets) them
    live_app.driver.uninstall(alpha.portal, TEST_CLIENT_ID)

    captured = capfd.readouterr()
    secrets_ = issued | every_secret(live_app, handed_out)
    assert len(secrets_) > 10
    assert '"event"' in captured.err  # the JSON log lines were captured
    assert leaked(captured.out + captured.err, secrets_) == []
    assert leaked(own_logs(caplog), secrets_) == []


@pytest.fixture
def alpha(live_app: LiveApp) -> Installed:
    return install(live_app, "alpha")


def error_answers(live: LiveApp, key: str, token: str) -> list[requests.Response]:
    """Requests that fail, each carrying the key and a token in every place a client may."""
    headers = {**bearer(key), "X-Page-Token": token, "Cookie": f"session={token}"}
    query = {"auth": token, "AUTH_ID": token, "key": key}

    def send(method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("headers", headers)
        return requests.request(method, live.url + path, timeout=10, **kwargs)

    return [
        send("GET", "/nowhere", params=query),  # 404
        send("GET", "/pbx/v1/nowhere", params=query),  # 404 problem
        send("GET", FINISH, params=query),  # 405 problem
        send("DELETE", "/events", params=query),  # 405
        send("POST", FINISH, data=b"x" * (2 * 1024 * 1024)),  # 413
        send("POST", FINISH, headers={**headers, "Content-Type": "text/x"}, data="a"),  # 415
        send("POST", FINISH, json={"CALL_ID": token, "AUTH": key}),  # 422
        send("POST", FINISH, headers={"Authorization": f"Bearer {key} {token}"}, json=CALL),
        send("GET", f"/pbx/v1/calls/{token}"),  # 404
        send("GET", "/oauth/callback", params={"state": token, "code": key}),  # 400
        send("POST", "/install", data={"AUTH_ID": token, "REFRESH_ID": key}),  # 400
        send("POST", "/app", data={"AUTH_ID": token, "member_id": key}),  # 400
        send("GET", "/app/api/state", headers={"X-Page-Token": token + "x"}),  # 403
    ]


def test_error_answers_never_repeat_the_credentials_sent(live_app: LiveApp, alpha: Installed):
    token = next(iter(live_app.dev.access_tokens))
    for answer in error_answers(live_app, alpha.key, token):
        assert answer.status_code >= 400
        assert alpha.key not in answer.text and token not in answer.text, answer.text[:300]
        assert alpha.key not in str(answer.headers) and token not in str(answer.headers)


def test_a_bug_answers_500_without_details_and_logs_no_key(
    live_app: LiveApp,
    alpha: Installed,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
):
    """A careless bug that puts the request's credentials into its exception message: the PBX
    sees a plain problem, and the log line with the traceback does not carry the key."""

    def careless(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError(f"could not store the call for {requests_authorization[0]}")

    requests_authorization = [f"Bearer {alpha.key}"]
    monkeypatch.setattr(intake, "accept_finish", careless)

    answer = requests.post(live_app.url + FINISH, json=CALL, headers=bearer(alpha.key), timeout=10)

    assert answer.status_code == 500
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert answer.json()["detail"] == "Something went wrong on our side."
    assert "Traceback" not in answer.text and alpha.key not in answer.text
    logged = capfd.readouterr().err
    assert "pbx endpoint failed" in logged and "RuntimeError" in logged
    assert alpha.key not in logged


# --- constant-time comparisons --------------------------------------------------------------


@pytest.fixture
def comparisons(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    """Every call of secrets.compare_digest / hmac.compare_digest, by its arguments."""
    seen: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(secrets, "compare_digest", spy)
    monkeypatch.setattr(hmac, "compare_digest", spy)
    return seen


def compared(seen: list[tuple[Any, Any]], presented: str) -> bool:
    wanted = {presented, presented.encode()}
    return any(a in wanted or b in wanted for a, b in seen)


def test_the_application_token_of_an_event_is_compared_in_constant_time(
    live_app: LiveApp, alpha: Installed, comparisons: list[tuple[Any, Any]]
):
    presented = "0" * 32
    requests.post(
        f"{live_app.url}/events",
        data={
            "event": "ONAPPUNINSTALL",
            "auth[member_id]": alpha.member_id,
            "auth[application_token]": presented,
        },
        timeout=10,
    )
    assert compared(comparisons, presented)


def test_the_pbx_key_is_compared_in_constant_time(
    live_app: LiveApp, alpha: Installed, comparisons: list[tuple[Any, Any]]
):
    requests.post(live_app.url + FINISH, json=CALL, headers=bearer(alpha.key), timeout=10)
    assert compared(comparisons, alpha.key)


def test_the_settings_page_entry_compares_its_application_token_in_constant_time(
    live_app: LiveApp, alpha: Installed, comparisons: list[tuple[Any, Any]]
):
    query, form = entry_request(live_app, alpha.portal)
    form["APPLICATION_TOKEN"] = "1" * 32
    assert post_entry(live_app, query, form).status_code == 403
    assert compared(comparisons, "1" * 32)


def test_page_token_signatures_are_compared_in_constant_time(
    live_app: LiveApp, alpha: Installed, comparisons: list[tuple[Any, Any]]
):
    """itsdangerous checks the signature with hmac.compare_digest."""
    forged = page_token.issue(
        "another-secret-key", page_token.Viewer(alpha.member_id, 1, True, "en")
    )
    answer = requests.get(
        f"{live_app.url}/app/api/state", headers={"X-Page-Token": forged}, timeout=10
    )
    assert answer.status_code == 403
    signature = base64_decode(forged.rsplit(".", 1)[1])
    assert any(signature in (a, b) for a, b in comparisons)


def test_a_wrong_pbx_key_is_not_found_by_a_prefix_scan(
    live_app: LiveApp, alpha: Installed, comparisons: list[tuple[Any, Any]]
):
    """A near miss (the right key with its last character changed) is looked up by its keyed
    digest like any other guess: no comparison with the stored key happens at all."""
    near = alpha.key[:-1] + ("A" if alpha.key[-1] != "A" else "B")
    answer = requests.post(live_app.url + FINISH, json=CALL, headers=bearer(near), timeout=10)
    assert answer.status_code == 401
    assert not compared(comparisons, near)
    assert pbx_key(live_app, alpha.member_id) == alpha.key
