"""`make run`: everything on one machine — SQLite, the development portal, web and worker.

First checks that its two ports (`PORT`, default 5000, and `DEVPORTAL_PORT`, default 8100) are
free on 127.0.0.1, and stops with a message naming the taken one otherwise: starting anyway would
send the install request to whatever listens there. Then sets development defaults (nothing to
configure; written to make-run.env in the instance folder, where `flask --app b24app …` finds
them), applies migrations, starts the three processes under honcho (Ctrl-C stops them all),
installs the app on the development portal "alpha" through its real installer, connects alpha's
originate_url to the development portal's PBX stand-in (click-to-call end to end), and prints what
to open, how to send a first call (a new PBX_CALL_ID each run) and how to start the PBX simulator.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import socket
import sys
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import requests
from flask import Flask
from honcho.manager import Manager

HOST = "127.0.0.1"


def _port(name: str, default: str) -> int:
    """The port number in the environment variable `name`; SystemExit naming it if it is not one."""
    raw = os.environ.get(name, default).strip()
    if not (raw.isdigit() and 1 <= int(raw) <= 65535):
        raise SystemExit(f"b24app: {name}={raw[:20]!r} is not a port number (1-65535).")
    return int(raw)


DEVPORTAL_PORT = _port("DEVPORTAL_PORT", "8100")
WEB_PORT = _port("PORT", "5000")
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
    problem = ports_problem({"PORT": WEB_PORT, "DEVPORTAL_PORT": DEVPORTAL_PORT})
    if problem:
        print(problem, file=sys.stderr, flush=True)
        return 2
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    write_run_settings(os.environ)
    from b24app import create_app
    from b24app.cli import upgrade_database

    app = create_app()
    upgrade_database(app.config["DATABASE_URL"])
    settings = app.config["SETTINGS"]
    _share_metrics(Path(app.instance_path))
    bin_dir = Path(sys.executable).parent
    manager = Manager()
    manager.add_process(
        "devportal",
        f"{sys.executable} -m devportal --port {DEVPORTAL_PORT} --app-url {WEB} "
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


def _share_metrics(instance: Path) -> None:
    """/metrics adds up every process's counters (web and worker) through prometheus_client's
    multiprocess folder, as docs/deployment.md sets it up; emptied at each start, as it must be."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    folder = instance / "metrics"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


def write_run_settings(environ: Mapping[str, str]) -> Path:
    """Write the b24app settings this run uses (every variable b24app reads that `environ` sets,
    B24APP_INSTANCE_PATH aside) to make-run.env in the instance folder, where config.py looks
    before `.env`: `flask --app b24app …` in this checkout then uses the same settings without a
    variable (README, Admin command line). Rewritten at each start, so a setting of an earlier
    run never lingers; owner-only, since DATABASE_URL may hold a password. Returns its path."""
    from b24app.config import RUN_SETTINGS, Settings, default_instance_path

    names = [field.alias for field in Settings.model_fields.values() if field.alias]
    folder = Path(environ.get("B24APP_INSTANCE_PATH") or default_instance_path())
    lines = [
        "# Written by `make run` (devportal/devrun.py) at each start: the settings it runs",
        "# b24app with, read by `flask --app b24app ...` in this checkout after the environment",
        "# and .env. Removed by `make clean`.",
        *(
            f'{name}="{_dotenv_quoted(environ[name])}"'
            for name in names
            if name in environ and name != "B24APP_INSTANCE_PATH"
        ),
    ]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RUN_SETTINGS
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _dotenv_quoted(value: str) -> str:
    """`value` inside a double-quoted dotenv value (python-dotenv unescapes \\ and \\")."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def ports_problem(ports: dict[str, int], host: str = HOST) -> str | None:
    """Why `make run` cannot start on these ports (variable name → port), or None when each one
    can be listened on at `host`. Checked by binding each port as the servers will
    (SO_REUSEADDR, as gunicorn and Werkzeug do, so a port merely in TIME_WAIT counts as free)."""
    if len(set(ports.values())) < len(ports):
        names = " and ".join(f"{name}={port}" for name, port in ports.items())
        return f"b24app: {names} must be different ports."
    refused = [
        f"port {port} ({name}) {why}"
        for name, port in ports.items()
        if (why := _refusal(host, port)) is not None
    ]
    if not refused:
        return None
    others = " ".join(f"{name}={port + 1}" for name, port in ports.items())
    return (
        f"b24app: cannot start on {host}: {'; '.join(refused)}. Stop what holds it, "
        f"or choose other ports, e.g.\n    {others} make run"
    )


def _refusal(host: str, port: int) -> str | None:
    """None if `port` can be listened on now, else why not, in words."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
            probe.listen(1)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return "is already in use (another program, or a b24app still running)"
            if error.errno == errno.EACCES:
                return "may not be used by this user (ports below 1024 need privileges)"
            return f"cannot be used ({error.strerror})"
    return None


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
    connected = bool(key) and connect_pbx(app)
    print(_banner(key, response.ok, pbx_connected=connected), flush=True)


def connect_pbx(app: Flask, code: str = "alpha") -> bool:
    """Point portal `code`'s originate_url at the development portal's PBX stand-in
    (`/_pbx/<code>/originate`, devportal/pbx_receiver.py) and give the stand-in the portal's
    originate secret, its PBX key and b24app's address, so that a click on a number in the
    development portal rings through b24app to the stand-in, which reports the call back.
    Through the admin command line (`portals set`, `portals show --json`), as an admin would.
    True when done; otherwise prints why and returns False (make run goes on without it)."""
    from devportal.seed import _member

    member_id = _member(code)
    runner = app.test_cli_runner()
    url = f"{DEVPORTAL}/_pbx/{code}/originate"
    done = runner.invoke(args=["portals", "set", member_id, f"originate_url={url}"])
    shown = runner.invoke(args=["portals", "show", member_id, "--json"])
    if done.exit_code != 0 or shown.exit_code != 0:
        print(f"b24app: click-to-call is not connected: {done.output}{shown.output}", flush=True)
        return False
    portal = json.loads(shown.output)
    answer = requests.post(
        f"{DEVPORTAL}/_dev/portals/{code}/pbx",
        json={
            "secret": portal["originate_secret"],
            "pbx_key": portal["pbx_key"],
            "b24app_url": WEB,
        },
        timeout=10,
    )
    if not answer.ok:
        print(f"b24app: the PBX stand-in refused its settings: {answer.text}", flush=True)
    return answer.ok


def _pbx_key(app: Flask) -> str | None:
    from b24app.portals import pbx_keys, store
    from b24app.wiring import store_of
    from devportal.seed import _member

    installations = store_of(app)
    with installations.db.read() as session:
        portal = store.find_portal(session, _member("alpha"))
        return pbx_keys.reveal(portal.settings, installations.box) if portal else None


def first_call(now: datetime | None = None) -> dict[str, object]:
    """The banner's first call: a PBX_CALL_ID of its own each run (a repeated id would only
    answer the call of an earlier run, and the portal would show nothing new), started now."""
    now = now or datetime.now(UTC)
    return {
        "PBX_CALL_ID": f"demo-{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}",
        "PHONE_NUMBER": "+15551234567",
        "TYPE": 2,
        "CALL_START_DATE": now.isoformat(timespec="seconds"),
        "USER_PHONE_INNER": "101",
        "DURATION": 42,
        "STATUS_CODE": "ANSWER",
    }


def simulator_command(key: str) -> str:
    """How to start the PBX simulator against this run (b24app/pbx/simulate.py)."""
    url = "" if WEB == "http://127.0.0.1:5000" else f" --url {WEB}"
    return (
        f"{Path(sys.executable).parent / 'flask'} --app b24app "
        f"pbx simulate --key {key}{url} --calls 20"
    )


def _banner(key: str | None, installed: bool, *, pbx_connected: bool = False) -> str:
    call = json.dumps(first_call())
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
            "  Play 20 realistic calls (start, ring, answer, transfer, finish, recording; some",
            "  repeated, late or out of order) with the PBX simulator, in another terminal:",
            f"    {simulator_command(key)}",
            f"  and watch them in the portal's telephony: {DEVPORTAL}/p/alpha/telephony/",
        ]
        if pbx_connected:
            lines += [
                "  Then click a number on the development portal's Telephony page to try "
                "click-to-call:",
                f"    {DEVPORTAL}/p/alpha/telephony/",
                "    (b24app signs the webhook to the portal's PBX stand-in, which reports the",
                "    call back: watch it registered, sent, received and finished on that page)",
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
