from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from critmin.atlas import Atlas, bundled_atlas_path, load_atlas

REPO = Path(__file__).resolve().parents[1]
RAW = REPO / "data" / "raw"


@pytest.fixture(scope="session")
def atlas() -> Atlas:
    return load_atlas()


@pytest.fixture()
def atlas_copy(tmp_path: Path) -> Path:
    """A writable copy of the bundled atlas for corruption tests."""
    dst = tmp_path / "atlas"
    shutil.copytree(bundled_atlas_path(), dst)
    return dst


@pytest.fixture(scope="session")
def simulator(atlas: Atlas):
    """The disruption simulator on the bundled atlas with the bundled parameters."""
    from critmin.simulate.run import Simulator

    return Simulator.build(atlas)


# ------------------------------------------------------------------------------------------------ web workspace
#: PostgreSQL for the database tests: .ci/run starts one and sets this (tests on PostgreSQL skip without it).
POSTGRES_ENV = "CRITMIN_TEST_POSTGRES_URL"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``make test`` runs the suite on two workers, one per core), each worker gets a database
    of its own, ``<test database>_<worker>``, created when missing: the database tests empty the schema they
    use, and two workers on one database would drop each other's tables. The URL is rewritten in the
    environment, so the CLI and server subprocesses a test starts use the worker's database too."""
    import os

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    url = os.environ.get(POSTGRES_ENV)
    if not worker or not url:
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    base = make_url(url)
    name = f"{base.database}_{worker}"
    eng = create_engine(base, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        if c.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}) is None:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    os.environ[POSTGRES_ENV] = base.set(database=name).render_as_string(hide_password=False)

#: Users of the test workspace: (email, organisation, role); every password is PASSWORD.
PASSWORD = "correct horse battery"
USERS = (
    ("gov@us.example", "US Department of Energy", "government"),
    ("gov@jp.example", "METI Japan", "government"),
    ("fin@dfc.example", "DFC", "agency"),
    ("ptn@au.example", "Australia DISR", "partner"),
    ("co@acme.example", "Acme Rare Earths", "company"),
    ("co2@acme.example", "Acme Rare Earths", "company"),
    ("co@beta.example", "Beta Graphite", "company"),
    ("obs@oecd.example", "OECD Secretariat", "observer"),
)


def cheap_argon2(mp: pytest.MonkeyPatch) -> None:
    """Hash passwords with argon2id at its lowest cost in the tests that create users and log in many times:
    the same algorithm and code path, without ~0.15 s per hash and per login. test_web_api's
    ``test_passwords_are_stored_as_argon2id_hashes`` checks the production cost."""
    from argon2 import PasswordHasher

    from critmin.web import security

    mp.setattr(security, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def reset_postgres(url: str) -> None:
    """Drop every table of the test database (the tests start from an empty schema)."""
    from sqlalchemy import create_engine, text

    eng = create_engine(url)
    with eng.begin() as c:
        c.execute(text("DROP SCHEMA public CASCADE"))
        c.execute(text("CREATE SCHEMA public"))
    eng.dispose()


@pytest.fixture
def one_db_url(tmp_path: Path) -> str:
    """One fresh workspace database: PostgreSQL when configured (as in CI), else a SQLite file. For the heavy
    process-level tests (worker hand-over, a Dask cluster) whose database work is that of the lighter tests,
    which run on both backends."""
    import os

    url = os.environ.get(POSTGRES_ENV)
    if not url:
        return f"sqlite:///{tmp_path / 'workspace.db'}"
    reset_postgres(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty workspace database: a SQLite file, then PostgreSQL (every database test runs on both)."""
    import os

    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'workspace.db'}"
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"PostgreSQL not configured: set {POSTGRES_ENV} (.ci/run starts one and sets it)")
    reset_postgres(url)
    return url


def module_db_url(backend: str, tmp_path_factory: pytest.TempPathFactory, name: str) -> str:
    """A fresh, empty workspace database for a module-scoped fixture: a SQLite file, or the PostgreSQL test
    database emptied (skips when PostgreSQL is not configured)."""
    import os

    if backend == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp(name) / 'workspace.db'}"
    url = os.environ.get(POSTGRES_ENV, "")
    if not url:
        pytest.skip(f"PostgreSQL not configured: set {POSTGRES_ENV} (.ci/run starts one and sets it)")
    reset_postgres(url)
    return url


class WebClient:
    """A TestClient on a fresh workspace with a signed-in token per test user."""

    def __init__(self, client, app) -> None:
        self.client, self.app = client, app
        self._tokens: dict[str, str] = {}

    def token(self, email: str) -> str:
        if email not in self._tokens:
            r = self.client.post("/api/auth/login", json={"username": email, "password": PASSWORD})
            assert r.status_code == 200, r.text
            self._tokens[email] = r.json()["access_token"]
        return self._tokens[email]

    def h(self, email: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(email)}"}

    def wait(self, email: str, run_id: int, timeout: float = 120.0) -> dict:
        import time

        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            j = self.client.get(f"/api/runs/{run_id}", headers=self.h(email)).json()
            if j["status"] not in ("queued", "running"):
                return j
            time.sleep(0.1)
        raise AssertionError(f"run {run_id} did not finish in {timeout} s")


def make_app(url: str, simulator):
    from critmin.web.app import create_app
    from critmin.web.db import Database
    from critmin.web.workspace import Workspace

    db = Database(url)
    ws = Workspace(db, sim_factory=lambda: simulator)
    for email, org, role in USERS:
        ws.add_user(email, org, role, PASSWORD)
    return create_app(db=db, workspace=ws)


@pytest.fixture()
def web(db_url: str, simulator):
    """The workspace app on a fresh database (SQLite and PostgreSQL), bundled registers loaded, test users."""
    from fastapi.testclient import TestClient

    app = make_app(db_url, simulator)
    with TestClient(app, base_url="https://testserver") as client:
        yield WebClient(client, app)
    app.state.ws.db.dispose()
