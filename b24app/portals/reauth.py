"""Re-authorisation states: the one-time `state` of the authorization-code flow.

settings/oauth/index.md: the admin's browser goes to `{portal}/oauth/authorize/?client_id=…&
state=…` and comes back to our redirect URI with `code` and our `state`. The state is random,
stored only as a hash, valid ten minutes and usable once, so a callback can't be forged or
replayed. The flow's endpoints are install/reauthorize.py; `portals reauth-url` and the settings
page start it too, which is why the states live here, with the store.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete

from b24app.bitrix.oauth import authorization_url as portal_authorization_url
from b24app.models import OAuthState, PortalStatus, utcnow
from b24app.portals.store import InstallationStore, find_portal

STATE_LIFETIME = timedelta(minutes=10)


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def authorization_url(store: InstallationStore, member_id: str) -> str | None:
    """Where to send the admin to re-authorise the portal: its authorize page with a new state
    (one short write). None for an unknown or uninstalled portal."""
    state = secrets.token_urlsafe(32)
    with store.db.write() as session:
        portal = find_portal(session, member_id)
        if portal is None or portal.status == PortalStatus.UNINSTALLED:
            return None
        session.execute(delete(OAuthState).where(OAuthState.expires_at <= utcnow()))
        session.add(
            OAuthState(
                state_hash=_hash(state), member_id=member_id, expires_at=utcnow() + STATE_LIFETIME
            )
        )
        client_endpoint, client_id = portal.client_endpoint, portal.client_id
    return portal_authorization_url(client_endpoint, client_id, state)


def consume_state(store: InstallationStore, state: str) -> str | None:
    """Use up `state` (one short write): its portal's member_id if it existed and had not
    expired, else None. A state is never accepted twice."""
    if not state:
        return None
    with store.db.write() as session:
        row = session.get(OAuthState, _hash(state), with_for_update=True)
        if row is None:
            return None
        session.execute(delete(OAuthState).where(OAuthState.state_hash == row.state_hash))
        return row.member_id if row.expires_at > utcnow() else None
