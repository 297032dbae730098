"""The web server's settings as a real gunicorn applies them (b24app/gunicorn_conf.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import requests

from tests.drills.processes import Managed, free_port, process_env, wait_until_answers

REPO = Path(__file__).resolve().parents[1]


def test_each_web_worker_leaves_what_it_loaded_out_of_every_garbage_collection(
    tmp_path: Path,
) -> None:
    """What a worker built while loading the app is frozen (post_worker_init), so a full
    collection walks only what requests built: 87-278 ms per full collection became under 30
    (docs/performance.md, Intake)."""
    port = free_port()
    env = process_env({"B24APP_ENV": "development", "B24APP_INSTANCE_PATH": str(tmp_path)})
    env["WEB_CONCURRENCY"] = "1"
    argv = [sys.executable, "-m", "gunicorn", "--config", "python:b24app.gunicorn_conf"]
    argv += ["--bind", f"127.0.0.1:{port}", "tests.gc_probe_app:app"]
    web = Managed("web", argv, env, REPO, tmp_path / "gunicorn.log", url=f"http://127.0.0.1:{port}")
    try:
        wait_until_answers(web.start(), "/")
        answer = requests.get(f"{web.url}/", timeout=10).json()
    finally:
        web.stop()
    assert answer["load_time_object_walked"] is False, web.tail()
    assert answer["request_object_walked"] is True, web.tail()  # collections still run, on the rest
    assert answer["frozen"] > 1_000  # the modules gunicorn and the app brought, not a handful
