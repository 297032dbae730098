"""The app for `benchmarks.intake --no-store`: b24app whose PBX intake answers `202` WITHOUT
STORING the call. A benchmark's measuring instrument only, never served anywhere else: it
shows what accepting a call costs apart from the store (the body, validation, the key, the
limiters, the log line, the metric, the answer), so the store's share of the budget can be
read off in the same run. gunicorn loads it as `benchmarks.nostore:create_app()`.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from b24app import create_app as create_b24app
from b24app.pbx import intake


def _answer_without_storing(db: Any, portal: Any, event: Any, after: Any) -> intake.Result:
    return intake.Result(intake.Code.ACCEPTED, call={"id": "not-stored", "state": "queued"})


def create_app() -> Flask:
    intake._store = _answer_without_storing
    return create_b24app()
