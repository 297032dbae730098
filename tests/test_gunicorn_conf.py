"""The web server's settings as a real gunicorn applies them (b24app/gunicorn_conf.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from tests.drills.processes import free_port, process_env

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 60.0  # seconds; a loaded 2-core machine is slow


def test_each_web_worker_leaves_what_it_loaded_out_of_every_garbage_collection(
    tmp_path: Path,
) -> None:
    """What a worker built while loading the app is frozen (post_worker_init), so a full
    collection walks only what requests built: 87-278 ms per full collection became under 30
    (docs/performance.md, Intake)."""
    port = free_port()
    env = process_env({"B24APP_ENV": "development", "B24APP_INSTANCE_PATH": str(tmp_path)})
    env["WEB_CONCURRENCY"] = "1"
    command = [sys.executable, "-m", "gunicorn", "--config", "python:b24app.gunicorn_conf"]
    command += ["--bind", f"127.0.0.1:{port}", "tests.gc_probe_app:app"]
    with open(tmp_path / "gunicorn.log", "wb") as output:
        server = subprocess.Popen(command, env=env, cwd=REPO, stdout=output, stderr=output)
    try:
        answer = _first_answer(f"http://127.0.0.1:{port}/", server)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    log = (tmp_path / "gunicorn.log").read_text()
    assert answer["load_time_object_walked"] is False, log
    assert answer["request_object_walked"] is True, log  # collections still run, on the rest
    assert answer["frozen"] > 1_000  # the modules gunicorn and the app brought, not a handful


def _first_answer(url: str, server: subprocess.Popen[bytes]) -> dict[str, Any]:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert server.poll() is None, "gunicorn exited"
        try:  # the master listens before its worker has loaded the app: wait for both
            return dict(requests.get(url, timeout=5).json())
        except requests.RequestException:
            time.sleep(0.1)
    raise AssertionError("gunicorn did not answer in time")
