"""What `create_app` builds once and hands to the parts: the installation store.

The web layer (views, CLI commands, the worker command) reaches it with `current_store()`, or
with `store_of(app)` where it holds the app itself; everything below the web layer is handed the
store (or what it needs of it) and never reads the app.
"""

from __future__ import annotations

from flask import Flask, current_app

from b24app.config import Settings
from b24app.crypto import SecretBox
from b24app.db import get_db
from b24app.portals.store import InstallationStore

EXTENSION = "b24app.store"


def init_app(app: Flask, settings: Settings) -> None:
    """Build the app's InstallationStore (after db.init_app, whose Database it uses)."""
    app.extensions[EXTENSION] = InstallationStore(
        get_db(app), SecretBox(settings.fernet_keys), settings
    )


def store_of(app: Flask) -> InstallationStore:
    """The installation store `create_app` built for `app`."""
    return app.extensions[EXTENSION]


def current_store() -> InstallationStore:
    """The installation store of the app handling this request or command."""
    return store_of(current_app)
