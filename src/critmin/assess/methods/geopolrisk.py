"""GeoPolRisk (life-cycle assessment community; Gemechu et al. 2016, Santillán-Saldivar et al. 2021).

Per node: ``score = HHI (0-1) · Σ_j (imports from j · instability_j) / (imports + domestic production)``.
With import shares m_j (fractions of imports) and net import reliance NIR this is
``HHI · NIR · Σ_j m_j · instability_j``, with ``instability_j = (2.5 - PV_j) / 5`` from the WGI
political-stability estimate (0 stable - 1 unstable). The part of imports the table does not attribute gets
the median instability (parameter-free). Where the perspective has no import table, world supply shares of
the node are the proxy for import shares, and the output says so. Node with the largest score = chokepoint.
"""

from __future__ import annotations

import numpy as np

from critmin.assess.methods.base import MISSING_RELIANCE, AssessmentContext, Method, MethodScore, register


@register
class GeoPolRisk(Method):
    name = "geopolrisk"
    title = "GeoPolRisk (production HHI x import-weighted political instability x import reliance)"
    citation = "Gemechu, E.D. et al. (2016) J. Ind. Ecol. 20:154; Santillán-Saldivar, J. et al. (2021) Resour. Conserv. Recycl. 164:105108"
    parameters = (MISSING_RELIANCE,)

    def score(self, ctx: AssessmentContext, commodity_id: str) -> MethodScore:
        flags: list[str] = []
        nir, rel = self.exposure(ctx, commodity_id, flags)
        sourcing = ctx.sourcing(commodity_id)
        median = float(np.nanmedian(ctx.gov["instability"]))
        src: set[str] = set(rel.source_ids)
        stage_scores: dict[str, float] = {}
        proxy_used = False
        for node in ctx.nodes(commodity_id):
            m = ctx.metric(node)
            src.update(m.source_ids.split(";"))
            if sourcing is not None and node[0] == commodity_id:
                mshares = sourcing[0]
            else:
                mshares = ctx.node_shares(node)
                proxy_used = True
            inst = ctx.instability(mshares.index)
            weighted = float(np.sum(mshares.to_numpy() * inst) + max(0.0, 1.0 - float(mshares.sum())) * median)
            stage_scores[node[1]] = float(m.hhi) / 10000.0 * nir * weighted
        if not stage_scores:
            return MethodScore(None, None, flags=["no supply data at any stage"])
        if proxy_used:
            flags.append("proxy: world supply shares used as import shares where the perspective has no import table")
        if sourcing is not None:
            src.update(sourcing[2])
            if sourcing[3]:
                flags.append(f"import sourcing {sourcing[1]}")
        choke = max(stage_scores, key=lambda k: (stage_scores[k], k))
        return MethodScore(stage_scores[choke], choke, stage_scores, {"NIR": nir}, flags, sorted(src))
