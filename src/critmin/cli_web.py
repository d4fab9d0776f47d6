"""``critmin serve`` and ``critmin user add``: the shared web workspace (issue 6, docs/web.md)."""

from __future__ import annotations

import sys
from typing import Annotated

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
    from critmin.web.db import Database
    from critmin.web.workspace import Workspace

    if not password_stdin:
        raise CritminError("give the password on standard input with --password-stdin (it is never taken from the command line)")
    password = sys.stdin.readline().rstrip("\r\n")
    db = Database(database)
    try:
        u = Workspace(db).add_user(email, org, role, password)
    finally:
        db.dispose()
    err.print(f"created user {u['email']} ({u['role']}) of organisation '{u['org']}'")


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port")] = 8000,
    database: DatabaseOpt = None,
    no_seed: Annotated[bool, typer.Option("--no-seed", help="Do not load the bundled project register and buyers into a new workspace")] = False,
) -> None:
    """Start the web workspace: REST API (docs at /docs) and dashboard (/) on one ASGI server."""
    import uvicorn

    from critmin.web.app import create_app

    app = create_app(database, seed=not no_seed)
    err.print(f"critmin workspace on http://{host}:{port}/ (API docs at /docs; database: {app.state.ws.db.backend})")
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=False)
