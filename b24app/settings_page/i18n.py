"""The page's languages: Russian and English, from the portal's LANG, with gettext catalogues.

Bitrix24 sends the portal's language as `LANG` (settings/oauth/simple-way.md). Russian is shown
for ru and the languages whose users read Russian in Bitrix24's own interface (ua, by, kz),
English otherwise (frames.py `page_language`). The language then rides in the page
token, so every JSON answer, including validation errors, speaks it too.

Catalogues: translations/{ru,en}/LC_MESSAGES/messages.po, compiled to .mo (both committed).
After changing a message: extract, update, translate, compile (see translations/README.md).
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, g
from flask_babel import Babel

TRANSLATIONS = Path(__file__).parent / "translations"
LANGUAGES = ("en", "ru")


def init_babel(app: Flask) -> None:
    """Flask-Babel for the whole app, its locale chosen per request by `use_language`."""
    if "babel" not in app.extensions:
        Babel(app, locale_selector=_locale, default_translation_directories=str(TRANSLATIONS))


def use_language(lang: str) -> None:
    """Speak `lang` for the rest of this request (before the first gettext call)."""
    g.settings_page_lang = lang if lang in LANGUAGES else "en"


def _locale() -> str:
    return str(g.get("settings_page_lang") or "en")
