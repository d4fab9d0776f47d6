"""Data audit: what the atlas covers, which rows lack a source, where the gaps and proxies are (it ranks the
commodities, so it lives above the atlas, in assess)."""

from __future__ import annotations

from typing import Any

from critmin.assess.assessment import assess
from critmin.assess.methods import AssessmentContext
from critmin.atlas.audit import rows_without_source
from critmin.atlas.model import Atlas


def audit(atlas: Atlas, perspective: str = "BLOC", year: int = 2024) -> dict[str, Any]:
    """Coverage of commodities x stages, rows without a source, gaps and proxies in use (as one object)."""
    ctx = AssessmentContext(atlas, perspective, year)
    coverage = []
    nodes_without_data = []
    for cid in atlas.commodity_ids():
        for node in atlas.chain_nodes(cid):
            if node[0] != cid:
                continue
            m = ctx.metric(node)
            if m is None:
                nodes_without_data.append(f"{node[0]}/{node[1]}")
            coverage.append(
                {
                    "commodity": node[0],
                    "stage": node[1],
                    "has_shares": m is not None,
                    "basis": None if m is None else m.basis,
                    "year": None if m is None else int(m.year),
                    "coverage": None if m is None else round(float(m.coverage), 4),
                    "n_countries": None if m is None else int(m.n_countries),
                }
            )
    no_supply = [c for c in atlas.commodity_ids() if not ctx.nodes(c)]
    ranking = assess(atlas, perspective, "critmin", year=year, context=ctx)
    proxies = [
        {"commodity": r["commodity"], "flag": f}
        for r in ranking.to_dict("records")
        for f in r["flags"]
        if "proxy" in f or "assumed" in f or "inferred" in f
    ]
    reliance_inferred = [
        r["commodity"] for r in ranking.to_dict("records") if str(r["import_reliance_basis"]).startswith("inferred")
    ]
    wtc = atlas.world_total_check
    big_gaps = wtc[wtc["gap_pct"].abs() > 5]
    missing_us_nir = sorted(set(atlas.commodity_ids()) - set(atlas.us_trade.loc[atlas.us_trade["nir_pct"].notna(), "commodity_id"]))
    rws = rows_without_source(atlas)
    jp_sources = sorted(set(atlas.import_sources.loc[atlas.import_sources["importer_iso3"] == "JPN", "commodity_id"]))
    return {
        "data_version": atlas.data_version,
        "tables": atlas.summary(),
        "rows_without_source": sum(rws.values()),
        "rows_without_source_by_table": rws,
        "commodities": len(atlas.commodities),
        "stage_nodes": len(coverage),
        "stage_nodes_with_shares": sum(1 for c in coverage if c["has_shares"]),
        "coverage": coverage,
        "gaps": {
            "commodities_without_supply_data": no_supply,
            "stage_nodes_without_data": nodes_without_data,
            "commodities_without_us_nir": missing_us_nir,
            "japan_import_sources_available_for": jp_sources,
            "world_total_gaps_over_5pct": big_gaps[["commodity_id", "stage", "series", "year", "measure", "gap_pct", "note"]].to_dict("records"),
        },
        "proxies": proxies,
        "reliance_inferred": {"perspective": perspective, "commodities": reliance_inferred},
        "import_report": atlas.manifest.get("import_report", {}),
    }
