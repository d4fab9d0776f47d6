"""``critmin serve`` and ``critmin user ...`` (add, list, passwd, disable, enable, role): the shared web workspace
(issue 6, docs/web.md)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from critmin.errors import CritminError

user_app = typer.Typer(help="Users of the web workspace.", no_args_is_help=True)
err = Console(stderr=True)

DatabaseOpt = Annotated[str | None, typer.Option("--database", help="SQLAlchemy URL of the workspace database "
                                                 "(default: $CRITMIN_DATABASE_URL, else the SQLite file critmin-workspace.db here)")]


@user_app.command("add")
def user_add(
    email: Annotated[str, typer.Argument(help="The user's email (their login name)")],
    org: Annotated[str, typer.Option("--org", help="Organisation (created when it does not exist yet)")],
    role: Annotated[str, typer.Option("--role", help="government, agency, partner, company or observer")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard input (first line)")] = False,
    database: DatabaseOpt = None,
) -> None:
    """Create a user of the web workspace (and its organisation when new)."""
    password = _stdin_password(password_stdin)
    with _workspace(database) as ws:
        u = ws.add_user(email, org, role, password)
    err.print(f"created user {u['email']} ({u['role']}) of organisation '{u['org']}'")


@contextmanager
def _workspace(database: str | None) -> Iterator[Any]:
    """The workspace on ``database`` for one command; its connections are closed afterwards."""
    require_web_extra()
    from critmin.web.db import Database
    from critmin.web.workspace import Workspace

    ws = Workspace(Database(database))
    try:
        yield ws
    finally:
        ws.db.dispose()


def require_web_extra() -> None:
    """A clear error, before anything starts, when the optional web extra is not installed."""
    import importlib.util

    missing = [m for m in ("fastapi", "uvicorn", "sqlalchemy", "alembic", "argon2") if importlib.util.find_spec(m) is None]
    if missing:
        raise CritminError(f"the web workspace needs the web extra ({', '.join(missing)} missing): pip install 'critmin[web]'")


def _stdin_password(password_stdin: bool) -> str:
    if not password_stdin:
        raise CritminError("give the password on standard input with --password-stdin (it is never taken from the command line)")
    return sys.stdin.readline().rstrip("\r\n")


@user_app.command("list")
def user_list(
    org: Annotated[str | None, typer.Option("--org", help="Only this organisation's users")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    database: DatabaseOpt = None,
) -> None:
    """The workspace's users: email, organisation, role, active, created, live sessions."""
    if fmt not in ("table", "json"):
        raise CritminError(f"unknown format '{fmt}': use table or json")
    with _workspace(database) as ws:
        rows = ws.users(org)
    if fmt == "json":
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    t = Table("email", "organisation", "role", "active", "created", "sessions", box=None)
    for u in rows:
        t.add_row(u["email"], u["org"], u["role"], "yes" if u["active"] else "no", (u["created_at"] or "")[:19], str(u["sessions"]))
    Console().print(t)


@user_app.command("passwd")
def user_passwd(
    email: Annotated[str, typer.Argument(help="The user's email")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the new password from standard input (first line)")] = False,
    database: DatabaseOpt = None,
) -> None:
    """Set a user's password (a reset by the operator); every session of the user ends."""
    password = _stdin_password(password_stdin)
    with _workspace(database) as ws:
        ended = ws.set_password(email, password)
    err.print(f"password of {email.strip().lower()} changed; {ended} session(s) ended")


def _set_user(email: str, database: str | None, **change: Any) -> None:
    with _workspace(database) as ws:
        u = ws.set_user(email, **change)
    state = "active" if u["active"] else "disabled"
    what = "changed" if u["changed"] else "unchanged"
    err.print(f"user {u['email']} ({u['role']}, {state}) of organisation '{u['org']}': {what}")


@user_app.command("disable")
def user_disable(email: Annotated[str, typer.Argument(help="The user's email")], database: DatabaseOpt = None) -> None:
    """Disable a user: their sessions end and logins are refused (records and audit entries stay)."""
    _set_user(email, database, active=False)


@user_app.command("enable")
def user_enable(email: Annotated[str, typer.Argument(help="The user's email")], database: DatabaseOpt = None) -> None:
    """Enable a disabled user again."""
    _set_user(email, database, active=True)


@user_app.command("role")
def user_role(email: Annotated[str, typer.Argument(help="The user's email")],
              role: Annotated[str, typer.Argument(help="government, agency, partner, company or observer")], database: DatabaseOpt = None) -> None:
    """Give a user another role in their organisation (a running server applies it within 10 s)."""
    _set_user(email, database, role=role)


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port")] = 8000,
    database: DatabaseOpt = None,
    no_seed: Annotated[bool, typer.Option("--no-seed", help="Do not load the bundled project register and buyers into a new workspace")] = False,
    atlas: Annotated[Path | None, typer.Option("--atlas", help="Atlas directory (default: the bundled atlas)")] = None,
    blocs: Annotated[Path | None, typer.Option("--blocs", help="CSV (bloc_id,iso3) replacing bloc members")] = None,
    params: Annotated[Path | None, typer.Option("--params", help="CSV of model parameters replacing bundled rows (as `critmin simulate --params`)")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, max=8, help="Runs executed at the same time (each one vectorised over its draws)")] = 1,
    jobs: Annotated[str, typer.Option("--jobs", help="Where runs execute: process (worker processes: reads stay responsive while runs compute), "
                                      "dask (the cluster at --dask; workers must reach the database) or thread (in the server process)")] = "process",
    dask: Annotated[str | None, typer.Option("--dask", help="Dask scheduler address for --jobs dask (e.g. tcp://10.0.0.5:8786)")] = None,
    max_runs: Annotated[int, typer.Option("--max-runs", min=1, max=1000, help="Runs one organisation may have queued or running")] = 3,
    max_records: Annotated[int, typer.Option("--max-records", min=1, max=10_000_000,
                                             help="Records of one kind (and comments) one organisation may hold")] = 5000,
    trusted_proxy: Annotated[list[str] | None, typer.Option("--trusted-proxy", help="Address of a reverse proxy whose X-Forwarded-For / "
                                                            "X-Forwarded-Proto headers are believed (repeatable); login limits then count per real client")] = None,
) -> None:
    """Start the web workspace: REST API (docs at /docs) and dashboard (/) on one ASGI server. --atlas,
    --blocs and --params set the definitions every run of this server uses (checked before it starts)."""
    require_web_extra()
    import uvicorn

    from critmin.web.app import create_app
    from critmin.web.db import Database
    from critmin.web.jobs import JOBS
    from critmin.web.worker import WorkerSetup
    from critmin.web.workspace import Workspace

    if jobs not in JOBS:
        raise typer.BadParameter(f"must be one of {', '.join(JOBS)}", param_hint="--jobs")
    if (jobs == "dask") != (dask is not None):
        raise typer.BadParameter("--dask ADDRESS goes with --jobs dask, and --jobs dask needs it", param_hint="--dask")
    sim = None
    if atlas is not None or blocs is not None or params is not None:
        from critmin.atlas import load_atlas
        from critmin.simulate.parameters import Parameters
        from critmin.simulate.run import Simulator

        # invalid files: a clear error and exit 2, before anything listens
        sim = Simulator.build(load_atlas(atlas, blocs=blocs), Parameters.load(params, {}))
    db = Database(database)
    # the workers build the same definitions from the same files (absolute: they may start elsewhere)
    setup = WorkerSetup(db.url, *(str(x.resolve()) if x is not None else None for x in (atlas, blocs, params)))
    try:
        setup.check()
    except ValueError as exc:
        if jobs != "thread":
            raise typer.BadParameter(str(exc), param_hint="--database") from exc
    ws = Workspace(db, sim_factory=(lambda: sim) if sim is not None else None)
    app = create_app(db=db, workspace=ws, seed=not no_seed, workers=workers, jobs=jobs, setup=setup, dask_address=dask,
                     max_runs=max_runs, max_records=max_records)
    what = f"database: {db.backend}; runs in {jobs}" + (f"; {sim.params.origin} parameters, atlas {sim.atlas.data_version}" if sim is not None else "")
    err.print(f"critmin workspace on http://{host}:{port}/ (API docs at /docs; {what})")
    proxies = ",".join(trusted_proxy or [])
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=bool(proxies), forwarded_allow_ips=proxies or None)
