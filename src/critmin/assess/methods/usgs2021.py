"""USGS 2021 supply-risk method (Nassar & Fortier 2021, USGS OFR 2021-1045; Nassar et al. 2020, Sci. Adv.).

Disruption potential per node: ``DP = Σ_i s_i^2 · ASI_i · WSI_i`` with ability-to-supply
``ASI_i = WGI_i / 10`` (EU-scaled WGI, 0 best - 1 worst) and willingness-to-supply ``WSI_i`` set by the
country's relation to the perspective: participants and like-minded partners ``wsi_allied``, countries of
concern ``wsi_concern``, others ``wsi_other`` (the published method derives WSI from trade ties and shared
values; the atlas has no such index, so these are documented parameters). DP lies in [0, 1] with shares as
fractions, so no further scaling is needed. Trade exposure TE = net import reliance (0-1).

The published score also has economic vulnerability EV (industry value added and spending); the atlas has
no such data, so critmin offers the two-component variants, stated as such:

- ``usgs2021`` geometric mean ``SR = (DP · TE)^(1/2)``;
- ``usgs2021-product`` product ``SR = DP · TE``.

Node with the largest DP = chokepoint. The 2021 screening threshold (SR >= 0.40, three components) does not
carry over to the two-component variant.
"""

from __future__ import annotations

import numpy as np

from critmin.assess.methods.base import (
    MISSING_RELIANCE,
    AssessmentContext,
    Method,
    MethodScore,
    Parameter,
    register,
)

_WSI = (
    Parameter("wsi_allied", 0.1, "0-1", "Willingness-to-supply risk of participants and like-minded partners"),
    Parameter("wsi_other", 0.5, "0-1", "Willingness-to-supply risk of other countries"),
    Parameter("wsi_concern", 1.0, "0-1", "Willingness-to-supply risk of countries of concern"),
)


class _USGS2021Base(Method):
    parameters = (MISSING_RELIANCE, *_WSI)
    citation = "Nassar, N.T., Fortier, S.M. (2021) USGS Open-File Report 2021-1045; Nassar et al. (2020) Science Advances 6:eaay8647"
    combine: str = "geometric"

    def score(self, ctx: AssessmentContext, commodity_id: str) -> MethodScore:
        flags = ["economic vulnerability (EV) omitted: the atlas has no industry value-added data"]
        allied, concern = ctx.atlas.allied, ctx.atlas.concern
        dps: dict[str, float] = {}
        src: set[str] = set()
        for node in ctx.nodes(commodity_id):
            s = ctx.node_shares(node)
            asi = ctx.wgi(s.index) / 10.0
            wsi = np.array(
                [self.params["wsi_concern"] if i in concern else self.params["wsi_allied"] if i in allied else self.params["wsi_other"] for i in s.index]
            )
            dps[node[1]] = float(np.sum(s.to_numpy() ** 2 * asi * wsi))
            src.update(ctx.metric(node).source_ids.split(";"))
        if not dps:
            return MethodScore(None, None, flags=["no supply data at any stage"])
        choke = max(dps, key=lambda k: (dps[k], k))
        te, rel = self.exposure(ctx, commodity_id, flags)
        dp = dps[choke]
        score = float(np.sqrt(dp * te)) if self.combine == "geometric" else dp * te
        src.update(rel.source_ids)
        return MethodScore(score, choke, dps, {"DP": dp, "TE": te, "EV": None}, flags, sorted(src))


@register
class USGS2021(_USGS2021Base):
    name = "usgs2021"
    title = "USGS 2021 supply risk, geometric mean of DP and TE (EV omitted)"
    combine = "geometric"


@register
class USGS2021Product(_USGS2021Base):
    name = "usgs2021-product"
    title = "USGS 2021 supply risk, product of DP and TE (EV omitted)"
    combine = "product"
