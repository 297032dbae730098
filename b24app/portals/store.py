"""The installation store: who is installed where, with which tokens, in which state.

`InstallationStore` is built once by `create_app` (b24app/wiring.py) from the database, the
encryption keys and the settings, and handed to what needs it: the web parts, the CLI, the
worker, and every PortalClient (`client`), for which it is the token source and takes back rotated
tokens, a new address and status changes (bitrix/client.py `Installations`). Secrets stored for a
portal (tokens, application_token, client secrets) are encrypted and decrypted with its
SecretBox; PBX keys are encrypted too (pbx_keys.py, with the same box), and `keys rotate`
re-encrypts all of them. Token *refresh* is not here: its rule lives in bitrix/tokens.py, which
takes this store's row lock (`locked`).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from filelock import FileLock
from filelock import Timeout as FileLockTimeout
from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from b24app.bitrix import tokens
from b24app.bitrix.client import PortalClient, PortalState
from b24app.bitrix.errors import BitrixError, Ending, TransportError
from b24app.bitrix.oauth import OAuthServer, TokenPair
from b24app.config import Settings
from b24app.crypto import SecretBox
from b24app.db import Database
from b24app.models import (
    AppCredentials,
    Base,
    OAuthState,
    Portal,
    PortalSettings,
    PortalStatus,
    utcnow,
)
from b24app.portals import originate_secret, pbx_keys
from b24app.portals.throttle import Throttle


@dataclass(frozen=True)
class Installation:
    """Facts about one install, already verified with the OAuth server."""

    member_id: str
    domain: str
    client_endpoint: str
    server_endpoint: str
    client_id: str
    scope: str
    user_id: int | None
    tokens: TokenPair | None
    application_token: str | None


MEMBER_ID_LENGTH = 64  # portals.member_id


# Seconds to wait for another process's token refresh (it asks the OAuth server, at most the HTTP
# timeout, 10 s by default, and not more than 60 s); past that the caller meets NOT_SENT.
REFRESH_LOCK_WAIT = 65.0


def find_portal(session: Session, member_id: str, *, for_update: bool = False) -> Portal | None:
    """The portal of `member_id` (a value from a request: a NUL or an overlong one cannot be
    stored, so it finds nothing, instead of becoming a PostgreSQL error)."""
    if "\x00" in member_id or len(member_id) > MEMBER_ID_LENGTH:
        return None
    query = select(Portal).where(Portal.member_id == member_id)
    if for_update:
        query = query.with_for_update()
    return session.scalars(query).one_or_none()


def find_portals_named(session: Session, name: str, *, for_update: bool = False) -> list[Portal]:
    """The portal whose member_id is `name`, else every portal whose domain it is (any case,
    `https://` and a trailing `/` allowed): none, one, or several when a domain passed from an
    uninstalled portal's row to a new install. For the admin command line."""
    portal = find_portal(session, name, for_update=for_update)
    if portal is not None:
        return [portal]
    domain = name.strip().removeprefix("https://").removeprefix("http://").rstrip("/").lower()
    query = select(Portal).where(func.lower(Portal.domain) == domain).order_by(Portal.id)
    if for_update:
        query = query.with_for_update()
    return list(session.scalars(query))


def set_status(portal: Portal, status: PortalStatus, detail: str | None = None) -> None:
    portal.status = status
    portal.status_detail = detail


def mark_uninstalled(portal: Portal) -> None:
    """The app was removed: tokens erased, PBX key dead (status), call history kept."""
    portal.status = PortalStatus.UNINSTALLED
    portal.status_detail = "The application was uninstalled from the portal."
    portal.access_token_encrypted = None
    portal.refresh_token_encrypted = None
    portal.access_expires_at = None
    portal.application_token_encrypted = None
    portal.uninstalled_at = utcnow()


def erase_portal(session: Session, portal: Portal) -> dict[str, int]:
    """Erase the portal and everything it owns: the admin uninstalled with "Clear application
    data" (`data[CLEAN]=1`, api-reference/common/events/on-app-uninstall.md).

    Deletes, in the caller's transaction, the rows of every table with a foreign key to
    `portals` (settings with the PBX key, mapping, calls whatever their state, throttle, and any
    table added later; rows below those go by the schema's ON DELETE CASCADE), the portal's
    pending re-authorisation states, then the portal row with its tokens. A reinstall starts
    afresh. Returns the number of rows deleted per table (no secrets), for the log.
    """
    erased: dict[str, int] = {}
    for table in reversed(Base.metadata.sorted_tables):
        for key in table.foreign_keys:
            if key.column.table is Portal.__table__:
                result = session.execute(delete(table).where(key.parent == portal.id))
                erased[table.name] = erased.get(table.name, 0) + _rowcount(result)
    states = delete(OAuthState).where(OAuthState.member_id == portal.member_id)
    erased[OAuthState.__tablename__] = _rowcount(session.execute(states))
    session.expunge(portal)
    gone = delete(Portal).where(Portal.id == portal.id)
    erased[Portal.__tablename__] = _rowcount(
        session.execute(gone, execution_options={"synchronize_session": False})
    )
    return erased


def _rowcount(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


class InstallationStore:
    """The installations of one deployment: `db` (Database), `box` (SecretBox of
    B24APP_ENCRYPTION_KEYS) and `settings` (our client id and secret, the OAuth server, the HTTP
    timeout, B24APP_ALLOW_LOCAL_PORTALS). Methods taking a `session` work in the caller's
    transaction; the others open their own, short ones."""

    def __init__(self, db: Database, box: SecretBox, settings: Settings) -> None:
        self.db = db
        self.box = box
        self.settings = settings
        self.schedule = Throttle(db)

    @property
    def oauth(self) -> OAuthServer:
        """The OAuth server of `settings` (B24_OAUTH_SERVER, the HTTP timeout)."""
        return OAuthServer(self.settings.oauth_server, timeout=self.settings.http_timeout)

    # --- the client --------------------------------------------------------------------------
    def client(self, member_id: str) -> PortalClient:
        """A client for the portal, with this store as its token source and hooks."""
        return PortalClient(
            member_id,
            installations=self,
            oauth=self.oauth,
            schedule=self.schedule,
            timeout=self.settings.http_timeout,
            allow_local=self.settings.allow_local_portals,
        )

    def portal_state(self, member_id: str) -> PortalState | None:
        """bitrix.client.Installations: the portal's state and decrypted tokens (a read)."""
        with self.db.read() as session:
            portal = find_portal(session, member_id)
            return None if portal is None else self.state_of(portal)

    def state_of(self, portal: Portal) -> PortalState:
        """What `portal_state` answers, from a portal row the caller has read (the worker reads
        it with the rest of the portal's view: one transaction, delivery/deliver.py)."""
        return PortalState(
            portal_id=portal.id,
            status=portal.status,
            status_detail=portal.status_detail or "",
            client_endpoint=portal.client_endpoint,
            tokens=self.read_tokens(portal),
            enterprise_limits=portal.enterprise_limits,
        )

    @contextmanager
    def refresh_mutex(self, member_id: str) -> Iterator[None]:
        """Hold the portal's refresh lock (bitrix/tokens.py's rule) for the block, without a
        database transaction, so a slow OAuth server never holds up anything else.

        PostgreSQL: a session advisory lock keyed by the portal (every host shares it). SQLite:
        a write transaction would lock the whole database — every PBX's intake would wait for
        the OAuth server — so it is a file lock per portal beside the database file (filelock:
        SQLite lives on one host, so a file lock reaches every process that can use it). Raises
        TransportError (NOT_SENT) if another process holds it past REFRESH_LOCK_WAIT seconds."""
        wait = REFRESH_LOCK_WAIT
        if self.db.is_sqlite:
            try:
                with FileLock(self._lock_file(member_id), timeout=wait):
                    yield
            except FileLockTimeout:
                raise TransportError("refresh lock busy", ending=Ending.NOT_SENT) from None
            return
        key = int.from_bytes(hashlib.sha256(member_id.encode()).digest()[:8], "big", signed=True)
        with self.db.engine.connect() as conn:
            limit = f"{int(wait * 1000)}ms"  # for this transaction only (is_local)
            conn.execute(text("SELECT set_config('lock_timeout', :limit, true)"), {"limit": limit})
            try:
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            except OperationalError:
                raise TransportError("refresh lock busy", ending=Ending.NOT_SENT) from None
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                conn.commit()

    def _lock_file(self, member_id: str) -> str:
        database = self.db.url.database
        folder = Path(database).parent if database and database != ":memory:" else None
        folder = (folder or Path(tempfile.gettempdir())) / ".b24app-locks"
        folder.mkdir(parents=True, exist_ok=True)
        return str(folder / f"refresh-{hashlib.sha256(member_id.encode()).hexdigest()[:32]}.lock")

    @contextmanager
    def locked(self, member_id: str) -> Iterator[_HeldPortal | None]:
        """bitrix.tokens.TokenStore: the portal read under its refresh lock (`refresh_mutex`),
        with what the block saves written in one short transaction at its end; None for an
        unknown portal. No transaction is open while the block asks the OAuth server."""
        with self.refresh_mutex(member_id):
            with self.db.read() as session:
                portal = find_portal(session, member_id)
                held = _HeldPortal(self, session, portal) if portal is not None else None
            yield held
            if held is not None:
                held.commit()

    def save_endpoint(self, member_id: str, client_endpoint: str) -> None:
        """bitrix.client.Installations: the portal moved (change-domen.md); on Bitrix24 cloud
        the REST endpoint is https://{domain}/rest/, so `domain` follows."""
        with self.db.write() as session:
            portal = find_portal(session, member_id, for_update=True)
            if portal is None:
                return
            portal.client_endpoint = client_endpoint
            parts = urlsplit(client_endpoint)
            if parts.path == "/rest/":
                portal.domain = parts.netloc

    def save_status(
        self,
        member_id: str,
        status: PortalStatus,
        detail: str | None = None,
        *,
        only_from: tuple[PortalStatus, ...] = (),
    ) -> bool:
        """bitrix.client.Installations: set the portal's status (only from one of `only_from`,
        if given); return whether it was set."""
        with self.db.write() as session:
            portal = find_portal(session, member_id, for_update=True)
            if portal is None or (only_from and portal.status not in only_from):
                return False
            set_status(portal, status, detail)
            return True

    def refresh_idle(self, idle_for: timedelta) -> tuple[int, int]:
        """Refresh active portals whose tokens were last refreshed more than `idle_for` ago, well
        inside the refresh token's 180 days (`tokens refresh-idle`, the worker's daily
        housekeeping). Returns (refreshed, failed)."""
        with self.db.read() as session:
            due = [
                (p.member_id, self.read_tokens(p))
                for p in session.scalars(
                    select(Portal).where(
                        Portal.status == PortalStatus.ACTIVE,
                        Portal.refreshed_at < utcnow() - idle_for,
                    )
                )
            ]
        refreshed = failed = 0
        for member_id, pair in due:
            if pair is None:
                continue
            try:
                tokens.refresh(self, self.oauth, member_id, pair.access_token)
                refreshed += 1
            except BitrixError:
                failed += 1
        return refreshed, failed

    # --- secrets, in the caller's transaction ----------------------------------------------------
    def client_secret_for(self, session: Session, client_id: str) -> str | None:
        """The secret of one of our applications: the main one or one added with `apps add`."""
        if client_id == self.settings.client_id:
            return self.settings.client_secret
        row = session.scalars(
            select(AppCredentials).where(AppCredentials.client_id == client_id)
        ).one_or_none()
        return self.box.decrypt(row.client_secret_encrypted) if row else None

    def save_installation(self, session: Session, facts: Installation) -> Portal:
        """Create or update the portal from a verified install. A reinstall keeps its settings."""
        portal = find_portal(session, facts.member_id, for_update=True)
        if portal is None:
            portal = Portal(member_id=facts.member_id)
            session.add(portal)
        portal.domain = facts.domain
        portal.client_endpoint = facts.client_endpoint
        portal.server_endpoint = facts.server_endpoint
        portal.client_id = facts.client_id
        portal.scope = facts.scope
        portal.user_id = facts.user_id
        if facts.tokens:
            self.store_tokens(portal, facts.tokens)
            set_status(portal, PortalStatus.ACTIVE)
            portal.uninstalled_at = None
        elif portal.id is None:
            set_status(portal, PortalStatus.NEEDS_REAUTH, "Installed without tokens; open the app.")
        if facts.application_token:
            portal.application_token_encrypted = self.box.encrypt(facts.application_token)
        if portal.settings is None:
            portal.settings = self.new_settings()
        session.flush()
        return portal

    def new_settings(self) -> PortalSettings:
        """A new portal's settings row, with a fresh PBX key and originate secret."""
        key = pbx_keys.generate()
        return PortalSettings(
            pbx_key_encrypted=self.box.encrypt(key),
            pbx_key_hash=self.box.lookup_hash(key),
            pbx_key_rotated_at=utcnow(),
            originate_secret_encrypted=self.box.encrypt(originate_secret.generate()),
        )

    def store_tokens(self, portal: Portal, tokens: TokenPair) -> None:
        portal.access_token_encrypted = self.box.encrypt(tokens.access_token)
        portal.refresh_token_encrypted = self.box.encrypt(tokens.refresh_token)
        portal.access_expires_at = tokens.expires_at
        portal.refreshed_at = utcnow()

    def read_tokens(self, portal: Portal) -> TokenPair | None:
        """The portal's decrypted tokens, None if it has none."""
        if not (portal.access_token_encrypted and portal.refresh_token_encrypted):
            return None
        return TokenPair(
            self.box.decrypt(portal.access_token_encrypted),
            self.box.decrypt(portal.refresh_token_encrypted),
            portal.access_expires_at or utcnow(),
        )

    def application_token(self, portal: Portal) -> str | None:
        if not portal.application_token_encrypted:
            return None
        return self.box.decrypt(portal.application_token_encrypted)


class _HeldPortal:
    """bitrix.tokens.HeldTokens: a portal read under its refresh lock; `save` and `set_status`
    are kept and written by `commit` in one short transaction."""

    def __init__(self, store: InstallationStore, session: Session, portal: Portal) -> None:
        self._store = store
        self.member_id = portal.member_id
        self.status = portal.status
        self.client_id = portal.client_id
        self.tokens = store.read_tokens(portal)
        self._secret = store.client_secret_for(session, portal.client_id)
        self._pair: TokenPair | None = None
        self._status: tuple[PortalStatus, str] | None = None

    def client_secret(self) -> str | None:
        return self._secret

    def save(self, pair: TokenPair) -> None:
        self._pair = pair

    def set_status(self, status: PortalStatus, detail: str) -> None:
        self._status = (status, detail)

    def commit(self) -> None:
        if self._pair is None and self._status is None:
            return
        with self._store.db.write() as session:
            portal = find_portal(session, self.member_id, for_update=True)
            if portal is None:
                return
            if self._pair is not None:
                self._store.store_tokens(portal, self._pair)
            if self._status is not None:
                set_status(portal, *self._status)
