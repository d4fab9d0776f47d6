"""Command-line interface: a thin face over the critmin core (``critmin --help``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape

from critmin.errors import CritminError
from critmin.output import FORMATS, emit
from critmin.version import __version__

app = typer.Typer(help="critmin: critical-minerals supply security (US-Japan framework).", no_args_is_help=True, add_completion=False)
data_app = typer.Typer(help="Build and audit the reference atlas.", no_args_is_help=True)
app.add_typer(data_app, name="data")
scen_app = typer.Typer(help="The disruption scenario library.", no_args_is_help=True)
app.add_typer(scen_app, name="scenarios")
bench_app = typer.Typer(help="Benchmarks with machine-readable output.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
study_app = typer.Typer(help="Studies: the group's inputs in one file (init, check).", no_args_is_help=True)
app.add_typer(study_app, name="study")


def _projects_app() -> Any:
    from critmin.cli_projects import projects_app

    return projects_app


app.add_typer(_projects_app(), name="projects", help="The register of projects of interest (list, show, validate, import, export).")


def _web() -> None:
    from critmin.cli_web import serve, user_app

    app.add_typer(user_app, name="user", help="Users of the web workspace: add, list, passwd, disable, enable, role.")
    app.command("serve")(serve)


_web()
err = Console(stderr=True)

AtlasOpt = Annotated[Path | None, typer.Option("--atlas", help="Atlas directory (default: the bundled atlas)")]
BlocsOpt = Annotated[Path | None, typer.Option("--blocs", help="CSV (bloc_id,iso3) replacing bloc members")]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help=f"Output format: {', '.join(FORMATS)}")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file (required for xlsx)")]
PerspectiveOpt = Annotated[str, typer.Option("--perspective", "-p", help="USA, JPN or BLOC (the participants together)")]


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


def _study(atlas: Path | None, blocs: Path | None, register: Path | None = None, buyers: Path | None = None, params: Path | None = None,
           param: list[str] | None = None, chain: Path | None = None, product_values: Path | None = None) -> Any:
    """The command's flags as a study (critmin.Study): the library checks the inputs and runs the step, so the CLI
    and a notebook get the same orchestration (issue 13). Every command that reads the atlas or simulates goes
    through it."""
    from critmin.study import Study

    if register is not None and not register.is_dir():
        raise CritminError(f"--register {register.name}: not a directory")
    given = {k: str(v.resolve()) for k, v in {"register": register, "buyers": buyers, "blocs": blocs, "params": params}.items() if v is not None}
    return Study(None, None, atlas, parameter_values=_params(param), chain=chain, product_values=product_values, **given)


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
    _check_format(fmt)
    res = _study(atlas, blocs).assess(perspective, method, year=year, params=_params(param))
    records = res.ranking.to_dict("records")
    meta = {"critmin_version": __version__, **res.metadata}
    if fmt == "table":
        shown = records[:top] if top else records
        for r in shown:
            r["reliance"] = r["import_reliance"]
            r["critical_2025"] = r["us_critical_2025"]
            r["n_flags"] = len(r["flags"])
        emit(
            shown, "table",
            columns=["rank", "commodity", "score", "chokepoint_stage", "top_country", "top_share", "concern_share", "reliance", "critical_2025", "n_flags"],
            title=f"Priority minerals - perspective {perspective.upper()}, method {method} (data {meta['data_version']})",
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
    _check_format(fmt)
    res = dict(_study(atlas, blocs).chain(commodity, perspective).record)
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
                "chokepoint": "<==" if st["stage"] == res["chokepoint_stage"] and not st["downstream"] else "",
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


@data_app.command("dictionary")
def data_dictionary(
    docs: Annotated[Path | None, typer.Option("--docs", help="Rewrite the dictionaries in this docs folder (data.md, portfolio.md, deliver.md)")] = None,
) -> None:
    """The data dictionaries of the atlas, the project register and the buyers register, from their schema files."""
    from critmin.report.dictionary import dictionaries, update_docs

    if docs is None:
        for name, text in dictionaries().items():
            print(f"## {name}\n\n{text}")
        return
    for p in update_docs(docs):
        err.print(f"rewrote {p}")


@data_app.command("audit")
def data_audit(
    perspective: PerspectiveOpt = "BLOC",
    fmt: FormatOpt = "table",
    out: OutOpt = None,
    atlas: AtlasOpt = None,
    blocs: BlocsOpt = None,
) -> None:
    """Coverage of commodities x stages, rows without a source, gaps and proxies in use."""
    from critmin.assess.audit import audit

    _check_format(fmt)
    res = audit(_study(atlas, blocs).atlas, perspective)
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


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context, version: Annotated[bool, typer.Option("--version", help="Print the version and exit")] = False) -> None:
    if version:
        print(__version__)
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        print(ctx.get_help())
        raise typer.Exit()


# ---------------------------------------------------------------- simulation ----------------------------------------

DrawsOpt = Annotated[int, typer.Option("--draws", "-n", help="Monte Carlo draws")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (same seed and inputs => same results)")]
ParamsFileOpt = Annotated[Path | None, typer.Option("--params", help="CSV of parameter rows overriding the defaults (docs/simulation.md)")]
ParamOpt = Annotated[list[str] | None, typer.Option("--param", help="Fix a model parameter everywhere, NAME=VALUE")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help="Run on a local Dask cluster of N worker processes")]
DaskOpt = Annotated[str | None, typer.Option("--dask", help="Run on the Dask scheduler at tcp://HOST:PORT")]
ThreadsOpt = Annotated[int, typer.Option("--threads", help="Threads for the in-process run")]


ChainOpt = Annotated[Path | None, typer.Option("--chain", help="CSV replacing the bundled chain coefficients (same columns)")]
ProductValuesOpt = Annotated[Path | None, typer.Option("--product-values", help="CSV replacing the bundled product prices/outputs (same columns)")]


def _simulator(atlas: Path | None, blocs: Path | None, params: Path | None, param: list[str] | None,
               chain: Path | None = None, product_values: Path | None = None) -> Any:
    return _study(atlas, blocs, params=params, param=param, chain=chain, product_values=product_values).simulator


def _progress() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    return Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err, transient=True)


def _run_with_progress(label: str, fn: Any) -> Any:
    with _progress() as prog:
        task = prog.add_task(label, total=None)

        def cb(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total)

        return fn(cb)


@scen_app.command("list")
def scenarios_list(
    family: Annotated[str, typer.Option(help="event, generated or all")] = "event",
    commodity: Annotated[str | None, typer.Option(help="Only this commodity")] = None,
    fmt: FormatOpt = "table",
    out: OutOpt = None,
    atlas: AtlasOpt = None,
    blocs: BlocsOpt = None,
) -> None:
    """List scenarios: the real events (default) or the generated families."""
    _check_format(fmt)
    if family not in ("event", "generated", "all"):
        raise CritminError(f"--family must be event, generated or all, not '{family}'")
    sim = _simulator(atlas, blocs, None, None)
    lib = [s for s in sim.library(generated=family != "event") if family == "all" or (s.family == "event") == (family == "event")]
    if commodity:
        lib = [s for s in lib if s.commodity == commodity]
    rows = [
        {"id": s.id, "commodity": s.commodity, "stage": s.stage, "restrictors": ";".join(s.restrictors), "targets": ";".join(s.targets),
         "regime": s.regime, "withheld": s.withheld_share, "months": s.duration_months, "status": s.status,
         "probability": sim.probability.scenario_probability(s, s.commodity), "title": s.title}
        for s in lib
    ]
    if fmt == "table":
        emit(rows, "table", columns=["id", "status", "regime", "withheld", "months", "probability", "title"], title=f"{len(rows)} scenarios ({family})")
    else:
        emit(rows, fmt, out=out, title="scenarios")


@scen_app.command("show")
def scenarios_show(
    scenario_id: Annotated[str, typer.Argument(help="Scenario id (see `critmin scenarios list`)")],
    atlas: AtlasOpt = None,
    blocs: BlocsOpt = None,
) -> None:
    """Show one scenario's full definition (YAML), with its sources and probability."""
    import yaml

    from critmin.simulate.library import find_scenario

    sim = _simulator(atlas, blocs, None, None)
    s = find_scenario(sim.library(), scenario_id)
    d = s.model_dump(mode="json")
    d["annual_probability"] = sim.probability.scenario_probability(s, s.commodity)
    d["sources"] = [
        r for r in sim.atlas.sources.to_dict("records") if r["source_id"] in set(s.source_ids)
    ]
    print(yaml.safe_dump(d, sort_keys=False, allow_unicode=True), end="")


@app.command()
def simulate(
    scenario: Annotated[str, typer.Argument(help="Scenario id from the library, or a YAML/JSON scenario file")],
    draws: DrawsOpt = 1000,
    seed: SeedOpt = 0,
    chart: Annotated[Path | None, typer.Option("--chart", help="Write a chart of the first scenario (.html or .png)")] = None,
    paths: Annotated[bool, typer.Option("--paths", help="Include monthly price/shortfall bands (json/csv/xlsx)")] = False,
    params: ParamsFileOpt = None,
    param: ParamOpt = None,
    chain: ChainOpt = None,
    product_values: ProductValuesOpt = None,
    workers: WorkersOpt = None,
    dask: DaskOpt = None,
    threads: ThreadsOpt = 2,
    fmt: FormatOpt = "table",
    out: OutOpt = None,
    atlas: AtlasOpt = None,
    blocs: BlocsOpt = None,
) -> None:
    """Simulate a disruption: prices, shortfalls, stock draw-down and economic loss per participant."""
    from critmin.simulate.distributed import dask_client

    _check_format(fmt)
    st = _study(atlas, blocs, params=params, param=param, chain=chain, product_values=product_values)
    scen = st.scenarios(scenario)
    keep = paths or chart is not None or fmt == "table"
    with dask_client(dask, workers) as client:
        res = _run_with_progress(
            "simulating", lambda cb: st.simulate(scenario, draws=draws, seed=seed, paths=keep, threads=threads, client=client, progress=cb))
    if chart is not None:
        from critmin.simulate.chart import write_chart

        write_chart(res.paths, scen[0].id, chart, title=scen[0].title or scen[0].id)
        err.print(f"wrote {chart}")
    records = res.results.to_dict("records")
    meta = res.metadata
    if fmt == "table":
        emit(
            records, "table",
            columns=["scenario", "perspective", "expected_loss_usd", "input_cost_usd", "lost_output_usd", "producer_gain_usd", "net_loss_usd",
                     "lost_output_io_usd", "var95_usd", "cvar95_usd", "shortfall_t", "rationed_t", "peak_price_ratio_p50", "peak_price_ratio_p95", "unrestricted_price_ratio"],
            title=f"Disruption simulation, {draws} draws, seed {seed} (data {meta['data_version']})",
        )
        if res.paths is not None and len(scen) == 1:
            cols = ["month", "price_t_p05", "price_t_p50", "price_t_p95", "price_u_p50", "shortfall_usa_p50", "shortfall_jpn_p50", "stock_left_p50"]
            emit(res.paths.to_dict("records"), "table", columns=cols, title="Monthly bands (price ratio P/P0; shortfall t/month)")
        flags = sorted({f for r in records for f in str(r["flags"]).split("; ") if f})
        if flags:
            err.print("Flags: " + " | ".join(flags))
        return
    if fmt == "json":
        payload = {"metadata": meta, "results": records}
        if paths and res.paths is not None:
            payload["paths"] = res.paths.to_dict("records")
        emit(payload, "json", out=out)
    elif fmt == "xlsx":
        from critmin.output import write_atomic, xlsx_bytes

        if out is None:
            raise CritminError("--format xlsx needs --out FILE.xlsx")
        sheets = {"results": res.results}
        if res.paths is not None:
            sheets["paths"] = res.paths
        write_atomic(out, xlsx_bytes(sheets, {k: v for k, v in meta.items() if k != "probability_model"}))
        err.print(f"wrote {out}")
    else:
        emit(records if not paths else res.paths.to_dict("records"), fmt, out=out, title="simulation")


@app.command()
def risk(
    perspective: Annotated[str, typer.Option("--perspective", "-p", help="USA, JPN or BLOC")] = "BLOC",
    draws: DrawsOpt = 1000,
    seed: SeedOpt = 0,
    top: Annotated[int | None, typer.Option(help="Show only the first N (table format)")] = None,
    params: ParamsFileOpt = None,
    param: ParamOpt = None,
    chain: ChainOpt = None,
    product_values: ProductValuesOpt = None,
    workers: WorkersOpt = None,
    dask: DaskOpt = None,
    threads: ThreadsOpt = 2,
    fmt: FormatOpt = "table",
    out: OutOpt = None,
    atlas: AtlasOpt = None,
    blocs: BlocsOpt = None,
) -> None:
    """Rank commodities by probability-weighted economic loss over the scenario library (USGS 2025 approach)."""
    from critmin.simulate.distributed import dask_client

    _check_format(fmt)
    st = _study(atlas, blocs, params=params, param=param, chain=chain, product_values=product_values)
    with dask_client(dask, workers) as client:
        res = _run_with_progress(
            "risk sweep", lambda cb: st.risk(perspective, draws=draws, seed=seed, threads=threads, client=client, progress=cb))
    records = res.ranking.to_dict("records")
    if fmt == "table":
        shown = records[:top] if top else records
        for r in shown:
            r["driven_by"] = ", ".join(t["scenario"] for t in r["top_scenarios"][:2])
        emit(shown, "table", columns=["rank", "commodity", "expected_loss_usd", "expected_loss_io_usd", "producer_gain_usd", "net_loss_usd", "probability_of_loss",
                                      "conditional_loss_usd", "var95_usd", "cvar95_usd", "category", "proxy_share_of_loss", "driven_by"],
             title=f"Supply risk - perspective {perspective.upper()}: consumer loss (ranked), producers' gain and net, {draws} draws, "
                   f"seed {seed} (data {res.metadata['data_version']})")
    elif fmt == "json":
        emit(records, "json", out=out)
    else:
        emit(records, fmt, out=out, title="risk", meta=res.metadata)


@app.command()
def backtest(
    draws: DrawsOpt = 200,
    seed: SeedOpt = 0,
    calibrate: Annotated[bool, typer.Option("--calibrate", help="Refit the calibrated parameters on the calibration cases first")] = False,
    write_params: Annotated[Path | None, typer.Option("--write-params", help="With --calibrate: write the fitted rows as a --params file")] = None,
    params: ParamsFileOpt = None,
    param: ParamOpt = None,
    fmt: FormatOpt = "table",
    out: OutOpt = None,
    atlas: AtlasOpt = None,
) -> None:
    """Run the real events on their historical baselines and compare simulated with observed price ratios."""
    from critmin.simulate.backtest import calibrate as fit
    from critmin.simulate.backtest import quantity_check, run_backtest

    _check_format(fmt)
    sim = _simulator(atlas, None, params, param)
    if calibrate:
        p, fitted, bt = _run_with_progress("calibrating", lambda cb: fit(sim, draws=draws, seed=seed))
        err.print("fitted central values: " + ", ".join(f"{k}={v:.4g}" for k, v in fitted.items()))
        if write_params is not None:
            from critmin.output import write_atomic

            rows = p.table[p.table["name"].isin(list(fitted)) & (p.table["scope"] == "*")]
            write_atomic(write_params, rows.to_csv(index=False).encode())
            err.print(f"wrote {write_params}")
    else:
        bt = run_backtest(sim, draws=draws, seed=seed)
    records = bt.table.to_dict("records")
    quantities = quantity_check(sim, draws=draws, seed=seed).to_dict("records")
    meta = {**sim.metadata(draws, seed), "summary": bt.summary, "calibrated": bt.parameters}
    if fmt == "table":
        emit(records, "table", columns=["case_id", "split", "segment", "statistic", "horizon_months", "observed_ratio", "simulated_ratio",
                                        "within_2x", "direction_right"],
             title=f"Back-test: {len(records)} observations of real events, {draws} draws, seed {seed} (data {sim.atlas.data_version})")
        rows = [{"split": k, **{m: v.get(m) for m in ("observations", "cases", "within_2x", "direction_right", "rmse_log",
                                                      "bias_log", "median_move_share", "targeted_within_2x", "restrictor_within_2x", "targeted_direction_right",
                                                      "restrictor_direction_right")}}
                for k, v in bt.summary.items()]
        emit(rows, "table", title="Summary (shares of observations)")
        emit(quantities, "table", columns=["case_id", "participant", "shortfall_t", "rationed_t", "probability_of_rationing",
                                           "lost_output_share", "lost_output_io_share", "reported_stops", "reported_stop_weeks"],
             title="Quantities on the historical baselines (12 months, means over draws): tonnes not consumed, of which rationed at "
                   "the choke price; lost output's share of the consumer loss, ranked valuation and input-output convention; "
                   "plants or lines reported stopped, and their summed weeks where stated (output_stops)")
    elif fmt == "json":
        emit({"metadata": meta, "summary": bt.summary, "results": records, "quantities": quantities}, "json", out=out)
    else:
        emit(records, fmt, out=out, title="backtest", meta=meta)


@bench_app.command("simulate")
def bench_simulate_cmd(
    draws: DrawsOpt = 1000,
    seed: SeedOpt = 0,
    sample: Annotated[int, typer.Option(help="Scenario-draw pairs for the scalar reference")] = 200,
    threads: ThreadsOpt = 2,
    workers: WorkersOpt = None,
    dask: DaskOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    atlas: AtlasOpt = None,
) -> None:
    """Time the full generated sweep against the scalar scipy reference (docs/simulation.md)."""
    from critmin.output import to_json
    from critmin.simulate.bench import bench_simulate
    from critmin.simulate.distributed import dask_client

    sim = _simulator(atlas, None, None, None)
    with dask_client(dask, workers) as client:
        rec = bench_simulate(sim, draws=draws, seed=seed, sample=sample, threads=threads, client=client)
    if as_json:
        print(to_json(rec))
    else:
        emit([{"measure": k, "value": v} for k, v in rec.items()], "table", title="bench simulate")


# ---------------------------------------------------------------- portfolio -----------------------------------------


def _shares(items: list[str] | None, opt: str) -> dict[str, float]:
    out = {}
    for it in items or []:
        if "=" not in it:
            raise CritminError(f"{opt} expects ISO3=SHARE, got '{it}'")
        k, v = it.split("=", 1)
        try:
            out[k.strip().upper()] = float(v)
        except ValueError as exc:
            raise CritminError(f"{opt} {k}: '{v}' is not a number") from exc
    return out


@app.command()
def portfolio(
    register: Annotated[Path | None, typer.Option("--register", help="Register directory (default: the bundled pipeline)")] = None,
    budgets: Annotated[Path | None, typer.Option("--budgets", help="CSV agency_id,instrument,budget_usd adding or replacing budgets")] = None,
    agencies: Annotated[Path | None, typer.Option("--agencies", help="CSV replacing the bundled agencies.csv (same columns)")] = None,
    instrument_parameters: Annotated[Path | None, typer.Option("--instrument-parameters", help="CSV replacing instrument_parameters.csv (same columns)")] = None,
    deadline_months: Annotated[float | None, typer.Option("--deadline-months", help="Only options with first output within N months")] = None,
    with_frontier: Annotated[bool, typer.Option("--frontier", help="Also compute the efficient frontier (risk reduction vs budget)")] = False,
    points: Annotated[int, typer.Option("--points", help="Frontier points")] = 20,
    draws: Annotated[int, typer.Option("--draws", "-n", help="Simulated draws in the scenario sample")] = 500,
    seed: SeedOpt = 0,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Reference month YYYY-MM for lead times (default: this month)")] = None,
    gap: Annotated[float, typer.Option("--gap", help="Relative MIP gap")] = 0.01,
    time_limit: Annotated[float, typer.Option("--time-limit", help="Seconds per MIP solve")] = 60.0,
    cvar_weight: Annotated[float, typer.Option("--cvar-weight", help="Weight of the CVaR of the residual loss (0 = expected value only)")] = 0.0,
    cvar_alpha: Annotated[float, typer.Option("--cvar-alpha", help="CVaR level")] = 0.95,
    concern_weight: Annotated[float, typer.Option("--concern-weight", help="Weight of the secondary goal: capacity outside countries of concern")] = 0.0,
    max_country_share: Annotated[float, typer.Option("--max-country-share", help="Max share of total budget in one country")] = 1.0,
    max_commodity_share: Annotated[float, typer.Option("--max-commodity-share", help="Max share of total budget on one commodity")] = 1.0,
    min_share: Annotated[list[str] | None, typer.Option("--min-share", help="Co-financing: participant's minimum share of the money, ISO3=SHARE")] = None,
    must: Annotated[list[str] | None, typer.Option("--must", help="Project id that must be funded (repeatable)")] = None,
    fmt: FormatOpt = "table",
    out: OutOpt = None,
    atlas: AtlasOpt = None,
    blocs: BlocsOpt = None,
) -> None:
    """Choose which projects to back, with which instrument and agency, to cut the bloc's expected shortfall loss."""
    from critmin.inputs import make_options
    from critmin.portfolio.model import read_budgets
    from critmin.portfolio.options import PortfolioOptions

    _check_format(fmt)
    # every option checked before the register is read or a draw simulated
    opts = make_options(PortfolioOptions, budgets=read_budgets(budgets) if budgets else None, deadline_months=deadline_months, draws=draws,
                        seed=seed, as_of=_as_of(as_of), gap=gap, time_limit=time_limit, frontier_points=points if with_frontier else 0,
                        cvar_weight=cvar_weight, cvar_alpha=cvar_alpha, concern_weight=concern_weight, max_country_share=max_country_share,
                        max_commodity_share=max_commodity_share, min_participant_share=_shares(min_share, "--min-share"),
                        must_include=list(must or []), agencies_file=str(agencies) if agencies else None,
                        parameters_file=str(instrument_parameters) if instrument_parameters else None)
    st = _study(atlas, blocs, register=register)
    rec = dict(_run_with_progress("portfolio", lambda cb: st.portfolio(opts).record))
    if fmt == "json":
        emit(rec, "json", out=out)
        return
    if fmt in ("csv", "xlsx"):
        from critmin.output import write_atomic, xlsx_bytes

        sheets = {"selected": pd.DataFrame(rec["selected"]), "projects": pd.DataFrame(rec["projects"]),
                  "finance": pd.json_normalize(rec["finance"]) if rec["finance"] else pd.DataFrame(),
                  "risk_reduction": pd.DataFrame(rec["risk_reduction"]),
                  "budgets": pd.DataFrame([{"budget": k, "budget_usd": v, "spent_usd": rec["spent"].get(k, 0.0), "basis": rec["budget_basis"][k],
                                            "marginal_value_usd_per_usd": rec["marginal_value_usd_per_usd"].get(k)} for k, v in rec["budgets"].items()])}
        if "frontier" in rec:
            sheets["frontier"] = pd.DataFrame(rec["frontier"])
        if fmt == "xlsx":
            if out is None:
                raise CritminError("--format xlsx needs --out FILE.xlsx")
            write_atomic(out, xlsx_bytes(sheets, {k: v for k, v in rec["metadata"].items() if k != "probability_model"}))
            err.print(f"wrote {out}")
        else:
            emit(rec["selected"], "csv", out=out, title="portfolio")
        return
    c = Console(width=160)
    c.print(f"[bold]Portfolio[/bold] ({rec['status']}, gap {rec['gap']:.2%}, {rec['seconds']:.1f} s; scenario sample {draws} draws, seed {seed}, "
            f"data {rec['metadata']['data_version']}, as of {rec['metadata']['as_of']})")
    c.print(f"Expected loss avoided: [bold]{rec['expected_avoided_usd']:,.0f} USD[/bold] per year of exposure; greedy baseline: "
            f"{rec['greedy_expected_avoided_usd']:,.0f} USD")
    emit(rec["selected"], "table", columns=["project_id", "name", "instrument", "agency", "node", "cost_usd", "added_capacity_t_per_year",
                                             "months_to_output", "expected_avoided_usd"], title="Selected projects")
    emit([{"budget": k, "budget_usd": v, "spent_usd": rec["spent"].get(k, 0.0), "basis": rec["budget_basis"][k],
           "marginal_value": rec["marginal_value_usd_per_usd"].get(k)} for k, v in rec["budgets"].items()], "table", title="Budgets")
    emit(rec["risk_reduction"][:15], "table", columns=["node", "avoidable_loss_usd", "expected_avoided_usd", "share_avoided"], title="Risk reduction by node")
    if "frontier" in rec:
        emit(rec["frontier"], "table", columns=["budget_scale", "total_budget_usd", "spent_usd", "expected_avoided_usd", "projects"], title="Efficient frontier")
    rejected = [p for p in rec["projects"] if p["decision"] == "rejected"]
    err.print(f"{len(rejected)} projects rejected, each with a reason: use --format json (field 'projects') or xlsx to read them.")


@app.command()
def stockpile(
    perspective: Annotated[str, typer.Option("--perspective", "-p", help="USA, JPN or BLOC (both participants)")] = "BLOC",
    budget: Annotated[float | None, typer.Option("--budget", help="Purchase budget per participant (USD): one LP across commodities")] = None,
    pooled: Annotated[bool, typer.Option("--pooled/--separate", help="Also size a stock pooled by the participants, with the saving and sharing rule")] = True,
    max_days: Annotated[float | None, typer.Option("--max-days", help="Cap on every stock, days of the participant's net imports (NIR x consumption)")] = 180.0,
    draws: DrawsOpt = 500,
    seed: SeedOpt = 0,
    top: Annotated[int | None, typer.Option(help="Show only the first N (table format)")] = None,
    fmt: FormatOpt = "table",
    out: OutOpt = None,
    atlas: AtlasOpt = None,
    blocs: BlocsOpt = None,
) -> None:
    """Stock targets per participant and commodity: newsvendor on the simulated disruptions, day rules, pooling.
    The defaults are the study file's stock policy (critmin.stockpile.policy.StockpileOptions)."""
    from critmin.inputs import make_options
    from critmin.stockpile.policy import StockpileOptions

    _check_format(fmt)
    o = make_options(StockpileOptions, perspective=perspective, budget_usd=budget, pooled=pooled, max_days=max_days, draws=draws, seed=seed)
    perspective = o.perspective
    st = _study(atlas, blocs)
    rec = dict(_run_with_progress("stockpile", lambda cb: st.stockpile(o).record))
    if fmt == "json":
        emit(rec, "json", out=out)
        return
    rows = rec["stockpiles"]
    if fmt == "table":
        shown = rows[:top] if top else rows
        for r in shown:
            r["saving"] = r.get("saving_usd", r.get("pooling_saving_usd"))
            r["rule_90d_cost"] = r.get("rules", {}).get("90_days", {}).get("expected_cost_usd")
        emit(shown, "table", columns=["node", "participant", "optimal_stock_t", "optimal_stock_usd", "days_of_consumption",
                                      "expected_cost_with_stock_usd", "rule_90d_cost", "saving"],
             title=f"Stockpile targets - {perspective.upper()}, {draws} draws, seed {seed} (data {rec['metadata']['data_version']})")
        for j, p in rec["budget_plans"].items():
            emit([s for s in p["stocks"] if s["stock_t"] > 0], "table", columns=["node", "stock_t", "stock_usd"],
                 title=f"{j} under a budget of {p['budget_usd']:,.0f} USD: spent {p['spent_usd']:,.0f}, value of one more USD "
                       f"{p['value_of_budget_usd_per_usd']:.3f} (the table above is without the budget)")
    else:
        emit(rows, fmt, out=out, title="stockpile", meta={k: v for k, v in rec["metadata"].items() if k != "probability_model"})


BuyersOpt = Annotated[Path | None, typer.Option("--buyers", help="Buyers register (CSV or .xlsx with a 'buyers' sheet); default: bundled")]
AsOfOpt = Annotated[str | None, typer.Option("--as-of", help="Reference month YYYY-MM (default: this month)")]


def _as_of(as_of: str | None) -> str:
    from critmin._dates import current_month, require_month

    return require_month(as_of, "--as-of") or current_month()


@app.command()
def deliver(
    months: Annotated[int, typer.Option("--months", help="Planning horizon in months (the framework's six-month view by default)")] = 6,
    buyers: BuyersOpt = None,
    register: Annotated[Path | None, typer.Option("--register", help="Project register directory (default: bundled)")] = None,
    as_of: AsOfOpt = None,
    fmt: FormatOpt = "table",
    out: OutOpt = None,
    atlas: AtlasOpt = None,
    blocs: BlocsOpt = None,
) -> None:
    """Monthly delivery of allied projects' output to registered buyers (transportation LP), and what stays short."""
    from critmin.deliver.options import DeliveryOptions
    from critmin.inputs import make_options

    _check_format(fmt)
    o = make_options(DeliveryOptions, months=months, as_of=_as_of(as_of))
    rec = dict(_study(atlas, blocs, register=register, buyers=buyers).deliver(o).record)
    if fmt == "json":
        emit(rec, "json", out=out)
    elif fmt == "table":
        emit(rec["buyers"], "table", columns=["buyer_id", "name", "node", "demand_t", "delivered_t", "shortfall_t", "share_met", "minimum_unmet_t"],
             title=f"Delivery plan, {months} months from {rec['metadata']['as_of']} ({rec['metadata']['status']})")
        emit(rec["projects"], "table", columns=["project_id", "name", "capacity_t", "delivered_t", "utilisation"], title="Supplying projects")
        emit(rec["totals"], "table", columns=["receiving_country", "node", "tonnes"], title="Delivered by receiving country and node (t)")
        err.print(f"{len(rec['buyers_not_planned'])} buyers without a published volume and {len(rec['not_supplying'])} projects without output "
                  "in the horizon are listed with reasons in --format json.")
    else:
        emit(rec["allocation"], fmt, out=out, title="deliveries", meta=rec["metadata"])


@app.command()
def match(
    buyers: BuyersOpt = None,
    register: Annotated[Path | None, typer.Option("--register", help="Project register directory (default: bundled)")] = None,
    as_of: AsOfOpt = None,
    fmt: FormatOpt = "table",
    out: OutOpt = None,
    atlas: AtlasOpt = None,
    blocs: BlocsOpt = None,
) -> None:
    """Match supply offers (projects) with downstream needs (buyers): assignment model, each pair scored and explained."""
    _check_format(fmt)
    rec = dict(_study(atlas, blocs, register=register, buyers=buyers).match(_as_of(as_of)).record)
    if fmt == "json":
        emit(rec, "json", out=out)
    elif fmt == "table":
        emit(rec["matches"], "table", columns=["buyer", "project", "node", "need_t_per_year", "offer_t_per_year", "score", "reason"],
             title=f"Supplier-buyer matches ({rec['metadata']['status']}; weights {rec['metadata']['weights']})")
    else:
        emit(rec["candidates"], fmt, out=out, title="matches", meta=rec["metadata"])


@app.command()
def plan(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory for plan.json, plan.pdf, plan.xlsx and plan.html")] = Path("out"),
    study: Annotated[Path | None, typer.Option("--study", help="Study file (critmin study init DIR writes a template); flags below override it")] = None,
    register: Annotated[Path | None, typer.Option("--register", help="Project register: folder with projects.csv (+ support.csv) or .xlsx")] = None,
    buyers: BuyersOpt = None,
    budgets: Annotated[Path | None, typer.Option("--budgets", help="CSV agency_id,instrument,budget_usd adding or replacing budgets")] = None,
    params: Annotated[Path | None, typer.Option("--params", help="CSV of simulator parameter overrides (same columns as parameters.csv)")] = None,
    delivery_months: Annotated[int | None, typer.Option("--delivery-months", help="Months of the delivery plan (default 6)")] = None,
    draws: Annotated[int | None, typer.Option("--draws", "-n", help="Monte Carlo draws (default 500)")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (default 0)")] = None,
    as_of: AsOfOpt = None,
    atlas: AtlasOpt = None,
    blocs: BlocsOpt = None,
) -> None:
    """The main job: the whole cycle on a study (default: the bundled data), written as the coordinated plan
    (json, pdf, xlsx, html) with its executive answer first."""
    from rich.progress import Progress, SpinnerColumn, TimeElapsedColumn

    from critmin.report.writers import write_plan
    from critmin.study import Study

    if out_dir.exists() and not out_dir.is_dir():
        raise CritminError(f"--out {out_dir}: exists and is not a directory")
    flags = {"register": register, "buyers": buyers, "budgets": budgets, "params": params, "blocs": blocs, "as_of": as_of,
             "draws": draws, "seed": seed, "delivery_months": delivery_months}
    with Progress(SpinnerColumn(), "[progress.description]{task.description}", TimeElapsedColumn(), console=err, transient=False) as prog:
        task = prog.add_task("checking the study's inputs", total=None)
        if study is not None:
            st = Study.from_file(study, atlas=atlas, **flags)
        else:
            given: dict[str, Any] = {k: (str(Path(v).resolve()) if isinstance(v, Path) else v) for k, v in flags.items() if v is not None}
            st = Study(None, None, atlas, **given)

        def step(msg: str) -> None:
            prog.update(task, description=msg)

        step("loading the simulator")
        result = dict(st.plan(step=step).record)
        step("writing reports")
        paths = write_plan(result, st.atlas, out_dir)
        step("done")
    for kind, p in paths.items():
        err.print(f"wrote {p} ({kind})")


@app.command()
def respond(
    scenario: Annotated[str, typer.Argument(help="The new event: a library scenario id, or a YAML/JSON scenario file")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory for brief.html, brief.pdf and brief.json")] = Path("brief"),
    study: Annotated[Path | None, typer.Option("--study", help="Study file (register, buyers, blocs, params, as_of)")] = None,
    draws: DrawsOpt = 1000,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (default: the study's, else 0)")] = None,
    as_of: AsOfOpt = None,
    atlas: AtlasOpt = None,
) -> None:
    """Rapid response to a new event: a two-page brief (exposure by stage, price and shortfall bands, days of
    cover, alternative suppliers, projects to accelerate, buyers affected) in HTML, PDF and JSON."""
    from critmin.report.respond import write_brief
    from critmin.study import Study

    if out_dir.exists() and not out_dir.is_dir():
        raise CritminError(f"--out {out_dir}: exists and is not a directory")
    if draws < 50 or draws > 20000:
        raise CritminError("--draws must be between 50 and 20000")
    flags: dict[str, Any] = {"as_of": as_of, "seed": seed}
    st = Study.from_file(study, atlas=atlas, **flags) if study is not None else Study(None, None, atlas, **{k: v for k, v in flags.items() if v is not None})
    scenarios = st.scenarios(scenario)  # a wrong id or file fails here, before the simulation
    rec = _run_with_progress("simulating the event", lambda cb: st.respond(scenario, draws=draws).record) if scenarios else None
    assert rec is not None
    for kind, p in write_brief(rec, out_dir).items():
        err.print(f"wrote {p} ({kind})")
    err.print(f"computed in {rec['metadata']['seconds']} s")


@study_app.command("init")
def study_init(
    directory: Annotated[Path, typer.Argument(help="Folder for study.yaml and its input files")],
    as_of: AsOfOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a study already in the folder")] = False,
) -> None:
    """Write a commented study file with every input beside it (copies of the bundled data to edit)."""
    from critmin.study.template import init_study

    for p in init_study(directory, _as_of(as_of), force):
        err.print(f"wrote {p}")
    err.print(f"next: critmin plan --study {directory / 'study.yaml'} --out out")


@study_app.command("check")
def study_check(study: Annotated[Path, typer.Argument(help="Study file")], atlas: AtlasOpt = None) -> None:
    """Read and validate a study and every input it names, without running anything."""
    from critmin.study import Study

    st = Study.from_file(study, atlas=atlas)
    err.print(f"{study}: ok ({len(st.projects)} projects, {len(st.buyers)} buyers, "
              f"{len(st.budgets) if st.budgets is not None else 'bundled'} budgets, as of {st.as_of})")


@bench_app.command("portfolio")
def bench_portfolio_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object")] = False,
    frontier_points: Annotated[int, typer.Option("--frontier", help="Also time an N-point frontier on the 1,000-project case (0 = no)")] = 0,
    sizes: Annotated[str, typer.Option("--sizes", help="Pipeline sizes, comma-separated (each 10-20,000 projects)")] = "100,1000,5000",
    seed: SeedOpt = 0,
    atlas: AtlasOpt = None,
) -> None:
    """Solve generated pipelines of 100, 1,000 and 5,000 projects (--sizes) on 500 simulated draws (docs/portfolio.md)."""
    from critmin.output import to_json
    from critmin.portfolio.bench import bench_portfolio
    from critmin.portfolio.model import sample_from_simulator

    try:
        ns = tuple(int(x) for x in sizes.split(","))
    except ValueError:
        ns = ()
    if not ns or not all(10 <= n <= 20_000 for n in ns):
        raise typer.BadParameter("comma-separated whole numbers, each 10-20,000", param_hint="--sizes")
    sim = _simulator(atlas, None, None, None)
    sample = sample_from_simulator(sim, draws=500, seed=seed)
    rec = bench_portfolio(sample, sizes=ns, frontier_points=frontier_points, seed=seed)
    if as_json:
        print(to_json(rec))
    else:
        emit(rec["cases"], "table", columns=["projects", "options", "scenarios", "seconds", "gap", "objective", "greedy_objective", "objective_vs_greedy"],
             title="bench portfolio (generated pipelines, real scenario sample)")


def main() -> None:
    """Console entry point: critmin errors print a clear message and exit with status 2."""
    try:
        app()
    except CritminError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise SystemExit(2) from exc
    except ValueError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True)
        raise SystemExit(2) from exc
