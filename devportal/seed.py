"""The development world `make run` starts with: our app registered, two portals to install it on.

"alpha" has the standard request limits and "beta" the Enterprise ones (limits.md), so both
throttling regimes can be seen by hand. The app is registered but not installed: installing it
is the developer's first step (the shell, or `POST /_dev/portals/<code>/install`), and it goes
through the app's real installer like on Bitrix24.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from devportal.state import DevApp, DevPortal, DevState


@dataclass(frozen=True)
class DevelopmentWorld:
    app: DevApp
    alpha: DevPortal
    beta: DevPortal


def seed_development(
    state: DevState, *, client_id: str, client_secret: str, app_url: str
) -> DevelopmentWorld:
    """Register the app at `app_url` (its /install, /app, /events, /oauth/callback) and the portals.

    Safe to call again (after `POST /_dev/reset`, say): the app's registration is replaced and
    existing portals are kept as they are.
    """
    base = app_url.rstrip("/")
    with state.lock:
        app = state.add_app(
            client_id,
            client_secret,
            installer_url=f"{base}/install",
            app_url=f"{base}/app",
            handler_url=f"{base}/events",
            redirect_uri=f"{base}/oauth/callback",
        )
        alpha = state.find_portal("alpha") or state.add_portal("alpha", member_id=_member("alpha"))
        beta = state.find_portal("beta") or state.add_portal(
            "beta", enterprise=True, member_id=_member("beta")
        )
    return DevelopmentWorld(app, alpha, beta)


def _member(code: str) -> str:
    """A stable member_id per seeded portal, so that after restarting `make run` (the development
    portal keeps its world in memory) a reinstall finds the same portal row and its settings."""
    return hashlib.sha256(f"b24app-devportal:{code}".encode()).hexdigest()[:32]
