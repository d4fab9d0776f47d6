"""Alembic environment: runs on the connection critmin.web.db.migrate hands over (or on sqlalchemy.url)."""

from alembic import context
from sqlalchemy import create_engine

from critmin.web.models import Base

target_metadata = Base.metadata
config = context.config
connection = config.attributes.get("connection")
if connection is not None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    with create_engine(config.get_main_option("sqlalchemy.url") or "").connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
