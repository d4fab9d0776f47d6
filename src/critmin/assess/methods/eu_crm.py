"""EU Critical Raw Materials supply risk (European Commission 2017 guidelines; 2020 and 2023 assessments).

Per stage: ``SR = [HHI_WGI,t(global) · IR/2 + HHI_WGI,t(sourcing) · (1 - IR/2)] · (1 - EoL_RIR) · SI_SR``

with ``HHI_WGI,t = Σ_i s_i^2 · WGI_i · t_i`` (shares as fractions, WGI on the 0-10 scale, t_i = 1), IR the
perspective's import reliance, EoL_RIR the end-of-life recycling input rate and SI_SR the substitution index.
critmin puts the perspective's import sourcing where the EU puts EU sourcing (applied to the commodity's own
stages); where the perspective has no import table, or for downstream products, the global-supply term alone
is used (the EU's global-supply variant) and flagged. The atlas has no EoL_RIR or SI_SR, so they are
parameters (defaults 0 and 1). SR is reported at the worst stage; critical when SR >= 1 (and EI >= 2.8;
economic importance is not computed: the atlas has no sector value-added data).
"""

from __future__ import annotations

from critmin.assess.concentration import hhi_wgi
from critmin.assess.methods.base import (
    MISSING_RELIANCE,
    AssessmentContext,
    Method,
    MethodScore,
    Parameter,
    register,
)


@register
class EUSupplyRisk(Method):
    name = "eu"
    title = "EU CRM supply risk (perspective sourcing in place of EU sourcing; global-supply variant where missing)"
    citation = "European Commission (2017) Methodology for establishing the EU list of critical raw materials: guidelines"
    parameters = (
        MISSING_RELIANCE,
        Parameter("eol_rir", 0.0, "fraction", "End-of-life recycling input rate (no atlas data)"),
        Parameter("si_sr", 1.0, "0-1", "Substitution index for supply risk (1 = no substitute; no atlas data)"),
        Parameter("threshold", 1.0, "SR", "Supply-risk threshold of the EU method", "European Commission (2017)"),
    )

    def score(self, ctx: AssessmentContext, commodity_id: str) -> MethodScore:
        flags: list[str] = []
        ir, rel = self.exposure(ctx, commodity_id, flags)
        sourcing = ctx.sourcing(commodity_id)
        src: set[str] = set(rel.source_ids)
        stage_sr: dict[str, float] = {}
        used_sourcing = False
        for node in ctx.nodes(commodity_id):
            m = ctx.metric(node)
            glob = float(m.hhi_wgi)
            src.update(m.source_ids.split(";"))
            if sourcing is not None and node[0] == commodity_id:
                s = sourcing[0]
                local = float(hhi_wgi(s.to_numpy(), ctx.wgi(s.index)))
                used_sourcing = True
            else:
                local = glob
            sr = (glob * ir / 2.0 + local * (1.0 - ir / 2.0)) * (1.0 - self.params["eol_rir"]) * self.params["si_sr"]
            stage_sr[node[1]] = sr
        if not stage_sr:
            return MethodScore(None, None, flags=["no supply data at any stage"])
        if used_sourcing and sourcing is not None:
            src.update(sourcing[2])
            if sourcing[3]:
                flags.append(f"import sourcing {sourcing[1]}")
        else:
            flags.append("global-supply variant: no import-sourcing table for the perspective")
        choke = max(stage_sr, key=lambda k: (stage_sr[k], k))
        sr = stage_sr[choke]
        return MethodScore(
            float(sr),
            choke,
            stage_sr,
            {"SR": sr, "IR": ir, "critical_supply_risk": bool(sr >= self.params["threshold"]), "sourcing": sourcing[1] if sourcing else None},
            flags,
            sorted(src),
        )

