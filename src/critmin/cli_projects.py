"""``critmin projects``: list, show, validate, import and export the project register (issue 4, section 1).

Register errors print every problem (file, line or cell, field) and exit with status 2.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from critmin.errors import CritminError
from critmin.output import FORMATS, emit

projects_app = typer.Typer(help="The project register: projects of interest and the support they received.", no_args_is_help=True)
err = Console(stderr=True)

RegisterOpt = Annotated[Path | None, typer.Option("--register", help="Register directory (projects.csv, support.csv); default: the bundled register")]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help=f"Output format: {', '.join(FORMATS)}")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file (required for xlsx)")]

F = TypeVar("F", bound=Callable[..., Any])


def _fails_cleanly(fn: F) -> F:
    """Print critmin errors (every register problem) on stderr and exit with status 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (CritminError, ValueError) as exc:  # ValueError: e.g. --format xlsx without --out
            err.print(f"[red]error:[/red] {escape(str(exc))}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from exc

    return wrapper  # type: ignore[return-value]


def load_register(directory: Path | None) -> Any:
    from critmin.portfolio.register import bundled_register, read_register

    if directory is None:
        return bundled_register()
    if not directory.is_dir():
        raise CritminError(f"--register {directory.name}: not a directory")
    return read_register(directory)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise CritminError(f"unknown format '{fmt}'; use one of {', '.join(FORMATS)}")


LIST_COLUMNS = ["project_id", "name", "country_iso3", "commodity_id", "stage", "status_class", "capacity_t", "capex_usd", "first_output", "support_usd"]


@projects_app.command("list")
@_fails_cleanly
def list_(
    commodity: Annotated[str | None, typer.Option("--commodity", help="Only projects supplying this commodity (commodity_id)")] = None,
    country: Annotated[str | None, typer.Option("--country", help="Only projects in this country (ISO3)")] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only this status_class (operating, construction, ...)")] = None,
    register: RegisterOpt = None,
    fmt: FormatOpt = "table",
    out: OutOpt = None,
) -> None:
    """List the projects, with the support counted for each (USD)."""
    from critmin.portfolio.register import counted_support_usd
    from critmin.portfolio.register_schema import STATUS_CLASSES

    _check_format(fmt)
    if status is not None and status not in STATUS_CLASSES:
        raise CritminError(f"--status '{status}' is not a status class; use one of {', '.join(STATUS_CLASSES)}")
    reg = load_register(register)
    frame = reg.projects
    if commodity:
        frame = frame[frame["commodity_id"] == commodity]
    if country:
        frame = frame[frame["country_iso3"] == country.upper()]
    if status:
        frame = frame[frame["status_class"] == status]
    support = counted_support_usd(reg)
    records = frame.to_dict("records")
    for r in records:
        r["support_usd"] = support.get(r["project_id"], 0.0)
    if fmt == "table":
        emit(records, "table", columns=LIST_COLUMNS, title=f"{len(records)} projects (capacity in t/yr on the node basis; support = counted USD)")
    else:
        emit(records, fmt, out=out, title="projects")


@projects_app.command("show")
@_fails_cleanly
def show(
    project_id: Annotated[str, typer.Argument(help="Project id, e.g. P050")],
    register: RegisterOpt = None,
    fmt: FormatOpt = "table",
    out: OutOpt = None,
) -> None:
    """Show one project: every field and its support actions."""
    from critmin.portfolio.register import counted_support_usd

    _check_format(fmt)
    reg = load_register(register)
    project = reg.project(project_id)
    support = reg.support_for(project_id).to_dict("records")
    counted = counted_support_usd(reg).get(project_id, 0.0)
    if fmt == "json":
        emit({"project": project, "support": support, "support_counted_usd": counted}, "json", out=out)
        return
    if fmt in ("csv", "xlsx"):
        emit([project], fmt, out=out, title="project")
        return
    c = Console(width=max(Console().width, 160))
    emit([{"field": k, "value": v} for k, v in project.items()], "table", title=f"Project {project_id}", console=c)
    if support:
        emit(
            support, "table",
            columns=["support_id", "agency", "participant_iso3", "instrument", "amount_usd", "date", "commitment_status", "counts"],
            title=f"Support actions of {project_id} (counted: US${counted:,.0f})", console=c,
        )
    else:
        c.print("No support actions recorded.")


@projects_app.command("validate")
@_fails_cleanly
def validate(
    file: Annotated[Path, typer.Argument(help="A register directory, a .csv table (projects or support) or an .xlsx workbook")],
    register: Annotated[Path | None, typer.Option("--register", help="Register whose projects a support-only CSV refers to (default: bundled)")] = None,
) -> None:
    """Validate a register file: prints OK with counts, or every problem (exit status 2)."""
    from critmin.portfolio.register import check_file
    from critmin.portfolio.register_schema import RegisterError

    against = load_register(register) if register is not None else None
    try:
        reg = check_file(file, against=against)
    except RegisterError as exc:
        for p in exc.problems:
            print(str(p))
        err.print(f"[red]{len(exc.problems)} problem(s)[/red] in {file.name}")
        raise typer.Exit(2) from exc
    print(f"OK: {file.name}: {len(reg.projects)} projects, {len(reg.support)} support actions")


@projects_app.command("import")
@_fails_cleanly
def import_(
    file: Annotated[Path, typer.Argument(help="A .csv table (projects or support) or an .xlsx workbook (sheets projects, support)")],
    register: Annotated[Path, typer.Option("--register", help="Register directory to update (created if missing)")],
    replace: Annotated[bool, typer.Option("--replace", help="Replace the tables present in FILE instead of merging by id")] = False,
) -> None:
    """Import FILE into a register directory: validated first; merged by id (or replaced); nothing written on error."""
    from critmin.portfolio.register_files import import_register

    counts = import_register(file, register, replace=replace)
    print(
        f"imported {file.name} into {register.name}: projects +{counts['projects_added']} added, {counts['projects_updated']} updated, "
        f"{counts['projects_removed']} removed; support +{counts['support_added']} added, {counts['support_updated']} updated, "
        f"{counts['support_removed']} removed; now {counts['projects']} projects, {counts['support']} support actions"
    )


@projects_app.command("export")
@_fails_cleanly
def export(
    file: Annotated[Path, typer.Argument(help="Target .csv (projects table) or .xlsx (template with projects, support and README sheets)")],
    register: RegisterOpt = None,
) -> None:
    """Export the register as CSV (projects) or as an Excel template that `critmin projects import` reads back."""
    from critmin.portfolio.register_files import export_register

    reg = load_register(register)
    export_register(reg, file)
    print(f"wrote {file.name}: {len(reg.projects)} projects" + (f", {len(reg.support)} support actions" if file.suffix.lower() == ".xlsx" else ""))
