"""Build the bundled atlas tables from the raw public files, deterministically.

``build_atlas(raw_dir, out_dir)`` reads the raw files (see data/raw/PROVENANCE.md) and critmin's curated
mapping tables (``critmin/atlas/curated``), writes one CSV per atlas table plus ``manifest.json`` and
validates the result by loading it. Output is byte-for-byte reproducible: rows are sorted, floats are
written exactly, and the manifest holds no timestamp. The output directory is replaced atomically: a failed
build leaves the previous atlas untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

import pandas as pd

from critmin._text import normalise_name
from critmin.atlas.importers import countries, curated, events, handbuilt, iea, usgs, wgi
from critmin.atlas.importers.common import CountryResolver, QuirkLog, read_raw_csv
from critmin.atlas.schema import STAGE_ORDER, TABLE_ORDER, format_csv, table_schemas
from critmin.errors import ImportDataError, Problem

ATLAS_FORMAT = 1

#: Raw files the builder reads, relative to the raw directory.
RAW_FILES = {
    "country_codes": "country_codes/country_name_to_iso3.csv",
    "usgs_world": "usgs_mcs2025/world_data/MCS2025_World_Data.csv",
    "usgs_salient": "usgs_mcs2025/salient_commodity",
    "usgs_fig2": "usgs_mcs2025/industry_trends/MCS2025_Fig2_Net_Import_Reliance.csv",
    "iea": "iea_critical_minerals_dataset/iea.json",
    "wgi": "worldbank_wgi/wgidataset_2024update_long.csv",
    "stage_shares": "stage_shares/stage_shares.csv",
    "stage_shares_derivatives": "stage_shares/stage_shares_derivatives.csv",
    "us_import_sources": "usgs_us_import_sources/us_import_sources_extracted.csv",
    "japan_import_sources": "japan/japan_import_sources.csv",
    "consumption": "japan/consumption.csv",
    "events": "events/export_restrictions.csv",
    "regime_transitions": "events/regime_transitions.csv",
    "node_prices": "prices/node_prices.csv",
    "market_values": "prices/market_values.csv",
    "export_shares": "trade/export_shares.csv",
    "world_output": "supply/world_output.csv",
    "supply_shares": "supply/country_shares.csv",
    "japan_consumption": "japan/consumption_jogmec.csv",
    "participant_demand": "demand/participant_demand.csv",
    "japan_import_sources_jogmec": "japan/import_sources_jogmec.csv",
    "backtest_cases": "events/backtest_cases.csv",
    "price_observations": "events/price_observations.csv",
    "output_stops": "events/output_stops.csv",
}

#: Sort keys of each table (deterministic output).
SORT_KEYS: dict[str, list[str]] = {
    "sources": ["source_id"],
    "countries": ["iso3"],
    "country_aliases": ["dataset", "alias"],
    "blocs": ["bloc_id", "iso3"],
    "commodities": ["commodity_id"],
    "stages": ["commodity_id", "_order"],
    "chain_links": ["chain_id", "from_commodity", "from_stage", "to_commodity", "to_stage"],
    "production": ["commodity_id", "stage", "series", "measure", "year", "case", "entity", "country_iso3", "raw_name"],
    "world_total_check": ["commodity_id", "stage", "series", "measure", "year"],
    "stage_shares": ["commodity_id", "stage", "product", "year", "source_id", "country_iso3", "share_kind"],
    "us_salient": ["commodity_id", "file_code", "variable", "year"],
    "us_trade": ["commodity_id", "form", "year"],
    "import_sources": ["importer_iso3", "commodity_id", "form", "period", "source_id", "partner_entity", "rank", "partner_iso3"],
    "consumption": ["country_iso3", "commodity_id", "item", "year"],
    "demand": ["commodity_id", "iea_mineral", "sector", "scenario", "year"],
    "governance": ["iso3", "indicator"],
    "events": ["event_id"],
    "event_scenarios": ["event_id", "_order", "commodity_id"],
    "regime_transitions": ["regime_event_id", "date", "kind", "targets"],
    "node_prices": ["commodity_id", "stage", "use", "form", "market", "source_id"],
    "market_values": ["commodity_id", "stage", "year", "source_id"],
    "export_shares": ["commodity_id", "stage", "exporter_iso3", "use", "year", "form", "source_id"],
    "world_output": ["commodity_id", "stage", "use", "year", "source_id"],
    "backtest_cases": ["case_id"],
    "price_observations": ["event_id", "commodity_id", "stage", "segment", "window", "form", "market", "after_date", "source_id"],
    "output_stops": ["event_id", "participant", "kind", "company", "plant_or_product", "source_id"],
}


def curated_dir() -> Path:
    """Directory of critmin's curated mapping tables shipped with the package."""
    return Path(str(resources.files("critmin.atlas").joinpath("curated")))


def _read_curated(cdir: Path, name: str) -> pd.DataFrame:
    path = cdir / f"{name}.csv"
    if not path.exists():
        raise ImportDataError(Problem(str(path), None, None, "curated table is missing"))
    return read_raw_csv(path).drop(columns="_line")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                h.update(p.relative_to(path).as_posix().encode() + b"\0" + p.read_bytes())
    else:
        h.update(path.read_bytes())
    return h.hexdigest()


def build_tables(raw_dir: Path, cdir: Path | None = None) -> tuple[dict[str, pd.DataFrame], dict[str, object]]:
    """Import every raw source; return (tables, import report)."""
    cdir = cdir or curated_dir()
    paths = {k: raw_dir / v for k, v in RAW_FILES.items()}
    for key, p in paths.items():
        if not p.exists():
            raise ImportDataError(Problem(str(p), None, None, f"raw input '{key}' is missing"))
    quirks = QuirkLog()

    aliases = countries.import_aliases(paths["country_codes"], cdir / "country_aliases_extra.csv", quirks)
    iso_codes = set(aliases.loc[aliases["entity"] == "country", "iso3"])
    resolver = CountryResolver(aliases, iso_codes)
    governance, wgi_names = wgi.import_wgi(paths["wgi"], resolver, quirks)
    country_table = countries.build_countries(aliases, wgi_names)

    commodities = _commodities(cdir)
    series_map = _read_curated(cdir, "usgs_world_series")
    production, world_check, unmapped = usgs.import_world_data(paths["usgs_world"], series_map, resolver, quirks)
    us_salient, us_trade = usgs.import_salient(paths["usgs_salient"], _read_curated(cdir, "usgs_salient_headline"), quirks)

    iea_map = _read_curated(cdir, "iea_minerals")
    minerals = dict(zip(iea_map["iea_mineral"], iea_map["commodity_id"], strict=True))
    iea_prod, demand = iea.import_iea(paths["iea"], minerals, resolver, quirks)
    production = pd.concat([production, iea_prod], ignore_index=True)

    name_map = _read_curated(cdir, "name_map")
    registry = handbuilt.SourceRegistry()
    stage_shares = handbuilt.import_stage_shares(
        {"stage_shares": paths["stage_shares"], "stage_shares_derivatives": paths["stage_shares_derivatives"]},
        name_map, resolver, registry, quirks,
    )
    fig2_names = {
        normalise_name(r.raw_commodity): r.commodity_id if r.include == "yes" else ""
        for r in name_map[name_map["dataset"] == "usgs_fig2"].itertuples(index=False)
    }
    us_trade = pd.concat(
        [us_trade, usgs.import_fig2_reliance(paths["usgs_fig2"], fig2_names, _read_curated(cdir, "usgs_nir_notes"), us_trade,
                                             2024, quirks)],
        ignore_index=True,
    )
    import_sources = pd.concat(
        [
            usgs.import_fig2_sources(paths["usgs_fig2"], fig2_names, resolver, quirks),
            handbuilt.import_us_import_sources(paths["us_import_sources"], name_map, registry, quirks),
            handbuilt.import_japan_import_sources(paths["japan_import_sources"], name_map, resolver, registry, quirks),
        ],
        ignore_index=True,
    )
    consumption = handbuilt.import_consumption(paths["consumption"], name_map, registry, quirks)

    names = dict(zip(country_table["iso3"], country_table["name"], strict=True))
    event_table, event_sources = events.import_events(paths["events"], iso_codes, names, quirks)
    transitions = events.import_regime_transitions(paths["regime_transitions"], set(event_table["event_id"]), quirks)

    # curated, sourced tables (prices by node, trade, world output and shares of nodes without a tonnage series)
    refs = {"iso3": iso_codes, "commodity": set(commodities["commodity_id"]), "stage": set(STAGE_ORDER)}
    sourced = {
        name: curated.import_sourced_table(paths[name], name, registry, resolver, refs, quirks)
        for name in ("node_prices", "market_values", "export_shares", "world_output", "backtest_cases", "price_observations",
                     "output_stops")
    }
    supply_shares = curated.import_sourced_table(paths["supply_shares"], "stage_shares", registry, resolver, refs, quirks)
    stage_shares = pd.concat([stage_shares, supply_shares], ignore_index=True)
    consumption = pd.concat(
        [consumption, curated.import_sourced_table(paths["japan_consumption"], "consumption", registry, resolver, refs, quirks,
                                                   fixed={"stage": ""}),
         curated.import_sourced_table(paths["participant_demand"], "consumption", registry, resolver, refs, quirks)],
        ignore_index=True)
    import_sources = pd.concat(
        [import_sources, curated.import_sourced_table(paths["japan_import_sources_jogmec"], "import_sources", registry, resolver, refs, quirks)],
        ignore_index=True)

    sources = pd.concat([_read_curated(cdir, "sources"), registry.frame(), event_sources], ignore_index=True)
    blocs = _read_curated(cdir, "blocs")
    chain_links = _read_curated(cdir, "chains")
    chain_links["source_id"] = "critmin_curation"
    stages = _stages(production, stage_shares, chain_links, _read_curated(cdir, "stage_labels"))
    scenario_path = cdir / "event_scenarios.csv"
    if not scenario_path.exists():
        raise ImportDataError(Problem(str(scenario_path), None, None, "curated table is missing"))
    event_scenarios = events.import_event_scenarios(
        scenario_path, event_table, set(zip(stages["commodity_id"], stages["stage"], strict=True)), iso_codes, quirks
    )

    tables = {
        "sources": sources,
        "countries": country_table,
        "country_aliases": aliases,
        "blocs": blocs,
        "commodities": commodities,
        "stages": stages,
        "chain_links": chain_links,
        "production": production,
        "world_total_check": world_check,
        "stage_shares": stage_shares,
        "us_salient": us_salient,
        "us_trade": us_trade,
        "import_sources": import_sources,
        "consumption": consumption,
        "demand": demand,
        "governance": governance,
        "events": event_table,
        "event_scenarios": event_scenarios,
        "regime_transitions": transitions,
        **sourced,
    }
    report: dict[str, object] = {
        "quirks": dict(sorted(quirks.counts.items())),
        "unmapped_usgs_series": unmapped,
        "world_total_gaps_over_5pct": int((world_check["gap_pct"].abs() > 5).sum()),
    }
    return tables, report


def _commodities(cdir: Path) -> pd.DataFrame:
    base = _read_curated(cdir, "commodities")
    products = _read_curated(cdir, "products")
    lst = _read_curated(cdir, "us_critical_minerals")
    frame = pd.concat([base, products], ignore_index=True)
    on22 = set(lst.loc[lst["list_2022"].str.lower() == "yes", "commodity_id"])
    on25 = set(lst.loc[lst["list_2025"].str.lower() == "yes", "commodity_id"])
    frame["us_critical_2022"] = frame["commodity_id"].isin(on22)
    frame["us_critical_2025"] = frame["commodity_id"].isin(on25)
    frame["source_id"] = "usgs_cml_2025"
    unknown = sorted(on25 - set(frame["commodity_id"]))
    if unknown:
        raise ImportDataError(Problem("us_critical_minerals.csv", None, "commodity_id", f"unknown commodities {unknown}"))
    return frame


def _stages(production: pd.DataFrame, shares: pd.DataFrame, links: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Stage nodes: every (commodity, stage) with share data or on a chain; labelled from curated labels or series."""
    label = {(r.commodity_id, r.stage): r.label for r in labels.itertuples(index=False)}
    rows: dict[tuple[str, str], dict[str, object]] = {}
    chain_of: dict[tuple[str, str], str] = {}
    for r in links.itertuples(index=False):
        chain_of.setdefault((r.from_commodity, r.from_stage), r.chain_id)
        chain_of.setdefault((r.to_commodity, r.to_stage), r.chain_id)
    base = production[production["for_shares"] & (production["case"] == "")]
    series_label = base.sort_values(["source_id", "series"]).drop_duplicates(["commodity_id", "stage"])
    for r in series_label.itertuples(index=False):
        rows[(r.commodity_id, r.stage)] = {"label": r.series, "source_id": r.source_id}
    for r in shares.sort_values(["product"]).drop_duplicates(["commodity_id", "stage"]).itertuples(index=False):
        rows.setdefault((r.commodity_id, r.stage), {"label": r.product, "source_id": r.source_id})
    for node in chain_of:
        rows.setdefault(node, {"label": node[1], "source_id": "critmin_curation"})
    out = []
    for (c, s), v in rows.items():
        out.append(
            {
                "commodity_id": c,
                "stage": s,
                "chain_id": chain_of.get((c, s), ""),
                "label": label.get((c, s), v["label"]),
                "source_id": "critmin_curation" if (c, s) in label else v["source_id"],
                "_order": STAGE_ORDER[s],
            }
        )
    return pd.DataFrame(out)


def write_tables(tables: dict[str, pd.DataFrame], report: dict[str, object], raw_dir: Path, out_dir: Path) -> dict[str, object]:
    """Serialise tables + manifest into ``out_dir`` atomically; returns the manifest."""
    texts: dict[str, str] = {}
    for name in TABLE_ORDER:
        frame = tables[name]
        keys = [k for k in SORT_KEYS[name] if k in frame.columns]
        frame = frame.sort_values(keys, kind="stable", na_position="first").reset_index(drop=True)
        missing = [c for c in table_schemas()[name].column_names if c not in frame.columns]
        if missing:
            raise ImportDataError(Problem(f"{name}.csv", None, missing[0], "builder produced no such column"))
        texts[name] = format_csv(frame, name)
    digest = hashlib.sha256()
    for name in TABLE_ORDER:
        digest.update(name.encode() + b"\0" + texts[name].encode("utf-8"))
    manifest: dict[str, object] = {
        "atlas_format": ATLAS_FORMAT,
        "data_version": f"mcs2025.iea2025.wgi2024.{digest.hexdigest()[:12]}",
        "rows": {name: texts[name].count("\n") - 1 for name in TABLE_ORDER},
        "raw_files": {key: _sha256(raw_dir / rel) for key, rel in sorted(RAW_FILES.items())},
        "import_report": report,
    }
    out_dir = out_dir.resolve()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".atlas-build-", dir=out_dir.parent))
    try:
        for name, text in texts.items():
            (tmp / f"{name}.csv").write_text(text, encoding="utf-8", newline="")
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        from critmin.atlas.load import load_atlas  # validate before swapping in

        load_atlas(tmp)
        backup = None
        if out_dir.exists():
            backup = out_dir.with_name(out_dir.name + ".old-" + os.urandom(4).hex())
            out_dir.rename(backup)
        tmp.rename(out_dir)
        if backup is not None:
            shutil.rmtree(backup)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def build_atlas(raw_dir: str | Path, out_dir: str | Path, curated: str | Path | None = None) -> dict[str, object]:
    """Build the atlas from ``raw_dir`` into ``out_dir``; returns the manifest (row counts, data version)."""
    raw = Path(raw_dir)
    tables, report = build_tables(raw, Path(curated) if curated else None)
    return write_tables(tables, report, raw, Path(out_dir))
