"""b24app: finishes any PBX's calls in Bitrix24 telephony, for many portals at once.

`create_app()` builds the Flask app from validated settings and registers each part; nothing
runs at import time.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin

from b24app import (
    cli,
    db,
    delivery,
    health,
    install,
    logs,
    metrics,
    pbx,
    ratelimit,
    retention,
    settings_page,
    wiring,
)
from b24app.config import ConfigError, Settings, fill_development_defaults, load_settings
from b24app.textbody import StrictRequest

_PACKAGE = Path(__file__).resolve().parent


def static_folder() -> str:
    """The pages' CSS and JavaScript, served under /static/ (PRODUCT.md): the checkout's
    top-level static/ (built from frontend/ and committed), or the copy inside the package that
    the image's wheel carries (Dockerfile)."""
    inside = _PACKAGE / "static"
    return str(inside if inside.is_dir() else _PACKAGE.parent / "static")


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app. Without `settings`, read and validate the environment (config.py); a
    wrong one raises ConfigError, except under the `flask` command line, which then gets an app
    that lists the commands and refuses to run them (cli.unconfigured_app)."""
    if settings is None:
        try:
            settings = load_settings()
        except ConfigError as error:
            if cli.running_flask_command():
                return cli.unconfigured_app(error)
            raise
    app = Flask(
        __name__, instance_path=settings.instance_path or None, static_folder=static_folder()
    )
    app.request_class = StrictRequest  # forms decoded as declared, never repaired (textbody.py)
    app.session_interface = NoCookieSession()
    settings = fill_development_defaults(settings, Path(app.instance_path))
    logs.configure(settings.log_level)

    app.config.update(
        SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        DATABASE_URL=settings.database_url or _default_sqlite_url(app),
        MAX_CONTENT_LENGTH=1024 * 1024,
    )

    logs.init_app(app)
    db.init_app(app)
    wiring.init_app(app, settings)  # the installation store, handed to every part
    metrics.init_app(app)
    health.init_app(app)
    install.init_app(app)
    settings_page.init_app(app)
    pbx.init_app(app)
    cli.init_app(app)
    delivery.init_app(app)
    retention.init_app(app)  # after delivery, whose `calls` group it joins
    ratelimit.init_app(app)  # after the blueprints it limits
    return app


class NoCookieSession(SessionInterface):
    """b24app keeps nothing in cookies: the settings page carries a signed page token
    (settings_page/), the OAuth flow a one-time state in the database. Flask's cookie session
    would still build a signing serializer and read the cookie on every request (~0.1 ms of a
    PBX request, docs/performance.md, Intake); here `flask.session` is Flask's NullSession,
    which refuses to be written."""

    def open_session(self, app: Flask, request: Request) -> None:
        return None

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        return None


def _default_sqlite_url(app: Flask) -> str:
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(app.instance_path) / 'b24app.sqlite3'}"
