"""The PBX API (`/pbx/v1`): key auth, validation, status-code mapping, idempotent intake.

Flow: views.py (HTTP) → auth.py (whose key?) → intake.py (read, validate with schemas.py and
status_codes.py, store a queued `Call`) → problems.py (results → HTTP answers). The intake never
calls Bitrix24; the delivery worker (b24app/delivery/) picks the stored calls up. The one
question the PBX API asks Bitrix24 itself is route.py's (`GET /pbx/v1/route`: who should take a
caller), within 2 s and only on request slots the delivery leaves spare.
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from b24app.pbx import views

    views.init_app(app)
