"""Alembic environment: the URL comes from the caller (b24app.cli) or the app's settings."""

from alembic import context
from sqlalchemy import create_engine

from b24app.models import Base

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    url = config.attributes.get("database_url")
    if url:
        return url
    from b24app import create_app  # alembic run by hand: use the app's configuration

    return create_app().config["DATABASE_URL"]


def run_migrations_offline() -> None:
    context.configure(url=_database_url(), target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_database_url())
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
