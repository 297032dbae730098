"""Bitrix24-facing endpoints of the app's life on a portal: the installer page, lifecycle events
and re-authorisation (the authorization-code flow)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from b24app.install import events, installer, reauthorize

    app.register_blueprint(installer.bp)
    app.register_blueprint(events.bp)
    app.register_blueprint(reauthorize.bp)
