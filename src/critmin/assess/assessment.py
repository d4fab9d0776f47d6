"""Rank commodities for a perspective with one method; describe a commodity's chain stage by stage."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from critmin.assess.methods import AssessmentContext, get_method
from critmin.assess.methods.critmin_score import stage_risk
from critmin.atlas.model import Atlas

OUTPUT_COLUMNS = [
    "rank", "commodity", "name", "group", "score", "method", "perspective", "chokepoint_stage", "top_country",
    "top_share", "concern_share", "import_reliance", "import_reliance_basis", "us_critical_2025", "stages",
    "components", "flags", "source_ids",
]


def _stage_record(m: Any) -> dict[str, Any]:
    return {
        "hhi": round(float(m.hhi), 1),
        "hhi_wgi": round(float(m.hhi_wgi), 4),
        "top_country": m.top_country,
        "top_share": round(float(m.top_share), 4),
        "top3_share": round(float(m.top3_share), 4),
        "concern_share": round(float(m.concern_share), 4),
        "bloc_share": round(float(m.bloc_share), 4),
        "coverage": round(float(m.coverage), 4),
        "n_countries": int(m.n_countries),
        "basis": m.basis + (f" ({m.bound})" if m.bound else ""),
        "year": int(m.year),
        "source_ids": m.source_ids.split(";"),
    }


def assess(
    atlas: Atlas,
    perspective: str = "BLOC",
    method: str = "critmin",
    *,
    year: int = 2024,
    params: Mapping[str, float] | None = None,
    context: AssessmentContext | None = None,
) -> pd.DataFrame:
    """Score and rank every commodity of the atlas for a perspective (USA, JPN, BLOC) with one method.

    Returns one row per commodity (all of them; those without supply data have score and rank None), sorted
    by rank, with the columns of ``OUTPUT_COLUMNS``. ``stages`` holds, per stage with data, HHI, HHI_WGI, top
    country and share, concern and bloc shares, coverage and sources; ``flags`` lists every proxy or
    assumption the score depends on.
    """
    ctx = context or AssessmentContext(atlas, perspective, year)
    m = get_method(method, params)
    com = atlas.commodities.set_index("commodity_id")
    rows = []
    for cid in atlas.commodity_ids():
        res = m.score(ctx, cid)
        stages = {node[1]: _stage_record(ctx.metric(node)) for node in [*ctx.nodes(cid), *ctx.downstream_nodes(cid)]}
        for node in ctx.all_nodes(cid):
            stages.setdefault(node[1], {"hhi": None, "basis": "no data in the atlas"})
        rel = ctx.reliance(cid)
        choke = res.chokepoint_stage
        top = stages.get(choke, {}) if choke else {}
        rows.append(
            {
                "commodity": cid,
                "name": com.at[cid, "name"],
                "group": com.at[cid, "group"],
                "score": None if res.score is None else round(float(res.score), 6),
                "method": m.name,
                "perspective": ctx.perspective,
                "chokepoint_stage": choke,
                "top_country": top.get("top_country"),
                "top_share": top.get("top_share"),
                "concern_share": top.get("concern_share"),
                "import_reliance": None if rel.value is None else round(rel.value, 4),
                "import_reliance_basis": rel.basis,
                "us_critical_2025": bool(com.at[cid, "us_critical_2025"]),
                "stages": stages,
                "components": {k: (round(v, 6) if isinstance(v, float) else v) for k, v in res.components.items()},
                "flags": res.flags,
                "source_ids": res.source_ids,
            }
        )
    out = pd.DataFrame(rows)
    score = pd.to_numeric(out["score"], errors="coerce")
    order = np.lexsort((out["commodity"].to_numpy(), -score.fillna(-np.inf).to_numpy()))
    out = out.iloc[order].reset_index(drop=True)
    ranked = score.iloc[order].notna().to_numpy()
    out["rank"] = pd.Series([int(i + 1) if r else None for i, r in enumerate(ranked)], dtype=object)
    return out[OUTPUT_COLUMNS]


def chain(atlas: Atlas, commodity_id: str, perspective: str = "BLOC", year: int = 2024) -> dict[str, Any]:
    """Stage-by-stage view of a commodity's chain: shares by country at each stage and the chokepoint.

    The chokepoint is the commodity's own stage with the largest critmin stage risk
    ``1 - (1 - concern share)(1 - HHI_WGI/10)``; downstream products are listed with their stage risk and
    ``downstream: true`` but are not candidates (they are commodities with chokepoints of their own).
    """
    from critmin.errors import MethodError

    if commodity_id not in set(atlas.commodity_ids()):
        raise MethodError(f"unknown commodity '{commodity_id}'; see `critmin assess` for the list")
    ctx = AssessmentContext(atlas, perspective, year)
    res = get_method("critmin").score(ctx, commodity_id)
    stages = []
    for node in ctx.all_nodes(commodity_id):
        m = ctx.metric(node)
        shares = ctx.node_shares(node).sort_values(ascending=False)
        stages.append(
            {
                "commodity": node[0],
                "stage": node[1],
                "label": _label(atlas, node),
                "metrics": _stage_record(m) if m is not None else None,
                "stage_risk": None if m is None else round(stage_risk(m), 6),
                "downstream": node[0] != commodity_id,
                "countries": [{"iso3": k, "name": atlas.country_name(k), "share": round(float(v), 4)} for k, v in shares.items()],
            }
        )
    rel = ctx.reliance(commodity_id)
    return {
        "commodity": commodity_id,
        "name": atlas.commodity_name(commodity_id),
        "perspective": ctx.perspective,
        "chokepoint_stage": res.chokepoint_stage,
        "import_reliance": rel.value,
        "import_reliance_basis": rel.basis,
        "stages": stages,
        "flags": res.flags,
    }


def _label(atlas: Atlas, node: tuple[str, str]) -> str:
    s = atlas.stages
    hit = s[(s["commodity_id"] == node[0]) & (s["stage"] == node[1])]["label"]
    return str(hit.iloc[0]) if len(hit) else node[1]
