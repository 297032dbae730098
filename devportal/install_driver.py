"""Installing, opening, updating and removing an app on a development portal as Bitrix24 does.

What the app sees, step by step (digest §1.2–1.5):

1. `open_installer`: an administrator installs the app. The portal POSTs to the installer URL:
   `DOMAIN`, `PROTOCOL`, `LANG`, `APP_SID` in the query string, the token pair and the
   installation's data in the form body (settings/oauth/simple-way.md). The app is *not installed*
   yet (settings/app-installation/installation-finish.md).
2. `finish_install`: what `BX24.installFinish()` causes. The installation is complete, and only
   now are events sent (api-reference/common/events/on-app-install.md): `ONAPPINSTALL` goes to
   every handler the app bound to it with `event.bind`, else to the app's "installation event
   handler URL" (`DevApp.handler_url`; settings/app-installation/installation-finish.md).
3. `update`: a new version; `ONAPPUPDATE` carries the new `application_token`
   (api-reference/common/events/on-app-update.md).
4. `uninstall`: the app's tokens are revoked and its handlers removed
   (settings/app-uninstallation.md); `ONAPPUNINSTALL`, without any access token, goes to the
   handlers that were bound (api-reference/common/events/on-app-uninstall.md).

Events are `application/x-www-form-urlencoded` with PHP bracket keys (`auth[application_token]`;
api-reference/events/index.md, which also gives every event an `event_handler_id`: a bound
handler gets it, the fallback URL does not). Only ONAPPINSTALL falls back to `handler_url`; the
other lifecycle events go to bound handlers only. Bitrix24's queue logs a failed delivery and
never retries it (events/index.md), so a delivery here has short timeouts and never raises; each
one is journalled as `{"event", "url", "status"}` without token values.

Not documented, and chosen here: the event `auth` also carries `expires` and `user_id` (as the
refresh answer does, settings/oauth/auto-renewal.md); `auth[scope]` is comma-separated like
`APPLICATION_SCOPE` (on-app-install.md says "separated by spaces" but shows a single scope); the
installer's `DOMAIN` is the portal's domain, as the OAuth server's `app.info` reports it
(digest §12) — an app must take the REST address from `client_endpoint`, not build it from
`DOMAIN`, because a development portal lives under `/p/<code>/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from b24app.bitrix.encoding import flatten
from devportal.methods.events import handlers_for
from devportal.state import (
    AccessToken,
    DevPortal,
    DevState,
    Installation,
    RefreshToken,
    install,
    new_token,
)
from devportal.state import uninstall as revoke_installation

Delivered = tuple[str, int | None]  # (handler URL, HTTP status or None when unreachable)

EVENT_TIMEOUT = 5.0  # seconds; the queue server does not wait long for a handler
PAGE_TIMEOUT = 30.0  # seconds; a frame page may do its setup calls before answering


class NotInstalled(LookupError):
    """The app has no installation on that portal, or not a complete one for this user."""


@dataclass(frozen=True)
class Binding:
    """Where one event goes: a handler bound with `event.bind`, or the fallback handler URL."""

    handler: str
    auth_type: int = 0  # 0: the user whose action caused the event (events/event-bind.md)
    handler_id: int | None = None  # sent as event_handler_id (events/index.md)


@dataclass(frozen=True)
class EventPost:
    """One event body, built under the state lock and sent after it is released."""

    url: str
    pairs: list[tuple[str, str]]


class InstallDriver:
    """Drives one app (served at `app_base_url`) through its life on development portals.

    Network calls to the app are made without holding `state.lock`: the app calls the portal's
    REST while it handles them (event.bind from the installer, for example).
    """

    def __init__(
        self,
        state: DevState,
        app_base_url: str,
        *,
        event_timeout: float = EVENT_TIMEOUT,
        page_timeout: float = PAGE_TIMEOUT,
    ) -> None:
        self.state = state
        self.app_base_url = app_base_url.rstrip("/")
        self.event_timeout = event_timeout
        self.page_timeout = page_timeout
        # (member_id, client_id) -> (user_id, lang) of the administrator who opened the installer:
        # ONAPPINSTALL carries that user's tokens (settings/oauth/simple-way.md).
        self._installer: dict[tuple[str, str], tuple[int, str]] = {}

    # --- frames ------------------------------------------------------------------------------
    def open_installer(
        self, portal: DevPortal, client_id: str, user_id: int = 1, lang: str = "en"
    ) -> requests.Response:
        """An administrator installs the app: a new installation, and the installer page."""
        installation, access, refresh = install(self.state, portal, client_id, user_id=user_id)
        self._installer[(portal.member_id, client_id)] = (user_id, lang)
        return self._open_frame(portal, "install", installation, access, refresh, lang)

    def open_app(
        self, portal: DevPortal, client_id: str, user_id: int = 1, lang: str = "en"
    ) -> requests.Response:
        """A user opens the app page (placement DEFAULT) with a fresh token pair of their own.

        Until installFinish() an administrator gets the installer again and anyone else gets
        Bitrix24's "not fully installed" message (settings/app-installation/installation-finish.md).
        """
        page, installation, access, refresh = frame_tokens(self.state, portal, client_id, user_id)
        return self._open_frame(portal, page, installation, access, refresh, lang)

    def _open_frame(
        self,
        portal: DevPortal,
        page: str,
        installation: Installation,
        access: AccessToken,
        refresh: RefreshToken,
        lang: str,
    ) -> requests.Response:
        """The POST of settings/oauth/simple-way.md: some fields in the query, the rest a form."""
        url = f"{self.app_base_url}/{page}"
        post = frame_post(self.state, portal, installation, access, refresh, url=url, lang=lang)
        response = requests.post(url, params=post.query, data=post.form, timeout=self.page_timeout)
        self._record(
            portal, installation.client_id, frame=page, url=url, status=response.status_code
        )
        return response

    # --- lifecycle events --------------------------------------------------------------------
    def finish_install(
        self,
        portal: DevPortal,
        client_id: str,
        *,
        user_id: int | None = None,
        lang: str | None = None,
    ) -> list[Delivered]:
        """BX24.installFinish(): the app is installed, then ONAPPINSTALL is sent (once)."""
        remembered = self._installer.get((portal.member_id, client_id), (1, "en"))
        user_id = user_id or remembered[0]
        lang = lang or remembered[1]
        with self.state.lock:
            installation = self._installation(portal, client_id)
            if installation.installed:
                return []  # the installation completes once; so does its event
            installation.installed = True
            data = {
                "VERSION": str(installation.version),
                "ACTIVE": "Y",
                "INSTALLED": "Y",
                "LANGUAGE_ID": lang,
            }
            fallback = self.state.apps[client_id].handler_url
            posts = self.event_posts(portal, installation, "ONAPPINSTALL", data, user_id, fallback)
        return self._send_all(portal, client_id, "ONAPPINSTALL", posts)

    def update(
        self, portal: DevPortal, client_id: str, *, user_id: int = 1, lang: str = "en"
    ) -> list[Delivered]:
        """A new version is installed: version + 1, a new application_token, ONAPPUPDATE."""
        with self.state.lock:
            installation = self._installation(portal, client_id)
            previous = installation.version
            installation.version += 1
            installation.application_token = new_token()
            if not installation.installed:
                return []  # no events before installFinish() (on-app-install.md)
            data = {
                "VERSION": str(installation.version),
                "PREVIOUS_VERSION": str(previous),
                "LANGUAGE_ID": lang,
            }
            posts = self.event_posts(portal, installation, "ONAPPUPDATE", data, user_id, None)
        return self._send_all(portal, client_id, "ONAPPUPDATE", posts)

    def uninstall(
        self, portal: DevPortal, client_id: str, clean: bool = False, *, lang: str = "en"
    ) -> list[Delivered]:
        """The admin removes the app: revoke everything, then tell the handlers that were bound.

        The handlers are captured first because uninstalling deletes them; the event is sent
        after the revocation, so a handler that tries the old tokens sees them refused, as
        on-app-uninstall.md warns.
        """
        with self.state.lock:
            installation = self._installation(portal, client_id)
            posts: list[EventPost] = []
            if installation.installed:
                body = {
                    "event": "ONAPPUNINSTALL",
                    "data": {"LANGUAGE_ID": lang, "CLEAN": "1" if clean else "0"},
                    "ts": str(int(self.state.now())),
                    "auth": self._portal_auth(portal, installation),
                }
                posts = [
                    EventPost(b.handler, _pairs(body, b.handler_id))
                    for b in bindings(installation, "ONAPPUNINSTALL")
                ]
            revoke_installation(self.state, portal, client_id)
            self._installer.pop((portal.member_id, client_id), None)
        return self._send_all(portal, client_id, "ONAPPUNINSTALL", posts)

    # --- building events ---------------------------------------------------------------------
    def event_posts(
        self,
        portal: DevPortal,
        installation: Installation,
        event: str,
        data: dict[str, str],
        user_id: int,
        fallback: str | None,
    ) -> list[EventPost]:
        """One body per handler bound to `event` (else one to `fallback`, when given), each
        with a fresh token pair of its binding's `auth_type` user, or of `user_id` (the user
        whose action caused the event) for auth_type 0. Call it holding `state.lock`; send the
        bodies after releasing it (events/index.md, event-bind.md)."""
        targets = bindings(installation, event)
        if not targets and fallback:
            targets = [Binding(fallback)]
        auths: dict[int, dict[str, Any]] = {}
        posts = []
        for binding in targets:
            owner = binding.auth_type or user_id
            if owner not in auths:
                auths[owner] = self._full_auth(portal, installation, owner)
            body = {
                "event": event,
                "data": data,
                "ts": str(int(self.state.now())),
                "auth": auths[owner],
            }
            posts.append(EventPost(binding.handler, _pairs(body, binding.handler_id)))
        return posts

    def _full_auth(
        self, portal: DevPortal, installation: Installation, user_id: int
    ) -> dict[str, Any]:
        """`auth` with a fresh token pair, as ONAPPINSTALL and ONAPPUPDATE carry it."""
        access, refresh = self.state.issue_tokens(portal, installation.client_id, user_id)
        return {
            "access_token": access.token,
            "expires": str(int(access.expires_at)),
            "expires_in": str(self.state.access_lifetime),
            "scope": access.scope,
            "domain": portal.domain,
            "server_endpoint": self.state.server_endpoint,
            "status": installation.status,
            "client_endpoint": self.state.client_endpoint(portal),
            "member_id": portal.member_id,
            "user_id": str(user_id),
            "refresh_token": refresh.token,
            "application_token": installation.application_token,
        }

    def _portal_auth(self, portal: DevPortal, installation: Installation) -> dict[str, str]:
        """`auth` without tokens (ONAPPUNINSTALL: all API access is already revoked)."""
        return {
            "domain": portal.domain,
            "server_endpoint": self.state.server_endpoint,
            "client_endpoint": self.state.client_endpoint(portal),
            "member_id": portal.member_id,
            "application_token": installation.application_token,
        }

    # --- sending -----------------------------------------------------------------------------
    def _send_all(
        self, portal: DevPortal, client_id: str, event: str, posts: list[EventPost]
    ) -> list[Delivered]:
        return [self._send(portal, client_id, event, post) for post in posts]

    def _send(self, portal: DevPortal, client_id: str, event: str, post: EventPost) -> Delivered:
        """POST one event; a failure is journalled, never raised and never retried."""
        status: int | None = None
        error: str | None = None
        try:
            response = requests.post(
                post.url, data=post.pairs, timeout=self.event_timeout, allow_redirects=False
            )
            status = response.status_code
        except requests.RequestException as exc:
            error = type(exc).__name__
        self._record(portal, client_id, event=event, url=post.url, status=status, error=error)
        return post.url, status

    def _record(self, portal: DevPortal, client_id: str, **fields: Any) -> None:
        self.state.record(
            {
                "ts": self.state.now(),
                "portal": portal.code,
                "member_id": portal.member_id,
                "client_id": client_id,
                **fields,
            }
        )

    def _installation(self, portal: DevPortal, client_id: str) -> Installation:
        installation = portal.installations.get(client_id)
        if installation is None:
            raise NotInstalled(f"{client_id} is not installed on portal {portal.code}")
        return installation


@dataclass(frozen=True)
class FramePost:
    """One frame page as Bitrix24 opens it: POST `url` with `query` in the address, `form` as
    the body. The driver sends it with requests; the browser shell (shell.py) has the browser
    submit it into an iframe."""

    url: str
    query: dict[str, str]
    form: dict[str, str]


def frame_post(
    state: DevState,
    portal: DevPortal,
    installation: Installation,
    access: AccessToken,
    refresh: RefreshToken,
    *,
    url: str,
    lang: str,
) -> FramePost:
    """The fields of settings/oauth/simple-way.md for one render of a frame page."""
    query = {
        "DOMAIN": portal.domain,
        "PROTOCOL": "1" if state.base_url.startswith("https:") else "0",
        "LANG": lang,
        "APP_SID": new_token(),  # new on every render
    }
    form = {
        "AUTH_ID": access.token,
        "AUTH_EXPIRES": str(state.access_lifetime),
        "REFRESH_ID": refresh.token,
        "SERVER_ENDPOINT": state.server_endpoint,
        "APPLICATION_TOKEN": installation.application_token,
        "APPLICATION_SCOPE": access.scope,
        "member_id": portal.member_id,
        "status": installation.status,
        "PLACEMENT": "DEFAULT",
        "PLACEMENT_OPTIONS": "{}",
    }
    return FramePost(url, query, form)


def frame_tokens(
    state: DevState, portal: DevPortal, client_id: str, user_id: int
) -> tuple[str, Installation, AccessToken, RefreshToken]:
    """What opening the app gives `user_id`: the page ("app", or "install" until installFinish())
    and a fresh token pair of their own.

    Until installFinish() an administrator gets the installer again and anyone else gets
    Bitrix24's "not fully installed" message (settings/app-installation/installation-finish.md).
    """
    with state.lock:
        installation = portal.installations.get(client_id)
        if installation is None:
            raise NotInstalled(f"{client_id} is not installed on portal {portal.code}")
        user = portal.users.get(user_id)
        if not installation.installed and not (user and user.admin):
            raise NotInstalled("The application is not fully installed yet")
        access, refresh = state.issue_tokens(portal, client_id, user_id)
    return ("app" if installation.installed else "install"), installation, access, refresh


def bindings(installation: Installation, event: str) -> list[Binding]:
    """The online handlers the app bound to `event`; offline ones are queued, never POSTed."""
    return [
        Binding(b["handler"], int(b.get("auth_type") or 0), b.get("id"))
        for b in handlers_for(installation, event)
        if b.get("handler")
    ]


def _pairs(body: dict[str, Any], handler_id: int | None) -> list[tuple[str, str]]:
    """Bracketed form pairs; `event_handler_id` follows `event` for bound handlers
    (api-reference/events/index.md lists it among the keys every event has)."""
    if handler_id is not None:
        body = {"event": body["event"], "event_handler_id": str(handler_id), **body}
    return flatten(body)
