"""The settings page inside Bitrix24 (placement DEFAULT): what a portal's admin configures.

- `entry.py`        POST /app: is the request really from that portal's user, and an admin?
- `page_token.py`   the signed, short-lived token that replaces cookies in the iframe
- `portal_data.py`  the portal's employees (user.get) and user.admin with the user's own token
- `actions.py`      changes, through the CLI's validated paths (portals/settings, mapping, keys)
- `journal.py`      the latest calls, "deliver again", health
- `examples.py`     curl and Asterisk examples for the PBX
- `messages.py`, `i18n.py`, `translations/`   Russian and English
- `views.py`        the page and its JSON API; `templates/`, `static/` its HTML, CSS and script
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from b24app.settings_page import i18n, views

    i18n.init_babel(app)
    app.register_blueprint(views.bp)
