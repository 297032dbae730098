"""Real processes for the failure drills: gunicorn web servers and delivery workers started as a
deployment starts them (docs/deployment.md), with the environment a deployment gives them.

- `Fleet` starts them, keeps each one's output in a log file (never a pipe: a pipe nobody reads
  fills up and freezes a chatty process), and stops every process it started when it is closed,
  even when the test failed. Each process leads its own process group, so a gunicorn master and
  its worker go together; `Managed.kill` is SIGKILL to that group, `Managed.start` starts again.
- Web processes are single-process gunicorns (`WEB_CONCURRENCY=1`), each on its own port of
  127.0.0.1, ready once `/healthz` answers.
- Workers are the real `flask --app b24app worker` command at its default settings.
- `Killer` SIGKILLs random processes of a list and starts them again, bounded in count.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
START_TIMEOUT = 60.0  # seconds for a process to answer; a loaded 2-core machine is slow
STOP_TIMEOUT = 15.0


def free_port() -> int:
    """A port of 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_env(values: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any b24app setting, plus `values`: a child never
    inherits a developer's DATABASE_URL or keys by accident."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("B24", "DATABASE_URL", "PROMETHEUS_", "PORT", "WEB_CONCURRENCY"))
    }
    env.update(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    env.update(values)
    return env


@dataclass
class Managed:
    """One process we started: how to start it again, its log, its current Popen."""

    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    url: str | None = None  # web processes: where they answer
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    pids: list[int] = field(default_factory=list)

    def start(self) -> Managed:
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1}: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: gunicorn's children go with it
            )
        self.starts += 1
        self.pids.append(self.popen.pid)
        return self

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL, no warning, to the whole process group; reap it."""
        self._signal(signal.SIGKILL)
        if self.popen is not None:
            self.popen.wait(timeout=STOP_TIMEOUT)

    def terminate(self) -> None:
        """SIGTERM, the platform's graceful stop: a worker records the batches in flight."""
        if self.alive():
            self._signal(signal.SIGTERM)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL if it is still there after `timeout`; reaped either way."""
        if self.popen is None:
            return None
        self.terminate()
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._signal(signal.SIGKILL)  # any child left in the group (gunicorn's worker)
        return self.popen.returncode

    def _signal(self, sig: signal.Signals) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)  # the group this Popen leads (start_new_session)

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Fleet:
    """The web and worker processes of one drill, sharing one environment.

    `env` holds the app's settings as environment variables (config.py's names); every process
    gets them, plus `PROMETHEUS_MULTIPROC_DIR` so that any web process's /metrics adds up the
    counters of every process of this "host".
    """

    def __init__(self, env: Mapping[str, str], workdir: Path) -> None:
        self.workdir = workdir
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.metrics_dir = workdir / "metrics"
        self.metrics_dir.mkdir(exist_ok=True)
        self.env = process_env({**env, "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir)})
        self.webs: list[Managed] = []
        self.workers: list[Managed] = []

    # --- web ----------------------------------------------------------------------------------
    def start_web(self, port: int | None = None, *, threads: int = 4) -> Managed:
        """A single-process gunicorn on 127.0.0.1:`port` with the deployment's config."""
        port = port or free_port()
        argv = [
            str(BIN / "gunicorn"),
            "--config",
            "python:b24app.gunicorn_conf",
            "--bind",
            f"127.0.0.1:{port}",
            "b24app:create_app()",
        ]
        env = {**self.env, "WEB_CONCURRENCY": "1", "GUNICORN_THREADS": str(threads)}
        web = Managed(
            f"web{len(self.webs) + 1}",
            argv,
            env,
            self.workdir,
            self.logs / f"web{len(self.webs) + 1}.log",
            url=f"http://127.0.0.1:{port}",
        )
        self.webs.append(web.start())
        wait_until_answers(web, "/healthz")
        return web

    # --- workers ------------------------------------------------------------------------------
    def start_worker(self, *args: str) -> Managed:
        """`flask --app b24app worker *args`."""
        index = len(self.workers) + 1
        argv = [sys.executable, "-m", "flask", "--app", "b24app", "worker", *args]
        worker = Managed(
            f"worker{index}", argv, self.env, self.workdir, self.logs / f"w{index}.log"
        )
        self.workers.append(worker.start())
        return worker

    # --- all ----------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop everything this fleet started: SIGTERM to all at once, then wait for each (and
        SIGKILL what is still there when STOP_TIMEOUT has passed)."""
        everyone = [*self.workers, *self.webs]
        for process in everyone:
            process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in everyone:
            try:
                process.stop(timeout=max(0.1, deadline - time.monotonic()))
            except Exception:  # keep stopping the others
                process.kill()

    def tails(self, lines: int = 30) -> str:
        return "\n".join(
            f"===== {p.name} (pids {p.pids}) =====\n{p.tail(lines)}"
            for p in [*self.webs, *self.workers]
        )


def wait_until_answers(process: Managed, path: str, *, timeout: float = START_TIMEOUT) -> None:
    """Poll `path` until it answers 200; fail with the process's log if it dies or is slow."""
    assert process.url is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise AssertionError(f"{process.name} exited:\n{process.tail()}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{process.url}{path}", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise AssertionError(f"{process.name} did not answer {path} in {timeout}s:\n{process.tail()}")


def wait_for(
    condition: Callable[[], bool], *, timeout: float, every: float = 0.2, what: str = ""
) -> float:
    """Poll `condition()` until true; return the seconds it took. Bounded by `timeout`."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout}s: {what or condition}")
        time.sleep(every)
    return time.monotonic() - started


class Killer(threading.Thread):
    """SIGKILLs a random one of `processes` every `every` seconds (uniformly drawn) and starts
    it again at once, until `halt()` or `max_kills`. What a crashing host or an OOM killer does."""

    def __init__(
        self,
        processes: list[Managed],
        *,
        every: tuple[float, float],
        max_kills: int,
        rng: random.Random,
    ) -> None:
        super().__init__(name="killer", daemon=True)
        self.processes = processes
        self.every = every
        self.max_kills = max_kills
        self.rng = rng
        self.kills = 0
        self.errors: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while self.kills < self.max_kills and not self._halt.wait(self.rng.uniform(*self.every)):
            victim = self.rng.choice(self.processes)
            try:
                victim.kill()
                self.kills += 1
                victim.start()
            except Exception as error:  # reported by the drill, never swallowed
                self.errors.append(f"{victim.name}: {error!r}")
                return

    def halt(self) -> int:
        """Stop killing; return how many kills there were."""
        self._halt.set()
        self.join(timeout=STOP_TIMEOUT + 5)
        return self.kills
