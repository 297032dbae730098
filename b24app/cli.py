"""Admin commands (`flask --app b24app …`). Each part registers its own group here."""

from __future__ import annotations

from pathlib import Path

import click
from alembic import command
from alembic.config import Config
from flask import Flask, current_app
from flask.cli import AppGroup

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = database_url
    return config


def upgrade_database(database_url: str, revision: str = "head") -> None:
    """Apply migrations (what the Procfile's `release:` process runs)."""
    command.upgrade(alembic_config(database_url), revision)


@click.group(cls=AppGroup, name="db")
def db_group() -> None:
    """Database schema."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: the newest)."""
    upgrade_database(current_app.config["DATABASE_URL"], revision)
    click.echo(f"database at {revision}")


def init_app(app: Flask) -> None:
    from b24app.pbx import simulate
    from b24app.portals import cli as portals_cli

    app.cli.add_command(db_group)
    portals_cli.init_app(app)
    simulate.init_app(app)
