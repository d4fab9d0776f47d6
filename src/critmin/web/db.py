"""The workspace database: a SQLite file by default, PostgreSQL when ``CRITMIN_DATABASE_URL`` names one.

SQLite runs in WAL mode with ``synchronous=FULL``: a committed transaction is on disk before the commit
returns, and a process killed mid-write leaves the last committed state (tested by killing the server).
The schema is owned by the Alembic migrations (:func:`migrate`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

#: Environment variable naming the database (SQLAlchemy URL), e.g. postgresql+psycopg://user:pw@host/db.
DATABASE_ENV = "CRITMIN_DATABASE_URL"
#: The SQLite file used when nothing else is named (in the directory the server starts in).
DEFAULT_SQLITE_FILE = "critmin-workspace.db"


def database_url(url: str | None = None) -> str:
    """``url``, else ``$CRITMIN_DATABASE_URL``, else a SQLite file in the working directory."""
    url = url or os.environ.get(DATABASE_ENV) or f"sqlite:///{DEFAULT_SQLITE_FILE}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]  # the driver critmin installs
    return url


def make_engine(url: str | None = None) -> Engine:
    url = database_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    # connections: SQLAlchemy's defaults (5 + 10 overflow) queue more of the server's worker threads (anyio
    # runs up to 40 sync endpoints at once); 10 + 20 lets most hold a connection while leaving most of
    # PostgreSQL's default max_connections of 100 to other clients (a setting, not a measured optimum)
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (creates it on an empty database)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Database:
    """An engine and its session factory."""

    def __init__(self, url: str | None = None, upgrade: bool = True):
        self.url = database_url(url)
        self.engine = make_engine(self.url)
        if upgrade:
            migrate(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed when the block ends, rolled back (nothing written) on any error."""
        with self.sessions() as s, s.begin():
            yield s

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def dispose(self) -> None:
        self.engine.dispose()
