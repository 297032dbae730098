"""Configuration from the environment (PRODUCT.md): validated at start, naming the variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

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
