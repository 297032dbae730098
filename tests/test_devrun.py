"""`make run` (devportal/devrun.py) checks its ports before starting anything (issue 10, item 5)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

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
