"""A WSGI app for tests/test_gunicorn_conf.py: it answers what the garbage collector of the process
serving it tracks. Not part of b24app."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterable
from typing import Any

BUILT_AT_LOAD = [{"built": "when gunicorn loaded this app"}]  # tracked by the collector


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    built_now = [{"built": "for this request"}]
    tracked = gc.get_objects()  # the generations a collection walks; frozen objects are not in them
    body = {
        "load_time_object_walked": any(one is BUILT_AT_LOAD for one in tracked),
        "request_object_walked": any(one is built_now for one in tracked),
        "frozen": gc.get_freeze_count(),
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]
