"""Limits on our own doors (Flask-Limiter): the PBX API per key and per address, the installer
and the re-authorisation links per address. Over the limit: 429 with `Retry-After` (problem+json
on the PBX API, see pbx/views.py).

Storage is in memory per process by default; several processes or hosts share Redis through
`B24APP_RATELIMIT_STORAGE_URL=redis://…`. Keys are never stored as such: a PBX key is counted
under a hash of it.
"""

from __future__ import annotations

import hashlib
from typing import cast

from flask import Blueprint, Flask, Response, jsonify, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from werkzeug.middleware.proxy_fix import ProxyFix

PBX_BLUEPRINT = "pbx"
INSTALL_BLUEPRINTS = ("installer", "reauthorize")  # /install; /oauth/start and /oauth/callback


def pbx_key_id() -> str:
    """Who is calling the PBX API: a digest of the bearer key (or the address without one)."""
    header = request.headers.get("Authorization", "")
    if not header:
        return f"addr:{get_remote_address()}"
    return "key:" + hashlib.sha256(header.encode()).hexdigest()[:24]


def init_app(app: Flask) -> None:
    settings = app.config["SETTINGS"]
    if settings.proxy_count:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.proxy_count, x_proto=settings.proxy_count
        )
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=settings.ratelimit_storage_url,
        headers_enabled=True,
        strategy="moving-window",
    )
    app.extensions["b24app.limiter"] = limiter
    pbx = cast(Blueprint | None, app.blueprints.get(PBX_BLUEPRINT))
    if pbx is not None:
        limiter.limit(settings.pbx_rate_limit, key_func=pbx_key_id, scope="pbx-key")(pbx)
        limiter.limit(settings.pbx_address_rate_limit, scope="pbx-address")(pbx)
    for name in INSTALL_BLUEPRINTS:  # unauthenticated doors that call Bitrix24 or write rows
        blueprint = cast(Blueprint | None, app.blueprints.get(name))
        if blueprint is not None:
            limiter.limit(settings.install_rate_limit, scope=name)(blueprint)
    app.register_error_handler(RateLimitExceeded, _too_many)


def _too_many(error: RateLimitExceeded) -> Response:
    """Outside the PBX API (whose blueprint answers problem+json itself, pbx/views.py)."""
    response = jsonify(
        status="rate limited",
        detail=f"Too many requests: the limit is {error.description}. Retry after the delay given.",
    )
    response.status_code = 429
    return response
