"""Command-line interface: a thin face over the critmin core (``critmin --help``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from critmin import __version__
from critmin.errors import CritminError
from critmin.output import FORMATS, emit

app = typer.Typer(help="critmin: critical-minerals supply security (US-Japan framework).", no_args_is_help=True, add_completion=False)
data_app = typer.Typer(help="Build and audit the reference atlas.", no_args_is_help=True)
app.add_typer(data_app, name="data")
err = Console(stderr=True)

AtlasOpt = Annotated[Path | None, typer.Option("--atlas", help="Atlas directory (default: the bundled atlas)")]
BlocsOpt = Annotated[Path | None, typer.Option("--blocs", help="CSV (bloc_id,iso3) replacing bloc members")]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help=f"Output format: {', '.join(FORMATS)}")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file (required for xlsx)")]
PerspectiveOpt = Annotated[str, typer.Option("--perspective", "-p", help="USA, JPN or BLOC (the participants together)")]


def _load(atlas: Path | None, blocs: Path | None) -> Any:
    from critmin.atlas import load_atlas

    return load_atlas(atlas, blocs=blocs)


def _params(items: list[str] | None) -> dict[str, float]:
    out = {}
    for it in items or []:
        if "=" not in it:
            raise CritminError(f"--param expects NAME=VALUE, got '{it}'")
        k, v = it.split("=", 1)
        try:
            out[k.strip()] = float(v)
        except ValueError as exc:
            raise CritminError(f"--param {k}: '{v}' is not a number") from exc
    return out


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise CritminError(f"unknown format '{fmt}'; use one of {', '.join(FORMATS)}")


@app.command()
def assess(
    perspective: PerspectiveOpt = "BLOC",
    method: Annotated[str, typer.Option("--method", "-m", help="critmin, usgs2021, usgs2021-product, eu, geopolrisk")] = "critmin",
    year: Annotated[int, typer.Option(help="Reference year of the data")] = 2024,
    param: Annotated[list[str] | None, typer.Option("--param", help="Override a method parameter, NAME=VALUE")] = None,
    top: Annotated[int | None, typer.Option(help="Show only the first N (table format)")] = None,
    fmt: FormatOpt = "table",
    out: OutOpt = None,
    atlas: AtlasOpt = None,
    blocs: BlocsOpt = None,
) -> None:
    """Rank commodities by criticality for a perspective, stage by stage, naming each chokepoint."""
    from critmin.assess import assess as run

    _check_format(fmt)
    a = _load(atlas, blocs)
    frame = run(a, perspective, method, year=year, params=_params(param))
    records = frame.to_dict("records")
    meta = {"critmin_version": __version__, "data_version": a.data_version, "method": method, "perspective": perspective.upper(), "year": year, "params": _params(param)}
    if fmt == "table":
        shown = records[:top] if top else records
        for r in shown:
            r["reliance"] = r["import_reliance"]
            r["critical_2025"] = r["us_critical_2025"]
            r["n_flags"] = len(r["flags"])
        emit(
            shown, "table",
            columns=["rank", "commodity", "score", "chokepoint_stage", "top_country", "top_share", "concern_share", "reliance", "critical_2025", "n_flags"],
            title=f"Priority minerals - perspective {perspective.upper()}, method {method} (data {a.data_version})",
        )
        err.print("Flags list every proxy or assumption behind a score: use --format json to see them.")
    else:
        emit(records, fmt, out=out, title="assessment", meta=meta)


@app.command()
def chain(
    commodity: Annotated[str, typer.Argument(help="Commodity id, e.g. rare_earths, lithium, gallium")],
    perspective: PerspectiveOpt = "BLOC",
    fmt: FormatOpt = "table",
    out: OutOpt = None,
    atlas: AtlasOpt = None,
    blocs: BlocsOpt = None,
) -> None:
    """Stage-by-stage country shares of a commodity's chain and its chokepoint."""
    from critmin.assess import chain as run

    _check_format(fmt)
    a = _load(atlas, blocs)
    res = run(a, commodity, perspective)
    if fmt == "json":
        emit(res, "json", out=out)
        return
    rows = []
    for st in res["stages"]:
        m = st["metrics"] or {}
        top3 = ", ".join(f"{c['iso3']} {100 * c['share']:.0f}%" for c in st["countries"][:3])
        rows.append(
            {
                "stage": st["stage"],
                "node": st["commodity"],
                "label": st["label"],
                "hhi": m.get("hhi"),
                "top_suppliers": top3 or "no data",
                "concern_share": m.get("concern_share"),
                "bloc_share": m.get("bloc_share"),
                "coverage": m.get("coverage"),
                "basis": m.get("basis", "no data"),
                "stage_risk": st["stage_risk"],
                "chokepoint": "<==" if st["stage"] == res["chokepoint_stage"] else "",
            }
        )
    if fmt == "table":
        emit(rows, "table", title=f"{res['name']} chain - chokepoint: {res['chokepoint_stage']}; import reliance ({res['perspective']}): {res['import_reliance']}")
    else:
        emit(rows, fmt, out=out, title="chain")


@app.command()
def methods() -> None:
    """List the criticality methods and their parameters."""
    from critmin.assess.methods import METHODS

    rows = []
    for name, cls in sorted(METHODS.items()):
        params = "; ".join(f"{p.name}={p.default:g} ({p.description})" for p in cls.parameters)
        rows.append({"method": name, "title": cls.title, "citation": cls.citation, "parameters": params})
    emit(rows, "table", title="Criticality methods")


@data_app.command("build")
def data_build(
    raw: Annotated[Path, typer.Option("--raw", help="Folder of raw public files (see data/raw/PROVENANCE.md)")],
    out: Annotated[Path | None, typer.Option("--out", help="Atlas folder to write (default: the bundled atlas)")] = None,
    curated: Annotated[Path | None, typer.Option("--curated", help="Folder of curated mapping tables")] = None,
) -> None:
    """Rebuild the atlas tables from raw files (deterministic; replaces the target folder atomically)."""
    from critmin.atlas.build import build_atlas
    from critmin.atlas.load import bundled_atlas_path

    target = out or bundled_atlas_path()
    manifest = build_atlas(raw, target, curated)
    rows = manifest["rows"]
    assert isinstance(rows, dict)
    emit([{"table": k, "rows": v} for k, v in rows.items()], "table", title=f"Atlas {manifest['data_version']} written to {target}")
    report = manifest["import_report"]
    assert isinstance(report, dict)
    if report.get("unmapped_usgs_series"):
        err.print(f"[yellow]USGS series not mapped (skipped): {report['unmapped_usgs_series']}[/yellow]")


@data_app.command("audit")
def data_audit(
    perspective: PerspectiveOpt = "BLOC",
    fmt: FormatOpt = "table",
    out: OutOpt = None,
    atlas: AtlasOpt = None,
    blocs: BlocsOpt = None,
) -> None:
    """Coverage of commodities x stages, rows without a source, gaps and proxies in use."""
    from critmin.atlas.audit import audit

    _check_format(fmt)
    a = _load(atlas, blocs)
    res = audit(a, perspective)
    if fmt == "json":
        emit(res, "json", out=out)
        return
    if fmt in ("csv", "xlsx"):
        emit(res["coverage"], fmt, out=out, title="coverage")
        return
    c = Console()
    c.print(f"[bold]Atlas {res['data_version']}[/bold]: {res['commodities']} commodities, {res['stage_nodes']} stage nodes, {res['stage_nodes_with_shares']} with country shares")
    c.print(f"Rows without a source: {res['rows_without_source']}")
    emit([{"table": k, "rows": v} for k, v in res["tables"].items()], "table", title="Tables", console=c)
    g = res["gaps"]
    c.print(f"[bold]Commodities without supply data[/bold] ({len(g['commodities_without_supply_data'])}): {', '.join(g['commodities_without_supply_data'])}")
    c.print(f"[bold]Stage nodes without data[/bold] ({len(g['stage_nodes_without_data'])}): {', '.join(g['stage_nodes_without_data'])}")
    c.print(f"[bold]Japan import sources available for[/bold]: {', '.join(g['japan_import_sources_available_for'])}")
    c.print(f"[bold]World totals off by more than 5 %[/bold]: {len(g['world_total_gaps_over_5pct'])} series-years")
    c.print(f"[bold]Proxies and assumptions in use[/bold] ({len(res['proxies'])}, perspective {perspective.upper()}; see --format json)")


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", help="Print the version and exit")] = False) -> None:
    if version:
        print(__version__)
        raise typer.Exit()


def main() -> None:
    """Console entry point: critmin errors print a clear message and exit with status 2."""
    try:
        app()
    except CritminError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise SystemExit(2) from exc
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise SystemExit(2) from exc
