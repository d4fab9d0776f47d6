"""critmin's own priority score.

For every stage k of the commodity itself with share data:

    r_k = 1 - (1 - c_k) · (1 - g_k)

where c_k is the share of world supply from countries of concern and g_k = HHI_WGI,k / 10 the
governance-weighted concentration on a 0-1 scale. r_k is high when supply comes from countries of concern
*or* is concentrated in badly governed countries. The chokepoint is the node with the largest r_k. With the
perspective's net import reliance E (0-1),

    score = max_k r_k · (w_floor + (1 - w_floor) · E)

so a fully self-sufficient perspective keeps ``w_floor`` of the supply risk (a domestic industry still pays
world prices in a disruption). Range 0-1.

Downstream products (cathode for lithium, magnets for NdPr) are ranked as commodities of their own; their
largest r_k is reported beside the score (``components["downstream"]``) but does not set it, since only the
share of the mineral's use that flows to the product is exposed there.
"""

from __future__ import annotations

from typing import Any

from critmin.assess.methods.base import (
    MISSING_RELIANCE,
    AssessmentContext,
    Method,
    MethodScore,
    Parameter,
    register,
)


def stage_risk(metric: Any) -> float:
    """``r_k = 1 - (1 - c_k)(1 - min(HHI_WGI,k / 10, 1))`` of one node's supply metrics."""
    return 1.0 - (1.0 - float(metric.concern_share)) * (1.0 - min(float(metric.hhi_wgi) / 10.0, 1.0))


@register
class CritminScore(Method):
    name = "critmin"
    title = "critmin priority score (concern share and governance-weighted concentration x import reliance)"
    citation = "critmin (this project), building on the EU CRM HHI_WGI (2017) and USGS net import reliance"
    parameters = (
        MISSING_RELIANCE,
        Parameter("w_floor", 0.25, "fraction", "Share of the supply risk kept at zero import reliance (price exposure)"),
    )

    def score(self, ctx: AssessmentContext, commodity_id: str) -> MethodScore:
        flags: list[str] = []
        stage_scores: dict[str, float] = {}
        src: set[str] = set()
        for node in ctx.nodes(commodity_id):
            m = ctx.metric(node)
            stage_scores[node[1]] = stage_risk(m)
            src.update(m.source_ids.split(";"))
        if not stage_scores:
            return MethodScore(None, None, flags=["no supply data at any stage"])
        down = {f"{n[0]}/{n[1]}": stage_risk(ctx.metric(n)) for n in ctx.downstream_nodes(commodity_id)}
        worst = max(down, key=lambda k: (down[k], k)) if down else None
        choke = max(stage_scores, key=lambda k: (stage_scores[k], k))
        e, rel = self.exposure(ctx, commodity_id, flags)
        w = self.params["w_floor"]
        score = stage_scores[choke] * (w + (1.0 - w) * e)
        src.update(rel.source_ids)
        return MethodScore(
            score,
            choke,
            stage_scores,
            {"supply_risk": stage_scores[choke], "import_reliance": e,
             "downstream": {"node": worst, "supply_risk": down[worst]} if worst else None},
            flags,
            sorted(src),
        )
