"""Settings from the environment, validated once at start.

The variable names are part of the external contract (PRODUCT.md). A wrong or missing value stops
the process with a message naming the variable. In development (`B24APP_ENV=development`) missing
secrets are generated once, kept in the instance folder so that restarts can still read the tokens
they encrypted, and a warning says so.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from datetime import timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from dotenv import dotenv_values
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

log = logging.getLogger(__name__)

MiB = 1024 * 1024
DEV_CLIENT_ID = "local.b24app.dev"
DEV_CLIENT_SECRET = "dev-secret-not-for-production"  # noqa: S105 - the development portal's app
RUN_SETTINGS = "make-run.env"  # in the instance folder: the settings `make run` runs with
MIN_SECRET_LENGTH = 32  # SECRET_KEY, B24APP_METRICS_TOKEN outside development: 32 characters


class ConfigError(RuntimeError):
    """Raised when the environment cannot start the app; the message names the variable."""


class Settings(BaseSettings):
    """Every setting the app reads. Field aliases are the environment variable names."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    env: Literal["development", "production", "testing"] = Field("production", alias="B24APP_ENV")
    database_url: str | None = Field(None, alias="DATABASE_URL")
    secret_key: str | None = Field(None, alias="SECRET_KEY")
    client_id: str | None = Field(None, alias="B24_CLIENT_ID")
    client_secret: str | None = Field(None, alias="B24_CLIENT_SECRET")
    oauth_server: str = Field("https://oauth.bitrix.info", alias="B24_OAUTH_SERVER")
    public_url: str | None = Field(None, alias="PUBLIC_URL")
    allow_local_portals: bool = Field(False, alias="B24APP_ALLOW_LOCAL_PORTALS")
    encryption_keys: str | None = Field(None, alias="B24APP_ENCRYPTION_KEYS")
    bx24_script_url: str = Field("//api.bitrix24.com/api/v1/", alias="B24APP_BX24_SCRIPT_URL")
    http_timeout: float = Field(10.0, alias="B24APP_HTTP_TIMEOUT", gt=0, le=60)
    log_level: str = Field("INFO", alias="B24APP_LOG_LEVEL")
    instance_path: str | None = Field(None, alias="B24APP_INSTANCE_PATH")
    ratelimit_storage_url: str = Field("memory://", alias="B24APP_RATELIMIT_STORAGE_URL")
    # the numbers and why: ratelimit.py
    pbx_rate_limit: str = Field("30000 per minute", alias="B24APP_PBX_RATE_LIMIT")
    pbx_auth_failure_limit: str = Field("30 per minute", alias="B24APP_PBX_AUTH_FAILURE_LIMIT")
    install_rate_limit: str = Field("20 per minute", alias="B24APP_INSTALL_RATE_LIMIT")
    proxy_count: int = Field(0, alias="B24APP_PROXY_COUNT", ge=0, le=5)
    # /metrics asks for `Authorization: Bearer <this>` when set; in production without it /metrics
    # answers 403 (metrics.py): the public port never shows the queue to anyone who asks.
    metrics_token: str | None = Field(None, alias="B24APP_METRICS_TOKEN")
    # How long delivered and failed calls are kept (b24app/retention.py). 90 days: far past any
    # PBX's retry or backlog (a repeat of a purged call would be delivered again) and a quarter
    # for admins to see and re-send failed calls; Bitrix24 keeps the call itself, so our copy
    # (phone numbers included) need not live longer.
    call_retention_days: int = Field(90, alias="B24APP_CALL_RETENTION_DAYS", ge=1, le=3650)
    # How long a call that Bitrix24 keeps refusing for its own reasons is tried (delivery/retry.py).
    # Waiting for a portal that is down or needs its admin never counts: such calls never fail.
    retry_days: int = Field(7, alias="B24APP_RETRY_DAYS", ge=1, le=90)
    # Call recordings (delivery/recordings.py). One recording's cap: 50 MiB holds about 55
    # minutes of 128 kbit/s mp3 or of 8 kHz 16-bit mono wav (what Asterisk records), hours of
    # the 32-64 kbit/s mp3 PBXs usually make; a worker holds at most a few in memory at once.
    # At most 512 MiB: the audio is one database value until attached (PostgreSQL's bytea ends
    # at 1 GB, and the worker reads it whole).
    record_max_bytes: int = Field(50 * MiB, alias="B24APP_RECORD_MAX_BYTES", ge=1024, le=512 * MiB)
    # A portal's stored, not yet attached audio: 1 GiB is some 700 recordings of a typical
    # three-minute call (64 kbit/s mp3), a busy office's day of calls waiting out a portal
    # outage, while a PBX that sends far more than its portal takes cannot fill the database.
    record_portal_bytes: int = Field(
        1024 * MiB, alias="B24APP_RECORD_PORTAL_BYTES", ge=1024, le=1024 * 1024 * MiB
    )
    # 1: RECORD_URL may be on a private or loopback address (a PBX on the same
    # private network). Off by default: a RECORD_URL is an address a PBX merely claims, and
    # b24app must not be made to fetch from its own network (server-side request forgery).
    # B24APP_ALLOW_LOCAL_PORTALS=1 (development) implies it.
    record_allow_private: bool = Field(False, alias="B24APP_RECORD_ALLOW_PRIVATE")
    # 1: a portal's originate_url (click-to-call webhooks, originate/) may be on a private or
    # loopback address and use plain http (b24app and the PBX on one private network). Off by
    # default for the same reason as above: the URL is what a portal's admin merely claims.
    # B24APP_ALLOW_LOCAL_PORTALS=1 (development) implies it.
    originate_allow_private: bool = Field(False, alias="B24APP_ORIGINATE_ALLOW_PRIVATE")

    @field_validator("pbx_rate_limit", "pbx_auth_failure_limit", "install_rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError("must be a rate such as '50 per second' or '20/minute'") from None
        return value

    @field_validator("oauth_server", "public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http(s) URL such as https://example.com")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        return database_url(value) if value and value.strip() else None

    @field_validator("metrics_token")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value if value and value.strip() else None

    @field_validator("encryption_keys")
    @classmethod
    def _fernet_keys(cls, value: str | None) -> str | None:
        if value is None:
            return value
        keys = [k.strip() for k in value.split(",") if k.strip()]
        if not keys:
            raise ValueError("must list at least one key")
        for index, key in enumerate(keys, start=1):
            try:
                Fernet(key)
            except ValueError:
                raise ValueError(
                    f"key {index} is not a Fernet key (32 url-safe base64-encoded bytes); "
                    "make one with: python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'"
                ) from None
        return ",".join(keys)

    @model_validator(mode="after")
    def _portal_holds_a_recording(self) -> Settings:
        if self.record_portal_bytes < self.record_max_bytes:
            raise ValueError(
                "B24APP_RECORD_PORTAL_BYTES must be at least B24APP_RECORD_MAX_BYTES "
                "(a portal must be able to hold one recording)"
            )
        return self

    @model_validator(mode="after")
    def _required_outside_development(self) -> Settings:
        if self.env != "production":
            return self
        required = {
            "SECRET_KEY": self.secret_key,
            "B24_CLIENT_ID": self.client_id,
            "B24_CLIENT_SECRET": self.client_secret,
            "PUBLIC_URL": self.public_url,
            "B24APP_ENCRYPTION_KEYS": self.encryption_keys,
        }
        missing = [name for name, value in required.items() if not value]
        problems = self._production_problems()
        if missing:
            problems.insert(
                0,
                "required outside development: "
                + ", ".join(missing)
                + " (set B24APP_ENV=development to run locally with generated secrets)",
            )
        if problems:
            raise ValueError("\n  ".join(problems))
        return self

    def _production_problems(self) -> list[str]:
        """What production refuses among the values set: plain http where secrets travel (Bitrix24
        posts tokens to PUBLIC_URL, PBXs their keys; the OAuth server gets our client secret) and
        secrets short enough to guess."""
        problems = [
            f"{name} must be an https:// URL outside development"
            for name, url in (
                ("PUBLIC_URL", self.public_url),
                ("B24_OAUTH_SERVER", self.oauth_server),
            )
            if url and not url.startswith("https://")
        ]
        problems += [
            f"{name} is too weak: at least {MIN_SECRET_LENGTH} characters outside development "
            "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            for name, secret in (
                ("SECRET_KEY", self.secret_key),
                ("B24APP_METRICS_TOKEN", self.metrics_token),
            )
            if secret and len(secret.strip()) < MIN_SECRET_LENGTH
        ]
        return problems

    @property
    def fernet_keys(self) -> list[str]:
        """Encryption keys, newest first."""
        return (self.encryption_keys or "").split(",")

    @property
    def call_retention(self) -> timedelta:
        """B24APP_CALL_RETENTION_DAYS as a timedelta."""
        return timedelta(days=self.call_retention_days)

    @property
    def retry_period(self) -> timedelta:
        """B24APP_RETRY_DAYS as a timedelta."""
        return timedelta(days=self.retry_days)

    @property
    def record_private_allowed(self) -> bool:
        """Whether a RECORD_URL may be on a private/loopback address:
        B24APP_RECORD_ALLOW_PRIVATE, or B24APP_ALLOW_LOCAL_PORTALS (development)."""
        return self.record_allow_private or self.allow_local_portals

    @property
    def originate_private_allowed(self) -> bool:
        """Whether an originate_url may be http or on a private/loopback address:
        B24APP_ORIGINATE_ALLOW_PRIVATE, or B24APP_ALLOW_LOCAL_PORTALS (development)."""
        return self.originate_allow_private or self.allow_local_portals

    @property
    def is_development(self) -> bool:
        return self.env == "development"


def database_url(raw: str) -> str:
    """The SQLAlchemy URL b24app uses for DATABASE_URL `raw`: PostgreSQL through psycopg (3), so a
    platform's `postgres://…` (Heroku, Dokku, Render) and a bare `postgresql://…` (SQLAlchemy's
    default driver there is psycopg2, not installed) get `postgresql+psycopg://`; SQLite as given.
    Raises ValueError (never quoting the URL: it holds the password) for anything else."""
    url = raw.strip()
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            url = "postgresql+psycopg://" + url.removeprefix(scheme)
    try:
        drivername = make_url(url).drivername
    except ArgumentError:
        drivername = ""
    if drivername not in ("postgresql+psycopg", "sqlite", "sqlite+pysqlite"):
        raise ValueError(
            "must be a PostgreSQL URL (postgresql+psycopg://user:password@host:5432/b24app; "
            "postgres:// is taken too) or an SQLite one (sqlite:////var/lib/b24app/b24app.sqlite3)"
        )
    return url


def default_instance_path() -> Path:
    """The instance folder when B24APP_INSTANCE_PATH is not set: Flask's choice for the package,
    as create_app makes it (`instance/` beside a checkout, `<prefix>/var/b24app-instance` for an
    installed wheel)."""
    from flask import Flask

    return Path(Flask("b24app").instance_path)


def settings_files() -> tuple[Path, ...]:
    """The dotenv files settings are read from, weakest first; the environment beats both.

    First the settings `make run` last ran with (`make-run.env` in the instance folder, written by
    devportal/devrun.py), so `flask --app b24app …` in a checkout where `make run` runs finds its
    development settings without a variable; then `.env` in the current folder. `make clean`
    removes the instance folder, and with it the first."""
    folder = os.environ.get("B24APP_INSTANCE_PATH") or dotenv_values(".env").get(
        "B24APP_INSTANCE_PATH"
    )
    return (Path(folder) if folder else default_instance_path()) / RUN_SETTINGS, Path(".env")


def load_settings(**overrides: object) -> Settings:
    """Read and validate the environment and the settings files (settings_files), or, given
    `_env_file` (None: none), those files; keyword overrides win (tests use them). Raises
    ConfigError naming each wrong or missing variable."""
    overrides.setdefault("_env_file", settings_files())
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        name = ".".join(str(part) for part in error["loc"])
        lines.append(f"  {name}: {message}" if name else f"  {message}")
    return "\n".join(lines)


def fill_development_defaults(settings: Settings, instance_path: Path) -> Settings:
    """Give a development run the secrets it lacks, stored in the instance folder.

    Generated once and reused, so tokens encrypted yesterday still decrypt today. Never used
    outside development: production refuses to start without the real values. Warned about when
    they are made; later starts (every `flask --app b24app …` after `make run`) say it at debug
    level only.
    """
    if not settings.is_development:
        return settings
    store = instance_path / "dev-secrets.json"
    saved: dict[str, str] = json.loads(store.read_text()) if store.exists() else {}
    generated = {
        "secret_key": saved.get("secret_key") or secrets.token_urlsafe(32),
        "encryption_keys": saved.get("encryption_keys") or Fernet.generate_key().decode(),
    }
    say = log.warning if saved != generated else log.debug
    if saved != generated:
        instance_path.mkdir(parents=True, exist_ok=True)
        store.write_text(json.dumps(generated))
        store.chmod(0o600)
    updates: dict[str, object] = {}
    for field, value in generated.items():
        if not getattr(settings, field):
            updates[field] = value
            say("development mode: %s not set, using one generated in %s", field, store)
    if not settings.client_id:
        updates.update(client_id=DEV_CLIENT_ID, client_secret=DEV_CLIENT_SECRET)
        say("development mode: B24_CLIENT_ID not set, using the development portal's app")
    if not settings.public_url:
        updates["public_url"] = "http://127.0.0.1:5000"
    return settings.model_copy(update=updates)
