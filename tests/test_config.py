"""Configuration from the environment (PRODUCT.md): validated at start, naming the variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from b24app import create_app
from b24app.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_production_without_required_values_names_each_missing_variable():
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None, B24APP_ENV="production")
    message = str(raised.value)
    for name in (
        "SECRET_KEY",
        "B24_CLIENT_ID",
        "B24_CLIENT_SECRET",
        "PUBLIC_URL",
        "B24APP_ENCRYPTION_KEYS",
    ):
        assert name in message


def test_a_bad_encryption_key_is_named():
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None, B24APP_ENV="testing", B24APP_ENCRYPTION_KEYS="not-a-key")
    assert "B24APP_ENCRYPTION_KEYS" in str(raised.value)
    assert "Fernet" in str(raised.value)


def test_a_bad_url_is_named():
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None, B24APP_ENV="testing", PUBLIC_URL="ftp:/x")
    assert "PUBLIC_URL" in str(raised.value)


def test_development_generates_missing_secrets_once_and_warns(tmp_path, caplog):
    settings = load_settings(
        _env_file=None, B24APP_ENV="development", B24APP_INSTANCE_PATH=str(tmp_path)
    )
    with caplog.at_level("WARNING"):
        first = create_app(settings).config["SETTINGS"]
    second = create_app(settings).config["SETTINGS"]
    assert first.secret_key and first.encryption_keys
    assert (first.secret_key, first.encryption_keys) == (second.secret_key, second.encryption_keys)
    assert "development mode" in caplog.text
    assert (tmp_path / "dev-secrets.json").stat().st_mode & 0o077 == 0


def test_env_example_documents_every_variable():
    documented = set(re.findall(r"^([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M))
    variables = {field.alias for field in Settings.model_fields.values()}
    assert variables <= documented, variables - documented


# --- issue 14 item 9: production's values checked, a platform's postgres:// URL accepted ---------

STRONG_KEY = "k" * 32


def production(**values: str) -> dict[str, str]:
    """A complete production environment, with `values` changed."""
    env = {
        "B24APP_ENV": "production",
        "SECRET_KEY": STRONG_KEY,
        "B24_CLIENT_ID": "app.0123456789abcd.12345678",
        "B24_CLIENT_SECRET": "client-secret",
        "PUBLIC_URL": "https://b24app.example.com",
        "B24APP_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    }
    env.update(values)
    return env


def refusal(**values: str) -> str:
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None, **values)
    return str(raised.value)


def test_a_complete_production_environment_is_accepted():
    settings = load_settings(_env_file=None, **production())
    assert settings.public_url == "https://b24app.example.com"


def test_production_refuses_a_plain_http_public_url():
    message = refusal(**production(PUBLIC_URL="http://b24app.example.com"))
    assert "PUBLIC_URL" in message and "https://" in message
    assert "Traceback" not in message and "Value error" not in message


def test_development_and_testing_keep_a_plain_http_public_url():
    for env in ("development", "testing"):
        settings = load_settings(_env_file=None, B24APP_ENV=env, PUBLIC_URL="http://127.0.0.1:5000")
        assert settings.public_url == "http://127.0.0.1:5000"


@pytest.mark.parametrize("key", ["abc", "k" * 31, " " * 40])
def test_production_refuses_a_weak_secret_key(key: str):
    message = refusal(**production(SECRET_KEY=key))
    assert "SECRET_KEY" in message and "32 characters" in message
    assert key.strip() == "" or key not in message  # the key itself is never printed


def test_every_production_problem_is_named_in_one_message():
    message = refusal(**production(SECRET_KEY="abc", PUBLIC_URL="http://x.example.com"))
    assert message.count("invalid configuration") == 1
    assert "SECRET_KEY" in message and "PUBLIC_URL" in message


@pytest.mark.parametrize(
    ("given", "used"),
    [
        (
            "postgres://u:p%40ss@db.example.com:5432/b24",
            "postgresql+psycopg://u:p%40ss@db.example.com:5432/b24",
        ),
        ("postgresql://u:pw@db/b24", "postgresql+psycopg://u:pw@db/b24"),
        ("postgresql+psycopg://u:pw@db/b24", "postgresql+psycopg://u:pw@db/b24"),
        ("sqlite:////var/lib/b24app/b24app.sqlite3", "sqlite:////var/lib/b24app/b24app.sqlite3"),
    ],
)
def test_a_platforms_postgres_url_is_rewritten_to_the_psycopg_driver(given: str, used: str):
    """Heroku, Dokku and Render hand out `postgres://`; SQLAlchemy knows only `postgresql`, and
    by default with psycopg2, which is not installed: psycopg (3) is."""
    assert (
        load_settings(_env_file=None, B24APP_ENV="testing", DATABASE_URL=given).database_url == used
    )


def test_a_postgres_url_reaches_the_database(tmp_path: Path):
    """The rewritten URL is what the app's engine uses (no database needed to build it)."""
    app = create_app(
        load_settings(
            _env_file=None,
            B24APP_ENV="testing",
            DATABASE_URL="postgres://u:pw@127.0.0.1:1/b24",
            B24APP_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
            B24APP_INSTANCE_PATH=str(tmp_path),
        )
    )
    assert app.config["DATABASE_URL"] == "postgresql+psycopg://u:pw@127.0.0.1:1/b24"
    app.extensions["b24app.db"].dispose()


@pytest.mark.parametrize(
    "url", ["mysql://u:secretpw@db/b24", "not a url", "postgresql+psycopg2://u:secretpw@db/b24"]
)
def test_a_database_url_b24app_cannot_use_is_named_without_its_password(url: str):
    message = refusal(B24APP_ENV="testing", DATABASE_URL=url)
    assert "DATABASE_URL" in message
    assert "PostgreSQL" in message and "SQLite" in message
    assert "secretpw" not in message


def test_production_refuses_a_short_metrics_token():
    message = refusal(**production(B24APP_METRICS_TOKEN="short"))
    assert "B24APP_METRICS_TOKEN" in message and "32 characters" in message


def test_development_warns_when_it_makes_its_secrets_and_not_at_every_start(tmp_path, caplog):
    """Every `flask --app b24app …` after `make run` starts the app: one warning at the first."""
    settings = load_settings(
        _env_file=None, B24APP_ENV="development", B24APP_INSTANCE_PATH=str(tmp_path)
    )
    with caplog.at_level("WARNING"):
        create_app(settings)
        assert "development mode: secret_key not set" in caplog.text
        caplog.clear()
        create_app(settings)
    assert "development mode" not in caplog.text
