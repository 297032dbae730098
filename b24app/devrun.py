"""`make run`: everything on one machine — SQLite, the development portal, web and worker.

Sets development defaults (nothing to configure), applies migrations, starts the three processes
under honcho (Ctrl-C stops them all), installs the app on the development portal "alpha" through
its real installer, and prints what to open and how to send a first call.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import requests
from flask import Flask
from honcho.manager import Manager

DEVPORTAL_PORT = int(os.environ.get("DEVPORTAL_PORT", "8100"))
WEB_PORT = int(os.environ.get("PORT", "5000"))
DEVPORTAL = f"http://127.0.0.1:{DEVPORTAL_PORT}"
WEB = f"http://127.0.0.1:{WEB_PORT}"

DEFAULTS = {
    "B24APP_ENV": "development",
    "B24_OAUTH_SERVER": DEVPORTAL,
    "PUBLIC_URL": WEB,
    "B24APP_ALLOW_LOCAL_PORTALS": "1",
    "B24APP_BX24_SCRIPT_URL": f"{DEVPORTAL}/bx24.js",
    "PORT": str(WEB_PORT),
    "WEB_CONCURRENCY": "2",
    "PYTHONUNBUFFERED": "1",
}


def main() -> int:
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    from b24app import create_app
    from b24app.cli import upgrade_database

    app = create_app()
    upgrade_database(app.config["DATABASE_URL"])
    settings = app.config["SETTINGS"]
    bin_dir = Path(sys.executable).parent
    manager = Manager()
    manager.add_process(
        "devportal",
        f"{sys.executable} -m b24app.devportal --port {DEVPORTAL_PORT} --app-url {WEB} "
        f"--client-id {settings.client_id} --client-secret {settings.client_secret}",
    )
    manager.add_process(
        "web",
        f"{bin_dir / 'gunicorn'} --config python:b24app.gunicorn_conf --bind 127.0.0.1:{WEB_PORT} "
        '"b24app:create_app()"',
    )
    manager.add_process("worker", f"{bin_dir / 'flask'} --app b24app worker")
    threading.Thread(target=_install_and_greet, args=(app,), daemon=True).start()
    manager.loop()
    return manager.returncode or 0


def _install_and_greet(app: Flask) -> None:
    """Once both servers answer, install the app on portal alpha and print how to use it."""
    if not (_wait_for(f"{DEVPORTAL}/_dev/portals") and _wait_for(f"{WEB}/healthz")):
        print("b24app: the servers did not start; see the log above", flush=True)
        return
    client_id = app.config["SETTINGS"].client_id
    response = requests.post(
        f"{DEVPORTAL}/_dev/portals/alpha/install",
        json={"client_id": client_id, "app_url": WEB, "finish": True},
        timeout=30,
    )
    key = _pbx_key(app) if response.ok else None
    print(_banner(key, response.ok), flush=True)


def _pbx_key(app: Flask) -> str | None:
    from b24app.db import get_db
    from b24app.devportal.seed import _member
    from b24app.portals import pbx_keys, store

    with app.app_context(), get_db().read() as session:
        portal = store.find_portal(session, _member("alpha"))
        return pbx_keys.reveal(portal.settings, store.secret_box()) if portal else None


def _banner(key: str | None, installed: bool) -> str:
    call = json.dumps(
        {
            "PBX_CALL_ID": "demo-1",
            "PHONE_NUMBER": "+15551234567",
            "TYPE": 2,
            "CALL_START_DATE": "2026-11-27T10:00:00",
            "USER_PHONE_INNER": "101",
            "DURATION": 42,
            "STATUS_CODE": "ANSWER",
        }
    )
    lines = [
        "",
        "=" * 78,
        "b24app is running (development mode, SQLite in ./instance).",
        f"  Open the emulated Bitrix24 portal:      {DEVPORTAL}/p/alpha/",
        "    (use 127.0.0.1, not localhost; the app is in its left menu: the settings page)",
        f"  Install it yourself on another portal:  {DEVPORTAL}/p/beta/",
        f"  Development portal API (journal, ...):  {DEVPORTAL}/_dev/portals",
        f"  b24app health:                          {WEB}/healthz",
        f"  PBX API description:                    {WEB}/pbx/v1/openapi.json",
    ]
    if installed and key:
        lines += [
            "  Installed on the development portal 'alpha'. Its PBX key:",
            f"    {key}",
            "  Send a finished call:",
            f"    curl -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\",
            f"         -d '{call}' {WEB}/pbx/v1/calls/finish",
            f"  Then see it in Bitrix24's statistics: {DEVPORTAL}/_dev/portals/alpha/statistics",
        ]
    else:
        lines.append("  Installing on portal 'alpha' failed; see the log above.")
    lines += ["Ctrl-C stops everything.", "=" * 78]
    return "\n".join(lines)


def _wait_for(url: str, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=1).ok:
                return True
        except requests.RequestException:
            pass
        time.sleep(0.3)
    return False


if __name__ == "__main__":
    sys.exit(main())
