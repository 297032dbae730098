"""What every page Bitrix24 opens in its frame shares: the language and who may frame it.

The installer (install/installer.py), re-authorisation (install/reauthorize.py) and the settings
page (settings_page/) use these; they live apart from each so that none imports another.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Response

RUSSIAN = ("ru", "ua", "by", "kz")  # portal languages that get the Russian pages


def page_language(lang: str | None) -> str:
    """ "ru" or "en" for a portal's `LANG` (the frame's query string)."""
    return "ru" if (lang or "").lower() in RUSSIAN else "en"


def framed(response: Response, client_endpoint: str) -> Response:
    """Allow framing by the portal's own origin only (site-does-not-allow-connection.md); the
    portal's address is the stored, checked `client_endpoint`. Returns `response`."""
    parts = urlsplit(client_endpoint)
    origin = f"{parts.scheme}://{parts.netloc}"
    response.headers["Content-Security-Policy"] = f"frame-ancestors 'self' {origin}"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
