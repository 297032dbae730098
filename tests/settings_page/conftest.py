"""Helpers for the settings-page tests: open the page as Bitrix24 does (install driver), read
the state it embeds, and call its JSON API with the page token, as the page's script does."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import requests
from sqlalchemy import select

from b24app.db import get_db
from b24app.models import Call, CallEvent, CallRecording, utcnow
from b24app.portals import pbx_keys, store
from b24app.wiring import current_store
from devportal.state import DevPortal, new_token
from tests.conftest import TEST_CLIENT_ID, LiveApp

STATE = re.compile(r'<script type="application/json" id="b24app-state">(.*?)</script>', re.S)


def embedded_state(html: str) -> dict[str, Any]:
    match = STATE.search(html)
    assert match, "the page embeds its state"
    return json.loads(match.group(1))


@dataclass
class Page:
    """The settings page as its script sees it: the state and the token it carries."""

    live: LiveApp
    response: requests.Response
    state: dict[str, Any]

    @property
    def token(self) -> str:
        return str(self.state["token"])

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"X-Page-Token": self.token if token is None else token}

    def get(self, path: str, *, token: str | None = None, **params: Any) -> requests.Response:
        return requests.get(
            f"{self.live.url}/app/api{path}", headers=self.headers(token), params=params, timeout=30
        )

    def post(
        self, path: str, body: dict[str, Any] | None = None, *, token: str | None = None
    ) -> requests.Response:
        return requests.post(
            f"{self.live.url}/app/api{path}",
            headers=self.headers(token),
            json=body if body is not None else {},
            timeout=30,
        )


def open_page(live: LiveApp, portal: DevPortal, *, user_id: int = 1, lang: str = "en") -> Page:
    response = live.driver.open_app(portal, TEST_CLIENT_ID, user_id=user_id, lang=lang)
    assert response.status_code == 200, response.text
    return Page(live, response, embedded_state(response.text))


def entry_request(
    live: LiveApp, portal: DevPortal, *, user_id: int = 1, lang: str = "en"
) -> tuple[dict[str, str], dict[str, str]]:
    """The query and form Bitrix24 POSTs to /app (settings/oauth/simple-way.md), with a fresh
    token pair of `user_id`: for tests that tamper with one field."""
    installation = portal.installations[TEST_CLIENT_ID]
    access, refresh = live.dev.issue_tokens(portal, TEST_CLIENT_ID, user_id)
    query = {"DOMAIN": portal.domain, "PROTOCOL": "0", "LANG": lang, "APP_SID": new_token()}
    form = {
        "AUTH_ID": access.token,
        "AUTH_EXPIRES": "3600",
        "REFRESH_ID": refresh.token,
        "SERVER_ENDPOINT": live.dev.server_endpoint,
        "APPLICATION_TOKEN": installation.application_token,
        "APPLICATION_SCOPE": access.scope,
        "member_id": portal.member_id,
        "status": installation.status,
        "PLACEMENT": "DEFAULT",
        "PLACEMENT_OPTIONS": "{}",
    }
    return query, form


def post_entry(live: LiveApp, query: dict[str, str], form: dict[str, str]) -> requests.Response:
    return requests.post(f"{live.url}/app", params=query, data=form, timeout=30)


def pbx_key(live: LiveApp, portal: DevPortal) -> str:
    with live.app.app_context(), get_db().read() as session:
        row = store.find_portal(session, portal.member_id)
        assert row is not None
        return pbx_keys.reveal(row.settings, current_store().box)


def stored_portal_settings(live: LiveApp, portal: DevPortal) -> dict[str, Any]:
    with live.app.app_context(), get_db().read() as session:
        row = store.find_portal(session, portal.member_id)
        assert row is not None
        s = row.settings
        return {
            "currency": s.currency,
            "add_to_chat": s.add_to_chat,
            "fallback_user_id": s.fallback_user_id,
            "timezone": s.timezone,
            "show_card": s.show_card,
        }


def send_call(live: LiveApp, portal: DevPortal, **fields: Any) -> requests.Response:
    """What a PBX does: POST /pbx/v1/calls/finish with the portal's key."""
    return requests.post(
        f"{live.url}/pbx/v1/calls/finish",
        headers={"Authorization": f"Bearer {pbx_key(live, portal)}"},
        json=fields,
        timeout=30,
    )


@dataclass
class Event:
    """One event of a call as the intake and the delivery leave it in the database."""

    kind: str
    request: dict[str, Any]
    state: str = "delivered"
    error_code: str | None = None
    error: str | None = None
    note: str | None = None
    recording: dict[str, Any] | None = None  # CallRecording's columns, for a `record` event


def insert_call(
    live: LiveApp, portal: DevPortal, pbx_call_id: str, events: list[Event], **call: Any
) -> tuple[str, list[int]]:
    """A call with its events (in this order, a second apart) and its recording, written
    straight to the database: (the call's public id, the events' ids)."""
    started = utcnow() - timedelta(minutes=5)
    with live.app.app_context(), get_db().write() as session:
        row = store.find_portal(session, portal.member_id)
        assert row is not None
        stored = Call(portal_id=row.id, idempotency_key=pbx_call_id, created_at=started, **call)
        session.add(stored)
        session.flush()
        ids = []
        for n, event in enumerate(events):
            at = started + timedelta(seconds=n)
            added = CallEvent(
                call_id=stored.id,
                kind=event.kind,
                dedupe_key=f"{n}" if event.kind in ("ring", "answer") else "",
                request={"PBX_CALL_ID": pbx_call_id, **event.request},
                state=event.state,
                error_code=event.error_code,
                error=event.error,
                note=event.note,
                created_at=at,
                delivered_at=at + timedelta(milliseconds=300)
                if event.state == "delivered"
                else None,
            )
            session.add(added)
            session.flush()
            ids.append(added.id)
            if event.recording is not None:
                session.add(CallRecording(event_id=added.id, portal_id=row.id, **event.recording))
        return stored.public_id, ids


def event_rows(live: LiveApp, public_id: str) -> tuple[str, dict[int, tuple[str, str | None]]]:
    """The call's state and each of its events' (state, error) as stored."""
    with live.app.app_context(), get_db().read() as session:
        call = session.scalars(select(Call).where(Call.public_id == public_id)).one()
        return call.state, {e.id: (e.state, e.error) for e in call.events}
