"""`make run` (devportal/devrun.py) checks its ports before starting anything (issue 10, item 5);
its first call and the README's command line work in every run (issue 14, items 7 and 8); without
configuration the command line and gunicorn say what is missing, once (items 8 and 9)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from devportal import devrun
from tests.drills.processes import REPO, free_port, process_env


@pytest.fixture
def occupied() -> Iterator[int]:
    """A port of 127.0.0.1 that something else listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        yield int(listener.getsockname()[1])


def test_free_ports_pass_the_check() -> None:
    assert devrun.ports_problem({"PORT": free_port(), "DEVPORTAL_PORT": free_port()}) is None


def test_a_taken_port_is_named_with_the_variable_that_moves_it(occupied: int) -> None:
    other = free_port()
    problem = devrun.ports_problem({"PORT": other, "DEVPORTAL_PORT": occupied})
    assert problem is not None
    assert f"port {occupied} (DEVPORTAL_PORT) is already in use" in problem
    assert f"PORT={other + 1} DEVPORTAL_PORT={occupied + 1} make run" in problem
    assert f"port {other} " not in problem


def test_the_same_port_twice_is_refused() -> None:
    port = free_port()
    problem = devrun.ports_problem({"PORT": port, "DEVPORTAL_PORT": port})
    assert problem == f"b24app: PORT={port} and DEVPORTAL_PORT={port} must be different ports."


def test_make_run_stops_before_starting_anything_when_its_port_is_taken(
    occupied: int, tmp_path: Path
) -> None:
    """The real `python -m devportal.devrun` with PORT taken: it exits at once with the message,
    and starts nothing (no database is created, the development portal's port stays free)."""
    devportal_port = free_port()
    env = process_env(
        {
            "PORT": str(occupied),
            "DEVPORTAL_PORT": str(devportal_port),
            "B24APP_INSTANCE_PATH": str(tmp_path),
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "devportal.devrun"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot start on 127.0.0.1:" in done.stderr
    assert f"port {occupied} (PORT) is already in use" in done.stderr
    assert "DEVPORTAL_PORT=" in done.stderr and "make run" in done.stderr
    assert "b24app is running" not in done.stdout
    assert list(tmp_path.iterdir()) == []
    assert devrun.ports_problem({"DEVPORTAL_PORT": devportal_port}) is None


@pytest.mark.parametrize("value", ["abc", "0", "70000", "-1"])
def test_a_port_that_is_not_a_number_is_named(value: str, tmp_path: Path) -> None:
    env = process_env({"PORT": value, "B24APP_INSTANCE_PATH": str(tmp_path)})
    done = subprocess.run(
        [sys.executable, "-m", "devportal.devrun"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert f"PORT={value!r} is not a port number (1-65535)" in done.stderr


# --- issue 14 items 7 and 8: the README's first hour, twice in a row -----------------------------

BANNER_TIMEOUT = 120.0  # seconds for make run to migrate, start three processes and install
DELIVERY_TIMEOUT = 30.0  # seconds for the banner's call to reach the development portal


@dataclass
class MakeRun:
    """A running `python -m devportal.devrun` (what `make run` runs) and its banner."""

    popen: subprocess.Popen[bytes]
    log: Path
    web: str
    devportal: str

    def banner(self) -> str:
        deadline = time.monotonic() + BANNER_TIMEOUT
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            if "Ctrl-C stops everything." in text:
                return text
            assert self.popen.poll() is None, text
            time.sleep(0.5)
        raise AssertionError(f"no banner within {BANNER_TIMEOUT} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGINT)  # Ctrl-C, as the banner says
            try:
                self.popen.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(10)


@contextmanager
def make_run(instance: Path, log: Path) -> Iterator[MakeRun]:
    web_port, devportal_port = free_port(), free_port()
    env = process_env(
        {
            "PORT": str(web_port),
            "DEVPORTAL_PORT": str(devportal_port),
            "B24APP_INSTANCE_PATH": str(instance),
        }
    )
    with log.open("wb") as output:
        popen = subprocess.Popen(
            [sys.executable, "-m", "devportal.devrun"],
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    run = MakeRun(popen, log, f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{devportal_port}")
    try:
        yield run
    finally:
        run.stop()


def cli(instance: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`flask --app b24app ARGS` as the README writes it, in the checkout, with no b24app variable
    set (only the instance folder, which the README's checkout has at ./instance)."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "flask"), "--app", "b24app", *args],
        env=process_env({"B24APP_INSTANCE_PATH": str(instance)}),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def statistics(run: MakeRun) -> list[dict[str, Any]]:
    answer = requests.get(f"{run.devportal}/_dev/portals/alpha/statistics", timeout=10)
    return list(answer.json()["statistics"])


def test_the_banners_call_arrives_in_each_run_and_the_cli_finds_make_runs_settings(
    tmp_path: Path,
) -> None:
    """Twice in a row on one instance folder: the banner's curl, run as printed, is accepted and
    reaches the development portal (a repeated PBX_CALL_ID would be answered from the first run's
    call and never delivered again); `flask --app b24app portals list --json` needs no variable
    and shows the key the banner showed."""
    instance = tmp_path / "instance"
    call_ids = []
    for round_ in (1, 2):
        with make_run(instance, tmp_path / f"make-run-{round_}.log") as run:
            banner = run.banner()
            curl = banner.split("Send a finished call:\n", 1)[1].split("\n  Then", 1)[0]
            key = re.search(r"Bearer (b24pbx_\S+)'", curl)
            assert key is not None, banner
            call_ids.append(re.search(r'"PBX_CALL_ID": "([^"]+)"', curl).group(1))  # type: ignore[union-attr]
            sent = subprocess.run(
                ["bash", "-c", curl.replace("\\\n", " ") + " -sS -w ' %{http_code}'"],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert sent.stdout.endswith(" 202"), (sent.stdout, sent.stderr)
            deadline = time.monotonic() + DELIVERY_TIMEOUT
            while not statistics(run) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert len(statistics(run)) == 1, run.log.read_text()

            listed = cli(instance, "portals", "list", "--json")
            assert listed.returncode == 0, listed.stderr
            rows = json.loads(listed.stdout)
            assert [row["pbx_key"] for row in rows] == [key.group(1)]
            assert "Traceback" not in listed.stderr
            assert "B24APP_ENV=development" not in banner  # the simulator needs no variable either
    assert call_ids[0] != call_ids[1]


# --- issue 13 item 7: click-to-call end to end in make run ---------------------------------------


def test_a_click_in_make_runs_portal_rings_through_b24app_to_the_pbx_and_back(
    tmp_path: Path,
) -> None:
    """The banner's click-to-call: a click on a CRM contact's number in the development portal
    reaches b24app (ONEXTERNALCALLSTART), b24app's signed webhook reaches the PBX stand-in at
    alpha's originate_url, which verifies it and reports start (Bitrix24's CALL_ID) and finish;
    the call ends finished in the portal, never registered again. A callback goes the same way
    and is registered by b24app as a callback (TYPE 4)."""
    with make_run(tmp_path / "instance", tmp_path / "make-run.log") as run:
        banner = run.banner()
        assert "click a number on the development portal's Telephony page to try click-to-call" in (
            banner
        )
        clicked = requests.post(
            f"{run.devportal}/p/alpha/shell/click-to-call",
            json={"user_id": 2, "contact_id": 1},
            timeout=10,
        )
        assert clicked.status_code == 202, clicked.text
        call_id = clicked.json()["CALL_ID"]
        ordered = requests.post(
            f"{run.devportal}/p/alpha/shell/callback",
            json={"user_id": 1, "phone": "+1 555 123 4567", "text": "About my order"},
            timeout=10,
        )
        assert ordered.status_code == 202, ordered.text

        finished = within(DELIVERY_TIMEOUT, lambda: len(statistics(run)) == 2 and statistics(run))
        by_type = {row["INCOMING"]: row for row in finished}
        assert by_type["1"]["CALL_ID"] == call_id  # Bitrix24's own call, finished
        assert by_type["1"]["PORTAL_USER_ID"] == 2 and by_type["1"]["CALL_DURATION"] == 2
        assert by_type["4"]["PHONE_NUMBER"] == "+1 555 123 4567"  # the callback, by b24app
        pbx = requests.get(f"{run.devportal}/_dev/portals/alpha/pbx", timeout=10).json()
        received = [(r["type"], r["verified"], r["status"]) for r in pbx["received"]]
        assert sorted(received) == [("call.start", True, 200), ("callback.start", True, 200)]
        assert sorted((r["event"], r["status"]) for r in pbx["reports"]) == [
            ("finish", 202),
            ("finish", 202),
            ("start", 202),
            ("start", 202),
        ]
        journal = requests.get(
            f"{run.devportal}/_dev/journal",
            params={"method": "telephony.externalCall.register"},
            timeout=10,
        ).json()["entries"]
        assert [str(e["params"]["TYPE"]) for e in journal] == ["4"]  # the callback, by b24app


def within(seconds: float, condition: Any) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"not within {seconds} s")


# --- issue 14 item 8: without configuration ------------------------------------------------------


def unconfigured(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`flask --app b24app ARGS` with no configuration at all (production's default)."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "flask"), "--app", "b24app", *args],
        env=process_env({"B24APP_INSTANCE_PATH": str(tmp_path / "instance")}),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_without_configuration_lists_the_commands_and_names_what_is_missing(
    tmp_path: Path,
) -> None:
    done = unconfigured(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    for command in ("portals", "calls", "worker", "db", "pbx", "keys", "tokens", "apps"):
        assert re.search(rf"^  {command}\b", done.stdout, re.M), (command, done.stdout)
    assert "SECRET_KEY" in done.stderr and "B24APP_ENCRYPTION_KEYS" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.parametrize("args", [("portals", "list", "--json"), ("worker",), ("db", "upgrade")])
def test_a_command_without_configuration_fails_with_one_message(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    done = unconfigured(tmp_path, *args)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "Traceback" not in output
    assert output.count("SECRET_KEY") == 1, output
    assert ".env.example" in output
    assert not (tmp_path / "instance").exists()  # nothing was created


def test_the_simulator_needs_no_configuration(tmp_path: Path) -> None:
    done = unconfigured(tmp_path, "pbx", "simulate", "--help")
    assert done.returncode == 0, done.stderr
    assert "--calls" in done.stdout
    assert "Traceback" not in done.stderr


def test_gunicorn_with_a_bad_configuration_says_so_once_and_stops(tmp_path: Path) -> None:
    """Checked in the master before any worker starts: one message, no traceback per worker."""
    env = process_env(
        {
            "B24APP_ENV": "production",
            "PUBLIC_URL": "http://b24app.example.com",
            "SECRET_KEY": "abc",
            "B24APP_INSTANCE_PATH": str(tmp_path / "instance"),
            "WEB_CONCURRENCY": "3",
            "PORT": str(free_port()),
        }
    )
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "--config",
            "python:b24app.gunicorn_conf",
            "b24app:create_app()",
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output and "Booting worker" not in output
    assert output.count("invalid configuration") == 1, output
    for name in ("B24_CLIENT_ID", "B24APP_ENCRYPTION_KEYS"):
        assert output.count(name) == 1, output
