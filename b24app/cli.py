"""Admin commands (`flask --app b24app …`). Each part registers its own group here.

Without a usable configuration the command line still lists every command (`--help`) and says
once what is missing; the commands then refuse to run (`unconfigured_app`)."""

from __future__ import annotations

import copy
from pathlib import Path

import click
from alembic import command
from alembic.config import Config
from flask import Flask, current_app
from flask.cli import AppGroup, ScriptInfo

from b24app.config import ConfigError

_PACKAGE = Path(__file__).resolve().parent
# The checkout's migrations/ beside the package; the image's wheel carries them inside it
# (Dockerfile, pyproject.toml's package data), where nothing else would find them.
MIGRATIONS = next(
    (
        folder
        for folder in (_PACKAGE / "migrations", _PACKAGE.parent / "migrations")
        if folder.is_dir()
    ),
    _PACKAGE.parent / "migrations",
)


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


# --- without configuration ----------------------------------------------------------------------

NEEDS_NO_APP = frozenset({"pbx simulate"})  # commands that speak HTTP only (with_appcontext=False)


def running_flask_command() -> bool:
    """Whether the `flask` command line is loading the app (`flask --app b24app …`)."""
    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.find_object(ScriptInfo) is not None


def unconfigured_app(error: ConfigError) -> Flask:
    """What `flask --app b24app …` gets when the configuration is wrong or missing: an app with
    the same commands, so `--help` lists them, each of which (but NEEDS_NO_APP) exits 1 naming
    itself. The configuration's message is printed once, here, on stderr; nothing is created
    (no instance folder, no database)."""
    from b24app import delivery, retention

    app = Flask("b24app")
    init_app(app)
    delivery.init_app(app)
    retention.init_app(app)
    for name, registered in list(app.cli.commands.items()):
        app.cli.commands[name] = _refusing(registered, name)
    click.echo(
        f"b24app is not configured, so its commands cannot run (`pbx simulate` can).\n{error}\n"
        "Set the variables in the environment or in .env (.env.example documents every one). "
        "`make run` needs none, and once it has run, `flask --app b24app …` in the same checkout "
        "uses its settings (make-run.env in the instance folder).",
        err=True,
    )
    return app


def _refusing(original: click.Command, path: str) -> click.Command:
    """A copy of `original` (a group: of each command in it) whose run exits 1 with a message."""
    clone = copy.copy(original)
    if isinstance(original, click.Group):
        clone.commands = {  # type: ignore[attr-defined]
            name: _refusing(sub, f"{path} {name}") for name, sub in original.commands.items()
        }
    elif path not in NEEDS_NO_APP:

        def refuse(**_: object) -> None:
            raise click.ClickException(
                f"`flask --app b24app {path}` needs the configuration named above."
            )

        clone.callback = refuse
    return clone
